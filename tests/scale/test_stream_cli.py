"""``napari-hemd stream``: zarr in, zarr out, equal to ``segment``; errors name the argument."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_hemd.cli import main
from napari_hemd.core.segment import hemd


def test_stream_cli(video, tmp_path, capsys):
    src = tmp_path / "prob.zarr"
    z = zarr.create_array(str(src), shape=video.shape, chunks=(1, 96, 96), dtype=np.float32)
    z[:] = video
    out = tmp_path / "lab.zarr"
    args = ["stream", str(src), "-o", str(out), "--chunk", "7", "--iterations", "3"]
    assert main([*args, "--no-progress"]) == 0
    assert "frames/s" in capsys.readouterr().err
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], hemd(video, iterations=3).labels)
    assert main([*args, "--no-progress"]) == 2  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(["stream", str(src), "-o", str(tmp_path / "x.tif")]) == 2
    assert "--output must be a .zarr" in capsys.readouterr().err


def test_stream_cli_tiff_is_read_lazily(video, tmp_path):
    import pickle

    import tifffile

    from napari_hemd.io.tiff import TiffFrames

    src = tmp_path / "prob.tif"
    tifffile.imwrite(src, video)
    frames = pickle.loads(pickle.dumps(TiffFrames(str(src))))
    assert frames.shape == video.shape
    np.testing.assert_array_equal(frames[3], video[3])
    out = tmp_path / "lab.zarr"
    assert main(["stream", str(src), "-o", str(out), "--iterations", "2", "--no-progress"]) == 0
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], hemd(video, iterations=2).labels)


def test_stream_cli_follow(video, tmp_path, capsys):
    src = tmp_path / "live.zarr"
    z = zarr.create_array(str(src), shape=video.shape, chunks=(1, 96, 96), dtype=np.float32)
    z[:] = video
    out = tmp_path / "lab.zarr"
    args = ["stream", str(src), "-o", str(out), "--iterations", "2", "--follow", "0"]
    assert main(args) == 0
    assert zarr.open_array(str(out)).attrs["frames_written"] == len(video)
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], hemd(video, iterations=2).labels)
    assert main([*args, "--overwrite", "--workers", "2"]) == 2
    # a model would be ignored there (the frames are probabilities): refused, not ignored
    for extra in (["--model", "nuclei-fluo"], ["--tta", "4"], ["--scale", "0.5"]):
        assert main([*args, "--overwrite", *extra]) == 2
        assert "--follow segments probabilities another process writes" in capsys.readouterr().err


def test_follow_refuses_bad_input_and_keeps_the_old_output(video, tmp_path, capsys):
    """stream --follow --overwrite removed the existing labels before it looked at the input: a
    refused input (values above 1) left no output at all. And a raw movie was segmented as
    probabilities (one object covering each frame, exit 0); without --follow it is refused."""
    from napari_hemd.data.synthetic import nuclei_video

    out = tmp_path / "lab.zarr"
    good = tmp_path / "good.zarr"
    zarr.create_array(str(good), data=video, chunks=(1, 96, 96))
    assert main(["stream", str(good), "-o", str(out), "--iterations", "2", "--no-progress"]) == 0
    before = zarr.open_array(str(out))[:]
    raw = nuclei_video(n_frames=4, shape=(96, 96), n_cells=8, seed=1)["image"]
    bad = {"over": video * 3, "raw": (raw / raw.max() * 3000 + 200).astype(np.uint16)}
    for name, data in bad.items():
        src = tmp_path / f"{name}.zarr"
        zarr.create_array(str(src), data=data, chunks=(1, 96, 96))
        argv = ["stream", str(src), "-o", str(out), "--follow", "0", "--overwrite"]
        assert main(argv) == 2
        np.testing.assert_array_equal(zarr.open_array(str(out))[:], before)  # as it was
    assert "does not look like a probability map" in capsys.readouterr().err


def test_a_malformed_scheduler_address_is_refused_at_once(prob_zarr, tmp_path, capsys):
    """A malformed --scheduler printed its error, then hung 60 s in Dask's shutdown and printed
    a traceback."""
    pytest.importorskip("distributed")
    for address in ("garbage", "http://localhost:99999"):
        argv = ["stream", str(prob_zarr.store.root), "-o", str(tmp_path / "o.zarr")]
        assert main([*argv, "--scheduler", address, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "scheduler: expected an address like tcp://HOST:PORT" in err and address in err
        assert "Traceback" not in err and not (tmp_path / "o.zarr").exists()


def test_unreachable_scheduler_is_one_line(prob_zarr, tmp_path, capsys):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        rc = main(
            [
                "stream",
                str(prob_zarr.store.root),
                "-o",
                str(tmp_path / "o.zarr"),
                "--scheduler",
                "tcp://127.0.0.1:1",
                "--no-progress",
            ]
        )
    err = capsys.readouterr().err
    assert rc == 2 and "127.0.0.1:1" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0


def test_noise_guard_can_be_raised_from_the_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.npy"
    np.save(noise, rng.random((2, 96, 96)).astype(np.float32))
    base = ["segment", str(noise), "-o", str(tmp_path / "o.tif"), "--iterations", "1"]
    assert main([*base, "--max-candidates", "10"]) == 2
    assert "--max-candidates" in capsys.readouterr().err
    assert main([*base, "--max-candidates", "1000000", "--no-progress"]) == 0


def test_stream_exclude_border_equals_segment(video, tmp_path):
    """Windowed, followed and whole-movie runs remove the same edge-cut cells, frame by frame."""
    from napari_hemd.core.cells import clear_border_objects

    src = tmp_path / "prob.zarr"
    crop = np.ascontiguousarray(video[:, 10:80, 10:80])  # the frame's edge cuts cells
    z = zarr.create_array(str(src), shape=crop.shape, chunks=(1, 70, 70), dtype=np.float32)
    z[:] = crop
    full = hemd(crop, iterations=2).labels
    expected = clear_border_objects(full, frame_axis=True)
    assert (expected != full).any()
    for extra in ([], ["--follow", "0"]):
        out = tmp_path / f"lab{len(extra)}.zarr"
        args = ["stream", str(src), "-o", str(out), "--iterations", "2", "--chunk", "6"]
        assert main([*args, "--exclude-border", "--no-progress", *extra]) == 0
        got = zarr.open_array(str(out))
        np.testing.assert_array_equal(got[:], expected)
        assert got.attrs["exclude_border"] is True


@pytest.mark.parametrize("failure", ["disk full", "workers died", "scheduler lost"])
def test_a_stream_that_fails_mid_run_says_its_work_is_kept(
    video, tmp_path, capsys, monkeypatch, failure
):
    """A full disk said "nothing was replaced and no partial file is left" though the finished
    windows are kept and a rerun resumes; workers killed for memory (Dask's KilledWorker) ended
    in a 22-line traceback. One line each, naming the kept work; the same command resumes."""
    import errno

    import napari_hemd.core.streaming as streaming

    src = tmp_path / "prob.zarr"
    z = zarr.create_array(str(src), shape=video.shape, chunks=(1, 96, 96), dtype=np.float32)
    z[:] = video
    out = tmp_path / "lab.zarr"
    real = streaming._write_window
    calls = []

    class KilledWorker(Exception):  # distributed.scheduler.KilledWorker, by name
        pass

    class FutureCancelledError(Exception):  # distributed.client's, by name (audit 31)
        pass

    def second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            if failure == "disk full":
                raise OSError(errno.ENOSPC, "No space left on device")
            if failure == "scheduler lost":
                raise FutureCancelledError(
                    "_write_window-39 cancelled for reason: scheduler-connection-lost.\nClient "
                    "lost the connection to the scheduler."
                )
            raise KilledWorker("Attempted to run task on 3 different workers, all died")
        return real(*args, **kwargs)

    monkeypatch.setattr(streaming, "_write_window", second_fails)
    args = [
        "stream",
        str(src),
        "-o",
        str(out),
        "--chunk",
        "4",
        "--iterations",
        "2",
        "--no-progress",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / ".lab.zarr.partial") in err[0], err
    assert "run the same command again to resume" in err[0] or "the same command resumes" in err[0]
    if failure == "workers died":
        assert "smaller --chunk" in err[0]
    if failure == "scheduler lost":
        assert "connection to the Dask scheduler was lost" in err[0]
    monkeypatch.setattr(streaming, "_write_window", real)
    assert main(args) == 0
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], hemd(video, iterations=2).labels)
