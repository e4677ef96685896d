"""Calibrate a model file on its own training frames and store the choice in it.

A U-Net's test-time flips and whole-cell growth threshold, an affinity network's Mutex-watershed bias
(:func:`napari_hemd.models.calibrate_model`). ``napari-hemd train`` does this at the end of every
training; this script does it for a model file trained before (the shipped models)::

    PYTHONPATH=src python scripts/calibrate.py src/napari_hemd/models/weights/nuclei-fluo.pt \\
        --data ../shared/data --frames 6

The frames are the model's recorded ``training.train_samples`` (never its held-out block), up to
``--frames`` evenly spaced per data folder, found under ``--data`` by the folders' names.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from napari_hemd.models import calibrate_model, load_model_file, load_samples
from napari_hemd.models.training import _score_subset
from napari_hemd.models.weights import rewrite_model_file


def training_frames(model, data_root: Path, per_folder: int) -> list:
    """Up to ``per_folder`` evenly spaced training frames of every data folder of ``model``."""
    names = set(model.metadata["training"]["train_samples"])
    found = []
    for folder in model.metadata["training"]["data"]:
        parts = Path(folder).parts
        for start in range(len(parts)):  # the folder's path below the data root
            candidate = data_root.joinpath(*parts[start:])
            if candidate.exists():
                break
        else:
            raise FileNotFoundError(f"{folder} not found under {data_root}")
        found += [s for s in load_samples(candidate) if s.name in names]
    if not found:
        raise ValueError(f"none of the model's training frames found under {data_root}")
    return _score_subset(found, per_folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--frames", type=int, default=6, help="training frames per folder (6)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dry-run", action="store_true", help="print, do not store")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    model = load_model_file(args.model)
    frames = training_frames(model, args.data, args.frames)
    cal = calibrate_model(model, frames)
    for t, per in cal["scores"].items():
        mean = np.mean([(v["F1"] + v["AJI"]) / 2 for v in per.values()])
        print(f"{t:>5}: {json.dumps(per)}  mean (F1+AJI)/2 {mean:.4f}")
    print(f"chosen {cal['parameter']} {cal['value']} on {len(frames)} training frames")
    flips = model.metadata.get("tta_calibration")
    if flips:  # a U-Net: its test-time flips, each with its best growth threshold
        for v, t in flips["scores"].items():
            print(
                f"tta {v}: best (F1+AJI)/2 {t['score']:.4f} at growth threshold {t['grow_threshold']}"
            )
        print(f"chosen tta {flips['value']} (more views must gain >= {flips['margin']})")
    if not args.dry_run:
        rewrite_model_file(model, args.model)
        print(f"stored in {args.model}")


if __name__ == "__main__":
    main()
