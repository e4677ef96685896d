from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

import napari_hemd as nh
from napari_hemd.data.synthetic import nuclei_video


@pytest.fixture(scope="module")
def video():
    return nuclei_video(n_frames=6, shape=(96, 96), n_cells=6, seed=5)


def test_zarr_and_dask_give_the_numpy_result(video, tmp_path):
    ref = nh.segment(video["prob"])
    z = zarr.open_array(
        str(tmp_path / "p.zarr"),
        mode="w",
        shape=video["prob"].shape,
        chunks=(1, 96, 96),
        dtype="f4",
    )
    z[:] = video["prob"]
    assert np.array_equal(nh.segment(z), ref)
    d = da.from_array(video["prob"], chunks=(1, 96, 96))
    assert np.array_equal(nh.segment(d), ref)


@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_empty_and_constant_stacks(value):
    p = np.full((3, 16, 16), value, np.float32)
    for method in ("hemd", "threshold", "otsu", "watershed", "nms"):
        lab = nh.segment(p, method)
        expected = 1 if (value >= 0.5 and method != "otsu") else 0
        assert lab.shape == p.shape
        assert all(int(f.max()) == expected for f in lab), method


def test_linking_keeps_ids_and_finds_divisions(video):
    v = nuclei_video(n_frames=12, seed=0)
    tracked, tracks = nh.link_labels(v["labels"])
    # Exact labels: every cell keeps one id, and both divisions of the sample are found.
    parents = tracks[tracks[:, 3] > 0]
    assert len(parents) == 4 and len(set(parents[:, 3])) == 2
    for lab, b, e, _ in tracks:
        present = [t for t in range(12) if (tracked[t] == lab).any()]
        assert present == list(range(b, e + 1))
    assert len(tracks) == len(v["tracks"])


def test_hemd_with_link_returns_tracks(video):
    res = nh.hemd(video["prob"], link=True)
    assert res.tracks is not None and res.tracks.shape[1] == 4
    assert set(np.unique(res.labels)) - {0} == set(res.tracks[:, 0])
