"""Streaming H-EMD: peak RSS and frames/s, as ratios against the in-memory path in the same run.

    python benchmarks/bench_scale.py                                   # small, < 2 min
    python benchmarks/bench_scale.py --frames 300 --size 1024 --short 30   # the issue's stack

A ``(frames, size, size)`` float32 probability zarr (chunks one frame) is built by tiling the
package's synthetic nuclei video. Each mode runs in a fresh subprocess so its peak RSS is its own:

* ``memory``: ``hemd(z[:short])`` -- the whole short stack in memory (the baseline);
* ``memory-full``: the same on all frames (skipped with ``--skip-memory-full``);
* ``stream``: ``hemd_stream`` zarr -> zarr, one process;
* ``dask-1``, ``dask``: ``hemd_stream`` on a local cluster of 1 and ``--workers`` (2) worker
  processes (RSS: driver and the largest worker).

For the Dask modes a task stream gives each window task's compute time: their sum (the parallel
work), the span from the first task start to the last task end, and the serial rest (cluster
start-up, set-up, publishing). Per-task time with 2 workers over per-task time with 1 shows
whether the workers compete for the same cores; the projection for more cores (serial part plus
the 1-worker task time divided by W) is labelled as such, not measured.
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


def make_stack(path: Path, frames: int, size: int, seed: int = 0, key: str = "prob") -> None:
    """Tile a 256x256 synthetic video to ``size``; frames cycle through 40 base frames.

    ``key="prob"``: float32 probabilities; ``key="image"``: the uint16 raw frames.
    """
    import zarr

    from napari_hemd.data.synthetic import nuclei_video

    base = nuclei_video(n_frames=min(frames, 40), shape=(256, 256), n_cells=24, seed=seed)[key]
    reps = -(-size // 256)
    z = zarr.create_array(
        str(path), shape=(frames, size, size), chunks=(1, size, size), dtype=base.dtype
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
    if mode.startswith("predict"):
        return predict_child(mode, prob, out, args, prob_path)
    if mode in ("memory", "memory-full"):
        n = args.short if mode == "memory" else prob.shape[0]
        hemd(np.asarray(prob[:n]), **params)
    elif mode == "stream":
        n = prob.shape[0]
        hemd_stream(prob, out, chunk=args.chunk, **params)
    else:
        from dask.distributed import get_task_stream

        from napari_hemd.distributed import dask_client

        n = prob.shape[0]
        workers = 1 if mode == "dask-1" else args.workers
        with dask_client(workers=workers) as client:
            started = time.perf_counter()
            with get_task_stream(client) as ts:
                hemd_stream(prob, out, chunk=args.chunk, client=client, **params)
            worker_rss = max(client.run(rss_mb).values())
        tasks = _task_times(ts.data, "_write_window")
        dt = time.perf_counter() - t0
        return dict(
            mode=mode,
            frames=n,
            seconds=dt,
            fps=n / dt,
            rss_mb=rss_mb(),
            worker_rss_mb=worker_rss,
            workers=workers,
            startup_s=started - t0,
            **tasks,
        )
    dt = time.perf_counter() - t0
    return dict(
        mode=mode, frames=n, seconds=dt, fps=n / dt, rss_mb=rss_mb(), worker_rss_mb=worker_rss
    )


def predict_child(mode: str, image, out: str, args, path: str) -> dict:
    """Prediction modes: in memory (short stack), ``predict_stream`` here and on Dask, the CLI.

    ``image``: the raw zarr array at ``path`` (its TIFF copy beside it, for the CLI).
    """
    from napari_hemd.models import predict, predict_stream

    t0 = time.perf_counter()
    kw = dict(tile=args.tile, tta=1)  # one view: what the tables compare
    if mode == "predict-memory":
        n = args.short
        predict("nuclei-fluo", np.asarray(image[:n]), **kw)
        return dict(mode=mode, frames=n, seconds=time.perf_counter() - t0, rss_mb=rss_mb())
    n = image.shape[0]
    if mode == "predict-stream":
        predict_stream("nuclei-fluo", image, out, chunk=args.predict_chunk, **kw)
        return dict(mode=mode, frames=n, seconds=time.perf_counter() - t0, rss_mb=rss_mb())
    if mode == "predict-tif":  # the command line, a TIFF stack in, a TIFF of maps out
        from napari_hemd.cli import main as cli

        src = str(Path(path).with_suffix(".tif"))  # written by the parent
        out_tif = str(Path(out).with_suffix(".tif"))
        argv = ["predict", src, "--model", "nuclei-fluo", "-o", out_tif, "--tta", "1"]
        assert cli([*argv, "--tile", str(args.tile), "--no-progress"]) == 0
        return dict(mode=mode, frames=n, seconds=time.perf_counter() - t0, rss_mb=rss_mb())
    from dask.distributed import get_task_stream

    from napari_hemd.distributed import dask_client

    workers = 1 if mode == "predict-dask-1" else args.workers
    with dask_client(workers=workers) as client:
        with get_task_stream(client) as ts:
            predict_stream("nuclei-fluo", image, out, chunk=args.predict_chunk, client=client, **kw)
        worker_rss = max(client.run(rss_mb).values())
    return dict(
        mode=mode,
        frames=n,
        seconds=time.perf_counter() - t0,
        rss_mb=rss_mb(),
        worker_rss_mb=worker_rss,
        workers=workers,
        **_task_times(ts.data, "_predict_chunk"),
    )


def _task_times(stream: list[dict], name: str) -> dict:
    """Tasks ``name`` from a Dask task stream: compute seconds per worker (in order), and the span."""
    runs: dict[str, list[tuple[float, float]]] = {}
    for task in stream:
        if name not in str(task.get("key", "")):
            continue
        for ss in task["startstops"]:
            if ss["action"] == "compute":
                runs.setdefault(str(task["worker"]), []).append((ss["start"], ss["stop"]))
    flat = [r for rs in runs.values() for r in rs]
    if not flat:
        return dict(tasks=0, durations={}, span_s=0.0)
    return dict(
        tasks=len(flat),
        durations={w: [b - a for a, b in sorted(rs)] for w, rs in runs.items()},
        span_s=max(b for _, b in flat) - min(a for a, _ in flat),
    )


def _split(durations: dict[str, list[float]]) -> tuple[float, float, float]:
    """(total task seconds, steady per-task seconds, warm-up seconds).

    The first task on a worker also pays its imports (ortools, scipy, the numba cache); steady =
    median of the other tasks, warm-up = what the first tasks took beyond steady.
    """
    total = sum(sum(d) for d in durations.values())
    rest = [x for d in durations.values() for x in d[1:]]
    steady = (
        float(np.median(rest))
        if rest
        else float(np.median([x for d in durations.values() for x in d]))
    )
    warm = sum(max(0.0, d[0] - steady) for d in durations.values())
    return total, steady, warm


def parallel_report(res: dict, one: str = "dask-1", many: str = "dask") -> None:
    """Where the Dask time goes, and what it implies for more cores (Amdahl, labelled)."""
    rows = [res[m] for m in (one, many) if m in res and res[m].get("tasks")]
    if not rows:
        return
    print(
        f"{'mode':14} {'workers':>7} {'tasks':>5} {'steady s/task':>13} {'warm-up s':>9} "
        f"{'task s':>7} {'span s':>7} {'busy':>5} {'serial s':>8} {'serial %':>8}"
    )
    split = {}
    for r in rows:
        total, steady, warm = split[r["mode"]] = _split(r["durations"])
        busy = total / (r["span_s"] * r["workers"]) if r["span_s"] else 0.0
        serial = r["seconds"] - r["span_s"]  # cluster start, set-up, publish: not parallel
        print(
            f"{r['mode']:14} {r['workers']:7d} {r['tasks']:5d} {steady:13.3f} {warm:9.2f} "
            f"{total:7.2f} {r['span_s']:7.2f} {busy:5.2f} {serial:8.2f} "
            f"{100 * serial / r['seconds']:7.1f}%"
        )
    if len(rows) == 2:
        one, many = rows
        w = many["workers"]
        ratio = split[many["mode"]][1] / split[one["mode"]][1]
        print(
            f"steady per-task time, {w} workers / 1 worker: {ratio:.2f} (1.00: no contention, "
            f"{w:.2f}: the {w} workers share one core's worth of CPU)"
        )
        total, steady, warm = split[one["mode"]]
        serial = one["seconds"] - one["span_s"] + warm
        work = total - warm
        cores = ", ".join(f"{k}: {serial + work / k:.1f} s" for k in (1, 2, 4, 8, 16))
        print(
            f"projection for W free cores, W workers (serial {serial:.1f} s incl. warm-up + "
            f"{work:.1f} s of 1-worker task time / W; NOT measured): {cores}"
        )


def run_modes(modes: list[str], stack: Path, tmp: str) -> dict:
    """Each mode in a fresh subprocess (its own peak RSS); their JSON results by mode."""
    res = {}
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for m in modes:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--child", m, str(stack)]
        cmd.append(str(Path(tmp) / f"{m}.zarr"))
        outp = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        res[m] = json.loads(outp.stdout.strip().splitlines()[-1])
        res[m]["fps"] = res[m]["frames"] / res[m]["seconds"]
    return res


def print_table(res: dict, ref: dict) -> None:
    print(
        f"{'mode':14} {'frames':>6} {'s':>7} {'frames/s':>9} {'x fps':>6} {'RSS MB':>8} "
        f"{'x RSS':>6} {'worker MB':>9}"
    )
    for m, r in res.items():
        w = f"{r['worker_rss_mb']:.0f}" if r.get("worker_rss_mb") else "-"
        print(
            f"{m:14} {r['frames']:6d} {r['seconds']:7.2f} {r['fps']:9.2f} "
            f"{r['fps'] / ref['fps']:6.2f} {r['rss_mb']:8.0f} "
            f"{r['rss_mb'] / ref['rss_mb']:6.2f} {w:>9}"
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
    p.add_argument("--predict", action="store_true", help="benchmark prediction instead")
    p.add_argument("--tile", type=int, default=512, help="prediction tile (--predict)")
    p.add_argument("--predict-chunk", type=int, default=8, help="frames per prediction task")
    p.add_argument("--child", nargs=3, metavar=("MODE", "PROB", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        stack = Path(tmp) / ("raw.zarr" if args.predict else "prob.zarr")
        t0 = time.perf_counter()
        make_stack(stack, args.frames, args.size, key="image" if args.predict else "prob")
        what = (
            f"uint16 raw, model nuclei-fluo, tile {args.tile}, {args.predict_chunk} frames/task"
            if args.predict
            else f"float32; T={args.iterations}, chunk={args.chunk}, halo=T"
        )
        print(
            f"stack {args.frames}x{args.size}x{args.size} built in "
            f"{time.perf_counter() - t0:.1f} s; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs; {what}"
        )
        if args.predict:
            import tifffile
            import zarr

            with tifffile.TiffWriter(stack.with_suffix(".tif")) as tif:  # for predict-tif
                for frame in zarr.open_array(str(stack), mode="r"):
                    tif.write(frame, photometric="minisblack", metadata=None)
            res = run_modes(
                ["predict-memory", "predict-stream", "predict-tif", "predict-dask-1",
                 "predict-dask"], stack, tmp,
            )  # fmt: skip
            print_table(res, res["predict-memory"])
            a, b, c = (
                zarr_open(Path(tmp) / f"{m}.zarr", "foreground")
                for m in ("predict-dask-1", "predict-dask", "predict-stream")
            )
            print(
                f"dask 1 worker == {args.workers} workers (1 torch thread per task): "
                f"{np.array_equal(a, b)}; max |dask - stream ({os.cpu_count()} torch threads)|"
                f" = {np.abs(b - c).max():.2e}"
            )
            import tifffile

            cli = tifffile.imread(Path(tmp) / "predict-tif.tif")
            print(f"predict-tif maps: max |cli - stream| = {np.abs(cli - c).max():.2e}")
            parallel_report(res, "predict-dask-1", "predict-dask")
            return
        modes = ["memory"] + ([] if args.skip_memory_full else ["memory-full"]) + ["stream"]
        res = run_modes([*modes, "dask-1", "dask"], stack, tmp)
        print_table(res, res["memory"])
        if "memory-full" in res:
            from napari_hemd.core.segment import hemd

            same = np.array_equal(
                zarr_open(Path(tmp) / "stream.zarr"),
                hemd(zarr_open(stack), iterations=args.iterations).labels,
            )
            print(f"stream labels == in-memory labels on all frames: {same}")
        dask_same = all(
            np.array_equal(zarr_open(Path(tmp) / f"{m}.zarr"), zarr_open(Path(tmp) / "stream.zarr"))
            for m in ("dask-1", "dask")
        )
        print(f"dask labels (1 and {args.workers} workers) == stream labels: {dask_same}")
        parallel_report(res)


def zarr_open(path: Path, name: str | None = None) -> np.ndarray:
    import zarr

    if name is not None:
        return zarr.open_group(str(path), mode="r")[name][:]
    return zarr.open_array(str(path), mode="r")[:]


if __name__ == "__main__":
    main()
