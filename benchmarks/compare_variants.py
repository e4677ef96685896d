"""H-EMD (paper / refined) vs baselines on shipped-model predictions of held-out frames.

    python benchmarks/compare_variants.py [--data ../shared/data]

For each CTC U-Net model, the contiguous held-out frames of its training sequence are predicted, every
method runs on the *whole held-out sequence* (H-EMD matches across its frames), instances are grown
into the boundary class as in ``napari_hemd.models.evaluation.instances_from_maps`` (same for every
method), and scores come from ``napari_hemd.core.metrics.evaluate_sequence``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile
from skimage.segmentation import expand_labels

import napari_hemd as nh
from napari_hemd.models import load_model, predict

# model, sequence folder, reference masks, frames held out of the 2026-12-03 models (the models
# shipped since trained on the HeLa and PSC ones: their held-out blocks are in their metadata)
CASES = [
    ("nuclei-fluo", "Fluo-N2DH-SIM+/02", "02_GT/SEG", range(40, 50)),
    ("nuclei-fluo", "Fluo-N2DL-HeLa/01", "01_ST/SEG", range(24, 30)),
    ("cells-phc", "PhC-C2DL-PSC/01", "01_ST/SEG", range(40, 50)),
    ("cells-dic", "DIC-C2DH-HeLa/01", "01_ST/SEG", range(30, 42)),
]
METHODS = [
    ("threshold", {"method": "threshold"}),
    ("watershed", {"method": "watershed"}),
    ("nms", {"method": "nms"}),
    ("hemd paper", {"method": "hemd", "variant": "paper"}),
    ("hemd refined, seeds off, growth 1", {"method": "hemd", "seed_min_peak": 0, "lone_growth": 1}),
    ("hemd refined, growth 1", {"method": "hemd", "lone_growth": 1.0}),
    ("hemd refined (default: seeds >= 0.9, growth 1.5)", {"method": "hemd"}),
    ("hemd refined, growth 2", {"method": "hemd", "lone_growth": 2.0}),
    ("hemd refined, growth 3", {"method": "hemd", "lone_growth": 3.0}),
]


def grown_labels(maps: dict, min_size: int, **kw) -> tuple[np.ndarray, float]:
    """Segment the foreground maps, grow instances 3 px into the boundary class; s/frame."""
    t0 = time.perf_counter()
    lab = nh.segment(maps["foreground"], min_size=min_size, **kw)
    dt = (time.perf_counter() - t0) / len(lab)
    region = maps["background"] < 0.5
    lab = np.stack([np.where(r, expand_labels(f, 3), 0) for f, r in zip(lab, region, strict=True)])
    return lab, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    ap.add_argument("--min-size", type=int, default=20)
    args = ap.parse_args()
    print("| model | held-out frames | method | F1 | AJI | SEG | s/frame |")
    print("|---|---|---|---|---|---|---|")
    for name, seq, ref, frames in CASES:
        folder = args.data / "ctc" / seq
        raw = np.stack([tifffile.imread(folder / f"t{t:03d}.tif") for t in frames])
        gt = np.stack(
            [tifffile.imread(folder.parent / ref / f"man_seg{t:03d}.tif") for t in frames]
        )
        maps = predict(
            load_model(name), raw, outputs=("foreground", "boundary", "background"), tta=1
        )
        for label, kw in METHODS:
            lab, dt = grown_labels(maps, args.min_size, **kw)
            m = nh.evaluate_sequence(gt, lab)
            print(
                f"| {name} | {seq} {frames.start}-{frames.stop - 1} | {label} | {m['F1']:.3f} | "
                f"{m['AJI']:.3f} | {m['SEG']:.3f} | {dt:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
