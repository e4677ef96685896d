"""Prediction time and peak memory with the heap kept (models/_allocator.py) against glibc's defaults.

For each frame size, ``predict`` runs on two random frames in a fresh process twice: as shipped
and with ``NAPARI_HEMD_MALLOC_TUNING=0``. Prints both times and peak resident memories and their
ratios (tuned / default).

    PYTHONPATH=src python benchmarks/bench_allocator_memory.py --sizes 1024,2048,3000 --threads 1
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(size: int, model_name: str, threads: int) -> tuple[float, float]:
    """(seconds, peak resident MB) of ``predict`` on two random size x size frames."""
    import numpy as np
    import torch

    from napari_hemd.models import load_model, predict

    torch.set_num_threads(threads)
    model = load_model(model_name)
    image = np.random.default_rng(0).normal(100, 10, (2, size, size)).astype(np.float32)
    t0 = time.perf_counter()
    predict(model, image, tta=1)  # one view: the forward pass the allocator serves
    return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="nuclei-fluo")
    p.add_argument("--sizes", default="1024,1448,2048,3000")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(*measure(args.measure, args.model, args.threads))
        return
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    this = [sys.executable, __file__, "--model", args.model, "--threads", str(args.threads)]
    print(f"{args.model}, two frames, {args.threads} thread(s): tuned / glibc defaults")
    for size in (int(s) for s in args.sizes.split(",")):
        res = {}
        for name, extra in (("tuned", {}), ("default", {"NAPARI_HEMD_MALLOC_TUNING": "0"})):
            out = subprocess.run(
                [*this, "--measure", str(size)],
                check=True,
                env={**env, **extra},
                capture_output=True,
                text=True,
            )
            res[name] = [float(v) for v in out.stdout.split()[-2:]]
        (tt, tm), (dt, dm) = res["tuned"], res["default"]
        print(
            f"{size:5d} x {size:<5d} time {tt:6.1f} / {dt:6.1f} s ({tt / dt:4.2f}x)   "
            f"peak {tm:6.0f} / {dm:6.0f} MB ({tm / dm:4.2f}x)"
        )


if __name__ == "__main__":
    main()
