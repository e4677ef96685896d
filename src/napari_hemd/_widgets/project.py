"""Project dock widget: save a proofreading session to a zarr folder and reopen it exactly."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from magicgui.widgets import FileEdit, PushButton
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from napari_hemd._widgets._common import (
    HISTORY_KEY,
    LOCKED_KEY,
    PARAMS_KEY,
    RESULT_KEY,
    SOURCE_KEY,
    LayerWidget,
    add_or_update,
    history_of,
)
from napari_hemd._widgets.export import _ask_overwrite
from napari_hemd.workflows import load_project, rebuild_workflow, save_project

log = logging.getLogger(__name__)


class ProjectWidget(LayerWidget):
    """Save labels, locked choices, undo history and parameters; reopen them with the forest."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, labels=True)
        self.labels = self.layer_combo(Labels, "labels", lambda ly: PARAMS_KEY in ly.metadata)
        self.path = FileEdit(label="project (.zarr)", mode="w")
        self.save_button = PushButton(text="Save project")
        self.open_button = PushButton(text="Open project")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.extend(
            [self.labels, self.path, self.save_button, self.open_button, self.cancel_button]
        )
        #: Asked before replacing an existing project; tests replace it.
        self.confirm_overwrite: Callable[[Path], bool] = _ask_overwrite
        self.save_button.clicked.connect(lambda: self.save())
        self.open_button.clicked.connect(lambda: self.open())
        self.cancel_button.clicked.connect(self.cancel)

    def _folder(self, path) -> Path:
        p = Path(self.path.value if path is None else path)
        return p if p.suffix == ".zarr" else p.with_name(p.name + ".zarr")

    def save(self, path: str | Path | None = None) -> Path | None:
        """Save the chosen labels layer's session; returns the folder (``None`` if not saved)."""
        layer = self.labels.value
        if not isinstance(layer, Labels):
            show_error("Project: choose a labels layer made by the Segment widget")
            return None
        params = layer.metadata.get(PARAMS_KEY) or {}
        src = params.get(SOURCE_KEY)
        if src not in self.viewer.layers or not isinstance(self.viewer.layers[src], Image):
            show_error(f"Project: the probability layer {src!r} is gone")
            return None
        out = self._folder(path)
        overwrite = out.exists()
        if overwrite and not self.confirm_overwrite(out):
            return None
        try:
            save_project(
                out,
                prob=np.asarray(self.viewer.layers[src].data),
                labels=np.asarray(layer.data),
                params=params,
                locked=layer.metadata.get(LOCKED_KEY),
                history=history_of(layer),
                overwrite=overwrite,
            )
        except Exception as e:
            log.exception("saving %s failed", out)
            show_error(f"Project: saving failed: {e}")
            return None
        show_info(f"Project: saved {out}")
        return out

    def open(self, path: str | Path | None = None):
        """Reopen a project: probability and labels layers, then rebuild the forest in a thread."""
        folder = self._folder(path)
        try:
            proj = load_project(folder)
        except Exception as e:
            show_error(f"Project: cannot open {str(folder)!r}: {e}")
            return None
        name = folder.name.removesuffix(".zarr")
        params = dict(proj["params"])
        prob_name = params.get(SOURCE_KEY) or f"{name} probability"
        params[SOURCE_KEY] = prob_name
        add_or_update(
            self.viewer, proj["prob"], prob_name, colormap="magma", contrast_limits=(0.0, 1.0),
            blending="additive", visible=False,
        )  # fmt: skip
        labels_name = f"{name} labels"
        meta = {
            PARAMS_KEY: params,
            LOCKED_KEY: proj["locked"],
            HISTORY_KEY: proj["history"],
            RESULT_KEY: None,
        }
        layer = add_or_update(
            self.viewer,
            np.ascontiguousarray(proj["labels"], dtype=np.uint32),
            labels_name,
            kind="labels",
            metadata=meta,
        )
        if params.get("method", "hemd") != "hemd":
            return None

        def done(res) -> None:
            layer.metadata[RESULT_KEY] = res  # the forest for the inspector; labels stay as saved
            self.reset_choices()
            show_info(f"Project: reopened {folder}")

        gen = rebuild_workflow(proj["prob"], params, proj["locked"])
        return self.run_workflow(gen, done, self.open_button, self.cancel_button, "Open project")
