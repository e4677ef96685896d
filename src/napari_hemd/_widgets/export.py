"""Export dock widget: labels to a CTC result folder, OME-Zarr or TIFF, atomically, never silently over."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, PushButton
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info

from napari_hemd._widgets._common import (
    HISTORY_KEY,
    LOCKED_KEY,
    MODEL_KEY,
    PARAMS_KEY,
    RESULT_KEY,
    LayerWidget,
)
from napari_hemd.io import add_ome_zarr_labels, is_ome_zarr, write_labels, write_ome_zarr_labels
from napari_hemd.io.ome_zarr import axes_from_names

log = logging.getLogger(__name__)

#: Format name -> path suffix understood by :func:`napari_hemd.io.write_labels`.
FORMATS = {"CTC result folder": "", "OME-Zarr": ".ome.zarr", "TIFF stack": ".tif"}


def _ask_overwrite(path: Path) -> bool:
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        None, "Overwrite?", f"{path} exists. Replace it?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )  # fmt: skip
    return answer == QMessageBox.StandardButton.Yes


def _jsonable(params: dict) -> dict:
    return {k: v for k, v in params.items() if isinstance(v, str | int | float | bool | type(None))}


class ExportWidget(LayerWidget):
    """Write corrected labels with the parameters and model recorded beside them."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, labels=True)
        self.labels = self.layer_combo(Labels, "labels")
        self.format = ComboBox(label="format", choices=list(FORMATS), value="CTC result folder")
        self.path = FileEdit(label="save to", mode="w")
        self.export_button = PushButton(text="Export")
        self.extend([self.labels, self.format, self.path, self.export_button])
        #: Asked before replacing an existing output; tests replace it.
        self.confirm_overwrite: Callable[[Path], bool] = _ask_overwrite
        self.export_button.clicked.connect(lambda: self.export())

    def target(self) -> Path:
        """Output path with the suffix of the chosen format."""
        p = Path(self.path.value)
        suffix = FORMATS[self.format.value]
        if suffix == ".ome.zarr" and self._into_image(p):
            return p / "labels" / self._label_name()
        if p.name.lower().endswith(".ome.zarr"):
            p = p.with_name(p.name[: -len(".ome.zarr")])
        elif p.suffix.lower() in (".zarr", ".tif", ".tiff", ""):
            p = p.with_suffix("")
        return p.with_name(p.name + suffix)

    @staticmethod
    def _into_image(p: Path) -> bool:
        """An existing OME-Zarr *image* chosen as target: the labels go under its ``labels/``."""
        if not (p.suffix.lower() == ".zarr" and is_ome_zarr(p)):
            return False
        return "image-label" not in json.loads((p / ".zattrs").read_text())

    def _label_name(self) -> str:
        layer = self.labels.value
        name = getattr(layer, "name", "labels")
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")

    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the chosen layer; returns the written path (``None`` if refused or failed)."""
        layer = self.labels.value
        if not isinstance(layer, Labels):
            show_error("Export: choose a labels layer")
            return None
        if path is not None:
            self.path.value = Path(path)
        out = self.target()
        if str(self.path.value) in ("", "."):
            show_error("Export: choose where to save")
            return None
        overwrite = False
        if out.exists():
            from napari_hemd._atomic import check_output_path

            try:  # ask only about what may be replaced: never a folder we did not write
                check_output_path(out, overwrite=True)
            except OSError as e:
                show_error(f"Export: {e}")
                return None
            if not self.confirm_overwrite(out):
                show_info(f"Export: kept the existing {out}")
                return None
            overwrite = True
        meta = {"napari_hemd": _jsonable(layer.metadata.get(PARAMS_KEY) or {})}
        meta["napari_hemd"]["model"] = (layer.metadata.get(PARAMS_KEY) or {}).get(MODEL_KEY)
        locked = layer.metadata.get(LOCKED_KEY) or {}
        meta["napari_hemd"]["locked"] = {str(k): [int(n) for n in v] for k, v in locked.items()}
        res = layer.metadata.get(RESULT_KEY)
        tracks = getattr(res, "tracks", None) if self.format.value == "CTC result folder" else None
        hist = layer.metadata.get(HISTORY_KEY)
        if hist is not None and hist.undo_stack:
            tracks = None  # edited since linking: the writer derives tracks from the labels
        data = np.asarray(layer.data)
        if self.format.value == "CTC result folder" and data.ndim == 2:
            data = data[None]
        try:
            if self.format.value == "OME-Zarr":
                written = self._write_ome_zarr(data, out, layer, overwrite, meta)
            else:
                written = write_labels(data, out, overwrite=overwrite, tracks=tracks, metadata=meta)
        except Exception as e:
            log.exception("export to %s failed", out)
            show_error(f"Export failed: {e}")
            return None
        show_info(f"Export: wrote {written}")
        return written

    def _write_ome_zarr(self, data, out: Path, layer: Labels, overwrite: bool, meta: dict) -> Path:
        if out.parent.name == "labels" and self._into_image(out.parent.parent):
            return add_ome_zarr_labels(
                out.parent.parent, data, out.name, overwrite=overwrite, metadata=meta
            )
        axes = axes_from_names(layer.axis_labels, data.ndim)
        return write_ome_zarr_labels(
            data, out, axes=axes, scale=list(layer.scale), overwrite=overwrite, metadata=meta
        )
