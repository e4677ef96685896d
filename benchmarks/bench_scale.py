"""Streaming H-EMD: peak RSS and frames/s, as ratios against the in-memory path in the same run.

    python benchmarks/bench_scale.py                                   # small, < 2 min
    python benchmarks/bench_scale.py --frames 300 --size 1024 --short 30   # the issue's stack

A ``(frames, size, size)`` float32 probability zarr (chunks one frame) is built by tiling the
package's synthetic nuclei video. Each mode runs in a fresh subprocess so its peak RSS is its own:

* ``memory``: ``hemd(z[:short])`` -- the whole short stack in memory (the baseline);
* ``memory-full``: the same on all frames (skipped with ``--skip-memory-full``);
* ``stream``: ``hemd_stream`` zarr -> zarr, one process;
* ``dask``: ``hemd_stream`` with a 2-worker local cluster (RSS: driver and the largest worker).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_stack(path: Path, frames: int, size: int, seed: int = 0) -> None:
    """Tile a 256x256 synthetic video to ``size``; frames cycle through 40 base frames."""
    import zarr

    from napari_hemd.data.synthetic import nuclei_video

    base = nuclei_video(n_frames=min(frames, 40), shape=(256, 256), n_cells=24, seed=seed)["prob"]
    reps = -(-size // 256)
    z = zarr.create_array(
        str(path), shape=(frames, size, size), chunks=(1, size, size), dtype=np.float32
    )
    for t in range(frames):
        k = t % (2 * len(base) - 2) if len(base) > 1 else 0
        k = k if k < len(base) else 2 * len(base) - 2 - k  # ping-pong: no jump at the wrap
        z[t] = np.tile(base[k], (reps, reps))[:size, :size]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, prob_path: str, out: str, args) -> dict:
    """One measurement (runs in its own process)."""
    import zarr

    from napari_hemd.core.segment import hemd
    from napari_hemd.core.streaming import hemd_stream

    prob = zarr.open_array(prob_path, mode="r")
    params = dict(iterations=args.iterations)
    t0 = time.perf_counter()
    worker_rss = None
    if mode in ("memory", "memory-full"):
        n = args.short if mode == "memory" else prob.shape[0]
        hemd(np.asarray(prob[:n]), **params)
    elif mode == "stream":
        n = prob.shape[0]
        hemd_stream(prob, out, chunk=args.chunk, **params)
    else:
        from napari_hemd.distributed import dask_client

        n = prob.shape[0]
        with dask_client(workers=args.workers) as client:
            hemd_stream(prob, out, chunk=args.chunk, client=client, **params)
            worker_rss = max(client.run(rss_mb).values())
    dt = time.perf_counter() - t0
    return dict(
        mode=mode, frames=n, seconds=dt, fps=n / dt, rss_mb=rss_mb(), worker_rss_mb=worker_rss
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--short", type=int, default=20, help="frames of the in-memory baseline")
    p.add_argument("--chunk", type=int, default=10)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip-memory-full", action="store_true")
    p.add_argument("--child", nargs=3, metavar=("MODE", "PROB", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        prob = Path(tmp) / "prob.zarr"
        t0 = time.perf_counter()
        make_stack(prob, args.frames, args.size)
        print(
            f"stack {args.frames}x{args.size}x{args.size} float32 built in "
            f"{time.perf_counter() - t0:.1f} s; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs; T={args.iterations}, chunk={args.chunk}, halo=T"
        )
        modes = ["memory"] + ([] if args.skip_memory_full else ["memory-full"]) + ["stream", "dask"]
        res = {}
        for m in modes:
            cmd = [
                sys.executable,
                __file__,
                *sys.argv[1:],
                "--child",
                m,
                str(prob),
                str(Path(tmp) / f"{m}.zarr"),
            ]
            env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
            outp = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            res[m] = json.loads(outp.stdout.strip().splitlines()[-1])
        ref = res["memory"]
        print(
            f"{'mode':12} {'frames':>6} {'s':>7} {'frames/s':>9} {'x fps':>6} {'RSS MB':>8} "
            f"{'x RSS':>6} {'worker MB':>9}"
        )
        for m, r in res.items():
            w = f"{r['worker_rss_mb']:.0f}" if r["worker_rss_mb"] else "-"
            print(
                f"{m:12} {r['frames']:6d} {r['seconds']:7.2f} {r['fps']:9.2f} "
                f"{r['fps'] / ref['fps']:6.2f} {r['rss_mb']:8.0f} "
                f"{r['rss_mb'] / ref['rss_mb']:6.2f} {w:>9}"
            )
        if "memory-full" in res:
            import zarr

            a = zarr.open_array(str(Path(tmp) / "stream.zarr"))[:]
            from napari_hemd.core.segment import hemd

            same = np.array_equal(
                a, hemd(zarr.open_array(str(prob))[:], iterations=args.iterations).labels
            )
            print(f"stream labels == in-memory labels on all frames: {same}")


if __name__ == "__main__":
    main()
