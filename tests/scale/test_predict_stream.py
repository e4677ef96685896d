"""Prediction in chunks of frames: zarr out, resumable, Dask tasks equal to one process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

torch = pytest.importorskip("torch")

from napari_hemd.data.synthetic import nuclei_video  # noqa: E402
from napari_hemd.models import predict, predict_stream  # noqa: E402

OUTPUTS = ("foreground", "boundary")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """(9, 96, 96) uint16 raw frames."""
    return nuclei_video(n_frames=9, shape=(96, 96), n_cells=6, seed=2)["image"]


@pytest.fixture(scope="module")
def reference(image) -> dict:
    """Whole-stack, single-process prediction with one torch thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return predict("nuclei-fluo", image, outputs=OUTPUTS, tile=0)
    finally:
        torch.set_num_threads(old)


@pytest.fixture
def image_zarr(image, as_zarr):
    return as_zarr(image, "image")


class Crash(RuntimeError):
    pass


def _read(path) -> dict:
    g = zarr.open_group(str(path), mode="r")
    return {name: g[name][:] for name in OUTPUTS}


def test_predict_stream_equals_predict(image_zarr, reference, tmp_path):
    seen = []
    out = predict_stream(
        "nuclei-fluo",
        image_zarr,
        tmp_path / "p.zarr",
        outputs=OUTPUTS,
        chunk=4,
        tile=0,
        threads=1,
        progress=lambda *e: seen.append(e),
    )
    got = _read(out)
    for name in OUTPUTS:
        np.testing.assert_array_equal(got[name], reference[name])
    g = zarr.open_group(str(out), mode="r")
    assert g["foreground"].chunks == (1, 96, 96)
    assert seen == [("predict", 1, 3), ("predict", 2, 3), ("predict", 3, 3)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(FileExistsError, match="overwrite"):
        predict_stream("nuclei-fluo", image_zarr, out, tile=0)


def test_predict_stream_restores_torch_threads(image, tmp_path):
    before = torch.get_num_threads()
    predict_stream("nuclei-fluo", image[:2], tmp_path / "p.zarr", tile=0, threads=1)
    assert torch.get_num_threads() == before


def test_predict_stream_resumes_after_crash(image_zarr, reference, tmp_path):
    out = tmp_path / "p.zarr"
    done = []

    def crash_after_one(index):
        done.append(index)
        raise Crash

    kw = dict(outputs=OUTPUTS, chunk=2, tile=0, threads=1)
    with pytest.raises(Crash):
        predict_stream("nuclei-fluo", image_zarr, out, on_chunk=crash_after_one, **kw)
    assert not out.exists()
    progress = json.loads((tmp_path / ".p.zarr.partial" / "progress.json").read_text())
    assert set(progress["done"]) == {-1, 0}
    resumed = []
    predict_stream("nuclei-fluo", image_zarr, out, on_chunk=resumed.append, **kw)
    assert resumed == [1, 2, 3, 4]
    got = _read(out)
    for name in OUTPUTS:
        np.testing.assert_array_equal(got[name], reference[name])


def test_predict_stream_restarts_for_other_input(image, tmp_path):
    """Two in-memory arrays of one shape never resume each other (content hash)."""
    out = tmp_path / "p.zarr"
    with pytest.raises(Crash):
        predict_stream("nuclei-fluo", image, out, chunk=3, tile=0, on_chunk=lambda i: _raise())
    again = []
    other = image[::-1].copy()
    predict_stream("nuclei-fluo", other, out, chunk=3, tile=0, on_chunk=again.append)
    assert again == [0, 1, 2]


def _raise():
    raise Crash


def test_predict_stream_errors(image, tmp_path):
    with pytest.raises(ValueError, match=r"image must be a \(T, Y, X\).*got shape \(96, 96\)"):
        predict_stream("nuclei-fluo", image[0], tmp_path / "a.zarr")
    with pytest.raises(ValueError, match="chunk must be >= 1 frame; got 0"):
        predict_stream("nuclei-fluo", image, tmp_path / "a.zarr", chunk=0)
    with pytest.raises(ValueError, match="need an affinity model"):
        predict_stream("nuclei-fluo", image, tmp_path / "a.zarr", outputs=("instances",))
    with pytest.raises(FileNotFoundError, match="model must be one of"):
        predict_stream("no-such-model", image, tmp_path / "a.zarr")
    assert not (tmp_path / ".a.zarr.partial").exists()


def test_predict_stream_on_local_cluster(dask_cluster_client, image_zarr, reference, tmp_path):
    import shutil

    from napari_hemd.models import streaming
    from napari_hemd.models.registry import model_path

    client = dask_cluster_client
    # A model file no worker has seen yet: each worker's load count starts from here.
    model = tmp_path / "model.pt"
    shutil.copy(model_path("nuclei-fluo"), model)
    before = client.run(lambda: dict(streaming.STATS))
    seen = []
    out = predict_stream(
        model,
        image_zarr,
        tmp_path / "p.zarr",
        outputs=OUTPUTS,
        chunk=1,
        tile=0,
        client=client,
        progress=lambda *e: seen.append(e),
    )
    got = _read(out)
    for name in OUTPUTS:
        # other processes, one frame per batch: oneDNN may pick other kernels (1-ulp differences)
        np.testing.assert_allclose(got[name], reference[name], rtol=0, atol=1e-6)
    assert [e[1] for e in seen] == list(range(1, 10)) and {e[2] for e in seen} == {9}
    after = client.run(lambda: dict(streaming.STATS))
    chunks = {w: after[w]["chunks"] - before[w]["chunks"] for w in after}
    loads = {w: after[w]["loads"] - before[w]["loads"] for w in after}
    assert sum(chunks.values()) == 9
    # 9 tasks, one model load per worker that ran any (not one per frame or per task)
    assert loads == {w: int(chunks[w] > 0) for w in after}
    assert {after[w]["threads"] for w in after if chunks[w]} == {1}  # torch threads per task
    # a second run on the same workers loads nothing
    predict_stream(model, image_zarr, tmp_path / "q.zarr", chunk=3, tile=0, client=client)
    again = client.run(lambda: dict(streaming.STATS))
    assert {w: again[w]["loads"] for w in again} == {w: after[w]["loads"] for w in after}


def test_predict_stream_numpy_input_on_cluster(dask_cluster_client, image, reference, tmp_path):
    out = predict_stream(
        "nuclei-fluo",
        image,
        tmp_path / "p.zarr",
        outputs=OUTPUTS,
        chunk=4,
        tile=0,
        client=dask_cluster_client,
    )
    np.testing.assert_array_equal(_read(out)["foreground"], reference["foreground"])


def test_a_chunk_of_a_given_up_run_writes_nothing(image, tmp_path, monkeypatch):
    """Ctrl-C with --workers before any chunk was done: the run removed its partial store, but a
    task still predicting wrote its frames after, leaving a hidden folder of stray chunk files.
    A chunk whose store is gone stops writing."""
    import shutil

    import napari_hemd.models.streaming as ms
    from napari_hemd.models import load_model

    store = tmp_path / ".out.prob.zarr.partial" / "store.zarr"
    group = zarr.open_group(str(store), mode="w")
    group.create_array("foreground", shape=(3, 96, 96), chunks=(1, 96, 96), dtype="float32")
    real = ms.iter_predict

    def given_up_after_one(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            yield item
            if i == 0:  # the driver stops and removes the partial folder meanwhile
                shutil.rmtree(tmp_path / ".out.prob.zarr.partial")

    monkeypatch.setattr(ms, "iter_predict", given_up_after_one)
    model = load_model("nuclei-fluo")
    assert (
        ms._predict_chunk(model, image, 0, 0, 3, str(store), ("foreground",), {"tile": 0}, 1) == 0
    )
    assert not (tmp_path / ".out.prob.zarr.partial").exists()
