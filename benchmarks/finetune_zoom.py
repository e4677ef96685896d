"""Fine-tuning on cells of another size: at the zoom the movie is segmented at, or at its own size.

A block of PhC-C2DL-PSC 01 (a crop of six frames with their silver-truth masks) is resized by
``--zoom`` (linear; masks nearest neighbour), as if imaged at ``1 / zoom`` times the pixel size:
cells ``zoom`` times larger than ``cells-phc`` learned. A user segments it with
``--scale 1 / zoom`` (or ``auto``), corrects three frames, checks a fourth, and fine-tunes.
``finetune`` runs twice on the same frames and budget: at ``scale = 1 / zoom`` (what the
Fine-tune widget does since the labels carry that zoom) and at ``scale = 1`` (the frames at their
own size: what it did before). Prints F1 / AJI / SEG (H-EMD, whole cells, as Segment gives) on
the held-out checked frame and on two frames not used at all, before and after, each at the
zoom the model is used at. Needs ``../shared/data``.

    PYTHONPATH=src python benchmarks/finetune_zoom.py --zoom 2.5 --minutes 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage as ndi

from napari_hemd.finetune import finetune, score_frames
from napari_hemd.models import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ctc" / "PhC-C2DL-PSC"
FRAMES = (80, 84, 88, 92, 96, 100)  # three trained on, one held out, two unseen
CROP = np.s_[100:300, 150:390]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoom", type=float, default=2.5)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    z = args.zoom
    image = np.stack(
        [ndi.zoom(tifffile.imread(DATA / "01" / f"t{t:03d}.tif")[CROP].astype(np.float32), z, order=1)
         for t in FRAMES]
    )  # fmt: skip
    masks = DATA / "01_ST" / "SEG"
    truth = np.stack(
        [ndi.zoom(tifffile.imread(masks / f"man_seg{t:03d}.tif")[CROP], z, order=0) for t in FRAMES]
    )
    base = load_model("cells-phc")
    print(f"PSC 01 frames {FRAMES}, crop {CROP}, zoomed {z:g}: {image.shape}")
    print("| fine-tuned at | held-out before | after | unseen before | after | steps |")
    print("|---|---|---|---|---|---|")
    for scale in (1 / z, 1.0):
        out = Path(tempfile.mkdtemp()) / "tuned.pt"
        t0 = time.perf_counter()
        res = finetune(image, truth, [0, 1, 2, 3], base, output=out, minutes=args.minutes,
                       scale=scale, threads=args.threads)  # fmt: skip
        before = score_frames(base, image, truth, [4, 5], scale)
        after = score_frames(load_model(out), image, truth, [4, 5], scale)

        def fmt(s):
            return f"{s['F1']:.3f} / {s['AJI']:.3f} / {s['SEG']:.3f}"

        print(
            f"| zoom {scale:.2g} | {fmt(res.before)} | {fmt(res.after)} | {fmt(before)} | "
            f"{fmt(after)} | {res.steps} ({time.perf_counter() - t0:.0f} s) |",
            flush=True,
        )
        print(
            json.dumps({"scale": scale, "held": [res.before, res.after], "unseen": [before, after]})
        )


if __name__ == "__main__":
    main()
