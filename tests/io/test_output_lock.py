"""Two runs writing one output: the second fails at once; a killed run's lock is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_hemd._atomic import output_lock
from napari_hemd.cli import main
from napari_hemd.io import read_stack, write_labels


def test_lock_is_reentrant_and_released(tmp_path):
    out = tmp_path / "o.tif"
    with output_lock(out) as lock:
        assert lock.exists()
        write_labels(np.ones((1, 4, 4), np.uint32), out)  # the same run writes its output
        assert lock.exists()
    assert not lock.exists() and out.exists()


def test_second_writer_fails_at_once(tmp_path, capsys):
    prob = tmp_path / "p.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(prob, rng.random((2, 32, 32)).astype(np.float32), photometric="minisblack")
    out = tmp_path / "o.tif"
    lock = tmp_path / ".o.tif.lock"
    lock.write_text(f"{os.getppid()}\n")  # another live process is writing out
    rc = main(["segment", str(prob), "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "being written by another napari-hemd run" in err
    assert err.count("\n") == 1 and not out.exists() and lock.exists()
    lock.unlink()
    assert not (tmp_path / ".o.tif.lock").exists()
    assert main(["segment", str(prob), "-o", str(out), "--no-progress"]) == 0
    assert read_stack(out).shape == (2, 32, 32)


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "o.zarr"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / ".o.zarr.lock").write_text(dead.stdout)  # its process has exited
    write_labels(np.ones((1, 4, 4), np.uint32), out)
    assert out.exists() and not (tmp_path / ".o.zarr.lock").exists()


def test_lock_held_by_a_live_process_refuses(tmp_path):
    out = tmp_path / "o.tif"
    (tmp_path / ".o.tif.lock").write_text(f"{os.getppid()}\n")  # alive (our parent)
    with pytest.raises(FileExistsError, match=f"process {os.getppid()}"):
        write_labels(np.ones((1, 4, 4), np.uint32), out)


def test_a_lock_of_another_machine_is_held(tmp_path):
    """On a cluster's shared disk a lock's process id means nothing here: a live run on another
    node was judged dead (no such process here) and its output taken over. The lock records its
    host; another host's lock is held, and the message says how to clear a dead one."""
    from napari_hemd._atomic import output_lock

    out = tmp_path / "o.zarr"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lock = tmp_path / ".o.zarr.lock"
    lock.write_text(f"{dead.stdout.strip()} node-17.cluster\n")
    with pytest.raises(FileExistsError, match=r"on node-17\.cluster.*remove '.*\.o\.zarr\.lock'"):
        write_labels(np.ones((1, 4, 4), np.uint32), out)
    assert lock.exists() and not out.exists()
    lock.write_text(f"{dead.stdout.strip()}\n")  # an older lock, no host: this machine's
    with output_lock(out):
        assert lock.read_text().split() == [str(os.getpid()), socket.gethostname()]


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_two_concurrent_segment_runs_one_wins(tmp_path, suffix):
    """As a user would: two runs on different inputs to one new output. Exactly one succeeds,
    the other says why; the output is the winner's, complete."""
    rng = np.random.default_rng(1)
    inputs = []
    for i in range(2):
        p = tmp_path / f"p{i}.npy"
        np.save(p, rng.random((6, 96, 96)).astype(np.float32))
        inputs.append(p)
    out = tmp_path / f"out{suffix}"
    cmd = [sys.executable, "-m", "napari_hemd.cli", "segment"]
    procs = [
        subprocess.Popen(
            [*cmd, str(p), "-o", str(out), "--no-progress"], stderr=subprocess.PIPE, text=True
        )
        for p in inputs
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert "being written by another" in loser or "already exists" in loser
    assert read_stack(out).shape == (6, 96, 96)
    assert not list(tmp_path.glob(".out*"))  # no lock, no temporary left


def test_an_unwritable_output_folder_is_named_not_the_lock_file(tmp_path, monkeypatch, capsys):
    """An output in a read-only folder failed with the bare OSError about the hidden lock file
    (``[Errno 30] Read-only file system: '.l.zarr.lock'``, audit 16): the output and its folder
    are named, for the command line and the API."""
    import errno
    import os

    import napari_hemd._atomic as atomic
    from napari_hemd.cli import main

    real_open = os.open

    def read_only(path, *a, **k):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(atomic.os, "open", read_only)
    prob = np.zeros((2, 32, 32), np.float32)
    prob[:, 8:20, 8:20] = 0.9
    np.save(tmp_path / "p.npy", prob)
    out = tmp_path / "ro" / "l.zarr"
    out.parent.mkdir()
    assert main(["stream", str(tmp_path / "p.npy"), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"output {str(out)!r}: its folder {str(out.parent)!r} is on a read-only drive" in err
    assert ".lock" not in err
    with pytest.raises(PermissionError, match="is on a read-only drive"):
        with atomic.output_lock(out):
            pass
