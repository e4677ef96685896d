"""Raw image -> whole-cell instance labels: model prediction, then H-EMD (or a baseline).

One implementation behind every path a user can take from a raw movie to masks: ``napari-hemd
segment IMAGE --model NAME``, the Segment widget with a model chosen, ``napari-hemd demo`` and the
API :func:`segment_image`. Steps:

1. predict the maps the method needs with the model (:func:`napari_hemd.models.iter_predict`,
   frames read one at a time, tiles sized to the frame);
2. segment the ``foreground`` probability with H-EMD or a baseline
   (:func:`napari_hemd.workflows.segment_workflow`);
3. grow the instances to **whole cells** (:func:`napari_hemd.core.cells.grow_to_cells`): a U-Net's
   foreground class stops short of the cell outline (its ``boundary`` class), so instances are
   grown into pixels that are not background by the width of that class, which the model file
   records (``metadata["targets"]``). The affinity network's foreground head is the whole nucleus
   already (no growth).

Imports torch only when it runs.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from napari_hemd.core.segment import (
    METHODS,
    HEMDResult,
    TooManyCandidates,
    check_keywords,
    check_params,
)
from napari_hemd.workflows import (
    Progress,
    cancelled,
    per_stack,
    run_workflow,
    segment_workflow,
)

log = logging.getLogger(__name__)

#: ``method`` of a model's run: the probability-map methods, and ``"mutex"``, an affinity
#: model's own instances (the Mutex watershed of its affinities).
MODEL_METHODS = (*METHODS, "mutex")
#: Instances of the Mutex watershed smaller than this are merged into a neighbour (``predict``'s
#: default, with which the affinity model's held-out scores were measured).
MUTEX_MIN_SIZE = 30

__all__ = [
    "MODEL_METHODS",
    "NEUTRAL",
    "ImageSegmentation",
    "choose_scale_workflow",
    "found_zoom",
    "labels_from_maps_workflow",
    "link_stacks_workflow",
    "scaled_defaults",
    "segment_image",
    "segment_image_workflow",
    "size_advice",
    "suggested_scale",
    "whole_cell_growth",
    "with_model_defaults",
]


#: Values that mean "not chosen": a model's ``segment_defaults`` replace them (the CLI and the
#: widgets pass these when the user left the option alone).
NEUTRAL = {"min_size": 0, "link": False, "min_volume": 0, "delta": 0.35}


@dataclass
class ImageSegmentation:
    """What :func:`segment_image` produced.

    Attributes
    ----------
    labels : uint32 ndarray
        Whole-cell instance labels, shaped like the image.
    maps : dict of str to float32 ndarray
        The predicted ``foreground`` (and ``boundary``, ``background`` for U-Nets), shaped like the
        image.
    result : HEMDResult, StackResults or None
        H-EMD's forests and selections (candidate regions are on the foreground map, i.e. before
        the whole-cell growth) when ``method="hemd"``; a :class:`StackResults` (one per stack)
        for a ``(T, Z, Y, X)`` time-lapse of stacks.
    grow : int
        Pixels the instances were grown by.
    tracks : (K, 4) int64 ndarray or None
        CTC track table (``L B E P``) when ``link=True``.
    params : dict
        Method, model and parameters of the run.
    defaults : dict
        The model's ``segment_defaults`` (a later run on ``maps`` applies them too).
    advice : str or None
        :func:`size_advice`: a sentence when the objects found are far from the size the model
        learned (then ``scale`` likely helps), else None.
    """

    labels: np.ndarray
    maps: dict[str, np.ndarray]
    result: HEMDResult | StackResults | None = None
    grow: int = 0
    tracks: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    advice: str | None = None


@dataclass
class StackResults:
    """H-EMD's results of a ``(T, Z, Y, X)`` time-lapse segmented stack by stack.

    Attributes
    ----------
    results : list of HEMDResult
        One per stack: its slices' candidate forests and selections, as for that stack alone
        (candidate ids are the stack's own; the labels over time may carry other ids once
        linked).
    tracks : (K, 4) int64 ndarray or None
        CTC track table of the objects linked over time.
    """

    results: list[HEMDResult]
    tracks: np.ndarray | None = None

    @property
    def params(self) -> dict:
        """The run's H-EMD parameters (every stack ran with the same)."""
        return next((r.params for r in self.results if r is not None), {})


#: :func:`size_advice` speaks up when the objects found are more than this many times smaller
#: than the smallest, or larger than the largest, of the model's training objects (its training
#: zoomed them by 0.7-1.4; past 1.25 the held-out scores fell, docs/models.md).
SIZE_TOLERANCE = 1.25


def suggested_scale(
    model, labels: np.ndarray, scale: float = 1.0, *, frames: int = 5
) -> tuple[float, float | None] | None:
    """``(found, suggestion)`` for ``labels`` segmented with ``model`` at zoom ``scale``.

    ``found`` is the median diameter (pixels) of the objects in up to ``frames`` evenly spaced
    frames of ``labels`` (a ``(T, Y, X)`` or ``(Y, X)`` array-like; only those frames are read;
    objects cut by the border left out); ``suggestion`` the ``scale`` that brings them, in the
    network's pixels, into the range of its training objects (``metadata["object_diameters"]``),
    or None when they are within :data:`SIZE_TOLERANCE` of it. None when the model records no
    sizes or fewer than 5 objects were found.
    """
    from napari_hemd.models.data import median_diameter

    learned = [float(v) for v in model.metadata.get("object_diameters", {}).values()]
    ndim = len(getattr(labels, "shape", np.shape(labels)))
    if not learned or ndim not in (2, 3):
        return None
    n = 1 if ndim == 2 else int(labels.shape[0])
    picks = np.unique(np.linspace(0, n - 1, min(frames, n)).round().astype(int))
    found, count = median_diameter(
        [np.asarray(labels)] if ndim == 2 else [np.asarray(labels[int(t)]) for t in picks]
    )
    if found is None or count < 5:
        return None
    found = round(found, 1)  # to 0.1 px, as the model files record the training diameters
    seen = found * scale  # what the network saw
    lo, hi = min(learned), max(learned)
    if lo / SIZE_TOLERANCE <= seen <= hi * SIZE_TOLERANCE:
        return found, None
    return found, scale * (lo if seen < lo else hi) / seen


def size_advice(model, labels: np.ndarray, scale: float = 1.0, *, frames: int = 5) -> str | None:
    """A sentence for the user when ``labels`` hold objects of a size the model did not learn.

    See :func:`suggested_scale`: beyond :data:`SIZE_TOLERANCE` on either side of the training
    objects' diameters it names the ``scale`` that brings them into that range; else None.
    Where the network fails on too large cells it finds fragments, so a first suggestion may
    undershoot: run again with it and read the advice again (``scale="auto"`` does that).
    """
    got = suggested_scale(model, labels, scale, frames=frames)
    if got is None or got[1] is None:
        return None
    found, suggest = got
    learned = sorted({float(v) for v in model.metadata["object_diameters"].values()})
    size = "small" if suggest > scale else "large"
    learned_text = " and ".join(f"{v:.0f}" for v in learned)
    said = (
        f"the objects found are {found:.0f} px across (median), {size} for this model (it "
        f"learned {learned_text} px{'' if scale == 1 else f'; zoom {scale:g}'}): if your cells "
        "are that size, "
    )
    if getattr(model, "kind", "unet") != "unet":  # its offsets are in its training pixels
        return (
            f"{said}resize the image by {suggest:.2g} before this model (an affinity model takes "
            f"no zoom), or use a U-Net (nuclei-fluo) with --scale {suggest:.2g} (zoom for the "
            f"model {suggest:.2g})"
        )
    return f"{said}try --scale {suggest:.2g} (zoom for the model {suggest:.2g})"


#: ``scale="auto"``: frames probed, and how many zooms are tried at most.
AUTO_SCALE_FRAMES = 3
AUTO_SCALE_ROUNDS = 4


def choose_scale_workflow(
    model, image, *, tile=None, device=None, threads=None, cancel=None
) -> Generator[Progress, None, tuple[float, list[float]]]:
    """Find the zoom for ``image`` (``scale="auto"``): probe a few frames, follow the advice.

    Up to :data:`AUTO_SCALE_FRAMES` evenly spaced frames are segmented at the model's own zoom
    (:func:`napari_hemd.models.prediction.model_scale`, 1 but for a model trained at another) as
    the run will be (H-EMD, whole cells, the model's defaults; one view); while
    :func:`suggested_scale` names another zoom, they are segmented again at it (at most
    :data:`AUTO_SCALE_ROUNDS` zooms; a suggestion within 5 % of one tried ends it). Yields
    ``("zoom", tried, rounds)``; returns the zoom and every zoom tried.
    """
    from napari_hemd.models.prediction import SCALE_RANGE, _resolve_model, model_scale

    model = _resolve_model(model)
    if model.kind != "unet":
        raise ValueError(
            "scale='auto' needs a U-Net model (the affinity network's offsets are in its "
            f"training pixels); got a model of kind {model.kind!r}"
        )
    shape = tuple(image.shape)
    n = 1 if len(shape) == 2 else shape[0]
    picks = np.unique(np.linspace(0, n - 1, min(AUTO_SCALE_FRAMES, n)).round().astype(int))
    probe = np.asarray(image)[None] if len(shape) == 2 else np.stack([image[t] for t in picks])
    scale, tried = model_scale(model), []
    for _ in range(AUTO_SCALE_ROUNDS):
        yield ("zoom", len(tried), AUTO_SCALE_ROUNDS)
        tried.append(round(scale, 3))
        gen = segment_image_workflow(
            probe, model, "hemd", scale=scale, tile=tile, device=device, threads=threads,
            cancel=cancel, tta=1,
        )  # fmt: skip
        try:
            res = yield from _quiet(gen)
        except TooManyCandidates:
            if len(tried) == 1:
                raise  # at the model's own zoom: the run itself would fail alike
            # a zoom that turns the frames into noise (followed advice misled by noise specks):
            # the zoom before it stands
            log.warning(
                "scale='auto': zoom %g gives noise, not cells; keeping zoom %g", scale, tried[-2]
            )
            scale = tried[-2]
            break
        got = suggested_scale(model, res.labels, scale)
        if got is None or got[1] is None:
            break
        nxt = float(np.clip(got[1], *SCALE_RANGE))
        if any(abs(nxt / t - 1) < 0.05 for t in tried):
            break
        scale = nxt
    yield ("zoom", AUTO_SCALE_ROUNDS, AUTO_SCALE_ROUNDS)
    return round(scale, 3), tried


def found_zoom(scale: float, tried) -> str:
    """How commands and widgets report a zoom ``scale="auto"`` found, with the zooms it tried."""
    return f"zoom {scale:g} (found; tried {', '.join(f'{t:.3g}' for t in tried)})"


def _quiet(gen):
    """Run a workflow, passing on only its cancellation."""
    try:
        while True:
            stage = next(gen)
            if stage[0] == "cancelled":
                yield stage
    except StopIteration as stop:
        return stop.value


def with_model_defaults(defaults: dict, params: dict) -> dict:
    """``params`` over a model's ``segment_defaults``; a :data:`NEUTRAL` value gives way."""
    given = {k: v for k, v in params.items() if not (k in defaults and NEUTRAL.get(k, ...) == v)}
    return {**defaults, **given}


def whole_cell_growth(model, scale: float = 1.0) -> int:
    """Pixels a model's foreground instances are grown by to become whole cells.

    U-Nets: :data:`napari_hemd.core.cells.GROW_BY_TARGETS` of ``metadata["targets"]`` (models
    from before the field existed have ``"interior"`` targets); affinity networks: 0. With
    ``scale`` (the zoom the network saw the frames at) in the image's pixels: divided by it,
    at least 1.
    """
    from napari_hemd.core.cells import GROW_BY_TARGETS

    if model.kind != "unet":
        return 0
    grow = GROW_BY_TARGETS[model.metadata.get("targets", "interior")]
    return max(1, round(grow / scale)) if grow else 0


#: ``segment_defaults`` that are sizes: areas (pixels) and volumes (voxels of a linked object).
_AREAS = ("min_size", "min_volume")


def scaled_defaults(defaults: dict, scale: float) -> dict:
    """A model's ``segment_defaults`` in the pixels of an image the network sees zoomed by ``scale``.

    Sizes (``min_size``, ``min_volume``: areas in the frames) are divided by ``scale**2``.
    """
    out = dict(defaults)
    if scale != 1.0:
        for k in _AREAS:
            if out.get(k):
                out[k] = max(1, round(float(out[k]) / scale**2))
    return out


#: Keywords of the method that :func:`segment_image` fills itself (the maps come from the model).
_MAPS = ("boundary", "background", "progress", "axis")
#: Keywords :func:`segment_image_workflow` takes besides the method's (see its ``**params``).
_IMAGE_KEYWORDS = ("min_volume", "grow_threshold", "exclude_border")


def _own_keywords() -> list[str]:
    """:func:`segment_image_workflow`'s own keywords: the prediction's and the growth's."""
    return [
        name
        for name, p in inspect.signature(segment_image_workflow).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    ]


def image_keywords(method: str = "hemd") -> tuple[str, ...]:
    """Every keyword :func:`segment_image` takes with ``method`` (a typo is none of them)."""
    from napari_hemd.core.segment import method_keywords

    taken = [k for k in method_keywords(method) if k not in _MAPS]
    return tuple(dict.fromkeys([*_own_keywords(), *taken, *_IMAGE_KEYWORDS]))


def _check_mutex(loaded, model, params: dict) -> None:
    """Refuse ``method="mutex"`` for a U-Net, and the maps' parameters it would not use."""
    if loaded.kind != "affinity":
        raise ValueError(
            "method 'mutex' segments an affinity model's affinities (the Mutex watershed; "
            f"nuclei-affinity); {model if isinstance(model, str) else 'the model'} is a U-Net: "
            "use hemd or a baseline"
        )
    from napari_hemd.core.segment import HEMD_ONLY

    unused = sorted(set(params) & {"tau", "iterations", "variant", "connectivity", *HEMD_ONLY})
    if unused:
        raise ValueError(
            f"{', '.join(unused)}: not used by method 'mutex' (the affinity model's Mutex "
            "watershed instances; min_size merges smaller ones, link links them over time); "
            "method='hemd' segments its foreground map with them"
        )


def model_method(model) -> str:
    """A model's own method: ``"mutex"`` for an affinity model, ``"hemd"`` for a U-Net."""
    return "mutex" if model.kind == "affinity" else "hemd"


def segment_image_workflow(
    image,
    model,
    method: str | None = None,
    *,
    grow: int | None = None,
    tile: int | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    cancel: Callable[[], bool] | None = None,
    planes: int | None = None,
    z_scale: float | None = None,
    tta: int | None = None,
    scale: float | str | None = None,
    axes: str | None = None,
    **params,
) -> Generator[Progress, None, ImageSegmentation]:
    """Predict maps with ``model``, segment them, grow instances to whole cells.

    Parameters
    ----------
    image : (T, Y, X), (Z, Y, X), (T, Z, Y, X) or (Y, X) array-like
        Raw intensities; frames (or slices) on axis 0, read one at a time. A ``(T, Z, Y, X)``
        time-lapse of stacks: each stack as a ``(Z, Y, X)`` one, then the objects linked over
        time where the stacks' are linked (:func:`_segment_stacks_workflow`; ``result`` None).
    model : str, path or HemdModel
        A shipped model name, a model file or a loaded model.
    method : str, optional
        One of :data:`MODEL_METHODS`: a probability-map method of
        :data:`napari_hemd.core.segment.METHODS`, or ``"mutex"``, an affinity model's own
        instances (the Mutex watershed of its affinities; ``min_size`` merges smaller ones, 30
        by default; ``link`` links them over time). Default: :func:`model_method` (``mutex``
        for an affinity model, whose held-out scores are its, ``hemd`` for a U-Net). H-EMD on a
        single 2D frame reduces to its initial selection and padding.
    grow : int, optional
        Whole-cell growth in pixels; default :func:`whole_cell_growth` of the model; 0: none.
    tile, halo, batch_size, device
        See :func:`napari_hemd.models.predict` (default: tiles sized to the frame).
    threads : int, optional
        torch intra-op threads while predicting (default: torch's).
    cancel : callable, optional
        Checked between batches of tiles; see :func:`napari_hemd.workflows.predict_workflow`.
    planes : {1, 3}, optional
        3: a ``(Z, Y, X)`` stack is predicted on its z-, y- and x-slices and the probabilities
        averaged (:func:`napari_hemd.models.predict_volume_workflow`); 1: z-slices only (frames of
        a time-lapse always). Default: the model's (``nuclei-3d``: 3, others 1). A 3D model's
        stack is one volume either way (``planes`` recorded in the parameters: :func:`one_stack`).
    z_scale : float, optional
        With 3 planes: voxel depth over pixel width of the stack (default: the model's training
        volume's, ``nuclei-3d`` 2.2).
    tta : {1, 2, 4, 8}
        Test-time flips: the U-Net's probabilities averaged over this many mirrored views of each
        tile, at ``tta`` times the prediction time (:func:`napari_hemd.models.predict`; 1: off).
        Default: the model's (:func:`napari_hemd.models.prediction.model_tta`).
    scale : float
        Zoom of the frames before a U-Net (:func:`napari_hemd.models.predict`), for objects of
        another size than the model's training objects: 0.5 when yours are twice as large. The
        maps come back at the image's size; the model's size defaults (``min_size``,
        ``min_volume``) and its whole-cell growth are converted to the image's pixels
        (:func:`scaled_defaults`). ``"auto"``: found on a few frames by following the size
        advice (:func:`choose_scale_workflow`; recorded as ``params["scale"]`` and
        ``params["scale_tried"]``). Default (None): the model's own zoom, 1 but for a model
        trained or fine-tuned at another (:func:`napari_hemd.models.prediction.model_scale`);
        not other than 1 with 3 planes (there ``z_scale`` sets the shape).
    axes : str, optional
        The image's axes, e.g. ``"TZYX"``. Without a ``Z`` here, a 4D image of at most 4 planes
        on axis 1 is taken for channels ``(T, C, Y, X)`` and refused, as the command line and
        the widgets refuse an input whose file names no ``Z``: ``axes="TZYX"`` segments stacks
        of 2-4 slices.
    **params
        Parameters of the method (``tau``, ``delta``, ``iterations``, ``min_size``, ``link``,
        ``variant`` ...), as for :func:`napari_hemd.workflows.segment_workflow`, and
        ``min_volume`` (with ``link``: linked objects smaller than this in all frames/slices are
        removed), ``grow_threshold`` (the growth takes pixels whose background probability is
        below it; 0.5), ``exclude_border`` (remove the cells the image's edge cuts: per frame, or
        with 3 planes those touching any face of the volume; default False). A model file may
        carry ``metadata["segment_defaults"]`` for these (the 3D model: ``link``, ``delta`` 2,
        ``min_volume`` 300; ``nuclei-fluo``: ``min_size`` 100 and the ``grow_threshold`` chosen
        on its training frames, :func:`napari_hemd.models.calibrate_growth`); a value passed here
        wins unless it is the neutral one of :data:`NEUTRAL` (what an untouched CLI option or
        widget field gives).

    Yields
    ------
    (stage, done, total)
        ``("predict", frames done, frames)``, then the method's stages.

    Returns
    -------
    ImageSegmentation
    """
    import torch

    from napari_hemd.models.prediction import (
        FrameStacks,
        _resolve_model,
        iter_predict,
        resolve_planes,
    )

    if method is not None and method not in MODEL_METHODS:
        raise ValueError(f"method must be one of {MODEL_METHODS}; got {method!r}")
    if isinstance(image, str | os.PathLike) or image is None:
        raise TypeError(
            f"image must be an array of raw intensities; got {type(image).__name__}"
            + (" (read the file first: tifffile.imread)" if image is not None else "")
        )
    if not hasattr(image, "shape"):  # a list of frames, as documented for array-likes
        image = np.asarray(image)
    shape = tuple(image.shape)
    if len(shape) not in (2, 3, 4):
        raise ValueError(
            f"image must be (Y, X), (T, Y, X), (Z, Y, X) or (T, Z, Y, X) raw intensities; got "
            f"shape {shape}"
        )
    if len(shape) >= 3 and shape[-1] in (3, 4):  # else its rows would be frames 3 px wide
        raise ValueError(
            f"image of shape {shape} has {shape[-1]} values on its last axis, as an RGB(A) colour "
            "image has; segment_image takes one grey value per pixel: pass one channel "
            "(image[..., c]) or a grey image (image.mean(axis=-1))"
        )
    from napari_hemd.io.channels import looks_like_channels

    named = {2: ("YX",), 3: ("TYX", "ZYX"), 4: ("TZYX",)}.get(len(shape), ())
    if axes is not None and (not isinstance(axes, str) or axes.upper() not in named):
        raise ValueError(  # (channels: one at a time, image[:, c])
            f"axes must name the image's {len(shape)} axes, one of {list(named)}; got {axes!r}"
        )
    # the command line's and the widgets' rule (audit 35: a two-colour movie was segmented as
    # stacks of 2 slices, the second stain given the nuclei's ids)
    if looks_like_channels(shape, axes) and shape[1] > 0:
        raise ValueError(
            f"image of shape {shape} has {shape[1]} plane(s) on axis 1: taken for channels "
            "(T, C, Y, X), not a time-lapse of 3D stacks (T, Z, Y, X), which have more than 4 "
            "slices; pass one channel, image[:, c], or axes='TZYX' for stacks of so few slices"
        )
    if len(shape) >= 3 and shape[0] == 0:
        raise ValueError("image has no frames (shape[0] == 0)")
    if 0 in shape:
        raise ValueError(f"image is empty (shape {shape}): no pixels to segment")
    if params.get("axis", 0) not in (0, -3):
        raise ValueError(f"axis must be 0 (frames first) with a model; got {params['axis']}")
    params.pop("axis", None)
    # before the prediction, which may take hours: a typo or an out-of-range value fails now
    # (the Mutex watershed takes what a baseline takes: min_size, link and its delta)
    taking = {None: "hemd", "mutex": "threshold"}.get(method, method)  # None: all H-EMD takes
    extra = (*_IMAGE_KEYWORDS, *_own_keywords())  # named in the message (audit 16: the
    check_keywords(taking, params, caller="segment_image", extra=extra, drop=_MAPS)  # tile ...)
    check_params(**params)
    if (params.get("connectivity") or 1) > 2:  # checked here, not after hours of prediction
        raise ValueError(
            f"connectivity must be 1 (faces) or 2 (full): a model's frames, and a stack's "
            f"slices, are segmented in 2D (linked across slices into 3D objects); got "
            f"{params['connectivity']}"
        )
    if not int(params.get("min_volume") or 0) >= 0:
        raise ValueError(f"min_volume must be >= 0; got {params['min_volume']!r}")
    grow_threshold = params.get("grow_threshold")
    if grow_threshold is not None and not 0 < float(grow_threshold) <= 1:
        raise ValueError(f"grow_threshold must be in (0, 1]; got {grow_threshold!r}")
    if grow is not None and not int(grow) >= 0:
        raise ValueError(f"grow must be >= 0 pixels; got {grow!r}")
    if threads is not None and not int(threads) >= 1:
        raise ValueError(f"threads must be >= 1; got {threads!r}")
    from napari_hemd._memory import MODEL_BYTES_PER_PIXEL, check_fits_in_memory

    own = image.dtype.itemsize if isinstance(image, np.ndarray) else 0  # already in memory
    check_fits_in_memory(
        shape,
        MODEL_BYTES_PER_PIXEL - own,
        what="segment with a model" + (f" ({method})" if method else ""),
        model=True,
    )
    loaded = _resolve_model(model)
    method = model_method(loaded) if method is None else method
    if method == "mutex":
        _check_mutex(loaded, model, params)
    if len(shape) == 4:  # a time-lapse of stacks: each stack as segment does one, then time
        return (
            yield from _segment_stacks_workflow(
                image,
                loaded,
                method,
                name=str(model) if isinstance(model, (str, os.PathLike)) else None,
                grow=grow,
                tile=tile,
                halo=halo,
                batch_size=batch_size,
                device=device,
                threads=threads,
                cancel=cancel,
                planes=planes,
                z_scale=z_scale,
                tta=tta,
                scale=scale,
                **params,
            )
        )
    from napari_hemd.models.prediction import (
        _check_scale,
        _check_tta,
        check_scale_planes,
        model_scale,
        tta_recorded,
    )

    tta = _check_tta(tta, loaded)  # refused before any frame is predicted
    auto = isinstance(scale, str) and scale == "auto"
    asked_planes = planes
    planes = resolve_planes(loaded, planes, shape)
    # its labels are written, measured and trimmed at its faces as one volume
    stack = is_model_stack(loaded, planes, shape)
    from napari_hemd._log import NOTE

    if asked_planes == 3 and "volume" not in loaded.metadata:  # time read as z finds nothing
        log.log(
            NOTE, "planes=3 with a model trained on 2D frames: the image's first axis is taken "
            "for z (a movie's time too, where it finds nothing); nuclei-3d is made for stacks",
        )  # fmt: skip
    if planes == 3 and 2 * shape[2] <= min(shape[0], shape[1]):  # Z last? its z step goes to x
        log.log(
            NOTE, "the stack's last axis (%d) is far shorter than its first two %s: a stack is "
            "(Z, Y, X), slices first; one stored with Z last is segmented along the wrong axis "
            "(move it first: np.moveaxis(stack, -1, 0))", shape[2], shape[:2],
        )  # fmt: skip
    if z_scale is not None and planes != 3:  # it would be taken and do nothing
        raise ValueError(
            f"z_scale is for three prediction planes of a (Z, Y, X) stack (planes=3); the image "
            f"of shape {tuple(shape)} is predicted on one plane: leave z_scale out"
        )
    if scale is None and planes == 3:  # three planes take no zoom (z_scale sets the shape)
        scale = 1.0
    scale = _check_scale(1.0 if auto else scale, loaded)
    # what the model's data need (a 3D model links its slices with a tolerant size change and
    # drops small 3D fragments), in the image's pixels; parameters the caller passes win
    defaults = dict(loaded.metadata.get("segment_defaults", {}))
    given, grow_given = dict(params), grow
    params = with_model_defaults(scaled_defaults(defaults, scale), params)
    if grow is None:
        grow = whole_cell_growth(loaded, scale)
    if grow < 0:
        raise ValueError(f"grow must be >= 0; got {grow}")
    outputs = ["foreground"]
    if grow:
        outputs.append("background")
    if method == "maxvalue":
        outputs.append("boundary")
    mutex: dict = {}
    if method == "mutex":  # the affinity model's instances, merged below its min size
        outputs.append("instances")
        mutex["min_size"] = int(given.get("min_size") or 0) or MUTEX_MIN_SIZE
        params["min_size"] = mutex["min_size"]  # recorded as used (not the model's H-EMD one)
    n = 1 if len(shape) == 2 else shape[0]
    check_scale_planes("auto" if auto else scale, planes)
    tried = None
    if auto:
        scale, tried = yield from choose_scale_workflow(
            loaded, image, tile=tile, device=device, threads=threads, cancel=cancel
        )
        # the model's sizes in the image's pixels at the zoom found (the caller's stay)
        params = with_model_defaults(scaled_defaults(defaults, scale), given)
        if grow_given is None:
            grow = whole_cell_growth(loaded, scale)
    maps: dict[str, np.ndarray] = {}
    done = 0  # frames (or a whole volume's slices) predicted
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        if planes == 3:  # a stack seen from three sides; progress counts 2D slices
            from napari_hemd.models.prediction import predict_volume_workflow

            volume = yield from predict_volume_workflow(
                loaded,
                image,
                outputs=outputs,
                z_scale=z_scale,
                tile=tile,
                halo=halo,
                batch_size=batch_size,
                device=device,
                tta=tta,
                cancel=cancel,
            )
            if volume is not None:
                maps = {k: np.asarray(v, dtype=np.float32) for k, v in volume.items()}
                done = n
        else:
            stacks = FrameStacks(n)
            yield ("predict", 0, n)
            for t, frame_maps in iter_predict(
                loaded,
                image,
                outputs=outputs,
                tile=tile,
                halo=halo,
                batch_size=batch_size,
                device=device,
                tta=tta,
                scale=scale,
                cancel=cancel,
                **mutex,
            ):
                stacks.put(t, {k: frame_maps[k] for k in outputs})
                yield ("predict", t + 1, n)
            maps, done = stacks.arrays, stacks.done
    finally:
        if threads:
            torch.set_num_threads(old_threads)
    if done < n:
        yield from cancelled(done, n)
    labels, res, tracks = yield from labels_from_maps_workflow(
        maps, method, grow, volume=stack, **params
    )
    if len(shape) == 2:
        labels = labels[0]
        maps = {k: v[0] for k, v in maps.items()}
    if isinstance(model, (str, os.PathLike)):
        name = str(model)
    else:  # a loaded model: the name a fine-tuned one records, else its kind
        name = loaded.metadata.get("name") or f"({loaded.kind} model)"
    run = {"method": method, "model": name, "grow": int(grow), **params}
    if tta_recorded(tta, loaded):
        run["tta"] = tta
    if scale != 1.0 or auto or (planes == 1 and scale != model_scale(loaded)):  # see Fine-tune
        run["scale"] = scale
    if auto:
        run["scale_tried"] = tried
    if planes == 3:
        from napari_hemd.models.prediction import volume_settings

        zs = volume_settings(loaded)["z_scale"] if z_scale is None else float(z_scale)
        run.update(planes=3, z_scale=zs)
    elif stack:  # recorded for a stack only (see one_stack)
        run["planes"] = 1
    advice = None if planes == 3 else size_advice(loaded, labels, scale)
    return ImageSegmentation(
        labels, maps, res, int(grow), tracks, run, scaled_defaults(defaults, scale), advice
    )


def _segment_stacks_workflow(
    image, model, method: str, *, name: str | None, scale=None, **kwargs
) -> Generator[Progress, None, ImageSegmentation]:
    """A ``(T, Z, Y, X)`` time-lapse of stacks: each stack, then the objects over time.

    Each stack exactly as :func:`segment_image_workflow` segments one (a 3D model: three planes,
    H-EMD across its slices into 3D objects); then, where those objects are linked (the model's
    ``link``, e.g. ``nuclei-3d``, or ``link=True``), the same object keeps its id from time
    point to time point (:func:`napari_hemd.core.linking.link_labels`: overlap matching with
    divisions; ``tracks``).

    ``result`` is a :class:`StackResults` with H-EMD (each stack's forests, for the inspector;
    None with a baseline); progress events are the stacks' own, their stage prefixed with
    ``"stack t/T: "``.
    """
    if isinstance(scale, str):
        raise ValueError(
            "scale='auto' is not available for a (T, Z, Y, X) time-lapse of stacks: give a zoom "
            "(found on one stack with scale='auto')"
        )
    key = " labels"  # beside the maps' names, never one of them
    results = []

    def arrays(r: ImageSegmentation) -> dict:
        results.append(r.result)  # the stack's forests (its labels and maps go to the arrays)
        return {key: r.labels, **r.maps}

    maps, last = yield from per_stack(
        segment_image_workflow, image, model, method, scale=scale, arrays=arrays, **kwargs
    )
    stacked = maps.pop(key)
    run = dict(last.params)
    run.pop("scale_tried", None)
    if name is not None:
        run["model"] = name
    stacked, tracks, run = yield from link_stacks_workflow(stacked, run)
    hemd_results = StackResults(results, tracks) if method == "hemd" else None
    return ImageSegmentation(
        stacked,
        maps,
        hemd_results,
        last.grow,
        tracks,
        run,
        last.defaults,
        None,
    )


def link_stacks_workflow(
    stacked: np.ndarray, run: dict
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray | None, dict]]:
    """Each stack's objects of a ``(T, Z, Y, X)`` result, the same id over time where linked.

    Where the run links its objects (``run["link"]``: a 3D model's, or ``link=True``),
    :func:`napari_hemd.core.linking.link_labels` matches them from stack to stack (with
    divisions); else the stacks stay as they are. Returns the labels, the tracks (or None) and
    the run's parameters (``link_time`` added when linked).
    """
    from napari_hemd.core.linking import link_labels

    if not run.get("link"):
        return stacked, None, run
    n = int(stacked.shape[0])
    yield (f"link {n} stacks over time", 0, 1)
    stacked, tracks = link_labels(stacked)
    yield (f"link {n} stacks over time", 1, 1)
    return stacked, tracks, {**run, "link_time": True}


def is_model_stack(model, planes: int, shape: tuple) -> bool:
    """Whether an input of ``shape`` is one ``(Z, Y, X)`` stack of 3D objects for ``model``.

    A stack of two or more slices seen on three planes, or a 3D model's slice by slice
    (``planes=1``). The rule :func:`segment_image` and the maps of a model
    (:func:`napari_hemd.model_maps.model_maps_workflow`) share.
    """
    stack = len(shape) == 3 and shape[0] >= 2
    return stack and (planes == 3 or "volume" in model.metadata)


def one_stack(params) -> bool:
    """Whether a run's 3D labels are one ``(Z, Y, X)`` stack of 3D objects, not a movie's frames.

    A 3D model's run on a stack records its prediction planes in its parameters (3, or 1: slice
    by slice); a run on frames records none.
    """
    return (params or {}).get("planes") in (1, 3)


def labels_from_maps_workflow(
    maps: dict[str, np.ndarray],
    method: str = "hemd",
    grow: int = 0,
    *,
    exclude_border: bool = False,
    volume: bool = False,
    **params,
) -> Generator[Progress, None, tuple[np.ndarray, HEMDResult | None, np.ndarray | None]]:
    """Segment predicted ``(T, Y, X)`` maps and grow the instances to whole cells.

    The second half of :func:`segment_image_workflow` (for maps already predicted).

    Parameters
    ----------
    maps : dict
        ``foreground`` ``(T, Y, X)``; ``background`` when ``grow > 0``; ``boundary`` for
        ``method="maxvalue"``; ``instances`` for ``"mutex"``.
    method : str
        One of :data:`MODEL_METHODS` (``"mutex"``: the maps' ``instances`` are the objects).
    grow : int
        Whole-cell growth in pixels (:func:`napari_hemd.core.cells.grow_to_cells`).
    exclude_border : bool
        Remove the cells that the image's edge cuts, last
        (:func:`napari_hemd.core.cells.remove_border_cells`): each frame on its own, or with
        ``volume`` the objects touching any face of the volume; linked tracks are split where a
        cell left a gap.
    volume : bool
        The maps are one ``(Z, Y, X)`` volume, not frames.
    **params
        Parameters of the method; ``link=True`` also links (H-EMD links its own candidates,
        baselines are linked after the growth); ``grow_threshold`` (default 0.5): pixels whose
        background probability is below it may be taken by the growth.

    Returns
    -------
    labels : (T, Y, X) uint32 ndarray
    result : HEMDResult or None
    tracks : (K, 4) ndarray or None
    """
    from napari_hemd.core.cells import grow_to_cells
    from napari_hemd.core.segment import HEMD_ONLY

    fg = maps["foreground"]
    seg_kwargs = dict(params)
    if method != "hemd":  # a model's H-EMD defaults do not apply to the baselines
        for k in HEMD_ONLY:
            seg_kwargs.pop(k, None)
    link = bool(seg_kwargs.pop("link", False))
    min_volume = int(seg_kwargs.pop("min_volume", 0) or 0)
    grow_threshold = float(seg_kwargs.pop("grow_threshold", 0.5))
    if method == "maxvalue":
        seg_kwargs["boundary"] = maps["boundary"]
    if method == "hemd":
        seg_kwargs["link"] = link  # H-EMD links on its own candidates; growth keeps the ids
    if method == "mutex":  # the affinity model's own instances, each frame's ids its own
        result = _frame_instances(maps["instances"])
    else:
        result = yield from segment_workflow(fg, method, **seg_kwargs)
    res = result if isinstance(result, HEMDResult) else None
    labels = res.labels if res is not None else np.asarray(result)
    labels = np.asarray(labels, dtype=np.uint32).reshape(fg.shape)
    if grow:
        labels = grow_to_cells(
            labels, maps["background"], grow, threshold=grow_threshold, frame_axis=True
        )
    tracks = res.tracks if res is not None else None
    if link and res is None:
        from napari_hemd.core.linking import link_labels

        labels, tracks = link_labels(labels, delta=params.get("delta", 0.35))
    if min_volume and link:
        labels, tracks = _drop_small_objects(labels, tracks, min_volume)
    if exclude_border:
        from napari_hemd.core.cells import remove_border_cells

        labels, tracks = remove_border_cells(labels, tracks, frame_axis=not volume)
    return labels, res, tracks


def _frame_instances(instances) -> np.ndarray:
    """Each frame's instances numbered 1..n (0 background), as a baseline's labels are."""
    from skimage.segmentation import relabel_sequential

    out = np.zeros(np.shape(instances), np.uint32)
    for t, frame in enumerate(instances):
        out[t] = relabel_sequential(np.asarray(frame, np.int64))[0]
    return out


def _drop_small_objects(labels: np.ndarray, tracks, min_volume: int):
    """Remove linked objects (3D objects of a stack) smaller than ``min_volume`` pixels in all."""
    sizes = np.bincount(labels.ravel())
    small = sizes < min_volume
    small[0] = False
    if not small.any():
        return labels, tracks
    labels = np.where(small[labels], 0, labels).astype(labels.dtype)
    if tracks is not None and len(tracks):
        tracks = np.asarray(tracks)
        keep = ~small[np.minimum(tracks[:, 0], len(small) - 1)]
        tracks = tracks[keep]
        gone = set(np.flatnonzero(small).tolist())
        tracks[:, 3] = [0 if p in gone else p for p in tracks[:, 3]]  # orphaned daughters
    return labels, tracks


def segment_image(
    image,
    model="nuclei-fluo",
    method: str | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    **kwargs,
) -> ImageSegmentation:
    """Raw image or movie -> whole-cell instance labels with a model and H-EMD (or a baseline).

    Parameters
    ----------
    image : (T, Y, X), (Z, Y, X), (T, Z, Y, X) or (Y, X) array-like
        Raw intensities (any dtype; normalised per frame by the model); see
        :func:`segment_image_workflow`.
    model : str, path or HemdModel
        Shipped model name (``napari-hemd models``), model file, or model.
    method : str, optional
        ``"hemd"``, a baseline of :data:`napari_hemd.core.segment.METHODS`, or ``"mutex"`` (an
        affinity model's Mutex watershed). Default: the model's own (:func:`model_method`:
        ``hemd`` for a U-Net, ``mutex`` for an affinity model).
    progress : callable, optional
        Called as ``progress(stage, done, total)``.
    **kwargs
        The prediction's (``tile``, ``halo``, ``batch_size``, ``device``, ``threads``, ``tta``,
        ``scale``, ``planes``, ``z_scale``, ``cancel``), ``axes`` (``"TZYX"``: a time-lapse of
        stacks of 2-4 slices, which is otherwise taken for channels), the whole-cell growth's (``grow``,
        ``grow_threshold``), ``exclude_border``, ``min_volume`` and the method's parameters
        (``tau``, ``delta``, ``min_size``, ``link`` ... as :func:`napari_hemd.segment`): see
        :func:`segment_image_workflow`. A keyword none of these takes raises a TypeError.

    Returns
    -------
    ImageSegmentation
        ``.labels`` (uint32, shaped like ``image``), ``.maps``, ``.result`` (H-EMD).

    Examples
    --------
    >>> from napari_hemd import segment_image  # doctest: +SKIP
    >>> labels = segment_image(movie, model="nuclei-fluo").labels  # doctest: +SKIP
    """
    return run_workflow(segment_image_workflow(image, model, method, **kwargs), progress)


def _full_signature() -> inspect.Signature:
    """:func:`segment_image`'s signature with the keywords it passes on to the workflow.

    Shown by ``help()`` and editors (its own is ``**kwargs``): its positional parameters, the
    workflow's keywords, ``progress``, then the method's ``**params``.
    """
    own = list(inspect.signature(segment_image).parameters.values())
    flow = inspect.signature(segment_image_workflow).parameters.values()
    keywords = [p for p in flow if p.kind is inspect.Parameter.KEYWORD_ONLY]
    rest = [p for p in flow if p.kind is inspect.Parameter.VAR_KEYWORD]
    progress = next(p for p in own if p.name == "progress")
    return inspect.Signature(
        [*own[:3], *keywords, progress, *rest], return_annotation="ImageSegmentation"
    )


segment_image.__signature__ = _full_signature()
