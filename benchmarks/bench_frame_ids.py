"""A result's object count and track points: ids per frame by one pass vs a sort.

When a Segment result arrives napari's thread counts each frame's objects and draws the
tracks (``core.linking.track_points``). ``core.linking.frame_ids`` counts a frame's ids with
``np.bincount`` where the ids are small; before, ``np.unique`` sorted every frame. Both on the
same labels in the same run (the whole Fluo-N2DL-HeLa 01 silver truth from ``--data``, else a
synthetic movie of its size); ratios below 1 are the gain.

    PYTHONPATH=src python benchmarks/bench_frame_ids.py --data ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_hemd import best_of_pair  # the two run alternately: drift hits both alike

from napari_hemd.core import linking


def labels_movie(data: Path | None) -> tuple[np.ndarray, str]:
    seg = None if data is None else data / "ctc" / "Fluo-N2DL-HeLa" / "01_ST" / "SEG"
    if seg is not None and seg.is_dir():
        import tifffile

        files = sorted(seg.glob("man_seg*.tif"))
        return np.stack([tifffile.imread(f) for f in files]).astype(np.uint32), "HeLa 01 ST"
    rng = np.random.default_rng(0)
    lab = np.zeros((92, 700, 1100), np.uint32)
    for t in range(len(lab)):  # about 60 square nuclei a frame
        for k, (y, x) in enumerate(rng.integers(0, 680, (60, 2)), 1):
            lab[t, y : y + 20, x % 1080 : x % 1080 + 20] = k
    return lab, "synthetic"


def sorted_ids(frame) -> np.ndarray:  # what the count and the tracks did before
    ids = np.unique(frame)
    return ids[ids > 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    lab, what = labels_movie(args.data)
    print(f"{what}: {lab.shape[0]} frames of {lab.shape[1]} x {lab.shape[2]}")
    one, old = best_of_pair(
        lambda: [linking.frame_ids(f) for f in lab], lambda: [sorted_ids(f) for f in lab], 3
    )
    print(
        f"ids of every frame: frame_ids {one:.3f} s, np.unique {old:.3f} s, ratio {one / old:.2f}"
    )
    real = linking.frame_ids

    def as_before():  # track_points as it was
        linking.frame_ids = sorted_ids
        try:
            linking.track_points(lab)
        finally:
            linking.frame_ids = real

    new_tp, old_tp = best_of_pair(lambda: linking.track_points(lab), as_before, 2)
    print(
        f"track_points: {new_tp:.3f} s, with np.unique {old_tp:.3f} s, ratio {new_tp / old_tp:.2f}"
    )


if __name__ == "__main__":
    main()
