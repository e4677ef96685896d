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
from napari_hemd.cli._segment import _channel_meta, _first_frame, hemd_params

log = logging.getLogger(__name__)


def run_on_model_maps(args: argparse.Namespace, prob, group) -> int | None:
    """``segment maps.zarr``: the maps of a model segmented as ``segment --model`` does.

    The model's own defaults (in the maps' pixels at the zoom they were predicted at), its
    whole-cell growth into the group's ``background`` and, for one stack predicted on three
    planes, its 3D fragment size; through the same
    :func:`napari_hemd.image_segmentation.labels_from_maps_workflow`. None: the model cannot
    be loaded (said; the maps are then segmented as plain maps).
    """
    from napari_hemd.core.segment import HEMD_ONLY
    from napari_hemd.image_segmentation import (
        labels_from_maps_workflow,
        scaled_defaults,
        whole_cell_growth,
        with_model_defaults,
    )
    from napari_hemd.io import write_labels
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
    scale = float(attrs.get("scale") or 1.0)
    volume = attrs.get("planes") == 3 and prob.ndim == 3
    hp = {**hemd_params(args), "link": bool(args.link)}
    if args.method != "hemd":
        for k in HEMD_ONLY:
            hp.pop(k, None)
    defaults = scaled_defaults(loaded.metadata.get("segment_defaults", {}), scale)
    params = with_model_defaults(defaults, hp)
    grow = whole_cell_growth(loaded, scale)
    if grow and "background" not in group:
        log.log(
            NOTE, "INPUT holds no background map: instances not grown to whole cells (predict "
            "with --outputs foreground,background, or segment the raw movie with --model %s)",
            attrs["model"],
        )  # fmt: skip
        grow = 0
    flat = prob.ndim == 2
    maps = {"foreground": np.asarray(prob, dtype=np.float32)}
    if grow:
        maps["background"] = np.asarray(group["background"], dtype=np.float32)
    if flat:
        maps = {k: v[None] for k, v in maps.items()}
    with warnings.catch_warnings(), Progress(disabled=args.no_progress) as bar:
        warnings.simplefilter("always")
        gen = labels_from_maps_workflow(
            maps, args.method, grow, exclude_border=args.exclude_border, volume=volume, **params
        )
        labels, res, tracks = run_workflow(gen, bar)
    meta = {"source": str(args.prob), **_channel_meta(args), **params, "method": args.method}
    meta.update(model=str(attrs["model"]), grow=int(grow), scale=scale)
    if volume:
        meta["planes"] = 3
    if res is not None:
        meta.update({k: res.params[k] for k in HEMD_ONLY if k in res.params})
    write_labels(
        labels[0] if flat else labels,
        args.output,
        overwrite=args.overwrite,
        tracks=tracks,
        metadata=meta,
        axes="ZYX" if volume else None,
        first_frame=_first_frame(args, labels.shape[0]),
    )
    what = "one image" if flat else f"{labels.shape[0]} {'slices' if volume else 'frame(s)'}"
    how = f", whole cells (grown {grow} px)" if grow else ""
    print(
        f"{args.method} on maps of {attrs['model']}: {what}, {len(np.unique(labels)) - 1} "
        f"labels{how}, {time.perf_counter() - t0:.2f} s -> {args.output}",
        file=sys.stderr,
    )
    return 0
