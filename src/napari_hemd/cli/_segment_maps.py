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


def tiff_model_maps(path) -> tuple[dict, object] | None:
    """``(attributes, background)`` of a foreground TIFF ``predict`` wrote, else None.

    ``predict -o prob.tif`` records its run (``model``, ``planes``, ``scale`` ...) on the
    first page; with ``--outputs foreground,background`` the background is
    ``prob_background.tif`` beside ``prob_foreground.tif`` (None where there is none).
    """
    from pathlib import Path

    from napari_hemd.io.stacks import recorded_params

    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff") or not p.is_file():
        return None
    recorded = recorded_params(p)
    if not recorded.get("model") or recorded.get("output", "foreground") != "foreground":
        return None
    background = None
    if p.stem.endswith("_foreground"):
        other = p.with_name(f"{p.stem.removesuffix('_foreground')}_background{p.suffix}")
        theirs = recorded_params(other) if other.is_file() else {}
        if theirs.get("model") == recorded["model"] and theirs.get("output") == "background":
            from napari_hemd.io import read_stack

            background = read_stack(other)  # as segment reads the foreground TIFF
    return recorded, background


def run_on_model_maps(args: argparse.Namespace, prob, attrs: dict, background) -> int | None:
    """``segment maps.zarr``: the maps of a model segmented as ``segment --model`` does.

    The model's own defaults (in the maps' pixels at the zoom they were predicted at), its
    whole-cell growth into the ``background`` beside them (a maps group's, or ``predict``'s
    ``_background.tif``), a stack's 3D settings and, for a ``(T, Z, Y, X)`` time-lapse of
    stacks, each stack alone then its objects linked over time:
    :func:`napari_hemd.model_maps.model_maps_workflow`. ``attrs``: the maps' record (a maps
    group's attributes, a TIFF's description). None: the model cannot be loaded (said; the
    maps are then segmented as plain maps).
    """
    from napari_hemd.core.segment import HEMD_ONLY
    from napari_hemd.image_segmentation import whole_cell_growth
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
    hp = {**hemd_params(args), "link": bool(args.link), "min_volume": args.min_volume or 0}
    if args.method != "hemd":
        for k in HEMD_ONLY:
            hp.pop(k, None)
    scale = float(attrs.get("scale") or 1.0)
    maps = {"foreground": prob}
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
