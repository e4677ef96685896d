"""Large data dock widget: streaming H-EMD (optionally after a prediction), zarr in -> zarr out.

A thin layer over :func:`napari_hemd.pipeline.stream_workflow`: the run happens in a
``thread_worker`` (in this process, on a local Dask cluster or on a running scheduler), per-chunk
and per-window progress from the cluster drives a napari progress bar and a status line, Cancel
stops it at the next finished chunk (a rerun resumes), and the labels open lazily from the zarr.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image
from napari.utils.notifications import show_error, show_info

from napari_hemd._widgets._common import LayerWidget, as_paragraph
from napari_hemd._widgets._models import (
    model_summary,
    model_views,
    model_zoom,
    scale_spin,
    scale_value,
    tta_combo,
)

log = logging.getLogger(__name__)

#: ``Labels.metadata`` key of a layer this widget opened: the run's parameters and zarr path.
STREAM_KEY = "hemd_stream"
NO_MODEL = "none: input is probability"
FROM_FILE, FROM_FOLDER, FROM_LAYER = "file (TIFF, HDF5)", "folder (zarr, TIFF frames)", "layer"


def _choices(_widget=None) -> list[tuple[str, str]]:
    from napari_hemd._widgets._models import model_choices

    return [(NO_MODEL, NO_MODEL), *model_choices("unet")]


class StreamWidget(LayerWidget):
    """Segment a time-lapse too large for memory, window by window, here or on a Dask cluster."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, labels=True)
        # a file dialog picks files or folders, never both: the choice sets which
        self.input_from = ComboBox(
            label="input from", choices=[FROM_FILE, FROM_FOLDER, FROM_LAYER], value=FROM_FOLDER
        )
        self.source = FileEdit(label="input", mode="d")
        # a layer opened lazily from a zarr (the reader) streams too; in-memory data works as well
        self.image = self.layer_combo(Image, "image")
        self.image.visible = False
        self.output = FileEdit(label="output labels (.zarr)", mode="w", filter="*.zarr")
        self.model = ComboBox(label="predict first with", choices=_choices)
        #: What the chosen model is, the objects it learned, its held-out scores, its zoom.
        self.model_info = Label(label="about the model", value="", visible=False)
        self.tta = tta_combo(visible=False)  # U-Nets only are offered
        self.scale = scale_spin(auto=True, visible=False)
        self.model.changed.connect(self._show_model_fields)
        self.tau = FloatSpinBox(label="tau", value=0.5, min=0.01, max=0.99, step=0.01)
        self.delta = FloatSpinBox(label="delta", value=0.35, min=0.0, max=10.0, step=0.05)
        self.iterations = SpinBox(label="iterations T", value=10, min=1, max=100)
        self.chunk = SpinBox(label="frames per window", value=16, min=1, max=10_000)
        self.exclude_border = CheckBox(label="remove cells cut by the image edge", value=False)
        self.link = CheckBox(label="link over time (tracks, divisions)", value=False)
        self.workers = SpinBox(label="local workers (0: here)", value=0, min=0, max=256)
        self.scheduler = LineEdit(label="or scheduler address", value="")
        self.resume = CheckBox(label="resume a stopped run", value=True)
        self.overwrite = CheckBox(label="overwrite output", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.extend(
            [
                self.input_from,
                self.source,
                self.image,
                self.output,
                self.model,
                self.model_info,
                self.tta,
                self.scale,
                self.tau,
                self.delta,
                self.iterations,
                self.chunk,
                self.exclude_border,
                self.link,
                self.workers,
                self.scheduler,
                self.resume,
                self.overwrite,
                self.run_button,
                self.cancel_button,
                self.status,
            ]
        )
        as_paragraph(self.model_info)  # a paragraph under the model, not a wide column
        #: ``(stage, done, total)`` events of the current run, appended in the worker thread.
        self.events: list[tuple[str, int, int]] = []
        #: The size advice of the last run with a model (None: the objects suit the model).
        self.advice: str | None = None
        self.input_from.changed.connect(self._show_input)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)

    def _show_model_fields(self, value: str) -> None:
        """Flips and zoom apply to the prediction: shown with a model."""
        self.tta.visible = self.scale.visible = value != NO_MODEL
        if value != NO_MODEL:  # its own flips; one fine-tuned at another zoom: that zoom
            self.tta.value = model_views(value)
            self.scale.value = model_zoom(value)
        self.model_info.value = "" if value == NO_MODEL else model_summary(value)
        self.model_info.visible = bool(self.model_info.value)

    def _show_input(self, kind: str) -> None:
        self.source.visible = kind != FROM_LAYER
        self.image.visible = kind == FROM_LAYER
        if kind != FROM_LAYER:
            self.source.mode = "r" if kind == FROM_FILE else "d"
            self.source.filter = "*.tif *.tiff *.h5 *.hdf5" if kind == FROM_FILE else None

    def _input(self):
        """The input: a path, or the chosen layer's (level 0) data; None after an error."""
        if self.input_from.value == FROM_LAYER:
            layer = self.image.value
            if not isinstance(layer, Image):
                show_error("Large data: choose an image layer (or input from a file)")
                return None
            if layer.rgb or layer.ndim not in (3, 4):
                show_error(
                    f"Large data: {layer.name!r} must be a (T, Y, X) or (T, Z, Y, X) stack; got "
                    f"{layer.ndim}D{' RGB' if layer.rgb else ''}"
                )
                return None
            return layer.data[0] if layer.multiscale else layer.data
        from napari_hemd.io.hdf5 import on_disk

        source = Path(str(self.source.value))
        if not str(self.source.value) or not on_disk(source).exists():  # movie.h5/raw: its file
            show_error(f"Large data: input {str(source)!r} does not exist")
            return None
        return source

    def _arguments(self) -> dict | None:
        """Validated arguments of :func:`~napari_hemd.pipeline.stream_segment`, or None."""
        source = self._input()
        if source is None:
            return None
        output = Path(str(self.output.value))
        if output.suffix != ".zarr":
            show_error(f"Large data: output must be a .zarr store; got {str(output)!r}")
            return None
        if output.exists() and not self.overwrite.value:
            show_error(f"Large data: output {str(output)!r} exists; tick 'overwrite output'")
            return None
        scheduler = self.scheduler.value.strip() or None
        workers = int(self.workers.value) or None
        if scheduler and workers:
            show_error(
                f"Large data: give local workers or a scheduler address, not both; got "
                f"{workers} workers and {scheduler!r}"
            )
            return None
        linked = linked_path(output) if self.link.value else None
        if linked is not None and linked.exists() and not self.overwrite.value:
            show_error(
                f"Large data: the linked labels {str(linked)!r} exist; tick 'overwrite output'"
            )
            return None
        model = None if self.model.value == NO_MODEL else self.model.value
        return dict(
            source=source,
            output=output,
            linked=linked,
            model=model,
            tta=1 if model is None else int(self.tta.value),
            scale=1.0 if model is None else scale_value(self.scale),
            workers=workers,
            scheduler=scheduler,
            chunk=int(self.chunk.value),
            tau=float(self.tau.value),
            delta=float(self.delta.value),
            iterations=int(self.iterations.value),
            exclude_border=bool(self.exclude_border.value),
            resume=bool(self.resume.value),
            overwrite=bool(self.overwrite.value),
        )

    def _recorded(self, gen):
        # Record events in the worker thread, before they are yielded: tests and the status line
        # never miss one to a signal connected too late.
        result = None
        try:
            while True:
                event = gen.send(None)
                self.events.append(event)
                yield event
        except StopIteration as stop:
            result = stop.value
        finally:
            gen.close()
        return result

    def run(self):
        """Start the run; returns the worker (``None`` on invalid input)."""
        from napari_hemd.pipeline import stream_workflow

        kwargs = self._arguments()
        if kwargs is None:  # the message says why; the line no longer shows an earlier "done"
            self.status.value = "not started (see the message)"
            return None
        self.events, self.advice = [], None
        source, output = kwargs.pop("source"), kwargs.pop("output")
        linked = kwargs.pop("linked")
        # where the result lies: on the input layer, or at the input file's pixel size
        self._placed_on = self.image.value if self.input_from.value == FROM_LAYER else None
        where = kwargs["scheduler"] or (
            f"{kwargs['workers']} local workers" if kwargs["workers"] else "this process"
        )
        self.status.value = f"running in {where}"
        gen = self._with_advice(stream_workflow(source, output, **kwargs), kwargs)
        gen = self._recorded(self._then_linked(gen, linked, kwargs))

        def done(result) -> None:
            path, self.advice = result
            self._open(Path(path), kwargs, self.advice, maps_of=Path(output))
            self.status.value = f"done: {path}" + ("; see the note" if self.advice else "")

        worker = self.run_workflow(
            gen, done, self.run_button, self.cancel_button, "Large data",
            cancelled="the finished windows are kept, and Run with the same settings resumes",
        )  # fmt: skip
        worker.yielded.connect(self._show_progress)
        worker.aborted.connect(lambda: setattr(self.status, "value", "cancelled (rerun resumes)"))
        worker.errored.connect(lambda exc: setattr(self.status, "value", _failed(exc)))
        return worker

    @staticmethod
    def _with_advice(gen, kwargs: dict):
        """The run, then (with a model) the size advice on a few of its frames.

        Returns ``(path, advice)``; both steps run in the worker thread.
        """
        from napari_hemd.pipeline import stream_size_advice

        path = yield from gen
        if kwargs["model"] is None:
            return path, None
        return path, stream_size_advice(kwargs["model"], path)  # at the zoom used (found)

    @staticmethod
    def _then_linked(gen, linked: Path | None, kwargs: dict):
        """The run, then its labels linked over time into ``linked`` (a movie's; in the worker).

        Stacks segmented stack by stack are linked by the run itself. Returns ``(path, advice)``
        with ``path`` the labels to open.
        """
        import zarr

        from napari_hemd.pipeline import link_stack_workflow

        path, advice = yield from gen
        if linked is None:
            return path, advice
        labels = zarr.open_array(str(path), mode="r")
        if labels.attrs.get("link_time"):  # linked already (stacks over time)
            return path, advice
        out, _ = yield from link_stack_workflow(
            labels, linked, delta=max(float(kwargs["delta"]), 0.05), overwrite=True,
            metadata={**dict(labels.attrs), "source": str(path)},
        )  # fmt: skip
        return out, advice

    def _show_progress(self, event) -> None:
        stage, done, total = event
        self.status.value = f"{stage}: {done}/{total}" if total else f"{stage}: starting"

    def _replace(self, path: Path) -> None:
        """Remove the layers this widget opened from ``path`` (an earlier run's output).

        A layer of the user's of the same name stays: the new one is added beside it, napari
        numbering its name.
        """
        for layer in list(self.viewer.layers):
            if (layer.metadata.get(STREAM_KEY) or {}).get("path") == str(path):
                self.viewer.layers.remove(layer)

    def _placement(self, path: Path, ndim: int) -> dict:
        """``scale`` and ``units`` of the result's layers.

        The input layer's, else the pixel size the input file recorded (written with the labels).
        """
        from napari_hemd._widgets._common import placed_like
        from napari_hemd.io.calibration import PixelSize, read_pixel_size
        from napari_hemd.pipeline import record_pixel_size

        layer = getattr(self, "_placed_on", None)
        if layer is not None and layer in self.viewer.layers:
            size = PixelSize.from_layer(layer.scale, layer.units, 3 if ndim == 4 else 2)
            record_pixel_size(path, size)  # kept with the labels, as a file input's is
            return placed_like(layer, ndim)
        size = read_pixel_size(path)
        return {} if size is None else size.layer_kwargs(ndim, 3 if ndim == 4 else 2)

    def _open(
        self, path: Path, kwargs: dict, advice: str | None = None, maps_of: Path | None = None
    ) -> None:
        """Add the labels (and predicted probabilities) as lazy layers backed by the zarr.

        ``maps_of``: the run's output, beside which its probabilities lie (``path`` may be its
        linked labels).
        """
        import zarr

        from napari_hemd.pipeline import default_prob_output

        maps_of = path if maps_of is None else maps_of

        labels = zarr.open_array(str(path), mode="r")
        placed = self._placement(path, labels.ndim)
        stacks = bool(labels.attrs.get("stack_by_stack"))  # segmented stack by stack: no maps kept
        if kwargs["model"] is not None and not stacks:
            prob = zarr.open_group(str(default_prob_output(maps_of)), mode="r")["foreground"]
            self._replace(default_prob_output(maps_of))
            self.viewer.add_image(
                prob,
                name=f"{maps_of.stem} probability",
                colormap="magma",
                blending="additive",
                contrast_limits=(0.0, 1.0),  # a lazy stack is not scanned for its range
                metadata={STREAM_KEY: {"path": str(default_prob_output(maps_of))}},
                **placed,
            )
        name = f"{path.stem} labels"
        self._replace(path)
        params = {k: kwargs[k] for k in ("tau", "delta", "iterations", "model", "chunk")}
        zoom = ""
        if kwargs["model"] is not None:
            from napari_hemd.image_segmentation import found_zoom

            params["scale"] = float(labels.attrs.get("scale", 1.0))  # the zoom auto found
            if "scale_tried" in labels.attrs:
                zoom = f", {found_zoom(params['scale'], labels.attrs['scale_tried'])}"
        layer = self.viewer.add_labels(
            labels, name=name, metadata={STREAM_KEY: {**params, "path": str(path)}}, **placed
        )
        if labels.attrs.get("link_time") and labels.attrs.get("tracks") is not None:
            from napari_hemd._widgets._tracks import show_tracks

            tracks = show_tracks(self.viewer, layer, np.asarray(labels.attrs["tracks"]))
            if tracks is not None:
                tracks.metadata[STREAM_KEY] = {"path": str(path)}  # replaced by a re-run
        show_info(
            f"Large data: {labels.shape[0]} {'stacks' if stacks else 'frames'} in {str(path)!r}"
            f"{zoom}" + (f". Note: {advice}" if advice else "")
        )


def linked_path(output: Path) -> Path:
    """Where *link over time* writes a movie's linked labels: ``labels-linked.zarr`` beside it."""
    return output.with_name(f"{output.stem}-linked.zarr")


def _failed(exc: BaseException) -> str:
    """The status line of a failed run: a cluster's failure in a user's words (audit 32)."""
    from napari_hemd.distributed import cluster_failure

    why = cluster_failure(exc)
    if why is None:
        return f"failed: {exc}"
    return f"failed: {why}; the finished work is kept, and Run with the same settings resumes"
