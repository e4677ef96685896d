"""``napari-hemd demo -o OUT``: the main job on bundled data, end to end.

Generates the package's sample video (moving, touching, dividing nuclei) and segments it with the
shipped ``nuclei-fluo`` model through the same implementation as ``napari-hemd segment IMAGE
--model`` (prediction, H-EMD with linking, whole-cell masks; :mod:`napari_hemd.image_segmentation`)
when torch and the model are available (else H-EMD on the sample's own probability map, said so),
writes a CTC result folder and prints its accuracy against the sample's exact labels.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the bundled sample video",
        description="Segment the bundled sample video (moving, touching, dividing nuclei) with the "
        "shipped model, H-EMD and linking, exactly as segment --model does; write image.tif, "
        "probability.tif and masks/ (CTC) to OUT and print the accuracy against the exact labels.",
    )
    p.add_argument("-o", "--output", default="hemd-demo", help="output folder (hemd-demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--model", default="nuclei-fluo", help="shipped model name or file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``demo``."""
    import numpy as np
    import tifffile

    from napari_hemd._atomic import atomic_path
    from napari_hemd.core.segment import hemd
    from napari_hemd.data.synthetic import SAMPLE_ZOOM, nuclei_video
    from napari_hemd.io import write_labels

    out = Path(args.output)
    sample = nuclei_video(zoom=SAMPLE_ZOOM)  # nuclei the size nuclei-fluo learned
    res = _segment(sample["image"], args.model)
    if res is not None:
        labels, tracks, prob = res.labels, res.tracks, res.maps["foreground"]
        # the H-EMD settings it resolved (tau, delta, ...), then the run's (model, grow, tta ...)
        params = {**(res.result.params if res.result is not None else {}), **res.params}
        source = f"model {args.model!r} (whole cells, grown {res.grow} px)"
    else:
        prob = sample["prob"]
        source = "the sample's own probability map (no model available)"
        hres = hemd(prob, link=True)
        labels, tracks, params = hres.labels, hres.tracks, hres.params
    with atomic_path(out, overwrite=args.overwrite) as tmp:
        tmp.mkdir()
        gray = {"photometric": "minisblack"}  # a stack of 3 or 4 frames is not an RGB image
        tifffile.imwrite(tmp / "image.tif", sample["image"], **gray)
        tifffile.imwrite(tmp / "probability.tif", np.asarray(prob, np.float32), **gray)
        meta = {"source": "napari-hemd demo (the bundled sample video)", **params}
        write_labels(labels, tmp / "masks", tracks=tracks, metadata=meta)
    score = _f1(sample["labels"], labels)
    print(
        f"demo: {prob.shape[0]} frames, H-EMD on {source}; {len(tracks)} tracks; F1@0.5 vs "
        f"exact labels = {score:.3f} (synthetic nuclei, some drawn overlapping their neighbours; "
        f"the models' scores on real held-out movies: napari-hemd models).\n"
        f"Masks: {out}/masks/ (CTC: maskTTT.tif + res_track.txt). "
        f"Open them in napari: napari {out}/image.tif {out}/masks",
        file=sys.stderr,
    )
    return 0


def _segment(image, model: str):
    try:
        from napari_hemd.image_segmentation import segment_image
        from napari_hemd.models import load_model  # torch-only part, optional
    except ImportError as exc:
        log.warning("no model prediction (%s); using the sample probability map", exc)
        return None
    try:  # checked here, to fall back; segment_image loads it by name, so the name is recorded
        load_model(model, name="--model")
    except (FileNotFoundError, KeyError, ValueError) as exc:
        log.warning("model %r unavailable (%s); using the sample probability map", model, exc)
        return None
    return segment_image(image, model, "hemd", link=True)


def _f1(gt, pred) -> float:
    from napari_hemd.core.metrics import evaluate_sequence

    return float(evaluate_sequence(gt, pred)["F1"])
