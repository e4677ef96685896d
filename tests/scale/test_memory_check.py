"""A movie too large for an in-memory run is refused before any work, with what to do instead.

The memory free is set small by replacing :func:`napari_hemd._memory.available_memory`; the
costs per pixel themselves are measured by ``benchmarks/bench_memory_estimate.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

import napari_hemd._memory as memory
from napari_hemd._memory import ENV, MAPS_BYTES_PER_PIXEL, NotEnoughMemory
from napari_hemd.cli import main
from napari_hemd.workflows import run_workflow, segment_workflow


@pytest.fixture
def free(monkeypatch):
    """Set the memory the check sees as free (bytes); the check itself on (as by default)."""
    monkeypatch.setenv(ENV, "1")  # restored afterwards, also where --no-memory-check sets it

    def set_free(n: int) -> None:
        monkeypatch.setattr(memory, "available_memory", lambda: int(n))

    return set_free


def test_segment_prob_cli_refuses_before_writing_and_runs_with_no_memory_check(
    video, tmp_path, free, capsys
):
    src = tmp_path / "prob.tif"
    tifffile.imwrite(src, video)
    out = tmp_path / "labels.tif"
    free(video.size * MAPS_BYTES_PER_PIXEL // 2)  # half of what the run needs
    assert main(["segment", str(src), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: segment (hemd): INPUT of shape (20, 96, 96) needs about" in err
    assert "napari-hemd stream PROB -o OUT.zarr" in err  # what to do instead
    assert "--no-memory-check" in err
    assert not out.exists()
    # the same run, told to try anyway: it fits (the free memory was only what the check saw)
    assert main(["segment", str(src), "-o", str(out), "--no-progress", "--no-memory-check"]) == 0
    assert tifffile.imread(out).max() > 0
    assert os.environ[ENV] == "1"  # off for that run only


def test_check_counts_only_what_the_method_adds_to_an_array_in_memory(video, free, as_zarr):
    lazy = as_zarr(video, "prob")  # read while segmenting: its float32 copy counts too
    free(video.size * (MAPS_BYTES_PER_PIXEL - 2))  # more than the method adds, less than both
    labels = run_workflow(segment_workflow(video, "threshold"))
    assert labels.shape == video.shape and labels.max() > 0
    with pytest.raises(NotEnoughMemory, match=r"segment \(threshold\): prob of shape"):
        run_workflow(segment_workflow(lazy, "threshold"))


def test_segment_image_refuses_before_the_model_is_loaded(monkeypatch, free):
    import napari_hemd.models.prediction as prediction
    from napari_hemd import segment_image

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the memory check")

    monkeypatch.setattr(prediction, "_resolve_model", no_model)
    free(2**20)
    movie = np.zeros((4, 300, 300), np.uint16)
    with pytest.raises(NotEnoughMemory) as info:
        segment_image(movie, model="nuclei-fluo")
    msg = str(info.value)
    assert "segment with a model: image of shape (4, 300, 300)" in msg
    assert "napari-hemd stream MOVIE --model NAME -o OUT.zarr" in msg
    # a time-lapse of stacks: stream segments it stack by stack
    with pytest.raises(NotEnoughMemory, match="stack by stack instead, one stack in memory"):
        segment_image(np.zeros((3, 4, 300, 300), np.uint16), model="nuclei-3d", axes="TZYX")
    # one frame: no stream to suggest (its windows are frames)
    with pytest.raises(NotEnoughMemory, match="in parts") as info:
        segment_image(movie[0], model="nuclei-fluo")
    assert "stream" not in str(info.value)


def test_predict_refuses_maps_that_would_not_fit(free):
    """predict_workflow returns the movie's maps: their exact size is checked before any work."""
    pytest.importorskip("torch")
    from napari_hemd.workflows import predict_workflow

    movie = np.zeros((4, 64, 64), np.uint16)
    outputs = ("foreground", "background")  # two float32 maps: 8 bytes per pixel
    free(movie.size * 8 - 1)
    with pytest.raises(NotEnoughMemory) as info:
        run_workflow(predict_workflow(movie, "nuclei-fluo", outputs=outputs, tta=1))
    msg = str(info.value)
    assert "predict: image of shape (4, 64, 64)" in msg and "~8 bytes per pixel" in msg
    assert "napari-hemd predict MOVIE --model NAME -o maps.zarr" in msg
    free(movie.size * 8)
    maps = run_workflow(predict_workflow(movie, "nuclei-fluo", outputs=outputs, tta=1))
    assert maps["foreground"].nbytes + maps["background"].nbytes == movie.size * 8


def test_environment_variable_turns_the_check_off(monkeypatch, free):
    free(0)
    with pytest.raises(NotEnoughMemory, match=r"shape \(2, 8, 8\) needs about"):
        memory.check_fits_in_memory((2, 8, 8), 16, what="segment")
    monkeypatch.setenv(ENV, "0")
    memory.check_fits_in_memory((2, 8, 8), 16, what="segment")  # no error


def test_available_memory_is_this_machines():
    import psutil

    free = memory.available_memory()
    assert 0 < free <= psutil.virtual_memory().total
