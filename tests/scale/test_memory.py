"""Streaming memory does not grow with the number of frames (traced numpy allocations)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import zarr

from napari_hemd.core.segment import hemd
from napari_hemd.core.streaming import hemd_stream


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_stream_peak_memory_is_independent_of_frame_count(video, tmp_path):
    hemd_stream(video[:6], tmp_path / "warm.zarr", chunk=4, iterations=2)  # imports, caches
    peaks, in_memory = {}, {}
    for n in (12, 48):
        frames = np.concatenate([video, video[::-1]] * 2)[:n]
        path = str(tmp_path / f"p{n}.zarr")
        z = zarr.create_array(path, shape=frames.shape, chunks=(1, 96, 96), dtype=np.float32)
        z[:] = frames
        z = zarr.open_array(path, mode="r")
        peaks[n] = _peak(
            lambda z=z, n=n: hemd_stream(z, tmp_path / f"l{n}.zarr", chunk=4, iterations=2)
        )
        in_memory[n] = _peak(lambda z=z: hemd(z[:], iterations=2))
    frame = 96 * 96 * 4
    # 4x the frames: the in-memory run holds them all, the stream one window's worth
    assert in_memory[48] - in_memory[12] > 30 * frame
    assert peaks[48] - peaks[12] < 4 * frame, peaks
