"""What a new user's slips give: errors before the work, outputs shaped like the input."""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np
import pytest
import tifffile

from napari_hemd.cli import main
from napari_hemd.data.synthetic import nuclei_video
from napari_hemd.io import read_stack


@pytest.fixture(scope="module")
def video():
    return nuclei_video(n_frames=3, shape=(96, 96), n_cells=6, seed=5)


def _never_load(monkeypatch):
    """Loading a model (the start of a prediction) fails the test."""
    import napari_hemd.models.prediction as prediction

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(prediction, "_resolve_model", refuse)
    monkeypatch.setattr("napari_hemd.models.load_model", refuse)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--tau", "1.5"], "tau must be in [0, 1]; got 1.5"),
        (["--delta", "-1"], "delta must be > 0; got -1.0"),
        (["--connectivity", "5"], "up to 2 (full) for 2D frames, up to 3 for 3D frames; got 5"),
        (["--min-size", "-5"], "min_size must be >= 0; got -5"),
        (["--iterations", "-1"], "iterations must be between 0 and"),
        (["--max-candidates", "0"], "max_candidates must be >= 1; got 0"),
    ],
)
@pytest.mark.parametrize("command", ["segment", "stream"])
def test_bad_hemd_options_fail_before_any_prediction(
    video, tmp_path, capsys, monkeypatch, command, option, message
):
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, video["image"], photometric="minisblack")
    _never_load(monkeypatch)
    out = tmp_path / ("o.tif" if command == "segment" else "o.zarr")
    argv = [command, str(raw), "--model", "nuclei-fluo", "-o", str(out), "--no-progress"]
    assert main([*argv, *option]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_2d_image_gives_2d_masks_and_link_keeps_one_frame(video, tmp_path):
    prob = tmp_path / "p2d.tif"
    tifffile.imwrite(prob, video["prob"][0])
    plain, linked = tmp_path / "t.tif", tmp_path / "t_link"
    base = ["segment", str(prob), "--method", "threshold", "--no-progress"]
    assert main([*base, "-o", str(plain)]) == 0
    assert main([*base, "--link", "-o", str(linked)]) == 0
    labels = read_stack(plain)
    assert labels.shape == (96, 96) and labels.max() >= 2  # the image's shape, not (1, 96, 96)
    # linked: still one frame (rows were once linked as if they were frames)
    assert sorted(p.name for p in linked.glob("mask*.tif")) == ["mask000.tif"]
    np.testing.assert_array_equal(read_stack(linked)[0], labels)
    tracks = np.loadtxt(linked / "res_track.txt", dtype=int, ndmin=2)
    assert len(tracks) == labels.max() and (tracks[:, 1:3] == 0).all()
    for out in ("z.zarr", "o.ome.zarr"):  # every format the image's shape
        assert main([*base, "-o", str(tmp_path / out)]) == 0
        np.testing.assert_array_equal(read_stack(tmp_path / out), labels)


def test_warnings_are_one_line_and_only_where_they_apply(video, tmp_path):
    """As a user's shell shows them (a subprocess: pytest would capture the warnings)."""
    import subprocess
    import sys

    prob = tmp_path / "p2d.tif"
    tifffile.imwrite(prob, video["prob"][0])

    def run(*extra):
        argv = [sys.executable, "-m", "napari_hemd.cli", "segment", str(prob), "--no-progress"]
        out = subprocess.run([*argv, *extra], capture_output=True, text=True, check=True)
        return out.stderr

    err = run("-o", str(tmp_path / "t.tif"), "--method", "threshold")
    assert "H-EMD" not in err  # a baseline: no word about H-EMD's neighbouring frames
    err = run("-o", str(tmp_path / "h.tif"))  # H-EMD's: one line in the user's terms
    assert "WARNING: prob is a single 2D frame: H-EMD has no neighbouring frames" in err
    assert "UserWarning" not in err and ".py:" not in err


def test_a_2d_raw_image_with_a_model_gives_a_2d_mask(video, tmp_path, capsys):
    raw = tmp_path / "raw2d.tif"
    tifffile.imwrite(raw, video["image"][0])
    out = tmp_path / "l.tif"
    assert main(["segment", str(raw), "--model", "nuclei-fluo", "--tta", "1", "-o", str(out)]) == 0
    assert read_stack(out).shape == (96, 96)
    assert ": one image, " in capsys.readouterr().err


def test_a_folder_of_frames_of_other_sizes_is_named_before_any_work(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "movie"
    folder.mkdir()
    tifffile.imwrite(folder / "t000.tif", np.zeros((64, 64), np.uint16))
    tifffile.imwrite(folder / "t001.tif", np.zeros((48, 64), np.uint16))
    import napari_hemd.models.prediction as prediction

    def refuse(*_a, **_k):
        raise AssertionError("a frame was predicted before the folder was checked")

    monkeypatch.setattr(prediction, "iter_predict", refuse)
    argv = ["segment", str(folder), "--model", "nuclei-fluo", "-o", str(tmp_path / "o.tif")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "frames must share one size and type" in err
    assert "t000.tif is (64, 64) uint16, t001.tif is (48, 64) uint16" in err


def test_a_folder_of_frames_has_the_same_name_each_time_it_is_opened(tmp_path):
    """So that a stream of it resumes in a later process (the name was random)."""
    from napari_hemd.io.tiff import read_tiff_folder

    folder = tmp_path / "movie"
    folder.mkdir()
    for t in range(3):
        tifffile.imwrite(folder / f"t{t:03d}.tif", np.full((8, 8), t, np.uint16))
    first, again = read_tiff_folder(folder, lazy=True), read_tiff_folder(folder, lazy=True)
    assert first.name == again.name
    np.testing.assert_array_equal(first.compute(), read_tiff_folder(folder))
    tifffile.imwrite(folder / "t001.tif", np.full((8, 8), 7, np.uint16))  # a frame changed
    import os

    os.utime(folder / "t001.tif", ns=(1, 1))
    assert read_tiff_folder(folder, lazy=True).name != first.name


@pytest.mark.parametrize("command", ["stream", "compare"])
def test_a_raw_movie_is_not_taken_for_probabilities(video, tmp_path, capsys, command):
    raw = tmp_path / "raw.tif"
    narrow = (video["image"] * 300 + 90).astype(np.uint16)  # a raw movie's narrow uint16 band
    tifffile.imwrite(raw, narrow, photometric="minisblack")
    if command == "stream":
        argv = ["stream", str(raw), "-o", str(tmp_path / "o.zarr"), "--no-progress"]
    else:
        gt = tmp_path / "gt.tif"
        tifffile.imwrite(gt, video["labels"].astype(np.uint16), photometric="minisblack")
        argv = ["compare", str(raw), "--gt", str(gt)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "does not look like a probability map" in err and "--model" in err
    assert not (tmp_path / "o.zarr").exists()


def test_a_colour_channel_chosen_is_not_announced_as_grey(video, tmp_path):
    """``--channel 1`` of an RGB movie segments that channel: no "read as grey" warning."""
    import warnings

    rgb = np.zeros((*video["prob"].shape, 3), np.float32)
    rgb[..., 1] = video["prob"]  # the cells in green only
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    out = tmp_path / "o.tif"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["segment", str(path), "--channel", "1", "-o", str(out), "--no-progress"]) == 0
    assert not [w for w in seen if "read as grey" in str(w.message)]
    assert read_stack(out).max() >= 3  # the green channel's cells
    with warnings.catch_warnings(record=True) as seen:  # without --channel: said, as before
        warnings.simplefilter("always")
        main(["segment", str(path), "-o", str(tmp_path / "g.tif"), "--no-progress"])
    assert [w for w in seen if "read as grey" in str(w.message)]


def test_a_folder_of_later_frames_gives_masks_of_those_frames(video, tmp_path, capsys, caplog):
    """t050-t052 -> mask050-mask052 (and tracks in those frames): lined up with the reference."""
    from napari_hemd._log import NOTE

    caplog.set_level(NOTE)
    folder = tmp_path / "later"
    folder.mkdir()
    for t in range(3):
        tifffile.imwrite(folder / f"t{50 + t:03d}.tif", video["prob"][t])
    out = tmp_path / "res"
    assert main(["segment", str(folder), "--link", "-o", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.glob("mask*.tif")) == [
        f"mask{t:03d}.tif" for t in (50, 51, 52)
    ]
    tracks = np.loadtxt(out / "res_track.txt", dtype=int, ndmin=2)
    assert tracks[:, 1].min() == 50 and tracks[:, 2].max() == 52
    from napari_hemd.cli import main as cli

    gt = tmp_path / "gt"  # the CTC reference of those frames scores them, frame for frame
    (gt / "SEG").mkdir(parents=True)
    for t in range(3):
        tifffile.imwrite(
            gt / "SEG" / f"man_seg{50 + t:03d}.tif", video["labels"][t].astype(np.uint16)
        )
    assert cli(["evaluate", "--gt", str(gt), "--pred", str(out)]) == 0
    assert "F1" in capsys.readouterr().out
    gaps = tmp_path / "gaps"  # numbers with gaps: masks by position, said so
    gaps.mkdir()
    for i, t in enumerate((0, 10, 20)):
        tifffile.imwrite(gaps / f"t{t:03d}.tif", video["prob"][i])
    out2 = tmp_path / "res2"
    assert main(["segment", str(gaps), "-o", str(out2), "--no-progress"]) == 0
    assert sorted(p.name for p in out2.glob("mask*.tif")) == [
        "mask000.tif",
        "mask001.tif",
        "mask002.tif",
    ]
    assert "numbered 0-20 with gaps" in capsys.readouterr().err
    # not linked (no --link): its res_track.txt follows ids, not cells, and says so
    noted = [r.getMessage() for r in caplog.records if "not linked over time" in r.getMessage()]
    assert len(noted) == 1 and "add --link" in noted[0]
    assert main(["segment", str(gaps), "--link", "-o", str(out2), "--overwrite"]) == 0
    assert len([r for r in caplog.records if "not linked over time" in r.getMessage()]) == 1


def test_ctc_output_refuses_slices_of_another_axis(video, tmp_path, capsys):
    prob = tmp_path / "p.tif"
    tifffile.imwrite(prob, video["prob"], photometric="minisblack")
    assert main(["segment", str(prob), "--axis", "1", "-o", str(tmp_path / "res")]) == 2
    assert "--axis 1: a CTC result folder" in capsys.readouterr().err
    assert main(["segment", str(prob), "--axis", "1", "-o", str(tmp_path / "a1.tif")]) == 0
    assert "96 slice(s) along axis 1" in capsys.readouterr().err


def test_predict_a_2d_image_gives_2d_maps_in_every_format(video, tmp_path):
    import zarr

    raw = tmp_path / "raw2d.tif"
    tifffile.imwrite(raw, video["image"][0])
    for out in ("m.zarr", "m.tif"):
        argv = [
            "predict",
            str(raw),
            "--model",
            "nuclei-fluo",
            "--tta",
            "1",
            "-o",
            str(tmp_path / out),
        ]
        assert main(argv) == 0
    fg = zarr.open_group(str(tmp_path / "m.zarr"), mode="r")["foreground"]
    assert fg.shape == (96, 96)
    np.testing.assert_allclose(fg[...], tifffile.imread(tmp_path / "m.tif"), atol=1e-6)


def test_information_is_a_note_not_a_warning(video, tmp_path, caplog):
    """What a user should read but is no problem prints as ``note: ...``, not ``WARNING: ...``."""
    import logging

    from napari_hemd._log import NOTE

    prob, gt = tmp_path / "p.tif", tmp_path / "gt.tif"
    tifffile.imwrite(prob, video["prob"], photometric="minisblack")
    tifffile.imwrite(gt, video["labels"].astype(np.uint16), photometric="minisblack")
    with caplog.at_level(NOTE):
        assert main(["compare", str(prob), "--gt", str(gt)]) == 0
    left_out = [r for r in caplog.records if "maxvalue left out" in r.getMessage()]
    assert [r.levelname for r in left_out] == ["note"]
    assert NOTE > logging.INFO and NOTE < logging.WARNING


def test_empty_inputs_bad_threads_and_tiles_are_one_line_and_leave_nothing(tmp_path, capsys):
    """--threads 0 / -1 gave torch's traceback, an input with a zero-length axis with --model
    numpy's, --tile -16 was taken for untiled, zero frames were written as an empty store, and a
    refused or crashed stream left a hidden .NAME.partial folder beside the output."""
    np.save(tmp_path / "flat.npy", np.zeros((3, 0, 64), np.uint16))
    np.save(tmp_path / "none.npy", np.zeros((0, 64, 64), np.float32))
    nan = np.random.default_rng(0).random((4, 64, 64)).astype(np.float32)
    nan[1, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    model = ["--model", "nuclei-fluo", "--no-progress"]
    flat, none = str(tmp_path / "flat.npy"), str(tmp_path / "none.npy")
    out, lab = str(tmp_path / "o.tif"), str(tmp_path / "o.zarr")
    for argv, said in (
        (["segment", flat, "-o", out, *model, "--threads", "0"], "--threads: expected a whole"),
        (["predict", flat, "-o", lab, *model, "--threads", "-1"], "--threads: expected a whole"),
        (["segment", flat, "-o", out, *model], "image is empty (shape (3, 0, 64))"),
        (["predict", flat, "-o", out, *model], "image is empty"),
        (["stream", flat, "-o", lab, *model], "image is empty"),
        (["predict", none, "-o", lab, *model], "image is empty (shape (0, 64, 64))"),
        (["stream", none, "-o", lab, "--no-progress"], "prob is empty (shape (0, 64, 64))"),
        (["stream", str(tmp_path / "nan.npy"), "-o", lab, "--no-progress"], "must be finite"),
    ):
        with pytest.raises(SystemExit) if "--threads" in said else contextlib.nullcontext():
            assert main(argv) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.npy", "nan.npy", "none.npy"]
    from napari_hemd.models.prediction import resolve_tiling

    with pytest.raises(ValueError, match=r"tile must be 0 \(untiled\) or a positive multiple"):
        resolve_tiling((64, 64), -16, None, 16)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_lock_of_a_killed_unreaped_run_is_stale(tmp_path):
    """A run killed with SIGKILL whose parent had not reaped it yet (a zombie) kept its output
    locked: kill(pid, 0) answers for zombies."""
    import signal
    import subprocess
    import sys
    import time

    from napari_hemd._atomic import _alive

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _alive(proc.pid)
        proc.send_signal(signal.SIGKILL)
        for _ in range(100):  # killed, not reaped (no wait() yet): a zombie
            state = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            time.sleep(0.05)
        assert not _alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_complex_images_truncated_npy_and_a_negative_rate_are_one_line(tmp_path, capsys):
    """A complex image with --model ran with casting warnings; a truncated .npy gave numpy's
    'mmap length is greater than file size' naming no file; --lr -1 gave torch's message."""
    from napari_hemd.models import TrainConfig

    np.save(tmp_path / "c.npy", (np.ones((2, 32, 32)) + 1j).astype(np.complex64))
    whole = tmp_path / "whole.npy"
    np.save(whole, np.zeros((4, 64, 64), np.float32))
    (tmp_path / "cut.npy").write_bytes(whole.read_bytes()[:4000])
    out = str(tmp_path / "o.tif")
    argv = ["segment", str(tmp_path / "c.npy"), "-o", out, "--model", "nuclei-fluo"]
    assert main([*argv, "--no-progress"]) == 2
    assert "image must hold real grey values; got dtype complex64" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "cut.npy"), "-o", out, "--no-progress"]) == 2
    assert f"input {str(tmp_path / 'cut.npy')!r} is not a readable .npy file" in (
        capsys.readouterr().err
    )
    with pytest.raises(ValueError, match=r"lr \(--lr\) must be > 0; got -1"):
        TrainConfig(lr=-1)


def test_a_boundary_map_is_segmented_through_its_complement_with_invert(tmp_path, capsys):
    """ilastik / EM boundary detectors give membrane probability: --invert segments 1 - map
    (float or uint8, lazily, in segment and stream) exactly as the complement given by hand;
    the map itself, given as a foreground, finds the borders instead of the cells."""
    import zarr
    from skimage.draw import disk
    from skimage.segmentation import find_boundaries

    from napari_hemd import segment as segment_api
    from napari_hemd.core.metrics import f1_score

    gt = np.zeros((3, 96, 96), np.uint16)  # cells of 12 px radius, two pairs touching
    for t in range(3):
        for i, (y, x) in enumerate(((20, 20 + t), (20, 43 + t), (65, 30), (65, 53), (40, 78))):
            gt[t][disk((y, x), 12, shape=gt.shape[1:])] = i + 1
    border = np.stack([find_boundaries(f, mode="inner") | (f == 0) for f in gt])
    boundary = np.where(border, 0.95, 0.1).astype(np.float32)
    tifffile.imwrite(tmp_path / "b.tif", boundary, photometric="minisblack")
    tifffile.imwrite(tmp_path / "b8.tif", (boundary * 255).round().astype(np.uint8))
    expected = segment_api(1 - boundary, min_size=20)
    assert f1_score(gt, expected) > 0.9
    for name in ("b.tif", "b8.tif"):
        out = tmp_path / f"o_{name}"
        assert main(["segment", str(tmp_path / name), "--invert", "--min-size", "20", "-o",
                     str(out), "--no-progress"]) == 0  # fmt: skip
        np.testing.assert_array_equal(tifffile.imread(out), expected)
    assert main(["stream", str(tmp_path / "b.tif"), "--invert", "--min-size", "20", "-o",
                 str(tmp_path / "s.zarr"), "--no-progress"]) == 0  # fmt: skip
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "s.zarr"), mode="r")[:], expected)
    plain = tmp_path / "plain.tif"
    assert main(["segment", str(tmp_path / "b.tif"), "-o", str(plain), "--no-progress"]) == 0
    assert f1_score(gt, tifffile.imread(plain)) < 0.5  # the borders, not the cells
    capsys.readouterr()
    assert main(["segment", str(tmp_path / "b.tif"), "--invert", "--model", "nuclei-fluo",
                 "-o", str(tmp_path / "m.tif")]) == 2  # fmt: skip
    assert "--invert takes a boundary probability map" in capsys.readouterr().err


def test_a_noisy_map_segmented_at_every_size_gets_a_min_size_note(tmp_path, caplog):
    """Most objects under 20 px (a map's noise at --min-size 0): a note names --min-size."""
    from napari_hemd._log import NOTE

    caplog.set_level(NOTE)
    noisy = np.random.default_rng(0).random((2, 64, 64), dtype=np.float32)
    tifffile.imwrite(tmp_path / "n.tif", noisy)
    assert main(["segment", str(tmp_path / "n.tif"), "-o", str(tmp_path / "a.tif")]) == 0
    notes = [r.getMessage() for r in caplog.records if "--min-size 20 drops" in r.getMessage()]
    assert len(notes) == 1 and "smaller than 20 pixels" in notes[0]
    caplog.clear()
    assert main(["segment", str(tmp_path / "n.tif"), "--min-size", "5", "-o",
                 str(tmp_path / "b.tif")]) == 0  # fmt: skip
    assert not [r for r in caplog.records if "--min-size 20 drops" in r.getMessage()]


def test_workers_without_dask_distributed_is_one_line_naming_the_extra(
    video, tmp_path, capsys, monkeypatch
):
    """Without the optional ``distributed`` package --workers ended in a traceback."""
    import sys

    tifffile.imwrite(tmp_path / "p.tif", video["prob"])
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    out = tmp_path / "o.zarr"
    assert main(["stream", str(tmp_path / "p.tif"), "-o", str(out), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'napari-hemd[distributed]'" in err and "Traceback" not in err
    assert not out.exists()


def test_link_gives_a_streamed_movie_the_tracks_segment_link_gives(video, tmp_path, capsys):
    """stream has no --link (its windows' ids are their own): ``napari-hemd link`` links its
    output two frames at a time into the CTC folder, zarr or TIFF segment --link writes."""
    import zarr

    from napari_hemd.io.ctc import read_ctc_labels, read_ctc_tracks

    prob = np.concatenate([video["prob"]] * 3)  # 9 frames
    tifffile.imwrite(tmp_path / "p.tif", prob)
    assert main(["segment", str(tmp_path / "p.tif"), "--link", "-o", str(tmp_path / "want"),
                 "--no-progress"]) == 0  # fmt: skip
    summary = capsys.readouterr().err.strip().splitlines()[-1]  # the tracks, the divisions
    assert re.search(r"max label \d+, \d+ tracks, \d+ divisions?, ", summary), summary
    assert main(["stream", str(tmp_path / "p.tif"), "-o", str(tmp_path / "s.zarr"), "--chunk",
                 "4", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["link", str(tmp_path / "s.zarr"), "-o", str(tmp_path / "got"),
                 "--no-progress"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "link: 9 frame(s), " in err and summary.split(", ")[2] in err  # the same tracks
    want, got = read_ctc_labels(tmp_path / "want"), read_ctc_labels(tmp_path / "got")
    assert sorted(got) == sorted(want) == list(range(9))
    for t in want:
        np.testing.assert_array_equal(got[t], want[t])
    np.testing.assert_array_equal(
        read_ctc_tracks(tmp_path / "got" / "res_track.txt"),
        read_ctc_tracks(tmp_path / "want" / "res_track.txt"),
    )
    # a .zarr keeps the lineage in its attributes (as stream's linked stacks), measure reads it
    assert main(["link", str(tmp_path / "s.zarr"), "-o", str(tmp_path / "l.zarr")]) == 0
    z = zarr.open_array(str(tmp_path / "l.zarr"), mode="r")
    np.testing.assert_array_equal(z[4], want[4])
    assert np.asarray(z.attrs["tracks"]).shape[1] == 4
    # a CTC folder of later frames keeps its numbers; not labels, a bad delta: one line
    later = tmp_path / "later"
    later.mkdir()
    for t in range(3):
        tifffile.imwrite(later / f"mask{20 + t:03d}.tif", want[t].astype(np.uint16))
    assert main(["link", str(later), "-o", str(tmp_path / "res")]) == 0
    assert sorted(read_ctc_labels(tmp_path / "res")) == [20, 21, 22]
    capsys.readouterr()
    assert main(["link", str(tmp_path / "p.tif"), "-o", str(tmp_path / "x")]) == 2
    assert "does not look like instance labels" in capsys.readouterr().err
    assert main(["link", str(tmp_path / "s.zarr"), "-o", str(tmp_path / "y"), "--delta", "0"]) == 2
    assert "delta must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_stream_link_gives_what_segment_link_gives_and_resumes_its_linking(
    video, tmp_path, capsys, monkeypatch
):
    """``stream --link``: the streamed labels linked over time into a CTC folder (or .zarr /
    .tif), equal to ``segment --link``'s; a run killed while linking is rerun from its streamed
    labels (kept hidden beside OUT), which a run with other arguments does not reuse."""
    import napari_hemd.pipeline as pipeline
    from napari_hemd.io.ctc import read_ctc_labels, read_ctc_tracks

    prob = np.concatenate([video["prob"]] * 3)  # 9 frames
    tifffile.imwrite(tmp_path / "p.tif", prob)
    assert main(["segment", str(tmp_path / "p.tif"), "--link", "-o", str(tmp_path / "want"),
                 "--no-progress"]) == 0  # fmt: skip
    want = read_ctc_labels(tmp_path / "want")
    args = ["stream", str(tmp_path / "p.tif"), "--chunk", "4", "--link", "--no-progress"]

    real, calls = pipeline.link_stack, []

    def killed(*a, **k):
        calls.append(1)
        raise KeyboardInterrupt  # killed while linking

    monkeypatch.setattr(pipeline, "link_stack", killed)
    assert main([*args, "-o", str(tmp_path / "got")]) == 130  # interrupted
    hidden = tmp_path / ".got.unlinked.zarr"
    assert hidden.is_dir() and not (tmp_path / "got").exists()
    monkeypatch.setattr(pipeline, "link_stack", real)
    streamed = []
    monkeypatch.setattr(pipeline, "stream_segment", lambda *a, **k: streamed.append(1))
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "got")]) == 0  # linked from what was streamed
    err = capsys.readouterr().err
    assert not streamed and "linking the labels a previous run left" in err
    assert "frames/s" not in err  # no rate of a run that did not run (review)
    assert re.search(r"stream: linked over time, \d+ tracks, .* -> .*got", err), err
    assert not hidden.exists()
    got = read_ctc_labels(tmp_path / "got")
    assert sorted(got) == sorted(want) == list(range(9))
    for t in want:
        np.testing.assert_array_equal(got[t], want[t])
    np.testing.assert_array_equal(
        read_ctc_tracks(tmp_path / "got" / "res_track.txt"),
        read_ctc_tracks(tmp_path / "want" / "res_track.txt"),
    )
    # other arguments: a stale hidden store is not reused
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "link_stack", killed)
    assert main([*args, "-o", str(tmp_path / "l.zarr")]) == 130
    monkeypatch.undo()
    assert (tmp_path / ".l.zarr.unlinked.zarr").is_dir()
    assert main([*args, "--delta", "0.5", "-o", str(tmp_path / "l.zarr")]) == 0
    assert "a previous run left" not in capsys.readouterr().err
    import zarr

    z = zarr.open_array(str(tmp_path / "l.zarr"), mode="r")
    assert z.attrs["delta"] == 0.5 and np.asarray(z.attrs["tracks"]).shape[1] == 4
    # refused before any work: --follow, an existing output, a 4D input
    for extra, message in (
        (["--follow", "1", "-o", str(tmp_path / "f.zarr")], "drop --link"),
        (["-o", str(tmp_path / "got")], "exists"),
        (["-o", str(tmp_path / "x.png")], "expected a .tif/.tiff file, a .zarr store or a folder"),
    ):
        assert main([*args, *extra]) == 2
        assert message in capsys.readouterr().err, extra
    np.save(tmp_path / "p4.npy", np.stack([prob] * 5, 1))
    assert main(["stream", str(tmp_path / "p4.npy"), "--link", "-o", str(tmp_path / "s4")]) == 2
    assert "--link links a (T, Y, X) movie" in capsys.readouterr().err


def test_sigterm_stops_a_run_as_ctrl_c_does(video, tmp_path, capsys, monkeypatch):
    """A run killed with SIGTERM (``kill``, a scheduler's time limit) left its hidden lock and
    temporary output in the user's folder and said nothing (audit 20): it stops as on Ctrl-C,
    the old output intact, nothing left, exit 143."""
    import signal

    import napari_hemd.core.segment as core

    tifffile.imwrite(tmp_path / "p.tif", video["prob"])
    out = tmp_path / "labels.tif"
    out.write_bytes(b"old")
    real = core.segment

    def killed(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)  # while the output is being made
        return real(*a, **k)

    monkeypatch.setattr(core, "segment", killed)
    before = signal.getsignal(signal.SIGTERM)
    args = ["segment", str(tmp_path / "p.tif"), "--method", "threshold", "--no-progress"]
    assert main([*args, "-o", str(out), "--overwrite"]) == 143
    assert "napari-hemd segment: terminated" in capsys.readouterr().err
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "labels.tif",
        "p.tif",
    ]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is this run's only


@pytest.mark.parametrize("stop", [KeyboardInterrupt, "Terminated"])
def test_a_stopped_stream_says_where_its_work_is_kept(
    video, tmp_path, capsys, caplog, monkeypatch, stop
):
    """Ctrl-C or SIGTERM of ``stream`` said only "interrupted" (audit 31), though its finished
    windows are kept and the same command resumes: it says so, and a rerun does resume."""
    import napari_hemd.cli as cli
    import napari_hemd.core.streaming as streaming

    stop = cli.Terminated if stop == "Terminated" else stop
    np.save(tmp_path / "p.npy", video["prob"])
    real = streaming._Progress.mark

    def mark(self, index):
        real(self, index)
        if index == 1:  # after two windows
            raise stop

    monkeypatch.setattr(streaming._Progress, "mark", mark)
    args = ["stream", str(tmp_path / "p.npy"), "--chunk", "2", "--halo", "1", "--no-progress"]
    out = tmp_path / "l.zarr"
    assert main([*args, "-o", str(out)]) == (143 if stop is cli.Terminated else 130)
    word = "terminated" if stop is cli.Terminated else "interrupted"
    kept = tmp_path / ".l.zarr.partial"
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"napari-hemd stream: {word}; the work finished so far is kept in {kept}, and the same "
            "command resumes"
        )
    )
    assert kept.is_dir() and not out.exists()
    # --no-resume starts over when run again, and another output's folder is not this run's
    # (review 32: "kept in .l.v2.zarr.partial" for -o l.zarr)
    (tmp_path / ".l.v2.zarr.partial").mkdir()
    assert main([*args, "--no-resume", "-o", str(out)]) == (143 if stop is cli.Terminated else 130)
    assert capsys.readouterr().err.strip().endswith(f"napari-hemd stream: {word}")
    monkeypatch.setattr(streaming._Progress, "mark", real)
    assert main([*args, "-o", str(out)]) == 0
    assert "resuming an interrupted run" in caplog.text and out.is_dir()


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_inside_a_compiled_kernel_stops_as_ctrl_c_does(
    video, tmp_path, capsys, monkeypatch, signal_name
):
    """numba turns a signal arriving while it loads a cached kernel into ``SystemError: ...
    returned a result with an exception set`` (audit 28: a traceback and exit 1)."""
    import signal

    import napari_hemd.core.segment as core

    tifffile.imwrite(tmp_path / "p.tif", video["prob"])

    def in_numba(*a, **k):
        try:
            os.kill(os.getpid(), getattr(signal, signal_name))
        except KeyboardInterrupt as exc:  # what numba's dispatcher makes of it
            raise SystemError("CPUDispatcher(<function kernel>) returned a result with an "
                              "exception set") from exc  # fmt: skip
        raise AssertionError("the signal did not arrive")

    monkeypatch.setattr(core, "segment", in_numba)
    args = ["segment", str(tmp_path / "p.tif"), "--method", "threshold", "--no-progress"]
    code, word = (143, "terminated") if signal_name == "SIGTERM" else (130, "interrupted")
    assert main([*args, "-o", str(tmp_path / "l.tif")]) == code
    assert capsys.readouterr().err.strip() == f"napari-hemd segment: {word}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tif"]

    def other(*a, **k):  # a SystemError of ours stays a bug: raised
        raise SystemError("something else")

    monkeypatch.setattr(core, "segment", other)
    with pytest.raises(SystemError, match="something else"):
        main([*args, "-o", str(tmp_path / "l.tif")])


def test_three_inputs_named_in_one_line(video, tmp_path, capsys):
    """Audit 20: ``stream`` on one 2D image, ``predict`` on a truncated TIFF and ``link`` on
    labels with a negative id failed with numpy's or tifffile's words, naming nothing."""
    tifffile.imwrite(tmp_path / "one.tif", (video["image"][0] * 1000).astype(np.uint16))
    assert main(["stream", str(tmp_path / "one.tif"), "-o", str(tmp_path / "s.zarr")]) == 2
    assert "got shape (" in capsys.readouterr().err
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, (video["image"][:2] * 1000).astype(np.uint16))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size - 600])  # the last frame's end
    args = ["predict", str(cut), "--model", "nuclei-fluo", "--tta", "1", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "p.tif")]) == 2
    assert f"{cut.name}' is not a readable TIFF" in capsys.readouterr().err
    labels = video["labels"].astype(np.int32)
    labels[1, 0, 0] = -1
    tifffile.imwrite(tmp_path / "neg.tif", labels)
    assert main(["link", str(tmp_path / "neg.tif"), "-o", str(tmp_path / "l")]) == 2
    assert "labels: expected ids >= 0; got -1 (frame 1)" in capsys.readouterr().err


def test_maxvalue_on_a_models_maps_takes_their_boundary(video, tmp_path, capsys):
    """``segment maps.zarr --method maxvalue`` failed with a bare ``error: boundary`` (a
    KeyError) on maps without one: said; with predict's boundary, as ``segment --model``."""
    tifffile.imwrite(tmp_path / "img.tif", video["image"].astype(np.float32))
    quiet = ["--tta", "1", "--no-progress"]
    predict = ["predict", str(tmp_path / "img.tif"), "--model", "nuclei-fluo", *quiet]
    assert main([*predict, "-o", str(tmp_path / "fg.zarr")]) == 0
    args = ["segment", str(tmp_path / "fg.zarr"), "--method", "maxvalue", "-o"]
    assert main([*args, str(tmp_path / "x.tif")]) == 2
    assert "needs the maps' boundary" in capsys.readouterr().err
    outputs = ["--outputs", "foreground,boundary,background"]
    assert main([*predict, *outputs, "-o", str(tmp_path / "all.zarr")]) == 0
    assert main(["segment", str(tmp_path / "all.zarr"), "--method", "maxvalue", "-o",
                 str(tmp_path / "m.tif"), "--no-progress"]) == 0  # fmt: skip
    assert main(["segment", str(tmp_path / "img.tif"), "--model", "nuclei-fluo", "--method",
                 "maxvalue", "-o", str(tmp_path / "d.tif"), *quiet]) == 0  # fmt: skip
    want = tifffile.imread(tmp_path / "d.tif")
    assert want.max() > 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "m.tif"), want)


def test_an_option_is_taken_only_as_spelled_out(video, tmp_path, capsys):
    """argparse took ``--overwrit`` for ``--overwrite`` and replaced the output without a word
    (audit 33): a prefix of an option is refused as unknown, and nothing is replaced."""
    np.save(tmp_path / "p.npy", video["prob"])
    out = tmp_path / "l.tif"
    out.write_bytes(b"old")
    argv = ["segment", str(tmp_path / "p.npy"), "-o", str(out), "--no-progress"]
    for prefix in ("--overwrit", "--over", "--no-prog"):
        with pytest.raises(SystemExit) as stop:
            main([*argv, prefix])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert f"unrecognized arguments: {prefix} " in err and err.count("\n") == 1, err
    assert out.read_bytes() == b"old"


def test_the_kept_work_named_is_the_run_s_own(tmp_path):
    """Which partial folder a stopped run names: its output's, its maps' (stream --model's
    default OUT.prob.zarr: review 32b), none for runs that start over (review 32)."""
    import argparse

    from napari_hemd.cli import _resumable_work

    def args(**kw):
        base = {"command": "stream", "output": str(tmp_path / "lab.zarr"), "prob_output": None,
                "model": None, "no_resume": False}  # fmt: skip
        return argparse.Namespace(**{**base, **kw})

    assert _resumable_work(args()) is None
    maps = tmp_path / ".lab.prob.zarr.partial"
    maps.mkdir()
    assert _resumable_work(args()) is None  # no model: not this run's
    assert _resumable_work(args(model="nuclei-fluo")) == str(maps)
    own = tmp_path / ".lab.zarr.partial"
    own.mkdir()
    assert _resumable_work(args(model="nuclei-fluo")) == str(own)
    assert _resumable_work(args(no_resume=True)) is None
    assert _resumable_work(args(command="segment")) is None
    (tmp_path / ".lab.v2.zarr.partial").mkdir()
    assert _resumable_work(args(output=str(tmp_path / "lab.v3.zarr"))) is None
    # maps of its own (--prob-output) are not the default's; no name, no folder (review 32c)
    other = str(tmp_path / "m.zarr")
    assert (
        _resumable_work(args(output=str(tmp_path / "x.zarr"), model="m", prob_output=other)) is None
    )
    assert _resumable_work(args(output=".", model="m")) is None
    assert _resumable_work(args(output="/", model="m")) is None


def test_a_raw_movie_scaled_to_0_1_given_as_a_map_is_noted(shared_data, tmp_path, capsys):
    """Audit 35: a raw HeLa crop as float32 in [0, 1] (a Fiji 32-bit export) without --model was
    segmented as a probability map: 12 labelled pixels of 196,608, exit 0, no word. It still
    runs (a real map may be faint), with a note naming --model; a model's map gets none."""
    raw = np.stack(
        [
            tifffile.imread(shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01" / f"t{t:03d}.tif")
            for t in range(2)
        ]
    ).astype(np.float32)[:, :256, :256]
    raw = (raw - raw.min()) / (raw.max() - raw.min())
    tifffile.imwrite(tmp_path / "raw01.tif", raw)
    assert main(["segment", str(tmp_path / "raw01.tif"), "-o", str(tmp_path / "a.tif")]) == 0
    err = capsys.readouterr().err
    assert "note: INPUT is taken as a probability map, but 9" in err and "add --model" in err
    prob = nuclei_video(n_frames=2, shape=(96, 96), n_cells=4, seed=1)["prob"]
    tifffile.imwrite(tmp_path / "prob.tif", prob.astype(np.float32))
    assert main(["segment", str(tmp_path / "prob.tif"), "-o", str(tmp_path / "b.tif")]) == 0
    assert "taken as a probability map" not in capsys.readouterr().err


def test_a_named_time_lapse_of_3_slice_stacks_is_segmented(tmp_path):
    """Review 33: an ImageJ TZYX file of 3-slice stacks passed the command line's check (its
    axes name Z) and was then refused by segment_image as channels."""
    img = nuclei_video(n_frames=6, shape=(64, 64), n_cells=4, seed=3)["image"]
    movie = np.stack([img[0:3], img[3:6]])  # (T=2, Z=3, Y, X)
    tifffile.imwrite(tmp_path / "tzyx.tif", movie, imagej=True, metadata={"axes": "TZYX"})
    args = ["segment", str(tmp_path / "tzyx.tif"), "-o", str(tmp_path / "out.tif")]
    assert main([*args, "--model", "nuclei-fluo", "--tta", "1", "--no-progress"]) == 0
    assert tifffile.imread(tmp_path / "out.tif").shape == movie.shape
