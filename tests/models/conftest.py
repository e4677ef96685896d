from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = (Path(__file__).parents[2] / ".." / "shared").resolve()
DATA = SHARED / "data"


@pytest.fixture
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return DATA


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """A (96, 96) image of 6 bright discs (two touching) and their labels."""
    yy, xx = np.mgrid[:96, :96]
    labels = np.zeros((96, 96), np.int32)
    centres = [(20, 20), (20, 36), (60, 25), (70, 70), (30, 75), (80, 20)]
    for i, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = i
    rng = np.random.default_rng(0)
    image = (labels > 0) * 200.0 + rng.normal(20, 5, labels.shape)
    return image.astype(np.float32), labels
