"""Shared widget plumbing: layer choices, running a workflow in a thread with progress and Cancel."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, ProgressBar, PushButton
from magicgui.widgets import Label as MgLabel
from napari.layers import Image, Labels, Layer
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info

from napari_hemd._widgets._layer_state import (
    LOCKED_KEY,
    MODEL_KEY,
    PARAMS_KEY,
    PREVIEW_KEY,
    RESULT_KEY,
    SOURCE_KEY,
    frames_held,
    layer_state,
    run_locks,
)
from napari_hemd.workflows import locked_choices, rebuild_workflow

log = logging.getLogger(__name__)


def base_name(name: str) -> str:
    """Layer name without a trailing `` probability`` / `` labels``."""
    for suffix in (" probability", " labels"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


#: Display name of the Project widget in the manifest (``napari.yaml``).
PROJECT_WIDGET = "Project (save / reopen session)"


def holds_session(viewer) -> bool:
    """Whether a labels layer of the viewer carries an H-EMD session (parameters)."""
    return any(isinstance(ly, Labels) and PARAMS_KEY in ly.metadata for ly in viewer.layers)


class WorkFailed(Exception):
    """A RuntimeError of a widget's work (most of torch's: a shape mismatch, memory), passed on.

    superqt's worker takes any RuntimeError from the work for "the worker was deleted" and
    emits neither ``errored`` nor ``finished``: the widget stayed running, Run disabled, with no
    message. Raised as this instead, the error is shown and the widget is ready again; the
    original is its ``__cause__`` (in the log's traceback).
    """


class _LayerCombo(ComboBox):
    """A layer combo box that is always true.

    The widgets keep their labels-layer combo as ``self.labels``, which is also magicgui's
    ``Container.labels`` (whether fields get captions): a combo with no layer yet was false
    (no choices), so a widget docked in an empty viewer lost every caption.
    """

    def __bool__(self) -> bool:
        return True


#: :meth:`LayerWidget._chosen_labels` of a closed widget.
CLOSED = object()


class LayerWidget(Container):
    """A container with a viewer and layer combo boxes that follow the layer list.

    The first napari-hemd widget opened in a viewer without a session brings back the last saved
    session, if there is one and restoring is on: it docks the Project widget, which reopens it.
    """

    #: Whether opening this widget may restore the last session (the Project widget does it itself).
    restores_session = True

    @property
    def native(self):
        """The Qt widget napari docks: the scroll area around the controls (``scrollable``).

        napari docks ``.native``, which magicgui makes the inner widget of a scrollable container;
        docking that, the scroll area was lost and the docks' heights added up past the screen.
        """
        return self.root_native_widget

    def __init__(self, viewer, **kwargs) -> None:
        # scrollable: several docks together never push the window past the screen's height
        # (they scroll instead; without it four docks made a 1000 px window 1813 px tall)
        kwargs.setdefault("scrollable", True)
        super().__init__(**kwargs)
        # controls at the top, at their own height, the free space below them (in a scroll area
        # taller than the controls, they would spread over it)
        inner = self.root_native_widget.widget() if kwargs["scrollable"] else None
        if inner is not None:
            inner.layout().addStretch(1)
        self.viewer = viewer
        self._worker = None
        ev = viewer.layers.events
        for e in (ev.inserted, ev.removed, ev.reordered):
            e.connect(self.reset_choices)
        from napari_hemd._widgets._models import events as model_events

        model_events.changed.connect(self._models_changed)  # a fine-tuned model joins the lists
        # its dock closed (napari takes the widget out of it): the run it started stops, as
        # Cancel would (audit 25: it went on, with no Cancel button left, and added its layers)
        self._close_watch = _DockCloseWatch(self.native, self._dock_closed)
        if self.restores_session:
            from qtpy.QtCore import QTimer

            # after the dock that holds this widget exists
            QTimer.singleShot(0, self._restore_last_session)

    def _dock_closed(self) -> None:
        if self._worker is not None:
            show_info(f"{self._worker_desc}: stopping, its dock was closed")
            self.cancel()

    def _models_changed(self) -> None:
        from napari_hemd._widgets._models import events as model_events

        try:
            self.reset_choices()
        except RuntimeError:  # the widget was closed (its Qt objects are gone)
            model_events.changed.disconnect(self._models_changed)

    def _restore_last_session(self) -> None:
        from napari_hemd import _settings

        if not _settings.load_settings()["auto_restore"] or _settings.last_project() is None:
            return
        window = getattr(self.viewer, "window", None)
        if window is not None and not hasattr(window, "_qt_window"):
            return  # napari was closed before this ran: its window is gone
        if len(self.viewer.layers) or holds_session(self.viewer):
            return  # the user is working on something else: never pull the old session in
        docks = getattr(window, "dock_widgets", None)
        if docks is None or any(PROJECT_WIDGET in str(name) for name in docks):
            return
        from napari_hemd._widgets import project

        last = _settings.last_project()
        # asked first: a "No" leaves the window as it was (the Project dock used to stay)
        if not project._ask_restore(Path(last)):
            return
        log.info("docking the Project widget to restore the last session")
        project.confirmed_restore = str(last)  # answered: the Project widget does not ask again
        window.add_plugin_dock_widget("napari-hemd", PROJECT_WIDGET)

    def _chosen_labels(self, handler):
        """The labels layer chosen, or :data:`CLOSED` once the widget is closed.

        Then ``handler`` is unhooked from the viewer's frame steps (the viewer outlives a
        closed dock and still steps through frames).
        """
        try:
            return self.labels.value
        except RuntimeError:
            self.viewer.dims.events.current_step.disconnect(handler)
            return CLOSED

    def layer_combo(
        self,
        kind: type[Layer],
        label: str,
        filt: Callable | None = None,
        prefer: Callable | None = None,
    ) -> ComboBox:
        """A combo box listing the viewer's layers of ``kind``.

        Newest first; with ``prefer``, the layers for which it is true come first (so the default
        choice is a plausible one: a raw image for Predict, a probability map for Segment). The
        inspector's preview layer is never listed (edits or an export would go to an outline).
        """

        def choices(_w=None):
            layers = [
                ly
                for ly in reversed(self.viewer.layers)
                if isinstance(ly, kind)
                and not ly.metadata.get(PREVIEW_KEY)
                and (filt is None or filt(ly))
            ]
            if prefer is not None:
                layers.sort(key=lambda ly: not prefer(ly))  # stable: newest first within each
            return [(ly.name, ly) for ly in layers]

        return _LayerCombo(label=label, choices=choices, nullable=False)

    def run_workflow(
        self,
        gen: Generator,
        on_result: Callable,
        run_button: PushButton | None,
        cancel_button: PushButton | None,
        desc: str,
        cancelled: str = "nothing was changed",
    ):
        """Run ``gen`` in a thread; drive a napari progress bar; call ``on_result`` in the GUI.

        ``run_button`` is disabled and ``cancel_button`` enabled while it runs (either may be
        ``None``), until the work has stopped: a cancelled run's generator is closed in the
        worker's thread, which waits for work it drives in a thread of its own
        (``workflows._drive``). ``cancelled`` is said after "cancelled; ".
        """
        pbr = progress(total=0, desc=desc)
        bar, status = self._dock_progress()
        bar.visible = status.visible = True
        bar.max, bar.value, status.value = 1, 0, f"{desc}: starting"
        clock = {"stage": None, "t0": time.perf_counter()}

        def drain():
            try:
                return (yield from gen)
            except RuntimeError as e:  # superqt takes it for a deleted worker: neither
                raise WorkFailed(str(e) or type(e).__name__) from e  # errored nor finished

        def on_yield(event) -> None:
            stage, done, total = event
            if pbr.total != total:
                pbr.total = total
            pbr.n = done
            pbr.set_description(f"{desc}: {stage}")
            pbr.refresh()
            # the same in the dock, where the user looks: done / total, rate, time left
            if stage != clock["stage"]:
                clock.update(stage=stage, t0=time.perf_counter(), first=done)
            try:
                bar.max, bar.value = max(int(total), 1), min(int(done), max(int(total), 1))
                status.value = _progress_text(desc, stage, done, total, clock)
            except RuntimeError:  # the dock was closed (napari quit): stop the work quietly
                log.info("%s: its widget was closed; stopping", desc)
                worker.yielded.disconnect(on_yield)
                worker.quit()

        def on_error(exc: Exception) -> None:
            log.exception("%s failed", desc, exc_info=exc)
            from napari_hemd.distributed import cluster_failure  # (Dask's: in a user's words)

            show_error(f"{desc} failed: {cluster_failure(exc) or exc}")

        def on_finished() -> None:
            pbr.close()
            self._worker = None
            try:
                bar.visible = status.visible = False
                self._set_running(run_button, cancel_button, False)
            except RuntimeError:  # the dock was closed meanwhile
                pass

        # errors go to a notification, not re-raised in the Qt event loop
        worker = create_worker(drain, _start_thread=False, _connect={"errored": on_error})
        worker.yielded.connect(on_yield)

        def returned(result) -> None:
            try:
                on_result(result)
            except RuntimeError as exc:  # its dock was closed meanwhile (napari quit)
                if "has been deleted" not in str(exc):
                    raise
                log.info("%s finished after its widget was closed", desc)

        worker.returned.connect(returned)
        from qtpy.QtCore import Qt

        # closed in the worker's thread (a direct connection), which then waits for the work to
        # stop at its next progress report before `finished` re-enables Run (audit 32)
        worker.aborted.connect(gen.close, Qt.ConnectionType.DirectConnection)
        worker.aborted.connect(lambda: show_info(f"{desc}: cancelled; {cancelled}"))
        worker.finished.connect(on_finished)
        self._set_running(run_button, cancel_button, True)
        self._worker, self._worker_desc = worker, desc
        # Started from the event loop, as superqt itself does whenever one runs (in napari):
        # whoever gets the worker back can connect to its signals before it can finish. Started
        # at once (superqt's choice without a running loop, as in tests), a quick job could
        # finish before a caller waiting on `finished` had connected, and the caller would wait
        # forever.
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, worker.start)
        return worker

    def _dock_progress(self):
        """The progress bar and status line at the bottom of this dock (made on first use)."""
        if getattr(self, "_bar", None) is None:
            self._bar = ProgressBar(value=0, min=0, max=1, visible=False)
            self._status = MgLabel(value="", visible=False)
            self.extend([self._bar, self._status])
        return self._bar, self._status

    @staticmethod
    def _set_running(run_button, cancel_button, running: bool) -> None:
        if run_button is not None:
            run_button.enabled = not running
        if cancel_button is not None:
            cancel_button.enabled = running

    def rebuild_result(self, layer: Labels, run_button=None, cancel_button=None):
        """Rebuild ``layer``'s H-EMD result (forests, selections) in a thread; return the worker.

        Used after reopening a project and after undoing into a state whose result was not saved.
        The rebuilt result is kept only if the layer's parameters and locks did not change
        meanwhile.
        """
        params = layer.metadata.get(PARAMS_KEY) or {}
        src = params.get(SOURCE_KEY)
        prob = self.viewer.layers[src] if src in self.viewer.layers else None
        if not isinstance(prob, Image):
            show_error(f"cannot rebuild the candidate forest: probability layer {src!r} is gone")
            return None
        started = (params, locked_choices(layer.metadata.get(LOCKED_KEY)))
        locked = run_locks(layer)

        def done(res) -> None:
            now = layer_state(layer)
            if (now[PARAMS_KEY] or {}, now[LOCKED_KEY]) == started and now[RESULT_KEY] is None:
                layer.metadata[RESULT_KEY] = res
                self.reset_choices()
            else:
                log.info("discarded a rebuilt result: %s changed meanwhile", layer.name)

        data = prob.data[0] if prob.multiscale else prob.data
        desc = "Rebuild the candidate forest"
        if layer.ndim == prob.ndim >= 3 and params.get("axis", 0) == 0:
            try:  # a frame range: the frames it holds
                held = frames_held(layer, prob, int(data.shape[0]))
            except ValueError as e:
                show_error(f"{desc}: {e}")
                return None
            if held is not None:
                data = data[held[0] : held[1]]
        gen = rebuild_workflow(data, params, locked)
        return self.run_workflow(gen, done, run_button, cancel_button, desc)

    def cancel_flag(self):
        """A fresh ``is_set`` callable for the next run, set by Cancel.

        Workflows that check it between batches (prediction) stop within one batch of tiles, not
        one frame.
        """
        self._cancel_event = threading.Event()
        return self._cancel_event.is_set

    def cancel(self) -> None:
        """Ask the running workflow to stop."""
        event = getattr(self, "_cancel_event", None)
        if event is not None:
            event.set()
        if self._worker is not None:
            self._worker.quit()


class _DockCloseWatch:
    """Calls ``on_closed()`` when ``native``, once docked, is taken out of its dock.

    napari's close button (``Window.remove_dock_widget``) sets the inner widget's parent to
    None and deletes the dock; hiding or floating the dock keeps the parent.
    """

    def __init__(self, native, on_closed: Callable[[], None]) -> None:
        from qtpy.QtCore import QEvent, QObject

        parent_change = QEvent.Type.ParentChange

        class Filter(QObject):
            docked = False

            def eventFilter(self, obj, event) -> bool:  # (Qt names it)
                if event.type() == parent_change:
                    if obj.parent() is not None:
                        self.docked = True
                    elif self.docked:
                        self.docked = False
                        on_closed()
                return False

        self.filter = Filter(native)  # lives as long as the widget
        native.installEventFilter(self.filter)


def _progress_text(desc: str, stage: str, done: int, total: int, clock: dict) -> str:
    """``"Predict: predict 12/92 (1.3/s, 1:02 left)"``."""
    dt = time.perf_counter() - clock["t0"]
    made = done - clock.get("first", 0)
    text = f"{desc}: {stage} {done}/{total}" if total else f"{desc}: {stage}"
    if made > 0 and dt > 0 and total:
        rate = made / dt
        left = (total - done) / rate
        text += f" ({rate:.2f}/s, {int(left // 60)}:{int(left % 60):02d} left)"
    return text


def channels_refusal(desc: str, layer, verb: str) -> str | None:
    """Why a 4D layer is taken for channels rather than a time-lapse of stacks, or None.

    The command line's rule (:func:`napari_hemd.io.channels.looks_like_channels`), with the way
    out in napari: split the channels into layers and ``verb`` the nuclear one.
    """
    from napari_hemd.io.channels import channels_last, looks_like_channels

    shape = tuple(layer.data.shape)
    # napari's Split Stack splits the first axis (time): it led to channels taken as frames
    # (audit 22). napari-hemd's reader opens a file's channels as layers; the console does too.
    console = f"in napari's console: viewer.add_image(viewer.layers[{layer.name!r}].data"
    if channels_last(shape):  # napari shows such a layer as RGB(A) when C is 3 or 4
        return (
            f"{desc}: {layer.name!r} has shape {shape}: its last axis ({shape[-1]}) looks like "
            "channels (an ilastik or multi-class export). Open the file with napari-hemd's "
            f"reader (an HDF5 or TIFF export opens as a layer per channel), or {console}, "
            "channel_axis=-1); then "
            f"{verb} the {'foreground probability' if verb == 'segment' else 'nuclear channel'}"
        )
    names = "".join(str(a) for a in layer.axis_labels)  # "tzyx" after an OME-Zarr
    if layer.ndim != 4 or not looks_like_channels(shape, names):
        return None
    if shape[1] == 1:  # (T, 1, Y, X): no channels, an axis of one plane
        return (
            f"{desc}: {layer.name!r} has one plane on its second axis: open the file with "
            f"napari-hemd's reader, which drops it, or {console}[:, 0])"
        )
    return (
        f"{desc}: {layer.name!r} has {shape[1]} planes on its second axis: channels rather than "
        "a time-lapse of 3D stacks? Open the file with napari-hemd's reader, which opens a layer "
        f"per channel, or {console}, channel_axis=1); then {verb} the nuclear channel (napari's "
        "Split Stack splits the first axis, time)"
    )


def is_probability_layer(layer) -> bool:
    """A layer made by a model (Predict, Segment) or holding floats: a probability map."""
    if MODEL_KEY in getattr(layer, "metadata", {}):
        return True
    dtype = getattr(getattr(layer, "data", None), "dtype", None)
    return dtype is not None and np.dtype(dtype).kind == "f"


def full_width(widget) -> None:
    """Let ``widget`` (a box holding a table or a plot) span the dock: no empty caption column.

    Call after it is added to a container with labels, which gives every widget a caption
    column as wide as the widest caption; an uncaptioned table was pushed right by it.
    """
    labeled = widget._labeled_widget() if hasattr(widget, "_labeled_widget") else None
    if labeled is not None:
        labeled._label_widget.visible = False


def as_paragraph(label) -> None:
    """Show a multi-line :class:`magicgui.widgets.Label` as a paragraph across the dock.

    No caption column beside it (:func:`full_width`), left-aligned, wrapped where the dock is
    narrower than a line: a caption column plus the longest line widened model docks to ~490 px.
    Call after it is added to its container.
    """
    from qtpy.QtCore import Qt

    full_width(label)
    label.native.setWordWrap(True)
    label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)


def add_or_update(
    viewer, data, name: str, kind: str = "image", like: Layer | None = None, **kwargs
) -> Layer:
    """Replace the data of layer ``name`` if napari-hemd made it, else add a layer.

    A layer of that name napari-hemd made (its metadata holds a ``hemd_`` key) gets the new data
    if it has the same kind, else is replaced. A layer of the user's of that name is never
    touched: the new one is added beside it (napari numbers its name; callers take the name
    from the layer returned). ``like``: the layer it was made from, whose pixel size (``scale``)
    and ``units`` it takes, so that it lies on its image (a calibrated image: in microns).
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if like is not None:  # (where ``like`` is at the origin now, a layer updated goes back there)
        kwargs = {**placement(like, len(data.shape)), **kwargs}
    ours = name in viewer.layers and any(
        str(k).startswith("hemd_") for k in viewer.layers[name].metadata
    )
    if ours:
        layer = viewer.layers[name]
        cls = Labels if kind == "labels" else Image
        if isinstance(layer, cls):
            layer.data = data
            for k, v in kwargs.get("metadata", {}).items():
                layer.metadata[k] = v
            for k in ("translate", "scale", "units", "axis_labels"):  # where it sits (a frame
                # range: at its frames; a calibrated image's layers: in its units)
                if k in kwargs:
                    setattr(layer, k, kwargs[k])
            return layer
        viewer.layers.remove(layer)
    add = viewer.add_labels if kind == "labels" else viewer.add_image
    return add(data, name=name, **kwargs)


def bare_layer(layer):
    """Napari's own layer behind a docked widget's public-only proxy (compared by identity)."""
    return getattr(layer, "__wrapped__", layer)


def placement(layer: Layer, ndim: int) -> dict:
    """:func:`placed_like` with the origin's ``translate``, ``scale`` and ``units`` where unset.

    What a layer made from ``layer`` is set to: one updated in place goes back to the origin
    when ``layer`` is there now (review 33).
    """
    here = {"translate": (0.0,) * ndim, "scale": (1.0,) * ndim, "units": ("pixel",) * ndim}
    return {**here, **placed_like(layer, ndim)}


def placed_like(layer: Layer, ndim: int) -> dict:
    """``scale``, ``units``, ``translate``, ``axis_labels`` of a ``ndim``-axis layer from ``layer``.

    ``layer``'s last ``ndim`` axes (1, pixel, 0 and napari's own names before its first); only
    what ``layer`` sets: its pixel size where calibrated, its place where moved (a tile of a
    larger field, a frame range: the masks lie on their cells, audit 35), its axes' names where
    named (``z, y, x``: a stack, which Export and Proofread then take as one).
    """
    from napari_hemd.io.calibration import normalise_unit, unit_name

    out: dict = {}
    pad = max(0, ndim - layer.ndim)
    scale = [float(v) for v in layer.scale]
    units = [unit_name(u) for u in layer.units]
    if any(v != 1.0 for v in scale) or any(normalise_unit(u) for u in units):  # not pixels
        out["scale"] = ([1.0] * pad + scale)[-ndim:]
        out["units"] = (["pixel"] * pad + units)[-ndim:]
    translate = [float(v) for v in layer.translate]
    if any(translate):
        out["translate"] = ([0.0] * pad + translate)[-ndim:]
    names = [str(a) for a in layer.axis_labels]
    # napari's own names ("-3", "-2", "-1") are none; a layer of more axes (affinities'
    # channels after time) cannot tell where they go
    if pad == 0 and names != [str(i) for i in range(-layer.ndim, 0)]:
        out["axis_labels"] = names[-ndim:]
    return out


def ask_yes_no(text: str, title: str = "napari-hemd") -> bool:
    """Ask the user (a dialog, No by default); True: Yes."""
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        None, title, text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )  # fmt: skip
    return answer == QMessageBox.StandardButton.Yes
