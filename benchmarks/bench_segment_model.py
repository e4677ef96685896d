"""``segment --model`` wall time against a bare forward pass of the same network, same frames.

Baseline: ``net(x)`` under ``torch.inference_mode()`` on every frame, padded only to the network's
divisor (what any tool must at least spend). Measured in the same run:

- ``api``: :func:`napari_hemd.segment_image` (normalisation, padding, prediction, H-EMD over the
  movie, whole-cell growth);
- ``cli``: the whole command ``napari-hemd segment MOVIE.tif --model M -o OUT.tif`` in a fresh
  process (Python start-up, imports, reading the TIFF, writing the labels included);
- ``old tiles``: prediction alone with the former defaults (512 px tiles, 64 px halo).

Frames: the first ``--frames`` of Fluo-N2DL-HeLa 01 (700 x 1100) when ``../shared/data`` is there,
else generated nuclei frames of that size. Prints times and ratios to the bare forward pass.

    PYTHONPATH=src python benchmarks/bench_segment_model.py --frames 16 --threads 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_hemd import segment_image
from napari_hemd.models import load_model, predict

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def frames(n: int) -> np.ndarray:
    seq = DATA / "ctc" / "Fluo-N2DL-HeLa" / "01"
    if seq.is_dir():
        return np.stack([tifffile.imread(seq / f"t{t:03d}.tif") for t in range(n)])
    from napari_hemd.data.synthetic import nuclei_video

    return nuclei_video(n_frames=n, shape=(700, 1100), n_cells=60)["image"]


def bare_forward(model, movie: np.ndarray) -> float:
    d = model.network.divisor
    h, w = movie.shape[1:]
    ph, pw = -(-h // d) * d, -(-w // d) * d
    net = model.network.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for f in movie:
            x = np.zeros((ph, pw), np.float32)
            x[:h, :w] = f
            net(torch.from_numpy(x)[None, None])
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="nuclei-fluo")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    movie = frames(args.frames)
    model = load_model(args.model)
    rows: dict[str, list[float]] = {"bare forward": [], "api": [], "cli": [], "old tiles": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "movie.tif"
        tifffile.imwrite(path, movie, photometric="minisblack")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
        for r in range(args.repeat):
            rows["bare forward"].append(bare_forward(model, movie))
            t0 = time.perf_counter()
            segment_image(movie, model)
            rows["api"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            predict(model, movie, tile=512, halo=64)
            rows["old tiles"].append(time.perf_counter() - t0)
            out = Path(tmp) / f"labels{r}.tif"
            cmd = [sys.executable, "-m", "napari_hemd.cli", "segment", str(path), "--model"]
            cmd += [args.model, "-o", str(out), "--threads", str(args.threads), "--no-progress"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            rows["cli"].append(time.perf_counter() - t0)
    base = min(rows["bare forward"])
    print(
        f"{args.model}, {args.frames} frames of {movie.shape[1]}x{movie.shape[2]}, "
        f"{args.threads} thread(s), best of {args.repeat}"
    )
    for name, ts in rows.items():
        print(f"{name:14s} {min(ts):8.2f} s   {min(ts) / base:5.2f}x bare forward")


if __name__ == "__main__":
    main()
