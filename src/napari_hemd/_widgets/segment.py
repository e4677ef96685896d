"""Segment (H-EMD) dock widget: probability layer, or raw image + model, -> ``<name> labels``.

With a model chosen the layer is a raw movie and the run is the same implementation as
``napari-hemd segment IMAGE --model`` (:mod:`napari_hemd.image_segmentation`): prediction, H-EMD,
whole-cell masks; the predicted probability joins the viewer so the inspector can show the forest.
Without a model the layer is a probability map; one made by the Predict widget carries its
background probability, so the labels are grown to whole cells the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from napari_hemd._widgets._common import (
    LayerWidget,
    as_paragraph,
    base_name,
    channels_refusal,
    is_probability_layer,
)
from napari_hemd._widgets._layer_state import (
    BACKGROUND_KEY,
    DEFAULTS_KEY,
    GROW_KEY,
    IMAGE_KEY,
    MODEL_KEY,
    PARAMS_KEY,
    SOURCE_KEY,
    frame_translate,
    frames_held,
    index_at,
)
from napari_hemd._widgets._models import (
    model_kind,
    model_summary,
    model_views,
    model_zoom,
    read_model,
    scale_refused,
    scale_spin,
    scale_value,
    tta_combo,
    tta_refused,
)
from napari_hemd._widgets._segment_run import (
    SegmentRun,
    keep_checked_in_worker,
    map_run_workflow,
    show_result,
    stacks_maps_workflow,
)
from napari_hemd.core.segment import METHODS
from napari_hemd.workflows import segment_workflow

log = logging.getLogger(__name__)

#: Model choice meaning "the layer already is a probability map".
NO_MODEL = "none (layer is a probability map)"
#: Model choice of a model file (a CLI-trained or a colleague's model), as Predict offers.
FROM_FILE = "model file..."


def _model_choices(_widget=None) -> list[tuple[str, str]]:
    from napari_hemd._widgets._models import model_choices

    return [(NO_MODEL, NO_MODEL), *model_choices(), (FROM_FILE, FROM_FILE)]


def layer_z_scale(layer) -> float | None:
    """A stack layer's voxel depth over its pixel width, from its ``scale`` (None: not set).

    Set where its z and x axes have one unit (a calibrated stack opens with a length unit; a
    user may set a scale without units) and a scale other than 1. A stack whose file gives
    the pixel width but no z step (z in pixels, x in microns) has none: the model's own.
    """
    if layer.ndim < 3:
        return None
    scale = [float(v) for v in layer.scale[-3:]]
    from napari_hemd.io.calibration import unit_name

    z_unit, x_unit = (unit_name(u) for u in (layer.units[-3], layer.units[-1]))
    if z_unit != x_unit or all(v == 1.0 for v in scale):
        return None
    return scale[0] / scale[2]


def _three_planes(model: str) -> bool:
    """Whether ``model`` predicts a stack on three planes (``nuclei-3d``); False if unreadable."""
    try:
        from napari_hemd.models import volume_settings

        return volume_settings(read_model(model))["planes"] == 3
    except (ImportError, OSError, ValueError, KeyError) as exc:
        log.debug("model %r: %s", model, exc)
        return False


#: The frame-range fields, after the H-EMD ones.
RANGE_FIELDS = ("frames", "first", "last")

#: Widget fields saved in (and restored from) ``layer.metadata["hemd_params"]``.
FIELDS = ("method", "tau", "delta", "iterations", "axis", "min_size", "link", "variant")


class SegmentWidget(LayerWidget):
    """Run H-EMD (or a baseline, for comparison) on a probability layer."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, labels=True)
        self.prob = self.layer_combo(Image, "probability / image", prefer=is_probability_layer)
        self.model = ComboBox(label="model", choices=_model_choices, value=NO_MODEL)
        self.model_file = FileEdit(label="model file", filter="*.pt", visible=False)
        #: What the chosen model is, the objects it learned, its held-out scores, its zoom.
        self.model_info = Label(label="about the model", value="", visible=False)
        self.z_scale = FloatSpinBox(
            label="z step / pixel",
            value=0.0,
            min=0.0,
            max=100.0,
            step=0.1,
            visible=False,
            tooltip="3D stacks (a model that predicts three planes, nuclei-3d): voxel depth over "
            "pixel width of your stack; 0: the layer's own voxel size where it has one (a "
            "calibrated file, a layer scale), else the model's (nuclei-3d: 2.2)",
        )
        self.tta = tta_combo(visible=False)
        self.scale = scale_spin(auto=True, visible=False)
        self.model.changed.connect(self._show_z_scale)
        self.model_file.changed.connect(lambda path: self._show_z_scale(FROM_FILE))
        self.method = ComboBox(
            label="method",
            choices=[*METHODS, "mutex"],
            value="hemd",
            tooltip="hemd, a baseline on the same map, or (an affinity model) mutex: its own "
            "Mutex watershed instances, chosen with such a model",
        )
        self.tau = FloatSpinBox(label="tau", value=0.5, min=0.01, max=0.99, step=0.01)
        self.delta = FloatSpinBox(label="delta", value=0.35, min=0.0, max=10.0, step=0.05)
        self.iterations = SpinBox(label="iterations", value=10, min=1, max=100)
        self.axis = SpinBox(label="frame axis", value=0, min=0, max=2)
        self.min_size = SpinBox(label="min size (px)", value=0, min=0, max=100_000)
        self.link = CheckBox(label="link across frames", value=False)
        self.variant = ComboBox(label="variant", choices=["refined", "paper"], value="refined")
        self.frames = ComboBox(
            label="frames", choices=["all", "current frame", "range"], value="all"
        )
        self.first = SpinBox(label="from frame", value=0, min=0, max=1_000_000, visible=False)
        self.last = SpinBox(label="to frame", value=9, min=0, max=1_000_000, visible=False)
        self.frames.changed.connect(self._show_range)
        self.run_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.restore_from = self.layer_combo(
            Labels, "restore from", lambda ly: PARAMS_KEY in ly.metadata
        )
        self.restore_button = PushButton(text="Restore parameters")
        self.extend(
            [
                getattr(self, f)
                for f in (
                    "prob",
                    "model",
                    "model_file",
                    "model_info",
                    "z_scale",
                    "tta",
                    "scale",
                    *FIELDS,
                    *RANGE_FIELDS,
                )
            ]
            + [self.run_button, self.cancel_button, self.restore_from, self.restore_button]
        )
        as_paragraph(self.model_info)  # a paragraph under the model, not a wide column
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.restore_button.clicked.connect(lambda: self.restore(self.restore_from.value))

    def chosen_model(self) -> str:
        """The model chosen: ``NO_MODEL``, a model's name, or a model file's path."""
        value = self.model.value
        return str(self.model_file.value) if value == FROM_FILE else value

    def _show_z_scale(self, value: str) -> None:
        """Show the z step for a three-plane model; flips and zoom for a U-Net."""
        self.model_file.visible = value == FROM_FILE
        if value == FROM_FILE:
            value = str(self.model_file.value)
            if not Path(value).is_file():  # no file chosen yet: nothing to show
                self.z_scale.visible = self.tta.visible = self.scale.visible = False
                self.model_info.value, self.model_info.visible = "", False
                return
        self.z_scale.visible = value != NO_MODEL and _three_planes(value)
        unet = value != NO_MODEL and model_kind(value) in (None, "unet")
        self.tta.visible = self.scale.visible = unet
        if value != NO_MODEL:  # a model's own flips (an affinity network's: none, so a hidden
            self.tta.value = model_views(value)  # field keeps no U-Net's); one fine-tuned at
            self.scale.value = model_zoom(value)  # another zoom is used at that zoom
        self.model_info.value = "" if value == NO_MODEL else model_summary(value)
        self.model_info.visible = bool(self.model_info.value)
        # an affinity model's own method is its Mutex watershed (its held-out scores); only it
        # has one
        affinity = value != NO_MODEL and model_kind(value) == "affinity"
        if affinity and self.method.value == "hemd":
            self.method.value = "mutex"
        elif not affinity and self.method.value == "mutex":
            self.method.value = "hemd"

    def _show_range(self, value: str) -> None:
        self.first.visible = self.last.visible = value == "range"

    def frame_range(self, n_frames: int) -> tuple[int, int] | None:
        """``(start, stop)`` of the frames to segment (all of them: ``None``)."""
        if self.frames.value == "current frame":
            layer = self.prob.value
            t = index_at(self.viewer, layer) if isinstance(layer, Image) and layer.ndim >= 3 else 0
            t = max(0, min(t, n_frames - 1))
            return t, t + 1
        if self.frames.value == "range":
            start = min(int(self.first.value), n_frames - 1)
            return start, max(start, min(int(self.last.value), n_frames - 1)) + 1
        return None

    def params(self) -> dict:
        """Current parameters (without ``method``)."""
        return {f: getattr(self, f).value for f in FIELDS if f != "method"}

    def restore(self, layer: Labels | None, *, announce: bool = True) -> None:
        """Set the widgets from the parameters stored in ``layer.metadata``.

        A run with a model (raw image -> labels) comes back as that run: its image, model, flips
        and z step, so Segment repeats it. If its image layer is gone, or the model is no longer
        among the choices, the probability layer it made is chosen with no model (its H-EMD
        settings still apply) and a message says why (``announce=False``: no message). A run on a
        probability layer comes back with no model.
        """
        params = getattr(layer, "metadata", {}).get(PARAMS_KEY)
        if not params:
            show_error("Segment: that layer holds no saved parameters")
            return
        for f in FIELDS:
            if f in params:
                getattr(self, f).value = params[f]
        src = params.get(SOURCE_KEY)
        image, model = params.get(IMAGE_KEY), params.get(MODEL_KEY)
        if image is not None and model:  # a run with a model
            from napari_hemd._widgets._models import model_choices

            why = None
            listed = model in [v for _, v in model_choices()]
            if not listed and not (str(model).endswith(".pt") and Path(model).is_file()):
                why = f"its model {model!r} is not among the models any more"
            elif image not in self.viewer.layers:
                why = f"its image layer {image!r} is not open"
            if why is None:
                if listed:
                    self.model.value = model
                else:  # a model file of its own
                    self.model_file.value = Path(model)
                    self.model.value = FROM_FILE
                    self._show_z_scale(FROM_FILE)
                self.tta.value = int(params.get("tta", 1))
                self.scale.value = float(params.get("scale", 1.0))  # the zoom auto found
                self.z_scale.value = float(params.get("z_scale", 0.0))
                self.prob.value = self.viewer.layers[image]
                if "method" in params:  # as run: choosing the model set its own method
                    self.method.value = params["method"]
                return
            if announce:
                show_info(
                    f"Segment: {why}; restored the H-EMD settings on {src!r} without a model"
                    if src in self.viewer.layers
                    else f"Segment: {why}; restored the H-EMD settings only"
                )
        self.model.value = NO_MODEL
        if src in self.viewer.layers:
            self.prob.value = self.viewer.layers[src]

    def run(
        self,
        locked: dict[int, list[int]] | None = None,
        prob_layer: Image | None = None,
        target: Labels | None = None,
    ):
        """Start segmentation; returns the worker (``None`` on invalid input).

        ``prob_layer`` / ``target``: a re-run (the inspector's *Lock choices and re-run*) on
        that map into that labels layer, over the frames the layer holds (a frame range: its
        frames, where it sits).
        """
        layer = prob_layer if prob_layer is not None else self.prob.value
        if not isinstance(layer, Image):
            show_error("Segment: choose a probability (image) layer")
            return None
        method = self.method.value
        params = self.params()
        ndim = layer.ndim
        with_model = prob_layer is None and self.model.value != NO_MODEL
        if method == "hemd" and ndim < 3 and not with_model:  # a model's run: as segment_image
            show_error(
                f"Segment: H-EMD matches candidates across frames; {layer.name!r} is a single "
                "2D frame. Use a (T, Y, X) or (Z, Y, X) stack, a baseline method, or a model "
                "(raw image: one frame's H-EMD, as the command line segments it)"
            )
            return None
        if layer.rgb and not is_probability_layer(layer):  # colours, not a map's classes (its
            # colours were taken for an ilastik export's channels: audit 20)
            what = "the nuclear channel with a model" if with_model else "the foreground map"
            show_error(
                f"Segment: {layer.name!r} is an RGB image: split the colours (right-click the "
                f"layer > Split RGB) and segment {what}"
            )
            return None
        refused = channels_refusal("Segment", layer, "segment")
        if refused:
            show_error(refused)
            return None
        if method == "mutex" and not with_model:
            show_error(
                "Segment: method mutex is an affinity model's Mutex watershed: choose the raw "
                "image and an affinity model (nuclei-affinity)"
            )
            return None
        if ndim == 4:
            params["axis"] = 0
        if method == "hemd":
            kwargs = dict(params, locked=locked)
        else:  # a baseline takes tau (its threshold) and none of H-EMD's own; mutex none of them
            drop = ("variant", "iterations") + (("tau",) if method == "mutex" else ())
            kwargs = {k: v for k, v in params.items() if k not in drop}
        # zarr / dask data stay lazy: H-EMD reads one frame at a time
        data = layer.data[0] if layer.multiscale else layer.data
        model = self.chosen_model() if prob_layer is None else NO_MODEL
        if self.model.value == FROM_FILE and prob_layer is None and not Path(model).is_file():
            show_error(f"Segment: model file {model!r} does not exist; choose a .pt model file")
            return None
        suffix, translate, span = "", None, None
        if prob_layer is None and ndim >= 3 and params["axis"] == 0:
            span = self.frame_range(int(data.shape[0]))
        elif target is not None and target.ndim == ndim >= 3 and params["axis"] == 0:
            try:  # the frames the layer holds
                span = frames_held(target, layer, int(data.shape[0]))
            except ValueError as e:
                show_error(f"Segment: {e}")
                return None
        if span is not None:  # try settings on a few frames: a layer placed at those frames
            data = data[span[0] : span[1]]
            a, b = span[0], span[1] - 1
            suffix = f" (frame {a})" if a == b else f" (frames {a}-{b})"
            translate = frame_translate(layer, span[0])  # in world units: a stack's microns
        name = f"{base_name(layer.name)} labels{suffix}" if target is None else target.name
        saved = dict(params, method=method, **{SOURCE_KEY: layer.name})
        saved[MODEL_KEY] = layer.metadata.get(MODEL_KEY)
        run = SegmentRun(layer, data, method, params, name, saved, translate, locked=locked)
        run.target = target
        if model != NO_MODEL:
            run.model, run.prob_name = model, f"{base_name(layer.name)} probability{suffix}"
            gen = self._with_model(run, kwargs)
        else:
            gen = self._on_map(run, kwargs, span)
        if gen is None:
            return None
        gen = keep_checked_in_worker(self.viewer, run, gen)  # not on napari's thread
        return self.run_workflow(
            gen, lambda result: show_result(self.viewer, run, result), self.run_button,
            self.cancel_button, "Segment",
        )  # fmt: skip

    def _with_model(self, run: SegmentRun, kwargs: dict):
        """The workflow of a raw image with the chosen model (None, said, when refused)."""
        layer, model = run.layer, run.model
        if layer.rgb or run.ndim not in (2, 3, 4) or run.params["axis"] != 0:
            show_error(
                f"Segment: with a model, {layer.name!r} must be a grayscale 2D image, a "
                "(T, Y, X) / (Z, Y, X) stack with frames on axis 0 or a (T, Z, Y, X) "
                "time-lapse of stacks"
            )
            return None
        refused = channels_refusal("Segment", layer, "segment")
        if refused:
            show_error(refused)
            return None
        from napari_hemd.image_segmentation import segment_image_workflow

        kwargs.pop("locked", None)
        zoom = scale_value(self.scale)
        refused = tta_refused(model, model_kind(model), self.tta.value) or scale_refused(
            model, model_kind(model), zoom
        )
        if refused:
            show_error(f"Segment: {refused}")
            return None
        # the fields' values, also where they are 1 and the model's own are not
        kwargs["tta"], kwargs["scale"] = int(self.tta.value), zoom
        # a stack's voxel shape (3 planes): the field's, else the layer's own voxel size
        z_scale = float(self.z_scale.value) or (_three_planes(model) and layer_z_scale(layer))
        if z_scale and run.data.ndim >= 3:
            kwargs["z_scale"] = run.saved["z_scale"] = float(z_scale)
        run.from_model = True
        run.saved[SOURCE_KEY], run.saved[MODEL_KEY] = run.prob_name, model
        run.saved[IMAGE_KEY] = layer.name  # Restore parameters repeats the run on this image
        if run.data.ndim == 4:  # stacks: checked above (channels_refusal), named or deep
            kwargs["axes"] = "TZYX"
        return segment_image_workflow(
            run.data, model, run.method, cancel=self.cancel_flag(), **kwargs
        )

    def _on_map(self, run: SegmentRun, kwargs: dict, span):
        """The workflow of a probability layer (None, said, when it is not one)."""
        from napari_hemd.core.validation import not_a_probability_map

        layer, saved = run.layer, run.saved
        why = not_a_probability_map(run.data)
        if why:
            show_error(
                f"Segment: {layer.name!r} does not look like a probability map ({why}). "
                "For a raw image choose a model above; it predicts the probabilities first"
            )
            return None
        from napari_hemd.core.validation import faint_float_map

        faint = None if layer.metadata.get(MODEL_KEY) else faint_float_map(run.data)
        if faint:
            show_info(
                f"Segment: {layer.name!r} is taken as a probability map, but {faint}: a raw "
                "image scaled to 0-1? If so, choose a model above: it predicts the probabilities "
                "first"
            )
        seg_defaults = layer.metadata.get(DEFAULTS_KEY) or {}
        run.grow_threshold = float(seg_defaults.get("grow_threshold", 0.5))
        # a model's (T, Z, Y, X) maps: each stack as the model's run segments it
        via_maps = stacks_maps_workflow(layer, run.data, run.method, kwargs, span)
        if via_maps is not None:
            run.from_model = True  # an ImageSegmentation
            return via_maps
        if seg_defaults:  # the model's own (min size ...)
            from napari_hemd.image_segmentation import with_model_defaults

            usable = {k: v for k, v in seg_defaults.items() if k in kwargs}
            kwargs = with_model_defaults(usable, kwargs)
            saved.update({k: kwargs[k] for k in usable})
            if seg_defaults.get("planes") == 3 and run.ndim == 3:  # a stack's maps (3D model)
                saved["planes"] = 3
            if seg_defaults.get("min_volume") and kwargs.get("link"):  # its 3D fragments
                saved["min_volume"] = int(seg_defaults["min_volume"])
        background = layer.metadata.get(BACKGROUND_KEY)
        if background is not None and tuple(background.shape) == tuple(layer.data.shape):
            run.grow = int(layer.metadata.get(GROW_KEY, 0))
            run.background = background if span is None else background[span[0] : span[1]]
        return map_run_workflow(run, segment_workflow(run.data, run.method, **kwargs))
