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
def prob_zarr(video, tmp_path):
    """The video as a read-only zarr array, one chunk per frame."""
    z = zarr.create_array(
        str(tmp_path / "prob.zarr"), shape=video.shape, chunks=(1, 96, 96), dtype=np.float32
    )
    z[:] = video
    return zarr.open_array(str(tmp_path / "prob.zarr"), mode="r")
