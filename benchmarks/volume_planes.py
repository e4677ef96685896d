"""nuclei-3d: slice-by-slice against tri-planar prediction, 3D scores on both slabs.

Usage::

    PYTHONPATH=src python benchmarks/volume_planes.py --data ../shared/data

Each slab of ``volumes/nuclei3d_1135.h5`` (training z000-z069, held-out z070-z099) is predicted
alone, as a user's stack, and segmented with H-EMD and the model's linking defaults (what
``segment STACK --model nuclei-3d`` does), with H-EMD's smallest candidate 0, 20 (the model's
default) and 50 pixels; objects are matched in 3D. Prints F1 / AJI / SEG per prediction
(docs/models.md, "nuclei-3d: three planes").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from napari_hemd.core.metrics import evaluate_sequence
from napari_hemd.image_segmentation import labels_from_maps_workflow, whole_cell_growth
from napari_hemd.models import load_model, predict, predict_volume
from napari_hemd.workflows import run_workflow

SLABS = {"training z000-z069": slice(0, 70), "held-out z070-z099": slice(70, 100)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--model", default="nuclei-3d")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import h5py

    with h5py.File(args.data / "volumes" / "nuclei3d_1135.h5", "r") as f:
        raw, ref = np.asarray(f["raw"]), np.asarray(f["label"])
    model = load_model(args.model)
    params = {**model.metadata.get("segment_defaults", {}), "link": True}
    grow = whole_cell_growth(model)
    outs = ["foreground", "background"]
    variants = {
        "z-slices": lambda v: predict(model, v, outputs=outs, tta=1),
        "3 planes, z weight 1/3": lambda v: predict_volume(
            model, v, outputs=outs, z_weight=1 / 3, tta=1
        ),
        "3 planes, z weight 0.5": lambda v: predict_volume(
            model, v, outputs=outs, z_weight=0.5, tta=1
        ),
        "3 planes, z weight 0.7": lambda v: predict_volume(
            model, v, outputs=outs, z_weight=0.7, tta=1
        ),
    }
    maps = {
        (name, slab): run(raw[sl]) for name, run in variants.items() for slab, sl in SLABS.items()
    }
    print(f"{args.model}: 3D F1 / AJI / SEG (found / reference), H-EMD with {params}")
    for min_size in (0, 20, 50):
        for name in variants:
            row = []
            for slab, sl in SLABS.items():
                wf = labels_from_maps_workflow(
                    maps[(name, slab)], "hemd", grow, **{**params, "min_size": min_size}
                )
                labels, _, _ = run_workflow(wf)
                r = evaluate_sequence({0: ref[sl]}, {0: labels})
                n = r["counts"]
                row.append(
                    f"{slab}: {r['F1']:.3f} / {r['AJI']:.3f} / {r['SEG']:.3f} "
                    f"({n['n_pred']}/{n['n_gt']})"
                )
            print(f"min size {min_size:2d}  {name:24s} " + "   ".join(row), flush=True)


if __name__ == "__main__":
    main()
