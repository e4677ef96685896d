from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_hemd.data.synthetic import nuclei_video


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    """20 frames of touching, dividing nuclei: (20, 96, 96) float32 probabilities."""
    return nuclei_video(n_frames=20, shape=(96, 96), n_cells=8, seed=1)["prob"]


@pytest.fixture
def as_zarr(tmp_path):
    """Write an array to ``tmp_path/<name>.zarr`` (one chunk per frame) and open it read-only."""

    def write(array: np.ndarray, name: str):
        path = str(tmp_path / f"{name}.zarr")
        z = zarr.create_array(
            path, shape=array.shape, chunks=(1, *array.shape[1:]), dtype=array.dtype
        )
        z[:] = array
        return zarr.open_array(path, mode="r")

    return write


@pytest.fixture
def prob_zarr(video, as_zarr):
    """The video as a read-only zarr array, one chunk per frame."""
    return as_zarr(video, "prob")
