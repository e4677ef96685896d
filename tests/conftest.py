from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    """Under pytest-xdist, share the cores between the workers: torch's intra-op threads.

    Each worker would otherwise run torch on every core, and N workers on N cores fight over
    them (spinning threads); tests that choose threads themselves still do.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return
    try:
        import torch
    except ImportError:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, (cores or 1) // int(workers)))


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"


#: Frames of Fluo-N2DL-HeLa 01 (the whole 92-frame sequence) that have gold-truth masks.
HELA_GT_FRAMES = [12, 13, 14, 15, 20, 21, 22, 23, 25, 29, 38, 39, 40, 44, 50, 51, 52, 53, 54, 55, 62,
                  76, 77, 78, 79, 80, 81, 88]  # fmt: skip


@pytest.fixture(scope="session")
def hela_gt_frames() -> list[int]:
    """:data:`HELA_GT_FRAMES`."""
    return list(HELA_GT_FRAMES)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data folder (``../shared/data``); skips when absent."""
    if not DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return DATA


@pytest.fixture(scope="session")
def dask_cluster_client():
    """One 2-worker local Dask cluster (loopback, processes) shared by every test that needs one.

    Starting a cluster costs seconds; tests that need a cluster reuse this one (tests/scale, the
    stream widget). Skips without ``dask.distributed``.
    """
    pytest.importorskip("dask.distributed")
    from napari_hemd.distributed import dask_client

    with dask_client(workers=2) as client:
        yield client


@pytest.fixture
def ome_zarr_image():
    """Write ``array`` as an OME-Zarr (NGFF 0.4) image group with ``axes`` (e.g. ``"tcyx"``)."""

    def write(path: Path, array, axes: str, scale: list[float] | None = None) -> Path:
        import zarr

        root = zarr.open_group(str(path), mode="w", zarr_format=2)
        chunks = tuple(1 if i < array.ndim - 2 else s for i, s in enumerate(array.shape))
        root.create_array("0", shape=array.shape, dtype=array.dtype, chunks=chunks)
        root["0"][...] = array
        dataset: dict = {"path": "0"}
        if scale is not None:
            dataset["coordinateTransformations"] = [{"type": "scale", "scale": list(scale)}]
        root.attrs["multiscales"] = [
            {"version": "0.4", "axes": [{"name": a} for a in axes], "datasets": [dataset]}
        ]
        return path

    return write
