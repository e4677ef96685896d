"""How much a few corrected frames and a few CPU minutes of fine-tuning buy (issue 12).

For a data set the base model was **not** trained on, fine-tune it (``napari_hemd.finetune``, the
recipe the Fine-tune widget uses) on 1, 3 and 5 "corrected" frames (the reference masks stand in
for a user's corrections) with budgets of 1, 2 and 5 minutes, then score base and fine-tuned models
on *other* frames, never checked (F1 / AJI / SEG of H-EMD instances, each frame segmented as a
single image with the model's defaults and whole-cell growth, what Segment gives). The baseline is
the base model in the same run; deltas are printed.

Data sets (``--dataset``):

- ``sim`` / ``hela``: ``nuclei-fluo`` on the held-out block of a sequence it was trained on the
  first frames of (Fluo-N2DH-SIM+ 02 t40-49, its dimmest stretch, gold truth; Fluo-N2DL-HeLa 01
  t73-91, silver truth): corrected frames from the block's first part, scored on its last
  frames (a contiguous block never checked).
- ``nuclei3d``: ``nuclei-fluo`` (2D fluorescent nuclei) on the slices of
  ``volumes/nuclei3d_1135.h5`` (plant ovule nuclei); corrected slices from z 5-65, scored on the
  slab z 70-99.
- ``dic``: ``cells-phc`` (phase contrast) on DIC-C2DH-HeLa 01; corrected frames from t 0-20,
  scored on t 42-83 (every second frame).

Usage::

    PYTHONPATH=src python benchmarks/finetune.py --data ../shared/data --dataset nuclei3d
    PYTHONPATH=src python benchmarks/finetune.py --data ../shared/data --dataset nuclei3d \\
        --recipes            # 3 frames, 2 min: learning rates, frozen encoder, augmentation
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

SETS = {
    "sim": {
        "base": "nuclei-fluo",
        "seq": "Fluo-N2DH-SIM+/02",
        "masks": "GT",
        "checked": {1: [42], 3: [40, 42, 44], 5: [40, 41, 42, 43, 44]},
        "eval": [45, 46, 47, 48, 49],
    },
    "hela": {
        "base": "nuclei-fluo",
        "seq": "Fluo-N2DL-HeLa/01",
        "masks": "ST",
        "checked": {1: [76], 3: [73, 76, 79], 5: [73, 75, 77, 79, 81]},
        "eval": list(range(84, 92)),
    },
    "nuclei3d": {
        "base": "nuclei-fluo",
        "checked": {1: [35], 3: [15, 35, 55], 5: [5, 20, 35, 50, 65]},
        "eval": list(range(70, 100)),
    },
    "dic": {
        "base": "cells-phc",
        "seq": "DIC-C2DH-HeLa/01",
        "masks": "ST",
        "checked": {1: [10], 3: [0, 10, 20], 5: [0, 5, 10, 15, 20]},
        "eval": list(range(42, 84, 2)),
    },
}


def load(dataset: str, data: Path) -> tuple[np.ndarray, np.ndarray]:
    if dataset == "nuclei3d":
        import h5py

        with h5py.File(data / "volumes" / "nuclei3d_1135.h5", "r") as f:
            return np.asarray(f["raw"]), np.asarray(f["label"])
    import tifffile

    spec = SETS[dataset]
    seq = data / "ctc" / spec["seq"]
    frames = sorted({*spec["eval"], *(t for ts in spec["checked"].values() for t in ts)})
    masks = seq.parent / f"{seq.name}_{spec['masks']}" / "SEG"
    first = tifffile.imread(seq / f"t{frames[0]:03d}.tif")
    image = np.zeros((max(frames) + 1, *first.shape), first.dtype)
    labels = np.zeros(image.shape, np.int32)
    for t in frames:  # only the frames used (the others stay empty)
        image[t] = tifffile.imread(seq / f"t{t:03d}.tif")
        labels[t] = tifffile.imread(masks / f"man_seg{t:03d}.tif")
    return image, labels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--dataset", choices=sorted(SETS), default="nuclei3d")
    p.add_argument("--frames", default="1,3,5")
    p.add_argument("--minutes", default="1,2,5")
    p.add_argument("--recipes", action="store_true", help="compare recipes (3 frames, 2 min)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--cli",
        action="store_true",
        help="fine-tune through `napari-hemd train --init ... --max-minutes` on an images/ + "
        "labels/ folder of the corrected frames (the command line path) instead of the API",
    )
    p.add_argument("--json", type=Path, default=None, help="append results to this JSON file")
    args = p.parse_args(argv)

    import torch

    from napari_hemd.finetune import RECIPE, finetune, score_frames

    torch.set_num_threads(args.threads)
    spec = SETS[args.dataset]
    image, labels = load(args.dataset, args.data)
    t0 = time.perf_counter()
    base = score_frames(spec["base"], image, labels, spec["eval"])
    print(f"{args.dataset}: base {spec['base']} on {len(spec['eval'])} other frames: {base} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    if args.recipes:
        runs = [
            ("default", RECIPE),
            ("batch-norm statistics re-estimated", replace(RECIPE, freeze_bn=False)),
            ("lr 5e-4", replace(RECIPE, lr=5e-4)),
            ("lr 1e-4", replace(RECIPE, lr=1e-4)),
            ("frozen encoder", replace(RECIPE, freeze="encoder")),
            ("basic augmentation", replace(RECIPE, augment="basic")),
        ]
        grid = [(3, 2.0, name, r) for name, r in runs]
    else:
        grid = [
            (int(k), float(m), "default", RECIPE)
            for k in args.frames.split(",")
            for m in args.minutes.split(",")
        ]
    rows = []
    print("| frames | minutes | recipe | steps | held-out frame before -> after (AJI) | "
          "other frames F1 | AJI | SEG | dF1 | dAJI |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k, minutes, name, recipe in grid:
        if args.cli:
            rows.append(_via_cli(args, spec, image, labels, k, minutes, base))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = finetune(
                image,
                labels,
                spec["checked"][k],
                spec["base"],
                output=Path(tmp) / "tuned.pt",
                minutes=minutes,
                recipe=recipe,
                threads=args.threads,
            )
            wall = time.perf_counter() - t0
            after = score_frames(res.path, image, labels, spec["eval"])
        held = (
            f"{res.before['AJI']:.3f} -> {res.after['AJI']:.3f}"
            if res.held_out is not None
            else "-"
        )
        row = {
            "dataset": args.dataset,
            "base": spec["base"],
            "frames": k,
            "checked": spec["checked"][k],
            "minutes": minutes,
            "wall_seconds": round(wall, 1),
            "recipe": name,
            "steps": res.steps,
            "held_out": res.held_out,
            "held_out_before": res.before,
            "held_out_after": res.after,
            "before": base,
            "after": after,
        }
        rows.append(row)
        print(
            f"| {k} | {minutes:g} | {name} | {res.steps} | {held} | {after['F1']:.3f} | "
            f"{after['AJI']:.3f} | {after['SEG']:.3f} | {after['F1'] - base['F1']:+.3f} | "
            f"{after['AJI'] - base['AJI']:+.3f} |",
            flush=True,
        )
    if args.json is not None:
        old = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(old + rows, indent=1))
    return 0


def _via_cli(args, spec, image, labels, k, minutes, base) -> dict:
    """One fine-tune through the command line: corrected frames as images/ + labels/ TIFFs."""
    import tifffile

    from napari_hemd.cli import main as cli
    from napari_hemd.finetune import score_frames
    from napari_hemd.models import load_model_file

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "corrected"
        (data / "images").mkdir(parents=True)
        (data / "labels").mkdir()
        for t in spec["checked"][k]:
            tifffile.imwrite(data / "images" / f"t{t:03d}.tif", image[t])
            tifffile.imwrite(data / "labels" / f"t{t:03d}.tif", labels[t].astype(np.uint16))
        out = Path(tmp) / "tuned.pt"
        t0 = time.perf_counter()
        argv = ["train", "--init", spec["base"], "--data", str(data), "-o", str(out)]
        cli([*argv, "--max-minutes", str(minutes), "--threads", str(args.threads), "--no-progress"])
        wall = time.perf_counter() - t0
        steps = load_model_file(out).metadata["training"]["steps_done"]
        after = score_frames(out, image, labels, spec["eval"])
    print(
        f"| {k} | {minutes:g} | CLI train --init | {steps} | - | {after['F1']:.3f} | "
        f"{after['AJI']:.3f} | {after['SEG']:.3f} | {after['F1'] - base['F1']:+.3f} | "
        f"{after['AJI'] - base['AJI']:+.3f} |",
        flush=True,
    )
    return {"dataset": args.dataset, "base": spec["base"], "frames": k, "minutes": minutes,
            "wall_seconds": round(wall, 1), "recipe": "CLI train --init", "steps": steps,
            "before": base, "after": after}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
