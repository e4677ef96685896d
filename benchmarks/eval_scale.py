"""Masks of movies imaged at another pixel size, with and without ``scale``.

A held-out block of a training sequence's neighbour frames (a crop, so that the largest zoom
stays quick), resized by ``zoom`` (linear; the reference masks by nearest neighbour) as if it had
been imaged at ``1 / zoom`` times the pixel size; then ``segment_image`` with the shipped model as
a user would run it (``napari-hemd segment --model``), without and with ``scale = 1 / zoom``.
Prints F1 / AJI / SEG (H-EMD, whole cells) against the zoomed reference, and the model's own
score on the original frames. Needs ``../shared/data``.

    PYTHONPATH=src python benchmarks/eval_scale.py --zooms 0.5,0.7,1.5,2,2.5 --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage as ndi

from napari_hemd import segment_image
from napari_hemd.core.metrics import evaluate_sequence

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ctc"

#: (model, sequence, reference, frames, crop): blocks the models were not trained on.
BLOCKS = {
    "HeLa": ("nuclei-fluo", "Fluo-N2DL-HeLa/01", "ST", range(76, 80), np.s_[100:400, 200:600]),
    "PSC": ("cells-phc", "PhC-C2DL-PSC/01", "ST", range(90, 93), np.s_[100:340, 150:470]),
}


def load(seq: str, ref: str, frames, crop):
    folder = DATA / seq
    image = np.stack([tifffile.imread(folder / f"t{t:03d}.tif")[crop] for t in frames])
    masks = folder.parent / f"{folder.name}_{ref}" / "SEG"
    truth = np.stack([tifffile.imread(masks / f"man_seg{t:03d}.tif")[crop] for t in frames])
    return image.astype(np.float32), truth


def score(truth, labels) -> str:
    e = evaluate_sequence(truth, labels)
    return f"{e['F1']:.3f} / {e['AJI']:.3f} / {e['SEG']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zooms", default="0.5,0.7,1.5,2,2.5")
    ap.add_argument("--blocks", default=",".join(BLOCKS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    zooms = [float(z) for z in args.zooms.split(",")]
    print("| block | model | pixel size | without `--scale` | with `--scale 1/zoom` |")
    print("|---|---|---|---|---|")
    for name in args.blocks.split(","):
        model, seq, ref, frames, crop = BLOCKS[name]
        image, truth = load(seq, ref, frames, crop)
        own = score(truth, segment_image(image, model, tta=1).labels)
        label = f"{seq} t{frames[0]:03d}-t{frames[-1]:03d} ({ref})"
        print(f"| {label} | {model} | as trained | {own} | |", flush=True)
        for z in zooms:
            big = ndi.zoom(image, (1, z, z), order=1)
            ref_z = ndi.zoom(truth, (1, z, z), order=0)
            plain = score(ref_z, segment_image(big, model, tta=1).labels)
            scaled = score(ref_z, segment_image(big, model, scale=1 / z, tta=1).labels)
            print(
                f"| | | x{z:g} (objects {z:g} times as large): `--scale {1 / z:.3g}` | {plain} | "
                f"{scaled} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
