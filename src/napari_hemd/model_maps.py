"""Maps a model predicted earlier, segmented as ``segment --model`` segments them.

``napari-hemd predict`` and ``stream --model`` write a zarr group whose attributes name the model
(``model``, ``scale``, ``planes``) beside its ``foreground`` (and ``background``). Segmenting such
maps must give the labels the one-step ``segment IMAGE --model M`` gives: the model's own
defaults in the maps' pixels, its whole-cell growth into the ``background`` map, a stack's 3D
settings and, for a ``(T, Z, Y, X)`` time-lapse of stacks, each stack on its own then the objects
linked over time. :func:`model_maps_workflow` is that second half of
:func:`napari_hemd.image_segmentation.segment_image_workflow`, used by ``segment`` and
``stream`` on such groups.
"""

from __future__ import annotations

import logging
from collections.abc import Generator

import numpy as np

from napari_hemd.image_segmentation import (
    ImageSegmentation,
    StackResults,
    is_model_stack,
    labels_from_maps_workflow,
    link_stacks_workflow,
    scaled_defaults,
    whole_cell_growth,
    with_model_defaults,
)
from napari_hemd.workflows import Progress, per_stack

log = logging.getLogger(__name__)

__all__ = ["model_maps_workflow"]


def model_maps_workflow(
    maps: dict,
    model,
    method: str = "hemd",
    *,
    scale: float = 1.0,
    planes: int = 1,
    name: str | None = None,
    offsets=None,
    **params,
) -> Generator[Progress, None, ImageSegmentation]:
    """Segment ``maps`` that ``model`` predicted, as ``segment_image`` segments its own.

    Parameters
    ----------
    maps : dict
        ``foreground`` (and ``background`` for the whole-cell growth; ``boundary`` for
        ``method="maxvalue"``) of shape ``(Y, X)``, ``(T, Y, X)``, ``(Z, Y, X)`` (with
        ``planes=3``) or ``(T, Z, Y, X)`` (a time-lapse of stacks); array-likes, read one stack
        at a time.
    model : HemdModel
        The loaded model that predicted them.
    method : str
        H-EMD or a baseline; ``"mutex"`` (an affinity model's own): its Mutex watershed
        ``instances`` among the maps, else made from its ``affinities`` (``(T, N, Y, X)``, a
        channel per offset) as ``segment_image`` makes them.
    scale : float
        The zoom the maps were predicted at (the group's ``scale``): the model's sizes and
        growth are converted to the maps' pixels.
    planes : {1, 3}
        3: each ``(Z, Y, X)`` stack was predicted on three planes (a 3D model); 1: slice by
        slice. A 3D model's stack is one volume either way (its slices linked into 3D objects
        by the model's defaults, small fragments dropped), as :func:`segment_image` takes it.
    name : str, optional
        The model's name, recorded in ``params``.
    offsets : sequence of (dy, dx), optional
        The offsets of the ``affinities`` channels (recorded by ``predict``; default: the
        model's own, :func:`napari_hemd.models.prediction.model_offsets`).
    **params
        Method parameters; values other than the neutral ones
        (:data:`napari_hemd.image_segmentation.NEUTRAL`) win over the model's defaults.

    Returns
    -------
    ImageSegmentation
        ``labels`` shaped like the foreground; ``maps`` empty (the caller has them).
    """
    fg = maps["foreground"]
    maps = dict(maps)
    if method == "maxvalue" and "boundary" not in maps:  # (a bare KeyError: 'boundary')
        raise ValueError(
            "method 'maxvalue' needs the maps' boundary beside the foreground (predict with "
            "outputs foreground,boundary)"
        )
    if method == "mutex":
        mutex = _mutex_settings(maps, model, offsets, params)
    else:  # the affinities are the Mutex watershed's alone
        maps.pop("affinities", None), maps.pop("instances", None)
    for key, arr in maps.items():  # before any work: a wrong map was found after all frames
        want, what = tuple(fg.shape), "the foreground's shape"
        if key == "affinities":  # a channel per offset before each frame's (Y, X)
            want = (*fg.shape[:-2], len(mutex["offsets"]), *fg.shape[-2:])
            what = "the shape (frames, offsets, Y, X)"
        if tuple(arr.shape) != want:
            raise ValueError(f"maps[{key!r}] must have {what} {want}; got {tuple(arr.shape)}")
        if key == "background":  # the growth reads it as a probability
            from napari_hemd.core.validation import check_probability

            first = np.asarray(arr[(0,) * (arr.ndim - 2)])
            check_probability(first, name="maps['background'] (first frame)")
    defaults = scaled_defaults(model.metadata.get("segment_defaults", {}), scale)
    params = with_model_defaults(defaults, params)
    grow = whole_cell_growth(model, scale) if "background" in maps else 0
    # each stack one volume, as segment_image takes a 3D model's stack (three planes or one)
    volume = is_model_stack(model, planes, tuple(fg.shape)[-3:])
    run = {"method": method, "grow": int(grow), **params, "scale": float(scale)}
    if name is not None:
        run["model"] = name
    if volume:
        run["planes"] = 3 if planes == 3 else 1

    def one(t=None):  # one (T, Y, X) movie, one stack or one image of the maps
        part = {
            k: np.asarray(v if t is None else v[int(t)], None if k == "instances" else np.float32)
            for k, v in maps.items()
        }
        if part["foreground"].ndim == 2:
            part = {k: v[None] for k, v in part.items()}
        if method == "mutex" and "instances" not in part:  # the model's own, frame by frame
            part["instances"] = yield from _mutex_instances(part, mutex)
        part.pop("affinities", None)
        labels, res, tracks = yield from labels_from_maps_workflow(
            part, method, grow, volume=volume, **params
        )
        return ImageSegmentation(labels, {}, res, int(grow), tracks, run, defaults, None)

    if fg.ndim == 4:  # stacks over time: each stack alone, then its objects over time
        results = []

        def arrays(r: ImageSegmentation) -> dict:
            results.append(r.result)
            return {"labels": r.labels}

        stacked, _ = yield from per_stack(one, np.arange(fg.shape[0]), arrays=arrays)
        labels, tracks, run = yield from link_stacks_workflow(stacked["labels"], run)
        result = StackResults(results, tracks) if method == "hemd" else None
        return ImageSegmentation(labels, {}, result, int(grow), tracks, run, defaults, None)
    seg = yield from one()
    if fg.ndim == 2:
        seg.labels = seg.labels[0]
    return seg


def _mutex_settings(maps: dict, model, offsets, params: dict) -> dict:
    """How an affinity model's Mutex watershed makes instances of ``maps`` (``"mutex"``).

    Refuses a U-Net and maps without ``instances`` or ``affinities``; sets ``params``' min size
    to the one used (the model's H-EMD one does not apply), as ``segment_image`` does.
    """
    from napari_hemd.image_segmentation import MUTEX_MIN_SIZE
    from napari_hemd.models.prediction import model_offsets

    if model.kind != "affinity":
        raise ValueError(
            "method 'mutex' segments an affinity model's affinities (nuclei-affinity); these "
            "maps are a U-Net's: hemd or a baseline"
        )
    if "instances" not in maps and "affinities" not in maps:
        raise ValueError(
            "method 'mutex' needs the affinity model's 'instances' or 'affinities' beside the "
            f"foreground; got maps {sorted(maps)} (predict with outputs foreground,affinities, "
            "or segment the raw image with the model)"
        )
    params["min_size"] = int(params.get("min_size") or 0) or MUTEX_MIN_SIZE
    return {
        "offsets": [tuple(int(v) for v in o) for o in (offsets or model_offsets(model))],
        "min_size": params["min_size"],
        "bias": float(model.metadata.get("mutex_bias", 0.0)),
    }


def _mutex_instances(part: dict, mutex: dict):
    """``(T, Y, X)`` Mutex watershed instances of ``part``'s affinities, as ``predict`` makes them.

    Foreground threshold 0.5, the model's bias, instances under the min size merged.
    """
    from napari_hemd.models.mutex import mutex_watershed_labels

    affs, fg = part["affinities"], part["foreground"]
    out = np.zeros(fg.shape, np.uint32)
    for t in range(fg.shape[0]):
        out[t] = mutex_watershed_labels(
            affs[t], mutex["offsets"], foreground=fg[t], min_size=mutex["min_size"],
            bias=mutex["bias"],
        )  # fmt: skip
        yield ("mutex watershed", t + 1, fg.shape[0])
    return out
