from __future__ import annotations

import numpy as np
import pytest

from napari_hemd.data.synthetic import nuclei_video


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    """20 frames of touching, dividing nuclei: (20, 96, 96) float32 probabilities."""
    return nuclei_video(n_frames=20, shape=(96, 96), n_cells=8, seed=1)["prob"]
