"""Synthetic probability maps from reference masks, for `napari-hemd compare` before models exist.

These are NOT model outputs. Each frame's foreground map is
``napari_hemd.data.synthetic.probability_from_labels`` of the reference labels (distance-to-
boundary profile, dips where cells touch, blur, spatially correlated noise; seed = frame index);
the boundary map is the blurred object edges plus independent noise.

Usage::

    python benchmarks/synthetic_maps.py REFERENCE_FOLDER OUT_FOLDER [--frames N]

writes ``OUT_FOLDER/prob.tif``, ``OUT_FOLDER/boundary.tif`` (float32, (T, Y, X)) and
``OUT_FOLDER/reference.tif`` (the labels the maps were made from, frames 0..T-1).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from napari_hemd.data.synthetic import probability_from_labels
from napari_hemd.io.ctc import read_ctc_labels


def boundary_from_labels(labels: np.ndarray, *, rng: int = 0, noise: float = 0.05) -> np.ndarray:
    """Blurred object edges (between cells and at the background) with correlated noise."""
    edges = np.zeros(labels.shape, bool)
    for ax in range(labels.ndim):
        a, e = np.swapaxes(labels, 0, ax), np.swapaxes(edges, 0, ax)
        diff = a[1:] != a[:-1]
        e[1:] |= diff
        e[:-1] |= diff
    b = ndi.gaussian_filter(edges.astype(np.float32), 1.0) * 2.0
    n = ndi.gaussian_filter(np.random.default_rng(rng).normal(size=labels.shape), 2.0)
    n *= noise / max(float(n.std()), 1e-9)
    return np.clip(b + n, 0, 1).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference", type=Path, help="CTC SEG folder with a mask on every frame")
    p.add_argument("out", type=Path)
    p.add_argument("--frames", type=int, default=None, help="first N frames only")
    args = p.parse_args()
    frames = read_ctc_labels(args.reference)
    ts = sorted(frames)
    if ts != list(range(len(ts))):
        raise SystemExit(f"{args.reference}: needs a mask on every frame; has frames {ts}")
    ts = ts[: args.frames] if args.frames else ts
    ref = np.stack([frames[t] for t in ts])
    prob = np.stack([probability_from_labels(ref[t], rng=t) for t in ts])
    boundary = np.stack([boundary_from_labels(ref[t], rng=10_000 + t) for t in ts])
    args.out.mkdir(parents=True, exist_ok=True)
    kw = {"photometric": "minisblack", "compression": "zlib"}
    tifffile.imwrite(args.out / "prob.tif", prob, **kw)
    tifffile.imwrite(args.out / "boundary.tif", boundary, **kw)
    tifffile.imwrite(args.out / "reference.tif", ref.astype(np.uint16), **kw)


if __name__ == "__main__":
    main()
