"""Predict dock widget: image layer + model -> ``<name> probability`` layer."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, PushButton, SpinBox
from napari.layers import Image
from napari.utils.notifications import show_error, show_info

from napari_hemd._widgets._common import (
    LayerWidget,
    add_or_update,
    as_paragraph,
    base_name,
    channels_refusal,
    is_probability_layer,
    placed_like,
)
from napari_hemd._widgets._layer_state import (
    BACKGROUND_KEY,
    DEFAULTS_KEY,
    GROW_KEY,
    MODEL_KEY,
)
from napari_hemd._widgets._models import (
    model_summary,
    model_views,
    model_zoom,
    scale_refused,
    scale_spin,
    scale_value,
    tta_combo,
    tta_refused,
)
from napari_hemd.workflows import predict_workflow

log = logging.getLogger(__name__)

FROM_FILE = "model file..."


def _choices(_widget=None) -> list[tuple[str, str]]:
    from napari_hemd._widgets._models import model_choices

    return [*model_choices(), (FROM_FILE, FROM_FILE)]


def _load(model):
    from napari_hemd.models import load_model

    return load_model(model)


class PredictWidget(LayerWidget):
    """Predict foreground (and optionally boundary) probabilities with a shipped or saved model."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, labels=True)
        self.image = self.layer_combo(
            Image, "image", prefer=lambda ly: not is_probability_layer(ly)
        )
        self.model = ComboBox(label="model", choices=_choices)
        self.model_file = FileEdit(label="model file", filter="*.pt", visible=False)
        #: What the chosen model is, the objects it learned, its held-out scores, its zoom.
        self.model_info = Label(label="about the model", value="")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda"], value="auto")
        self.tile = SpinBox(label="tile (0: auto)", value=0, min=0, max=4096, step=32)
        self.tta = tta_combo()
        self.scale = scale_spin(auto=True)
        #: The zoom of the last prediction (found, with auto) and the zooms auto tried.
        self.zoom: float | None = None
        self.zoom_tried: list[float] | None = None
        self.boundary = CheckBox(label="boundary layer too", value=False)
        self.affinity = CheckBox(
            label="affinities + Mutex instances (affinity models)", value=False
        )
        self.run_button = PushButton(text="Predict")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.extend(
            [
                self.image,
                self.model,
                self.model_file,
                self.model_info,
                self.device,
                self.tile,
                self.tta,
                self.scale,
                self.boundary,
                self.affinity,
                self.run_button,
                self.cancel_button,
            ]
        )
        as_paragraph(self.model_info)  # a paragraph under the model, not a wide column
        self.model.changed.connect(self._model_chosen)
        self.model_file.changed.connect(lambda path: self._model_chosen(FROM_FILE))
        self._model_chosen(self.model.value)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)

    def _model_chosen(self, value: str) -> None:
        """Show the file field for a model file; flips and zoom take the model's own."""
        self.model_file.visible = value == FROM_FILE
        model = value if value != FROM_FILE else Path(self.model_file.value)
        if value == FROM_FILE and not model.is_file():
            self.model_info.value = ""
            return
        self.tta.value = model_views(model)
        self.scale.value = model_zoom(model)
        self.model_info.value = model_summary(model)

    def run(self):
        """Start the prediction; returns the worker (``None`` on invalid input)."""
        layer = self.image.value
        if not isinstance(layer, Image):
            show_error("Predict: choose an image layer")
            return None
        if layer.rgb or layer.ndim not in (2, 3, 4):
            show_error(
                f"Predict: {layer.name!r} must be a grayscale 2D image, a (T, Y, X) / (Z, Y, X) "
                f"stack or a (T, Z, Y, X) time-lapse of stacks; got {layer.ndim}D"
                f"{' RGB: split the colours (right-click the layer > Split RGB)' * layer.rgb}"
            )
            return None
        refused = channels_refusal("Predict", layer, "predict")
        if refused:
            show_error(refused)
            return None
        model = self.model.value
        if model == FROM_FILE:
            model = Path(self.model_file.value)
            if not model.is_file():
                show_error(f"Predict: model file {str(model)!r} does not exist")
                return None
        outputs = ("foreground", "boundary") if self.boundary.value else ("foreground",)
        if self.affinity.value:
            from napari_hemd._widgets._models import model_choices, model_kind

            if isinstance(model, str) and model_kind(model) != "affinity":
                affinity = [label for label, _ in model_choices("affinity")]
                show_error(f"Predict: {model!r} is not an affinity model; use one of {affinity}")
                return None
            outputs = (*outputs, "affinities", "instances")
        device = None if self.device.value == "auto" else self.device.value
        try:
            loaded = _load(model)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            show_error(f"Predict: {exc}")
            return None
        refused = tta_refused(model, loaded.kind, self.tta.value) or scale_refused(
            model, loaded.kind, self.scale.value
        )
        if refused:
            show_error(f"Predict: {refused}")
            return None
        from napari_hemd.image_segmentation import (
            choose_scale_workflow,
            found_zoom,
            scaled_defaults,
            whole_cell_growth,
        )
        from napari_hemd.models.prediction import check_scale_planes, resolve_planes

        scale = scale_value(self.scale)  # a number, or "auto"
        # a pyramid's full resolution, as Segment takes it (audit 35: the list of levels failed)
        data = layer.data[0] if layer.multiscale else layer.data
        stack_shape = tuple(data.shape)[layer.ndim == 4 :]  # each stack is predicted alone
        if scale == "auto" and layer.ndim == 4:
            show_error(
                "Predict: zoom 'auto' is not available for a (T, Z, Y, X) time-lapse of stacks: "
                "give a zoom (found on one stack with 'auto')"
            )
            return None
        try:
            check_scale_planes(scale, resolve_planes(loaded, None, stack_shape))
        except ValueError as exc:
            show_error(f"Predict: {exc}")
            return None
        if whole_cell_growth(loaded):  # a U-Net: grown at any zoom
            outputs = (*outputs, "background")  # Segment grows instances into whole cells with it
        tile, cancel = int(self.tile.value) or None, self.cancel_flag()
        tta = int(self.tta.value)  # as run (the field may change while it runs)
        z_scale = None  # a stack on three planes: the layer's own voxel shape, where it has one
        if layer.ndim in (3, 4) and resolve_planes(loaded, None, stack_shape) == 3:
            from napari_hemd._widgets.segment import layer_z_scale

            z_scale = layer_z_scale(layer)

        def work():
            zoom, tried = scale, None
            if zoom == "auto":  # found on a few frames, as Segment finds it
                zoom, tried = yield from choose_scale_workflow(
                    loaded, data, tile=tile, device=device, cancel=cancel
                )
            maps = yield from predict_workflow(
                data,
                loaded,
                outputs=outputs,
                tile=tile,
                device=device,
                tta=tta,
                scale=zoom,
                z_scale=z_scale,
                cancel=cancel,
            )
            return maps, zoom, tried

        name = base_name(layer.name)

        def done(result) -> None:
            maps, zoom, tried = result
            self.zoom, self.zoom_tried = zoom, tried
            meta = {MODEL_KEY: str(model), "hemd_source": layer.name}
            if tta > 1:
                meta["hemd_tta"] = tta
            if zoom != 1.0:
                meta["hemd_scale"] = zoom
            found = f", {found_zoom(zoom, tried)}" if tried is not None else ""
            n = maps["foreground"].shape[0] if maps["foreground"].ndim > 2 else 1
            grow = whole_cell_growth(loaded, zoom)
            extra = {GROW_KEY: grow, BACKGROUND_KEY: maps["background"]} if grow else {}
            # the model's sizes in this image's pixels, for Segment on these maps
            seg_defaults = scaled_defaults(loaded.metadata.get("segment_defaults", {}), zoom)
            if layer.ndim in (3, 4) and resolve_planes(loaded, None, stack_shape) == 3:
                seg_defaults["planes"] = 3  # a stack's maps: Segment records it (Export: 3D)
            extra[DEFAULTS_KEY] = seg_defaults
            prob = add_or_update(  # beside a layer of the user's of that name
                self.viewer,
                maps["foreground"],
                f"{name} probability",
                like=layer,
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                opacity=0.6,
                blending="additive",
                metadata=dict(meta, **extra),
            )
            what = "frame(s)"
            if layer.ndim == 4:
                what = "stack(s) over time"
            elif seg_defaults.get("planes") == 3:
                what = "slices, one stack"
            show_info(f"Predict: '{prob.name}' added ({n} {what}, {model}{found})")
            if "affinities" in maps:
                add_affinities(
                    self.viewer, maps["affinities"], f"{name} affinities", layer, loaded, meta
                )
            if "instances" in maps:
                add_or_update(
                    self.viewer,
                    maps["instances"].astype("uint32"),
                    f"{name} mutex instances",
                    like=layer,
                    kind="labels",
                    visible=False,
                    metadata=dict(meta),
                )
            if "boundary" in maps:
                add_or_update(
                    self.viewer,
                    maps["boundary"],
                    f"{name} boundary",
                    like=layer,
                    colormap="cyan",
                    contrast_limits=(0.0, 1.0),
                    blending="additive",
                    visible=False,
                    metadata=dict(meta),
                )

        return self.run_workflow(work(), done, self.run_button, self.cancel_button, "Predict")


def add_affinities(viewer, affinities: np.ndarray, name: str, like, model, meta: dict):
    """An affinity model's affinities as a layer in register with the image ``like``.

    A channel per offset, first (napari lines layers up by their last axes: the channels
    between time and ``(Y, X)`` were drawn against the image's frames, and took a stack's z
    scale and name); the axis is named ``offset`` and the layer's metadata
    ``hemd_offsets`` lists each channel's ``(dy, dx)`` (audit 20: nothing said which was which).
    """
    from napari_hemd.models.prediction import model_offsets

    data = np.moveaxis(np.asarray(affinities), -3, 0)  # (N, [T,] Y, X)
    place = placed_like(like, data.ndim)
    own = [str(a) for a in like.axis_labels]
    if own != [str(i) for i in range(-like.ndim, 0)]:  # the image's names, the offsets' first
        place["axis_labels"] = ["offset", *own[-(data.ndim - 1) :]]
    offsets = [list(o) for o in model_offsets(model)]
    return add_or_update(
        viewer, data, name, colormap="gray", contrast_limits=(0.0, 1.0), visible=False,
        metadata={**meta, "hemd_offsets": offsets}, **place,
    )  # fmt: skip
