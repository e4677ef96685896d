"""``segment --model`` wall time against a bare forward pass of the same network, same frames.

Baselines: ``net(x)`` under ``torch.inference_mode()`` on every frame, padded only to the
network's divisor, as it is and with the heap kept (below). Measured in the same run:

- ``api``: :func:`napari_hemd.segment_image` with one view (``tta=1``: normalisation, padding,
  prediction, H-EMD over the movie, whole-cell growth);
- ``cli``: the whole command ``napari-hemd segment MOVIE.tif --model M -o OUT.tif --tta 1`` in a
  fresh process (Python start-up, imports, reading the TIFF, writing the labels included): one
  forward pass per frame, like the baselines;
- ``old tiles``: prediction alone with the former defaults (512 px tiles, 64 px halo);
- ``bare forward, heap kept``: the baseline inside :func:`napari_hemd.models._allocator.heap_allocation`
  (what ``predict`` does on a CPU: freed activations stay on the heap, no page faults per layer);
- ``bare forward, worker thread`` (and ``, heap kept``): the baselines in a second thread, where
  the widgets and Dask tasks predict (glibc's per-thread arena still maps blocks above 64 MB);
- ``cli, tuning off``: the whole command with ``NAPARI_HEMD_MALLOC_TUNING=0`` (glibc's defaults);
- ``cli, --tta 4``: the whole command with test-time flips (four forward passes per frame);
- ``cli, model's default (N views)``: the whole command as a user types it (the model's own
  test-time flips, :func:`napari_hemd.models.prediction.model_tta`: 4 views for ``nuclei-fluo``),
  also given against N bare forward passes per frame.

Every row runs in a fresh process (the allocator at glibc's defaults). Ratios are printed
against both baselines: the plain ``net(x)`` loop (what a script that calls the
network spends) and the same loop with the heap kept (the least this machine can spend).

Frames: the first ``--frames`` of Fluo-N2DL-HeLa 01 (700 x 1100) when ``../shared/data`` is there,
else generated nuclei frames of that size. Prints times and ratios to both baselines.

    PYTHONPATH=src python benchmarks/bench_segment_model.py --frames 16 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_hemd import segment_image
from napari_hemd.models import load_model, predict
from napari_hemd.models._allocator import heap_allocation

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


def measure(name: str, model_name: str, movie_path: str, threads: int) -> float:
    """Time one in-process row (called in a fresh process: glibc's allocator at its defaults)."""
    torch.set_num_threads(threads)
    movie = tifffile.imread(movie_path)
    model = load_model(model_name)
    if name == "bare forward":
        return bare_forward(model, movie)
    if name == "bare forward, heap kept":
        with heap_allocation():
            return bare_forward(model, movie)
    if name.startswith("bare forward, worker thread"):  # where the widgets and Dask predict
        box: list[float] = []

        def work() -> None:
            with heap_allocation() if name.endswith("heap kept") else contextlib.nullcontext():
                box.append(bare_forward(model, movie))

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        return box[0]
    t0 = time.perf_counter()
    if name == "api":
        segment_image(movie, model, tta=1)
    elif name == "old tiles":
        predict(model, movie, tile=512, halo=64, tta=1)
    else:
        raise ValueError(f"unknown row {name!r}")
    return time.perf_counter() - t0


IN_PROCESS = (
    "bare forward",
    "bare forward, heap kept",
    "bare forward, worker thread",
    "bare forward, worker thread, heap kept",
    "api",
    "old tiles",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="nuclei-fluo")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--measure", nargs=2, metavar=("ROW", "MOVIE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(measure(args.measure[0], args.model, args.measure[1], args.threads))
        return
    movie = frames(args.frames)
    from napari_hemd.models.prediction import model_tta

    views = model_tta(load_model(args.model))
    default = f"cli, model's default ({views} views)"
    rows: dict[str, list[float]] = {
        name: []
        for name in (
            *IN_PROCESS[:5],
            "cli",
            "cli, tuning off",
            "cli, --tta 4",
            default,
            IN_PROCESS[5],
        )
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "movie.tif"
        tifffile.imwrite(path, movie, photometric="minisblack")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
        this = [sys.executable, __file__, "--model", args.model, "--threads", str(args.threads)]
        # untimed: compiles the H-EMD kernels into numba's cache on disk, which a fresh
        # checkout's first row paid (audit 30: the api row 5.8x with --repeat 1, then 1.0x)
        warm = Path(tmp) / "warm.tif"
        tifffile.imwrite(warm, movie[:2], photometric="minisblack")
        subprocess.run(
            [sys.executable, "-m", "napari_hemd.cli", "segment", str(warm), "--model", args.model,
             "--tta", "1", "--no-progress", "-o", str(Path(tmp) / "warm-labels.tif")],
            check=True, env=env, capture_output=True,
        )  # fmt: skip
        for r in range(args.repeat):
            # every row in a fresh process, so none inherits another's allocator state
            for name in IN_PROCESS:
                res = subprocess.run(
                    [*this, "--measure", name, str(path)],
                    check=True,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                rows[name].append(float(res.stdout.split()[-1]))
            cmd = [sys.executable, "-m", "napari_hemd.cli", "segment", str(path), "--model"]
            cmd += [args.model, "--threads", str(args.threads), "--no-progress", "-o"]
            for i, (name, extra, flags) in enumerate(
                (
                    ("cli", {}, ["--tta", "1"]),
                    ("cli, tuning off", {"NAPARI_HEMD_MALLOC_TUNING": "0"}, ["--tta", "1"]),
                    ("cli, --tta 4", {}, ["--tta", "4"]),  # four views: four forward passes
                    (default, {}, []),  # as a user types it
                )
            ):
                out = Path(tmp) / f"labels{r}-{i}.tif"
                t0 = time.perf_counter()
                subprocess.run(
                    [*cmd, str(out), *flags], check=True, env={**env, **extra}, capture_output=True
                )
                rows[name].append(time.perf_counter() - t0)
    base = min(rows["bare forward"])
    kept = min(rows["bare forward, heap kept"])
    print(
        f"{args.model}, {args.frames} frames of {movie.shape[1]}x{movie.shape[2]}, "
        f"{args.threads} thread(s), best of {args.repeat}"
    )
    for name, ts in rows.items():
        passes = 4 if name == "cli, --tta 4" else views if name == default else 1
        per_pass = (
            f"   {min(ts) / (passes * base):5.2f}x {passes} bare forwards" if passes > 1 else ""
        )
        print(
            f"{name:40s} {min(ts):8.2f} s   {min(ts) / base:5.2f}x bare forward   "
            f"{min(ts) / kept:5.2f}x bare forward, heap kept{per_pass}"
        )


if __name__ == "__main__":
    main()
