"""``segment maps.zarr``: the maps a model predicted, segmented as ``segment --model`` does."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings

import numpy as np

from napari_hemd._log import NOTE
from napari_hemd.cli._progress import Progress
from napari_hemd.cli._segment import (
    hemd_params,
    lineage_summary,
    linked_over_time,
    segmented,
    write_segmentation,
)

log = logging.getLogger(__name__)


#: The maps beside a model's foreground that segmenting it as the model does reads.
EXTRA_MAPS = ("background", "boundary", "affinities", "instances")


def model_maps_of(args: argparse.Namespace, prob) -> tuple[dict, dict] | None:
    """``(record, other maps)`` of maps a model predicted (INPUT of ``segment``), else None.

    A maps group ``predict`` or ``stream`` wrote (its attributes name the model), or a
    foreground TIFF ``predict`` wrote (:func:`tiff_model_maps`).
    """
    from napari_hemd.io.stacks import maps_group

    group = maps_group(prob)
    if group is not None:
        return dict(group.attrs), {k: group[k] for k in EXTRA_MAPS if k in group}
    if args.channel is None:  # a TIFF predict wrote (audit 15: a 3D model's, as 2D frames)
        return tiff_model_maps(args.prob)
    return None


def tiff_model_maps(path) -> tuple[dict, dict] | None:
    """``(record, other maps)`` of a foreground TIFF ``predict`` wrote, else None.

    ``predict -o prob.tif`` records its run (``model``, ``planes``, ``scale`` ...) on the
    first page; with ``--outputs foreground,background`` (or ``affinities``, ``instances``)
    the others are ``prob_background.tif`` ... beside ``prob_foreground.tif``.
    """
    from pathlib import Path

    from napari_hemd.io.stacks import recorded_params

    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff") or not p.is_file():
        return None
    recorded = recorded_params(p)
    if not recorded.get("model") or recorded.get("output", "foreground") != "foreground":
        return None
    others = {}
    if p.stem.endswith("_foreground"):
        for name in EXTRA_MAPS:
            other = p.with_name(f"{p.stem.removesuffix('_foreground')}_{name}{p.suffix}")
            theirs = recorded_params(other) if other.is_file() else {}
            if theirs.get("model") == recorded["model"] and theirs.get("output") == name:
                from napari_hemd.io import read_stack

                # lazily: read only where the method uses it (review 29b: every map was read)
                others[name] = read_stack(other, lazy=True)
        if "affinities" in others:  # a movie's: (T * N, Y, X) pages, N channels a frame
            others["affinities"] = _frames_of_channels(others["affinities"], p)
    return recorded, others


def _frames_of_channels(affinities, foreground_path) -> object:
    """``predict``'s affinities TIFF of a movie, ``(T * N, Y, X)`` pages, as ``(T, N, Y, X)``.

    One page per channel and frame (tifffile reads them as one stack): the foreground's frames
    tell them apart (review 29: segment failed on the shapes). A 2D image's ``(N, Y, X)`` as is.
    """
    import tifffile

    with tifffile.TiffFile(foreground_path) as tif:
        fg = tuple(tif.series[0].shape)
    shape = tuple(affinities.shape)
    if len(fg) == 3 and len(shape) == 3 and shape[0] % fg[0] == 0:
        import dask.array as da

        lazy = affinities if isinstance(affinities, da.Array) else da.from_array(affinities)
        return lazy.reshape(fg[0], shape[0] // fg[0], *shape[1:])
    return affinities


def run_on_model_maps(
    args: argparse.Namespace, prob, attrs: dict, others: dict, method: str | None = None
) -> int | None:
    """``segment maps.zarr``: the maps of a model segmented as ``segment --model`` does.

    The model's own defaults (in the maps' pixels at the zoom they were predicted at), its
    whole-cell growth into the ``background`` beside them (a maps group's, or ``predict``'s
    ``_background.tif``), a stack's 3D settings and, for a ``(T, Z, Y, X)`` time-lapse of
    stacks, each stack alone then its objects linked over time:
    :func:`napari_hemd.model_maps.model_maps_workflow`. ``attrs``: the maps' record (a maps
    group's attributes, a TIFF's description); ``others``: the maps beside the foreground
    (:data:`EXTRA_MAPS`); ``method``: the one asked, else the model's own (an affinity model's
    Mutex watershed where its affinities or instances are there). None: the model cannot be
    loaded (said; the maps are then segmented as plain maps).
    """
    from napari_hemd.cli._segment import _mutex_params
    from napari_hemd.core.segment import HEMD_ONLY
    from napari_hemd.image_segmentation import model_method, whole_cell_growth
    from napari_hemd.model_maps import model_maps_workflow
    from napari_hemd.models.registry import load_model
    from napari_hemd.workflows import run_workflow

    attrs = dict(attrs)
    try:
        loaded = load_model(attrs["model"])
    except Exception as e:
        log.log(
            NOTE, "INPUT: maps of %s, which cannot be loaded (%s): segmented as plain maps "
            "(no whole-cell growth, no model defaults)", attrs["model"], e,
        )  # fmt: skip
        return None
    t0 = time.perf_counter()
    args.method = method or model_method(loaded)
    if method is None and args.method == "mutex" and not {"affinities", "instances"} & set(others):
        log.log(
            NOTE, "INPUT holds %s's foreground alone: segmented with H-EMD, not its Mutex "
            "watershed (predict with --outputs foreground,affinities for it)", attrs["model"],
        )  # fmt: skip
        args.method = "hemd"
    hp = {**hemd_params(args), "link": bool(args.link), "min_volume": args.min_volume or 0}
    if args.method == "mutex":  # the affinity model's instances: none of the maps' thresholds
        hp = _mutex_params(hp)
    if args.method != "hemd":
        for k in HEMD_ONLY:
            hp.pop(k, None)
    scale = float(attrs.get("scale") or 1.0)
    maps = {"foreground": prob}
    if args.method == "mutex":
        maps.update({k: others[k] for k in ("affinities", "instances") if k in others})
    if args.method == "maxvalue" and "boundary" in others:
        maps["boundary"] = others["boundary"]
    background = others.get("background")
    if whole_cell_growth(loaded, scale) and background is None:
        log.log(
            NOTE, "INPUT holds no background map: instances not grown to whole cells (predict "
            "with --outputs foreground,background, or segment the raw movie with --model %s)",
            attrs["model"],
        )  # fmt: skip
    elif background is not None:
        maps["background"] = background
    with warnings.catch_warnings(), Progress(disabled=args.no_progress) as bar:
        warnings.simplefilter("always")
        seg = run_workflow(
            model_maps_workflow(
                maps,
                loaded,
                args.method,
                scale=scale,
                planes=int(attrs.get("planes") or 1),
                name=str(attrs["model"]),
                offsets=attrs.get("offsets"),
                exclude_border=args.exclude_border,
                **hp,
            ),
            bar,
        )
    labels, grow = seg.labels, seg.grow
    # as segment --model records them, with how the maps were made
    write_segmentation(args, seg, {k: attrs[k] for k in ("tta", "z_scale") if k in attrs})
    how = f", whole cells (grown {grow} px)" if grow else ""
    print(
        f"{args.method} on maps of {attrs['model']}: {segmented(seg)}, {len(np.unique(labels)) - 1} "
        f"labels{lineage_summary(seg.tracks, linked_over_time(seg))}{how}, "
        f"{time.perf_counter() - t0:.2f} s -> {args.output}",
        file=sys.stderr,
    )
    return 0
