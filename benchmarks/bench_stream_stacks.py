"""A time-lapse of 3D stacks, stack by stack: one process against Dask workers, same run.

    PYTHONPATH=src python benchmarks/bench_stream_stacks.py                 # 8 stacks, 2 workers
    PYTHONPATH=src python benchmarks/bench_stream_stacks.py --stacks 16 --workers 2

``napari_hemd.pipeline.stream_stacks`` segments each stack of a raw ``(T, Z, Y, X)`` movie as
``segment_image`` does it alone (``nuclei-3d``: three planes, H-EMD across the slices), then links
the stacks over time in order. The stacks are independent until the linking, so with a Dask
client they run as tasks, one per worker at a time. Measured here, in this order, each on a fresh
output:

* ``one process`` (the baseline): ``stream_stacks(..., client=None)`` with one torch thread;
* ``dask-W``: a local cluster of ``--workers`` processes, one torch thread per task (cluster
  start-up included: what a user waits for).

Prints the wall times, the ratio to the baseline, and whether the labels and tracks are equal.
The movie: the package's synthetic nuclei volume (``--depth`` slices of ``--size`` x ``--size``)
shifted by one pixel per time point.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stacks", type=int, default=8, help="time points (8)")
    p.add_argument("--depth", type=int, default=24, help="slices per stack (24)")
    p.add_argument("--size", type=int, default=96, help="stack height and width (96)")
    p.add_argument("--workers", type=int, default=2, help="local Dask workers (2)")
    args = p.parse_args()

    import zarr

    from napari_hemd.data.synthetic import nuclei_volume
    from napari_hemd.distributed import dask_client
    from napari_hemd.pipeline import stream_stacks

    vol = nuclei_volume(shape=(args.depth, args.size, args.size + args.stacks), n_cells=12)
    movie = np.stack([vol["image"][..., t : t + args.size] for t in range(args.stacks)])
    opts = dict(tta=1, threads=1)
    tmp = Path(tempfile.mkdtemp())
    try:
        runs = {}
        t0 = time.perf_counter()
        stream_stacks(movie, tmp / "one.zarr", "nuclei-3d", **opts)
        runs["one process"] = (time.perf_counter() - t0, tmp / "one.zarr")
        t0 = time.perf_counter()
        with dask_client(workers=args.workers) as client:
            stream_stacks(movie, tmp / "dask.zarr", "nuclei-3d", client=client, **opts)
        runs[f"dask-{args.workers}"] = (time.perf_counter() - t0, tmp / "dask.zarr")
        base, ref = runs["one process"][0], zarr.open_array(str(tmp / "one.zarr"), mode="r")
        print(f"{args.stacks} stacks of {args.depth} x {args.size} x {args.size}, nuclei-3d")
        print(f"{'mode':<14}{'s':>8}{'stacks/s':>10}{'x time':>8}  labels, tracks == one process")
        for name, (sec, out) in runs.items():
            z = zarr.open_array(str(out), mode="r")
            same = bool(np.array_equal(z[:], ref[:])) and z.attrs.get("tracks") == ref.attrs.get(
                "tracks"
            )
            print(f"{name:<14}{sec:8.1f}{args.stacks / sec:10.2f}{sec / base:8.2f}  {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
