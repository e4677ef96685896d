"""Prediction then streaming H-EMD (``stream --model``), in process and on a cluster; CLI errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import zarr

torch = pytest.importorskip("torch")

from napari_hemd.cli import main  # noqa: E402
from napari_hemd.core.segment import hemd  # noqa: E402
from napari_hemd.data.synthetic import nuclei_video  # noqa: E402
from napari_hemd.pipeline import stream_segment  # noqa: E402


@pytest.fixture(scope="module")
def raw() -> np.ndarray:
    """(8, 96, 96) uint16 raw frames."""
    return nuclei_video(n_frames=8, shape=(96, 96), n_cells=6, seed=3)["image"]


@pytest.fixture(scope="module")
def expected(raw) -> tuple[np.ndarray, np.ndarray]:
    """Single-process, in-memory reference: ``segment --model``'s implementation (1 torch thread):
    the predicted foreground, and whole-video H-EMD grown to whole cells."""
    from napari_hemd import segment_image

    res = segment_image(raw, "nuclei-fluo", iterations=2, threads=1)
    return res.maps["foreground"], res.labels


@pytest.fixture
def raw_zarr(raw, tmp_path):
    path = tmp_path / "raw.zarr"
    z = zarr.create_array(str(path), shape=raw.shape, chunks=(1, 96, 96), dtype=raw.dtype)
    z[:] = raw
    return path


class Stop(RuntimeError):
    pass


def test_stream_segment_with_model_resumes_after_prediction(raw_zarr, expected, tmp_path):
    out = tmp_path / "lab.zarr"
    stages = []

    def stop_at_first_window(stage, done, total):
        stages.append(stage)
        if stage == "windows":
            raise Stop

    kw = dict(model="nuclei-fluo", tile=0, threads=1, chunk=3, iterations=2)
    with pytest.raises(Stop):
        stream_segment(raw_zarr, out, progress=stop_at_first_window, **kw)
    assert not out.exists()
    prob = tmp_path / "lab.prob.zarr"  # the finished prediction is published and kept
    np.testing.assert_array_equal(zarr.open_group(str(prob))["foreground"][:], expected[0])
    stages.clear()
    stream_segment(raw_zarr, out, progress=lambda s, d, t: stages.append(s), **kw)
    assert set(stages) == {"windows"}  # prediction reused, not rerun
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], expected[1])


def test_stream_segment_does_not_reuse_a_prediction_of_other_frames(raw, expected, tmp_path):
    out = tmp_path / "lab.zarr"
    kw = dict(model="nuclei-fluo", tile=0, threads=1, chunk=3, iterations=2)
    stream_segment(raw[::-1].copy(), out, **kw)
    stages = []
    prob = tmp_path / "lab.prob.zarr"
    other = tmp_path / "other.zarr"
    with pytest.raises(FileExistsError, match=r"lab\.prob\.zarr"):
        stream_segment(raw, other, prob_output=prob, **kw)
    stream_segment(raw, out, overwrite=True, progress=lambda s, d, t: stages.append(s), **kw)
    assert "predict" in stages
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], expected[1])


def test_a_frame_changed_in_the_file_is_predicted_again(raw, tmp_path, caplog):
    """A TIFF rewritten with one frame changed between the three the content sample reads (0,
    the middle, the last) was taken for the same input: the old maps were reused, quietly, even
    with ``resume=False``. Its size and time now join; a reuse is said; ``resume=False`` predicts
    again."""
    import tifffile

    movie = tmp_path / "movie.tif"
    tifffile.imwrite(movie, raw, photometric="minisblack")
    out = tmp_path / "lab.zarr"
    kw = dict(model="nuclei-fluo", tile=0, threads=1, chunk=4, iterations=2, overwrite=True)

    def run(**more):
        stages = []
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            stream_segment(str(movie), out, progress=lambda s, d, t: stages.append(s), **kw, **more)
        return "predict" in stages, "reusing its finished prediction" in caplog.text

    assert run() == (True, False)
    assert run() == (False, True)  # unchanged: reused, and said
    assert run(resume=False) == (True, False)  # asked not to: predicted again
    kw["tile"] = 64
    assert run() == (True, False)  # other tiles, other maps: predicted again
    assert run() == (False, True)
    kw["tile"] = 0
    blank = raw.copy()
    blank[1] = blank[1].min()  # frame 1: not among 0, 4 and 7
    tifffile.imwrite(movie, blank, photometric="minisblack")
    assert run() == (True, False)
    fg = zarr.open_group(str(tmp_path / "lab.prob.zarr"))["foreground"]
    assert fg[1].max() < 0.5 < fg[0].max()  # the blank frame's own maps
    assert zarr.open_array(str(out))[1].max() == 0


def test_streaming_maps_a_model_predicted_segments_them_as_the_model(raw, expected, tmp_path):
    """``stream maps.zarr`` on what ``predict --model`` wrote ignored the model the group's
    attributes name (no whole-cell growth, none of its defaults): it now gives the labels of
    ``segment --model`` (and ``stream --model``)."""
    import tifffile

    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    maps = tmp_path / "maps.zarr"
    argv = ["predict", str(tmp_path / "raw.tif"), "--model", "nuclei-fluo", "-o", str(maps)]
    assert main([*argv, "--outputs", "foreground,background", "--threads", "1"]) == 0
    out = tmp_path / "lab.zarr"
    assert main(["stream", str(maps), "-o", str(out), "--iterations", "2", "--no-progress"]) == 0
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], expected[1])
    attrs = zarr.open_array(str(out)).attrs  # made by that model (they were left empty)
    assert attrs["model"] == "nuclei-fluo" and attrs["scale"] == 1.0 and attrs["tta"] >= 1


def test_stream_cli_model_on_scheduler(dask_cluster_client, raw_zarr, expected, tmp_path, capsys):
    """``stream --model ... --scheduler ADDRESS``: predictions and windows as Dask tasks."""
    address = dask_cluster_client.scheduler.address
    out = tmp_path / "lab.zarr"
    args = ["stream", str(raw_zarr), "-o", str(out), "--model", "nuclei-fluo", "--tile", "0"]
    args += ["--iterations", "2", "--chunk", "3", "--predict-chunk", "2", "--no-progress"]
    assert main([*args, "--scheduler", address]) == 0
    err = capsys.readouterr().err
    assert "frames/s" in err and "note:" not in err  # nuclei of the size the model learned
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], expected[1])
    prob = zarr.open_group(str(tmp_path / "lab.prob.zarr"))
    np.testing.assert_array_equal(prob["foreground"][:], expected[0])
    assert prob.attrs["model"] == "nuclei-fluo"


def test_stream_cli_size_note(raw_zarr, tmp_path, capsys):
    """``stream --model`` ends with the size note of ``segment --model`` when the zoom makes the
    objects too small for the network; the note names a zoom that brings them into range."""
    from napari_hemd.pipeline import stream_size_advice

    out = tmp_path / "lab.zarr"
    args = ["stream", str(raw_zarr), "-o", str(out), "--model", "nuclei-fluo", "--scale", "0.5"]
    assert main([*args, "--iterations", "2", "--no-progress"]) == 0
    note = stream_size_advice("nuclei-fluo", out, 0.5)
    assert note is not None and "small for this model" in note
    assert f"note: {note}" in capsys.readouterr().err
    suggested = float(note.split("--scale ")[1].split()[0])
    assert 0.5 < suggested < 1.2  # larger than the zoom that made them too small


def test_predict_cli_on_scheduler_equals_one_process(dask_cluster_client, raw_zarr, tmp_path):
    address = dask_cluster_client.scheduler.address
    base = ["predict", str(raw_zarr), "--model", "nuclei-fluo", "--tile", "0", "--threads", "1"]
    base += ["--outputs", "foreground,boundary", "--chunk", "3"]
    assert main([*base, "-o", str(tmp_path / "one.zarr")]) == 0
    assert main([*base, "-o", str(tmp_path / "dask.zarr"), "--scheduler", address]) == 0
    one = zarr.open_group(str(tmp_path / "one.zarr"))
    dask = zarr.open_group(str(tmp_path / "dask.zarr"))
    for name in ("foreground", "boundary"):
        np.testing.assert_array_equal(dask[name][:], one[name][:])
    assert dask.attrs["model"] == "nuclei-fluo" and dask.attrs["predicted"]["chunk"] == 3


def test_test_time_flips_in_the_stream_and_predict(raw, raw_zarr, tmp_path, capsys):
    """``--tta`` reaches every prediction path; maps with flips never stand in for maps without."""
    from napari_hemd import segment_image

    flipped = segment_image(raw, "nuclei-fluo", iterations=2, threads=1, tta=4)
    assert flipped.params["tta"] == 4
    out, prob = tmp_path / "lab.zarr", tmp_path / "lab.prob.zarr"
    kw = dict(model="nuclei-fluo", tile=0, threads=1, chunk=3, iterations=2)
    stream_segment(raw_zarr, out, tta=1, **kw)  # a finished prediction without flips ...
    stages = []
    stream_segment(
        raw_zarr, out, overwrite=True, tta=4, progress=lambda s, d, t: stages.append(s), **kw
    )
    assert "predict" in stages  # ... is not reused for a run with them
    group = zarr.open_group(str(prob))
    assert group.attrs["tta"] == 4 and group.attrs["predicted"]["tta"] == 4
    np.testing.assert_array_equal(group["foreground"][:], flipped.maps["foreground"])
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], flipped.labels)
    stages.clear()  # and the other way round
    stream_segment(
        raw_zarr, out, overwrite=True, tta=1, progress=lambda s, d, t: stages.append(s), **kw
    )
    assert "predict" in stages and zarr.open_group(str(prob)).attrs["tta"] == 1
    # without tta: the model's own flips (its calibration's), recorded as such
    from napari_hemd.models import load_model
    from napari_hemd.models.prediction import model_tta

    own = model_tta(load_model("nuclei-fluo"))
    stream_segment(raw_zarr, out, overwrite=True, **kw)
    assert zarr.open_group(str(prob)).attrs["tta"] == own == zarr.open_array(str(out)).attrs["tta"]
    if own == 4:
        np.testing.assert_array_equal(zarr.open_array(str(out))[:], flipped.labels)
        capsys.readouterr()  # the command says so, and how to go faster
        cmd = ["stream", str(raw_zarr), "--model", "nuclei-fluo", "--iterations", "2"]
        assert main([*cmd, "-o", str(tmp_path / "c.zarr"), "--threads", "1", "--no-progress"]) == 0
        said = capsys.readouterr().err
        assert "stream: 4 mirrored views averaged (the model's own; --tta 1: 4x faster" in said
    base = ["predict", str(raw_zarr), "--model", "nuclei-fluo", "--tta", "4", "--threads", "1"]
    for name in ("p.zarr", "p.tif"):  # chunked into a zarr group, or frame by frame
        assert main([*base, "-o", str(tmp_path / name), "--no-progress"]) == 0
    np.testing.assert_array_equal(
        zarr.open_group(str(tmp_path / "p.zarr"))["foreground"][:], flipped.maps["foreground"]
    )
    from napari_hemd.io import read_stack

    np.testing.assert_array_equal(read_stack(tmp_path / "p.tif"), flipped.maps["foreground"])
    capsys.readouterr()
    args = ["stream", str(raw_zarr), "-o", str(tmp_path / "x.zarr"), "--tta", "4"]
    assert main(args) == 2
    assert "--tta needs --model" in capsys.readouterr().err
    args = ["predict", str(raw_zarr), "--model", "nuclei-affinity", "--tta", "4"]
    assert main([*args, "-o", str(tmp_path / "a.zarr")]) == 2
    assert "tta=4 needs a U-Net model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base[:-2], "--tta", "3", "-o", str(tmp_path / "b.zarr")])
    assert "--tta: invalid choice: 3 (choose from 1, 2, 4, 8)" in capsys.readouterr().err


def test_zoom_in_the_stream(raw, raw_zarr, tmp_path, capsys):
    """``scale`` reaches the stream's prediction (sizes converted as segment_image does); maps
    at one zoom never stand in for maps at another."""
    from napari_hemd import segment_image

    zoomed = segment_image(raw, "nuclei-fluo", iterations=2, threads=1, scale=0.5)
    out, prob = tmp_path / "lab.zarr", tmp_path / "lab.prob.zarr"
    kw = dict(model="nuclei-fluo", tile=0, threads=1, chunk=3, iterations=2)
    stream_segment(raw_zarr, out, **kw)
    stages = []
    stream_segment(
        raw_zarr, out, overwrite=True, scale=0.5, progress=lambda s, d, t: stages.append(s), **kw
    )
    assert "predict" in stages
    group = zarr.open_group(str(prob))
    assert group.attrs["scale"] == 0.5 and group.attrs["predicted"]["scale"] == 0.5
    np.testing.assert_array_equal(group["foreground"][:], zoomed.maps["foreground"])
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], zoomed.labels)
    args = ["stream", str(raw_zarr), "-o", str(tmp_path / "x.zarr"), "--scale", "0.5"]
    assert main(args) == 2
    assert "--scale needs --model" in capsys.readouterr().err
    # the zoom-1 video's nuclei (about 18 px) zoomed by 0.5 are far smaller than nuclei-fluo's 26-46:
    # the stream says so, as segment --model does
    args += ["--model", "nuclei-fluo", "--threads", "1", "--iterations", "2", "--no-progress"]
    assert main(args) == 0
    said = capsys.readouterr().err
    assert "note: the objects found are" in said and "small for this model" in said, said
    with pytest.raises(ValueError, match="scale is only used with a model"):
        stream_segment(raw_zarr, tmp_path / "y.zarr", scale=0.5)


def test_cli_errors_name_the_argument(raw_zarr, tmp_path, capsys):
    out = str(tmp_path / "lab.zarr")
    assert main(["stream", str(raw_zarr), "-o", out, "--prob-output", "p.zarr"]) == 2
    assert "--prob-output needs --model" in capsys.readouterr().err
    args = ["stream", str(raw_zarr), "-o", out, "--model", "nuclei-fluo"]
    assert main([*args, "--prob-output", str(tmp_path / "p.tif")]) == 2
    assert "prob_output must be a .zarr store; got" in capsys.readouterr().err
    assert main([*args, "--prob-output", out]) == 2
    assert "prob_output and output must differ" in capsys.readouterr().err
    tif = str(tmp_path / "p.tif")
    predict = ["predict", str(raw_zarr), "--model", "nuclei-fluo", "-o", tif, "--workers", "2"]
    assert main(predict) == 2
    assert "--workers / --scheduler write a .zarr OUT" in capsys.readouterr().err
    assert not (tmp_path / "lab.prob.zarr").exists()


def test_stream_segment_starts_its_own_local_cluster(tmp_path, caplog):
    """``workers=N`` starts (and closes) a loopback cluster; progress reports it starting.

    Dask's own INFO lines (30 of them: scheduler, nanny, workers) stay out of the user's log
    unless ours are shown (``-v``).
    """
    prob = nuclei_video(n_frames=8, shape=(96, 96), n_cells=6, seed=3)["prob"]
    path = tmp_path / "prob.zarr"
    z = zarr.create_array(str(path), shape=prob.shape, chunks=(1, 96, 96), dtype=np.float32)
    z[:] = prob
    events = []
    out = stream_segment(
        path,
        tmp_path / "lab.zarr",
        workers=1,
        chunk=3,
        iterations=2,
        progress=lambda *e: events.append(e),
    )
    assert events[0] == ("cluster", 0, 0) and events[-1] == ("windows", 3, 3)
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], hemd(prob, iterations=2).labels)
    chatter = [r for r in caplog.records if r.name.startswith("distributed")]
    assert all(r.levelno >= logging.WARNING for r in chatter), chatter[:3]
