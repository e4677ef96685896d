"""Project dock widget: save a proofreading session to a zarr folder, autosave it, reopen it.

Once a session has a folder (saved or opened here), every edit of its labels layer (our
operations, undo/redo and napari's brush strokes) is saved to that folder again after
:data:`AUTOSAVE_MS` of quiet, atomically. The folder is remembered in the user settings
(:mod:`napari_hemd._settings`): when the widget opens in a viewer without that session, it
restores it (unless *restore last session on start* is off).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, FileEdit, Label, PushButton
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from psygnal import Signal
from qtpy.QtCore import QEvent, QObject, QTimer

from napari_hemd import _settings
from napari_hemd._widgets._common import (
    LayerWidget,
    add_or_update,
    holds_session,
)
from napari_hemd._widgets._layer_state import (
    BACKGROUND_KEY,
    CHECKED_KEY,
    DEFAULTS_KEY,
    GROW_KEY,
    HISTORY_KEY,
    LOCKED_KEY,
    MODEL_KEY,
    PARAMS_KEY,
    PROJECT_KEY,
    RESULT_KEY,
    SOURCE_KEY,
    checked_frames,
    edited_event,
    history_of,
    needs_rebuild,
    track_paint,
)
from napari_hemd._widgets._tracks import refresh_tracks
from napari_hemd._widgets.export import _ask_overwrite
from napari_hemd.workflows import EditHistory, load_project, save_project

log = logging.getLogger(__name__)

#: Quiet time after an edit before the session is saved again (milliseconds).
AUTOSAVE_MS = 1500


#: The last session's folder the user already agreed to restore (another widget asked before
#: docking this one): the Project widget then restores it without asking again.
confirmed_restore: str | None = None


def _ask_restore(folder: Path) -> bool:
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        None,
        "Restore last session?",
        f"Reopen your last napari-hemd session ({folder.name}) in this viewer?",
    )
    return answer == QMessageBox.StandardButton.Yes


def list_project_models(paths, project: str) -> list[str]:
    """List a reopened project's fine-tuned models in the widgets' model choices.

    The lists remember a model by its path: a project moved, copied or received from a
    colleague brought its ``models/`` along but none of them appeared. Each file not listed yet
    is, under its name, or ``NAME (PROJECT)`` when that name is listed for another file. Returns
    the names added.
    """
    from napari_hemd._widgets._models import register_model

    listed = _settings.user_models()
    known = {str(Path(info["path"]).resolve()) for info in listed.values()}
    added = []
    for path in paths:
        path = Path(path)
        if str(path.resolve()) in known:
            continue
        try:  # read as the widgets read a chosen model (once per version of the file)
            from napari_hemd._widgets._models import read_model

            kind = read_model(str(path)).kind
        except Exception as e:  # not a model (any more): left out, said in the log
            log.warning("project model %s left out of the model lists: %s", path, e)
            continue
        name = path.stem if path.stem not in listed else f"{path.stem} ({project})"
        register_model(name, path, kind)
        listed[name] = {"path": str(path)}
        added.append(name)
    return added


class ProjectWidget(LayerWidget):
    """Save labels, locked choices, undo history and parameters; reopen them with the forest."""

    #: Emitted with the folder after each autosave.
    autosaved = Signal(object)
    restores_session = False  # it restores the last session itself (``restore``)

    def __init__(self, napari_viewer, *, restore: bool | None = None) -> None:
        super().__init__(napari_viewer, labels=True)
        self.labels = self.layer_combo(Labels, "labels", lambda ly: PARAMS_KEY in ly.metadata)
        self.path = FileEdit(label="project (.zarr)", mode="w")
        self.save_button = PushButton(text="Save project")
        self.open_button = PushButton(text="Open project")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.autosave = CheckBox(label="autosave edits to the project", value=True)
        settings = _settings.load_settings()
        self.auto_restore = CheckBox(
            label="restore last session on start", value=bool(settings["auto_restore"])
        )
        self.restore_button = PushButton(text="Restore last session")
        self.status = Label(value="no project yet: save one to autosave your edits")
        self.extend(
            [
                self.labels, self.path, self.save_button, self.open_button, self.cancel_button,
                self.autosave, self.auto_restore, self.restore_button, self.status,
            ]
        )  # fmt: skip
        #: Asked before replacing an existing project; tests replace it.
        self.confirm_overwrite: Callable[[Path], bool] = _ask_overwrite
        #: The session's folder and labels layer, once saved or opened here.
        self.folder: Path | None = None
        self.session_layer: Labels | None = None
        self._timer = QTimer(self.native)  # dies with the widget: no save after it is closed
        self._timer.setSingleShot(True)
        self._timer.setInterval(AUTOSAVE_MS)
        self._timer.timeout.connect(self._autosave_in_background)
        #: The autosave running in a thread (``None`` if none) and whether edits came meanwhile.
        self._saving = None
        self._save_again = False
        self._close_filter = None
        self.save_button.clicked.connect(lambda: self.save(background=True))
        self.open_button.clicked.connect(lambda: self.open(background=True))
        self.cancel_button.clicked.connect(self.cancel)
        self.restore_button.clicked.connect(lambda: self.restore_last(background=True))
        self.auto_restore.changed.connect(lambda v: _settings.save_settings(auto_restore=bool(v)))
        self.restore_button.enabled = _settings.last_project() is not None
        #: The worker rebuilding the restored session's forest (``None`` if nothing restored).
        self.restored = None
        if settings["auto_restore"] if restore is None else restore:
            self.restored = self._restore_on_start()

    # ------------------------------------------------------------------ session
    def _folder(self, path) -> Path:
        """The project folder (``.zarr``) of ``path`` or the path field; ValueError if none."""
        # the text the user sees (magicgui turns an emptied field into the working folder)
        text = str(self.path.line_edit.value if path is None else path).strip()
        p = Path(self.path.value if path is None else path)
        if text in ("", ".") or not p.name:
            raise ValueError("choose a project folder (project (.zarr))")
        return p if p.suffix == ".zarr" else p.with_name(p.name + ".zarr")

    def _follow(self, layer: Labels, folder: Path) -> None:
        """Make ``folder`` this session's project: autosave ``layer``'s edits there."""
        if self.session_layer is not None and self.session_layer is not layer:
            edited_event(self.session_layer).disconnect(self._schedule)
            self.session_layer.events.paint.disconnect(self._schedule)
        if self.session_layer is not layer:
            track_paint(layer)  # strokes are saved in the project's undo history
            edited_event(layer).connect(self._schedule)
            layer.events.paint.connect(self._schedule)  # napari's brush and fill
        self.session_layer, self.folder = layer, folder
        self._watch_window_close()  # the last edits are saved when napari closes
        layer.metadata[PROJECT_KEY] = str(folder)  # the Fine-tune widget saves models there
        self.path.value = folder
        _settings.remember_project(folder)
        self.restore_button.enabled = True
        self.status.value = f"project: {folder.name} (autosaved)"

    def _schedule(self, _event=None) -> None:
        if self.autosave.value and self.folder is not None:
            self.status.value = f"project: {self.folder.name} (unsaved edits)"
            self._timer.start()

    def autosave_now(self) -> Path | None:
        """Save the session to its folder now (replacing it); ``None`` if there is none.

        Waits for an autosave running in the background first.
        """
        self._timer.stop()
        self.wait_for_autosave()
        layer, folder = self.session_layer, self.folder
        if layer is None or folder is None or layer not in self.viewer.layers:
            return None
        out = self._write(layer, folder, overwrite=folder.exists())
        if out is not None:
            self.status.value = f"project: {folder.name} (autosaved)"
            self.autosaved.emit(out)
        return out

    def flush(self) -> Path | None:
        """Save edits still waiting for their quiet moment, now; wait for a running autosave.

        Called when napari's window closes (an edit less than :data:`AUTOSAVE_MS` old was
        lost) and before another project is opened.
        """
        pending = self._timer.isActive() or self._save_again
        self._timer.stop()
        self._save_again = False
        self.wait_for_autosave()
        return self.autosave_now() if pending and self.autosave.value else None

    def _watch_window_close(self) -> None:
        """Flush the session when napari's window closes or its layers go (once per widget).

        The window's close (its button, File > Close Window, Quit) comes with the layers still
        there; ``viewer.close()`` removes the layers first.
        """
        if self._close_filter is not None:
            return
        self.viewer.layers.events.removing.connect(self._on_removing)
        viewer = getattr(self.viewer, "__wrapped__", self.viewer)  # napari's public-only proxy
        window = getattr(viewer.window, "_qt_window", None)  # of a dock from the plugins menu
        if window is None:
            return
        self._close_filter = _CloseFilter(self, window)
        window.installEventFilter(self._close_filter)

    def _on_removing(self, event) -> None:
        """A layer the session is saved from is about to go: save its pending edits first."""
        try:
            pending = self._timer.isActive() or self._save_again
        except RuntimeError:  # the dock was closed: nothing of it is pending
            return
        if not pending or self.session_layer is None:
            return
        layer = self.viewer.layers[event.index]
        params = self.session_layer.metadata.get(PARAMS_KEY) or {}
        mine = getattr(self.session_layer, "__wrapped__", self.session_layer)
        # napari's public-only proxy of a docked widget's viewer wraps each layer anew: ``is``
        # never held there, and the edit was lost on viewer.close() (audit 18)
        if getattr(layer, "__wrapped__", layer) is mine or layer.name == params.get(SOURCE_KEY):
            self.flush()

    def _autosave_in_background(self) -> None:
        """Save the session in a thread: napari stays responsive while a large movie is written.

        The labels, undo history and choices are taken as they are now (the labels copied);
        edits made while it runs are saved by the next autosave, started when this one ends.
        """
        if self._saving is not None:
            self._save_again = True
            return
        layer, folder = self.session_layer, self.folder
        if layer is None or folder is None or layer not in self.viewer.layers:
            return
        kwargs = self._save_kwargs(layer, folder, overwrite=folder.exists(), snapshot=True)
        if kwargs is None:
            return
        self.status.value = f"project: {folder.name} (saving...)"
        self._start_saving(
            kwargs, self._autosaved_in_background, lambda e: self._autosave_failed(folder, e),
            self._autosave_ended,
        )  # fmt: skip

    def _start_saving(self, kwargs: dict, saved, failed, ended):
        """:func:`save_project` of ``kwargs`` in a worker (``self._saving`` while it runs).

        ``saved(folder)``, ``failed(exception)`` and ``ended()`` are called in napari's thread;
        :meth:`wait_for_autosave` waits for it.
        """
        from napari.qt.threading import create_worker

        done = threading.Event()
        # napari keeps a finished worker (and so this function) for its activity log: a closure
        # over ``kwargs`` kept every autosave's copy of the labels, the movie's size per edit
        # (audit 25). The function takes them out of the box and lets them go once written.
        box = [kwargs]

        def write() -> Path:
            try:
                return save_project(**box.pop())
            finally:  # set in the thread: the GUI thread may be waiting on it
                done.set()

        worker = create_worker(write, _start_thread=False)
        worker.returned.connect(saved)
        worker.errored.connect(failed)
        worker.finished.connect(ended)
        self._saving = (worker, done)
        worker.start()
        return worker

    def _autosaved_in_background(self, out: Path) -> None:
        try:
            if out == self.folder and not self._save_again and not self._timer.isActive():
                self.status.value = f"project: {out.name} (autosaved)"
        except RuntimeError:  # the dock was closed meanwhile: the folder is saved all the same
            return
        self.autosaved.emit(out)

    def _autosave_failed(
        self, folder: Path, exc: Exception, status: str = "autosave failed: unsaved edits"
    ) -> None:
        log.error("saving %s failed", folder, exc_info=exc)
        show_error(f"Project: saving failed: {exc}")
        try:
            self.status.value = f"project: {folder.name} ({status})"
        except RuntimeError:
            pass

    def _autosave_ended(self) -> None:
        self._saving = None
        if self._save_again:  # edits made while it ran
            self._save_again = False
            try:
                self._timer.start()
            except RuntimeError:  # the dock was closed meanwhile
                pass

    def wait_for_autosave(self, timeout: float | None = None) -> bool:
        """Block until an autosave running in the background has written its folder.

        Returns ``False`` if it is still running after ``timeout`` seconds.
        """
        if self._saving is None:
            return True
        return self._saving[1].wait(timeout)

    def _save_kwargs(
        self, layer: Labels, out: Path, overwrite: bool, snapshot: bool = False
    ) -> dict | None:
        """What :func:`save_project` is given for ``layer``'s session (``None``: error shown).

        ``snapshot``: the labels copied and the undo history's stacks taken as they are, for a
        save that runs while the user goes on editing.
        """
        params = layer.metadata.get(PARAMS_KEY) or {}
        src = params.get(SOURCE_KEY)
        if src not in self.viewer.layers or not isinstance(self.viewer.layers[src], Image):
            show_error(f"Project: the probability layer {src!r} is gone")
            return None
        prob_layer = self.viewer.layers[src]
        raw_name = prob_layer.metadata.get(SOURCE_KEY)  # the image Predict / Segment started from
        raw = self.viewer.layers[raw_name] if raw_name in self.viewer.layers else None
        image = None
        if isinstance(raw, Image) and tuple(raw.data.shape) == tuple(prob_layer.data.shape):
            image = np.asarray(raw.data)
        # what a re-run after reopening needs to grow whole cells as this session does
        background = prob_layer.metadata.get(BACKGROUND_KEY)
        if background is not None and tuple(background.shape) != tuple(prob_layer.data.shape):
            background = None
        info = {
            k: prob_layer.metadata[k]
            for k in (MODEL_KEY, GROW_KEY, DEFAULTS_KEY)
            if prob_layer.metadata.get(k) is not None
        }
        history = history_of(layer)
        locked = layer.metadata.get(LOCKED_KEY)
        labels = np.asarray(layer.data)
        if snapshot:
            labels = labels.copy()
            # each edit's state dicts copied too: a re-run meanwhile drops old results from
            # them (forget_old_results) while the worker reads them
            history = EditHistory(
                [_state_copy(e) for e in history.undo_stack],
                [_state_copy(e) for e in history.redo_stack],
            )
            locked = copy.deepcopy(locked)
        return dict(
            folder=out,
            prob=np.asarray(prob_layer.data),
            image=image,
            image_name=raw_name if image is not None else None,
            labels=labels,
            params=copy.deepcopy(params) if snapshot else params,
            locked=locked,
            history=history,
            overwrite=overwrite,
            name=layer.name,
            checked=checked_frames(layer),
            background=None if background is None else np.asarray(background),
            prob_info=info,
            models_from=layer.metadata.get(PROJECT_KEY),  # Save as: its models come along
            placement={  # a frame range's labels start at its first frame; a calibrated
                key: _placement(ly)  # image's layers lie in its units
                for key, ly in (("labels", layer), ("prob", prob_layer), ("image", raw))
                if ly is not None and (key != "image" or image is not None)
            },
        )

    def _write(self, layer: Labels, out: Path, overwrite: bool) -> Path | None:
        kwargs = self._save_kwargs(layer, out, overwrite)
        if kwargs is None:
            return None
        self.wait_for_autosave()  # one save of a folder at a time
        try:
            save_project(**kwargs)
        except Exception as e:
            log.exception("saving %s failed", out)
            show_error(f"Project: saving failed: {e}")
            return None
        return out

    def save(self, path: str | Path | None = None, *, background: bool = False):
        """Save the chosen labels layer's session; returns the folder (``None`` if not saved).

        ``background``: written in a worker, which is returned (what the Save button does: a
        whole movie's session takes seconds to write); the session follows the folder once it
        is written.
        """
        layer = self.labels.value
        if not isinstance(layer, Labels):
            show_error("Project: choose a labels layer made by the Segment widget")
            return None
        try:
            out = self._folder(path)
        except ValueError as e:
            show_error(f"Project: {e}")
            return None
        overwrite = out.exists()
        own = out == self.folder and layer is self.session_layer  # re-saving this session
        if overwrite and not own and not self.confirm_overwrite(out):
            return None
        if not own:  # the session followed until now keeps its last edits (review)
            self.flush()
        if background:
            return self._save_in_background(layer, out, overwrite)
        if self._write(layer, out, overwrite) is None:
            return None
        self._follow(layer, out)
        show_info(f"Project: saved {out}")
        return out

    def _save_in_background(self, layer: Labels, out: Path, overwrite: bool):
        """Write ``layer``'s session to ``out`` in a worker; follow ``out`` once it is written.

        The session is taken as it is now (:meth:`_save_kwargs` ``snapshot``); edits made while
        it is written are autosaved after it (or marked unsaved, autosave off).
        """
        kwargs = self._save_kwargs(layer, out, overwrite, snapshot=True)
        if kwargs is None:
            return None
        self._timer.stop()
        self.wait_for_autosave()  # one save at a time (an autosave's rest is written first)

        written = [kwargs["labels"]]  # let go when it ends (a kept closure kept the copy)

        def saved(_out) -> None:
            snapshot = written.pop() if written else None
            try:
                self._follow(layer, out)
            except RuntimeError:  # the dock was closed meanwhile: the folder is written
                return
            show_info(f"Project: saved {out}")
            self.autosaved.emit(out)
            if layer in self.viewer.layers and not np.array_equal(layer.data, snapshot):
                self._schedule()  # edited while it was written

        def ended() -> None:
            written.clear()
            self._autosave_ended()
            try:
                self.save_button.enabled = True
            except RuntimeError:
                pass

        self.save_button.enabled = False
        self.status.value = f"project: {out.name} (saving...)"
        failed = lambda e: self._autosave_failed(out, e, "saving failed")  # noqa: E731
        return self._start_saving(kwargs, saved, failed, ended)

    def open(self, path: str | Path | None = None, *, background: bool = False):
        """Reopen a project: probability and labels layers, then rebuild the forest in a thread.

        Returns the rebuilding worker (``None`` if nothing to rebuild or the folder is not a
        project). ``background``: the project is read in a worker too (what the Open and
        Restore buttons do: a whole movie's session takes seconds to read), and that worker is
        returned; its layers are added, and the forest's rebuilding started, when it is done.
        """
        try:
            folder = self._folder(path)
        except ValueError as e:
            show_error(f"Project: {e}")
            return None
        self.flush()  # the session open now is saved first (the folder may be this one)
        if background:
            return self._open_in_background(folder)
        try:
            proj = load_project(folder)
        except Exception as e:
            show_error(f"Project: cannot open {str(folder)!r}: {e}")
            return None
        return self._show(folder, proj)

    def _open_in_background(self, folder: Path):
        """Read ``folder`` in a worker; show it (:meth:`_show`) once that worker has finished."""
        loaded: dict = {}

        def read():
            yield ("reading", 0, 1)
            try:
                proj = load_project(folder)
            except Exception as e:  # said as the synchronous open says it (superqt would
                return {"error": e}  # take a returned exception for the worker's failure)
            yield ("reading", 1, 1)
            return proj

        def show() -> None:  # after the reading worker's own end (buttons enabled again)
            proj = loaded.get("proj")
            if proj is not None and "error" in proj:
                show_error(f"Project: cannot open {str(folder)!r}: {proj['error']}")
            elif proj is not None:  # None: cancelled
                try:
                    self._show(folder, proj)
                except RuntimeError as e:  # napari closed while it was read
                    if "has been deleted" not in str(e):
                        raise

        worker = self.run_workflow(
            read(), lambda proj: loaded.update(proj=proj), self.open_button, self.cancel_button,
            "Open project",
        )  # fmt: skip
        worker.finished.connect(show)
        return worker

    def _show(self, folder: Path, proj: dict):
        """Add a loaded project's layers; rebuild its forest in a thread (that worker, or None)."""
        name = folder.name.removesuffix(".zarr")
        params = dict(proj["params"])
        image_name = None
        if proj.get("image") is not None:  # the raw image under the labels, not black
            image_name = proj.get("image_name") or f"{name} image"
            image_name = add_or_update(  # beside a layer of the user's of that name
                self.viewer, proj["image"], image_name, metadata={PROJECT_KEY: str(folder)},
                **(proj.get("placement") or {}).get("image", {}),
            ).name  # fmt: skip
        prob_name = params.get(SOURCE_KEY) or f"{name} probability"
        params[SOURCE_KEY] = prob_name
        # the map as the session had it: its model, growth and raw image (a later save keeps
        # the image; Lock and re-run grows whole cells as the session did)
        prob_meta = dict(proj.get("prob_info") or {})
        if proj.get("background") is not None:
            prob_meta[BACKGROUND_KEY] = proj["background"]
        if image_name is not None:
            prob_meta[SOURCE_KEY] = image_name
        place = proj.get("placement") or {}
        prob_meta.setdefault(PROJECT_KEY, str(folder))  # napari-hemd's: a reopening updates it
        params[SOURCE_KEY] = add_or_update(
            self.viewer, proj["prob"], prob_name, colormap="magma", contrast_limits=(0.0, 1.0),
            blending="additive", visible=False, metadata=prob_meta, **place.get("prob", {}),
        ).name  # fmt: skip
        meta = {
            PARAMS_KEY: params,
            LOCKED_KEY: proj["locked"],
            HISTORY_KEY: proj["history"],
            RESULT_KEY: None,
            CHECKED_KEY: proj["checked"],
        }
        layer = add_or_update(
            self.viewer,
            np.ascontiguousarray(proj["labels"], dtype=np.uint32),
            proj.get("name") or f"{name} labels",
            kind="labels",
            metadata=meta,
            **place.get("labels", {}),
        )
        list_project_models(proj.get("models") or [], name)
        self.reset_choices()
        self.labels.value = layer
        self._follow(layer, folder)
        show_info(f"Project: reopened {folder}")
        if not needs_rebuild(layer):  # a baseline's, or a time-lapse of stacks' (per stack)
            return None
        # the forest for the inspector, rebuilt from the saved map; the labels stay as saved
        worker = self.rebuild_result(layer, self.open_button, self.cancel_button)
        if worker is not None:  # then their tracks, as the session drew them (edits included)
            worker.returned.connect(lambda _res: refresh_tracks(self.viewer, layer, create=True))
        return worker

    def restore_last(self, *, background: bool = False):
        """Reopen the last project saved or opened (see :func:`open`)."""
        last = _settings.last_project()
        if last is None:
            show_info("Project: no last session to restore")
            return None
        return self.open(last, background=background)

    def _restore_on_start(self):
        last = _settings.last_project()
        if last is None:
            return None
        if len(self.viewer.layers) or holds_session(self.viewer):
            return None  # never into a viewer that already holds data: it is other work
        global confirmed_restore
        asked, confirmed_restore = confirmed_restore == str(last), None
        if not asked and not _ask_restore(Path(last)):  # looked up here: tests replace it
            return None
        log.info("restoring the last session %s", last)
        return self.open(last)


def _state_copy(edit):
    """``edit`` with its own copies of its state dicts (the arrays shared: never changed)."""
    import dataclasses

    if not edit.state:
        return edit
    return dataclasses.replace(edit, state=tuple(dict(st) for st in edit.state))


def _placement(layer) -> dict:
    """Where a layer lies: its ``translate``, ``scale``, ``units`` and axis names (as saved)."""
    from napari_hemd.io.calibration import unit_name

    units = [unit_name(u) for u in layer.units]
    return {
        "translate": list(layer.translate),
        "scale": list(layer.scale),
        "units": units,
        "axis_labels": [str(a) for a in layer.axis_labels],
    }


class _CloseFilter(QObject):
    """Flushes a Project widget's session when napari's main window is about to close."""

    def __init__(self, widget: ProjectWidget, window) -> None:
        super().__init__(window)
        self._widget = widget

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Close:
            try:
                self._widget.flush()
            except RuntimeError:  # the dock was deleted before the window
                pass
            except Exception:  # never keep napari from closing
                log.exception("saving the session on close failed")
        return False
