"""Export dock widget: labels (CTC folder, OME-Zarr, TIFF) or their objects' measurements (CSV).

Written atomically, never silently over an existing output.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, PushButton, Select
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning

from napari_hemd._widgets._common import LayerWidget
from napari_hemd._widgets._layer_state import (
    LOCKED_KEY,
    MODEL_KEY,
    PARAMS_KEY,
    first_frame,
    is_one_stack,
)
from napari_hemd._widgets._tracks import run_lineage, with_lineage
from napari_hemd.io import add_ome_zarr_labels, is_ome_zarr, write_labels, write_ome_zarr_labels
from napari_hemd.io.ome_zarr import axes_from_names
from napari_hemd.workflows import jsonable_locked

log = logging.getLogger(__name__)

#: Format name -> path suffix (:func:`napari_hemd.io.write_labels`; the table:
#: :func:`napari_hemd.core.measure.write_table`).
FORMATS = {
    "CTC result folder": "",
    "OME-Zarr": ".ome.zarr",
    "TIFF stack": ".tif",
    "Measurements (CSV)": ".csv",
}
TABLE = "Measurements (CSV)"


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
        # the table's options: intensities from images of the labels' shape (a channel each:
        # several give a set of columns each, named after the layer), 3D objects
        self.intensity = Select(label="intensities from", choices=self._intensity_choices)
        self.intensity.tooltip = (
            "the image layers (channels) whose intensities to measure in each object: none, one "
            "(columns mean_intensity ...) or several (Ctrl-click; mean_intensity_<layer> ...)"
        )
        self.intensity.native.setMaximumHeight(90)
        self.volume = CheckBox(text="one 3D stack (objects across slices), not a movie")
        self.path = FileEdit(label="save to", mode="w")
        self.export_button = PushButton(text="Export")
        self.extend(
            [self.labels, self.format, self.intensity, self.volume, self.path, self.export_button]
        )
        self.format.changed.connect(self._show_table_options)
        self.labels.changed.connect(self._labels_changed)
        self._labels_changed()
        #: Asked before replacing an existing output; tests replace it.
        self.confirm_overwrite: Callable[[Path], bool] = _ask_overwrite
        self.export_button.clicked.connect(lambda: self.export(background=True))

    def _intensity_choices(self, _w=None) -> list:
        """Grey image layers of the chosen labels' shape (a raw channel: its intensities).

        Labels of a frame range (Segment's *frames*) also take the whole movie they lie on: its
        frames under them (:func:`_intensity_frames`).
        """
        labels = getattr(getattr(self, "labels", None), "value", None)
        if not isinstance(labels, Labels):
            return []
        return [
            (ly.name, ly)
            for ly in reversed(self.viewer.layers)
            if isinstance(ly, Image) and not ly.rgb and _intensity_frames(ly, labels) is not None
        ]

    def _labels_changed(self, _=None) -> None:
        """New labels: offer their images of the same shape; guess stack or movie.

        A layer whose first axis is named z, or that Segment made from a stack with a 3D model
        (three planes), is a stack (objects across slices); any other 3D layer a movie until the
        box is ticked.
        """
        self.intensity.reset_choices()
        self.volume.value = is_one_stack(self.labels.value)
        self._show_table_options()

    def _show_table_options(self, _=None) -> None:
        table = self.format.value == TABLE
        self.intensity.visible = table
        # a stack is one 3D frame of a CTC folder (not slices linked as frames), a ZYX TIFF, 3D
        # objects in a table, a z axis in OME-Zarr (unless the layer names its axes itself)
        self.volume.visible = getattr(self.labels.value, "ndim", 0) == 3

    def target(self) -> Path:
        """Output path with the suffix of the chosen format.

        A folder of the user's chosen as *save to* for a file (TIFF, table, OME-Zarr; not a zarr
        store, not a folder napari-hemd wrote) receives it, named after the layer. A CTC result
        is itself a folder: an existing one of the user's is refused by :meth:`export`.
        """
        from napari_hemd._atomic import is_our_output

        p = Path(self.path.value)
        suffix = FORMATS[self.format.value]
        if suffix == ".ome.zarr" and self._into_image(p):
            return p / "labels" / self._label_name()
        if suffix and p.is_dir() and p.suffix.lower() != ".zarr" and not is_our_output(p):
            p = p / self._label_name()
        if p.name.lower().endswith(".ome.zarr"):
            p = p.with_name(p.name[: -len(".ome.zarr")])
        elif p.suffix.lower() in (".zarr", ".tif", ".tiff", ".csv", ".ctc", ""):
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

    def export(self, path: str | Path | None = None, *, background: bool = False):
        """Write the chosen layer; returns the written path (``None`` if refused or failed).

        ``background``: the writing runs in a worker (what the Export button does: a table of
        thousands of objects takes seconds); returns the worker, the path reported when done.
        """
        job = self._prepare(path)
        if job is None:
            return None
        write, done = job
        if background:
            from napari.qt.threading import create_worker

            self.export_button.enabled = False
            self.export_button.text = "Exporting..."
            worker = create_worker(write, _start_thread=False)
            worker.returned.connect(done)
            worker.errored.connect(self._failed)
            worker.finished.connect(self._ready)
            worker.start()
            return worker
        try:
            written = write()
        except Exception as e:
            self._failed(e)
            return None
        return done(written)

    def _failed(self, exc: Exception) -> None:
        log.error("export failed", exc_info=exc)
        show_error(f"Export failed: {exc}")

    def _ready(self) -> None:
        try:
            self.export_button.enabled = True
            self.export_button.text = "Export"
        except RuntimeError:  # the dock was closed meanwhile
            pass

    def _prepare(self, path: str | Path | None):
        """``(write, done)`` for the chosen layer, or ``None`` (refused, said).

        Everything that asks or reads the viewer happens here, on napari's thread; ``write()``
        only writes the data taken now (a worker may run it); ``done(written)`` reports.
        """
        layer = self.labels.value
        if not isinstance(layer, Labels):
            show_error("Export: choose a labels layer")
            return None
        if path is not None:
            self.path.value = Path(path)
        # the text the user sees (magicgui turns an emptied field into the working folder)
        if str(self.path.line_edit.value).strip() in ("", "."):
            show_error("Export: choose where to save (the file or folder to write)")
            return None
        out = self.target()
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
        meta["napari_hemd"]["locked"] = jsonable_locked(layer.metadata.get(LOCKED_KEY))
        fmt = self.format.value
        # a table reads the labels (and image) frame by frame: a lazy zarr layer stays on disk;
        # labels in memory are taken now (a copy): the user may edit them while a worker writes
        level0 = layer.data[0] if layer.multiscale else layer.data
        lazy = fmt == TABLE and not isinstance(level0, np.ndarray)
        data = level0 if lazy else np.array(level0)
        if fmt == "CTC result folder" and data.ndim == 2:
            data = data[None]
        # a lineage: a CTC folder's res_track.txt, a table's parent column. What it needs of
        # the layer is read now; it is worked out in write() (seconds on a long movie, which
        # blocked napari before the background write began, audit 25)
        lineage = None
        one_stack = data.ndim == 3 and self.volume.value  # its slices' links are no lineage
        if fmt in ("CTC result folder", TABLE) and data.ndim >= 3 and not one_stack:
            run_tracks, edited = run_lineage(layer)
            lineage = None if run_tracks is None else (run_tracks, edited)
        if fmt == TABLE:
            try:
                write = self._table_job(data, out, layer, overwrite, lineage)
            except ValueError as e:  # intensities of another shape
                self._failed(e)
                return None
        elif fmt == "OME-Zarr":
            write = self._ome_zarr_job(data, out, layer, overwrite, meta)
        else:
            axes = "zyx" if data.ndim == 3 and self.volume.value else None  # one stack
            # frames placed later in the movie (a frame range): numbered as its frames
            first = 0 if axes or layer.ndim < 3 else max(0, first_frame(layer))
            spatial = 3 if axes or data.ndim == 4 else 2
            size = _pixel_size(layer, spatial)

            def write() -> Path:
                labels, tracks = with_lineage(data, lineage)
                return write_labels(
                    labels, out, overwrite=overwrite, tracks=tracks, metadata=meta, axes=axes,
                    first_frame=first, pixel_size=size,
                )  # fmt: skip

        params = layer.metadata.get(PARAMS_KEY) or {}
        unlinked = (
            fmt == "CTC result folder"
            and lineage is None
            and PARAMS_KEY in layer.metadata
            and not params.get("link")
            and data.ndim >= 3
            and data.shape[0] > 1
            and not one_stack
        )

        def done(written: Path) -> Path:
            if unlinked:
                show_warning(
                    f"Export: wrote {written}; its objects are not linked over time (each "
                    "frame's ids are its own), so res_track.txt follows ids, not cells: tick "
                    "*link across frames* in Segment for tracks and divisions"
                )
            else:
                show_info(f"Export: wrote {written}")
            return written

        return write, done

    def _table_job(self, data, out: Path, layer: Labels, overwrite: bool, lineage):
        """A callable writing the objects' measurements (:func:`~napari_hemd.core.measure.measure_objects`).

        Frames on axis 0 (a 2D image: one frame) unless *one 3D stack* is ticked; the layer's
        scale, when not 1, gives the physical size column (in its unit, else ``units``); the
        lineage of an unedited linked H-EMD run gives ``parent``. What it needs of the viewer is
        read now; the measuring (seconds for thousands of objects) happens when it is called.
        """
        from napari_hemd.core.measure import measure_objects, write_table

        chosen = self.intensity.value
        if isinstance(chosen, Image):  # a script's one layer
            chosen = [chosen]
        from napari_hemd.core.measure import column_suffix

        images = {}
        for i, image in enumerate(chosen or ()):
            img = image.data[0] if image.multiscale else image.data
            under = _intensity_frames(image, layer)
            if under is None:
                raise ValueError(
                    f"intensities from {image.name!r}: shape {tuple(img.shape)}, not the labels' "
                    f"{tuple(data.shape)}"
                )
            if under != slice(None):  # a movie's frames under the labels
                img = np.asarray(img[under])
            # each layer's own columns: names that give none, or the same (GFP (1), GFP [1]),
            # numbered (they were refused once the job had started, review 30)
            key = base = column_suffix(image.name) or f"image{i + 1}"
            n = 2
            while key in images:
                key, n = f"{base}_{n}", n + 1
            images[key] = np.asarray(img)[None] if data.ndim == 2 else img
        # one image: columns mean_intensity ...; several: mean_intensity_<layer name> ...
        img = None if not images else images if len(images) > 1 else next(iter(images.values()))
        frames = not (data.ndim == 3 and self.volume.value)
        if data.ndim == 2:
            data, frames = np.asarray(data)[None], True
        spatial = data.ndim - 1 if frames else data.ndim
        scale = [float(v) for v in layer.scale[-spatial:]]
        spacing = scale if any(v != 1.0 for v in scale) else None
        unit = _unit(layer)
        # a frame range's frames keep the movie's numbers, as a CTC export numbers them
        first = max(0, first_frame(layer)) if frames and layer.ndim >= 3 else 0

        def write() -> Path:
            labels, tracks = with_lineage(data, lineage)
            table = measure_objects(
                labels, img, frames=frames, spacing=spacing, unit=unit, tracks=tracks
            )
            if first:
                table["frame"] = np.asarray(table["frame"], np.int64) + first
            return write_table(table, out, overwrite=overwrite)

        return write

    def _ome_zarr_job(self, data, out: Path, layer: Labels, overwrite: bool, meta: dict):
        """A callable writing OME-Zarr labels (into an OME-Zarr image chosen as the target)."""
        if out.parent.name == "labels" and self._into_image(out.parent.parent):
            image = out.parent.parent
            return lambda: add_ome_zarr_labels(
                image, data, out.name, overwrite=overwrite, metadata=meta
            )
        axes = axes_from_names(layer.axis_labels, data.ndim)
        if axes is None and data.ndim == 3 and self.volume.value:  # one stack: z, not time
            axes = "zyx"  # (it was written as t, y, x and measured slice by slice)
        spatial = sum(a in "zyx" for a in axes) if axes else (3 if data.ndim == 4 else 2)
        scale, size = list(layer.scale), _pixel_size(layer, spatial)
        shift = list(layer.translate)  # a frame range: opened at its frames again
        return lambda: write_ome_zarr_labels(
            data, out, axes=axes, scale=scale, overwrite=overwrite, metadata=meta, pixel_size=size,
            translation=shift if len(shift) == data.ndim else None,
        )  # fmt: skip


def _pixel_size(layer: Labels, spatial: int):
    """The layer's pixel size (its last ``spatial`` axes) for the file; None: uncalibrated."""
    from napari_hemd.io.calibration import PixelSize

    return PixelSize.from_layer(layer.scale, layer.units, spatial)


def _intensity_frames(image, labels) -> slice | None:
    """The frames of ``image`` under ``labels`` (a slice of axis 0), or None where it has none.

    The same shape: all of it (``slice(None)``). A movie under the labels of a frame range of
    it (placed at their first frame): the frames they cover.
    """
    img = image.data[0] if image.multiscale else image.data
    shape, want = tuple(img.shape), tuple(labels.data.shape)
    if shape == want:
        return slice(None)
    if len(shape) != len(want) or len(want) < 3 or shape[1:] != want[1:]:
        return None
    start = first_frame(labels) - first_frame(image)
    if start < 0 or start + want[0] > shape[0]:
        return None
    return slice(start, start + want[0])


def _unit(layer: Labels) -> str:
    """The layer's spatial unit as a column-name suffix (``um``), ``units`` where napari has none."""
    units = getattr(layer, "units", None)
    if not units:
        return "units"
    u = f"{units[-1]:~}".replace("µ", "u").replace("μ", "u").replace(" ", "")
    return "units" if u in ("", "px", "pixel") else u
