"""Shared widget plumbing: layer choices, running a workflow in a thread with progress and Cancel."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from napari.layers import Image, Labels, Layer
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error

from napari_hemd.workflows import EditHistory

log = logging.getLogger(__name__)

#: Keys under which the widgets keep their state in ``Labels.metadata``.
PARAMS_KEY = "hemd_params"
RESULT_KEY = "hemd_result"
SOURCE_KEY = "hemd_source"
LOCKED_KEY = "hemd_locked"
HISTORY_KEY = "hemd_history"
MODEL_KEY = "hemd_model"


def base_name(name: str) -> str:
    """Layer name without a trailing `` probability`` / `` labels``."""
    for suffix in (" probability", " labels"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def history_of(layer: Labels) -> EditHistory:
    """The undo/redo history shared by every widget editing ``layer``."""
    hist = layer.metadata.get(HISTORY_KEY)
    if not isinstance(hist, EditHistory):
        hist = layer.metadata[HISTORY_KEY] = EditHistory()
    return hist


def apply_edit(layer: Labels, name: str, new: np.ndarray, frame: int | None = None) -> bool:
    """Write ``new`` into ``layer`` (one frame or all), recording it for undo; True if changed."""
    data = layer.data
    old = data if frame is None else data[frame]
    offset = 0 if frame is None else frame * old.size
    if history_of(layer).record(name, old, new, offset=offset) is None:
        return False
    old[...] = new
    layer.refresh()
    return True


class LayerWidget(Container):
    """A container with a viewer and layer combo boxes that follow the layer list."""

    def __init__(self, viewer, **kwargs) -> None:
        super().__init__(**kwargs)
        self.viewer = viewer
        self._worker = None
        ev = viewer.layers.events
        for e in (ev.inserted, ev.removed, ev.reordered):
            e.connect(self.reset_choices)

    def layer_combo(self, kind: type[Layer], label: str, filt: Callable | None = None) -> ComboBox:
        """A combo box listing the viewer's layers of ``kind`` (newest first)."""

        def choices(_w=None):
            return [
                (ly.name, ly)
                for ly in reversed(self.viewer.layers)
                if isinstance(ly, kind) and (filt is None or filt(ly))
            ]

        return ComboBox(label=label, choices=choices, nullable=False)

    def run_workflow(
        self,
        gen: Generator,
        on_result: Callable,
        run_button: PushButton,
        cancel_button: PushButton,
        desc: str,
    ):
        """Run ``gen`` in a thread; drive a napari progress bar; call ``on_result`` in the GUI."""
        pbr = progress(total=0, desc=desc)

        def drain():
            return (yield from gen)

        def on_yield(event) -> None:
            stage, done, total = event
            if pbr.total != total:
                pbr.total = total
            pbr.n = done
            pbr.set_description(f"{desc}: {stage}")
            pbr.refresh()

        def on_error(exc: Exception) -> None:
            log.exception("%s failed", desc, exc_info=exc)
            show_error(f"{desc} failed: {exc}")

        def on_finished() -> None:
            pbr.close()
            run_button.enabled = True
            cancel_button.enabled = False
            self._worker = None

        # errors go to a notification, not re-raised in the Qt event loop
        worker = create_worker(drain, _start_thread=False, _connect={"errored": on_error})
        worker.yielded.connect(on_yield)
        worker.returned.connect(on_result)
        worker.aborted.connect(gen.close)  # stops the computation at its next progress report
        worker.finished.connect(on_finished)
        run_button.enabled = False
        cancel_button.enabled = True
        self._worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running workflow to stop."""
        if self._worker is not None:
            self._worker.quit()


def add_or_update(viewer, data, name: str, kind: str = "image", **kwargs) -> Layer:
    """Replace the data of layer ``name`` if it exists with that kind, else add it."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        cls = Labels if kind == "labels" else Image
        if isinstance(layer, cls):
            layer.data = data
            for k, v in kwargs.get("metadata", {}).items():
                layer.metadata[k] = v
            return layer
        viewer.layers.remove(layer)
    add = viewer.add_labels if kind == "labels" else viewer.add_image
    return add(data, name=name, **kwargs)
