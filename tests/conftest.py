from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data folder (``../shared/data``); skips when absent."""
    if not DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return DATA
