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


def run_on_model_maps(args: argparse.Namespace, prob, group) -> int | None:
    """``segment maps.zarr``: the maps of a model segmented as ``segment --model`` does.

    The model's own defaults (in the maps' pixels at the zoom they were predicted at), its
    whole-cell growth into the group's ``background``, a stack's 3D settings and, for a
    ``(T, Z, Y, X)`` time-lapse of stacks, each stack alone then its objects linked over time:
    :func:`napari_hemd.model_maps.model_maps_workflow`. None: the model cannot be loaded (said;
    the maps are then segmented as plain maps).
    """
    from napari_hemd.core.segment import HEMD_ONLY
    from napari_hemd.image_segmentation import whole_cell_growth
    from napari_hemd.model_maps import model_maps_workflow
    from napari_hemd.models.registry import load_model
    from napari_hemd.workflows import run_workflow

    attrs = dict(group.attrs)
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
    if whole_cell_growth(loaded, scale) and "background" not in group:
        log.log(
            NOTE, "INPUT holds no background map: instances not grown to whole cells (predict "
            "with --outputs foreground,background, or segment the raw movie with --model %s)",
            attrs["model"],
        )  # fmt: skip
    elif "background" in group:
        maps["background"] = group["background"]
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
