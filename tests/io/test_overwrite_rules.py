"""``overwrite`` replaces only what napari-hemd wrote; never the input, never a user's folder."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from napari_hemd._atomic import MARKER, MARKER_ATTR, check_output_path, has_marker, is_our_output
from napari_hemd.cli import main
from napari_hemd.data.synthetic import nuclei_video
from napari_hemd.io import read_stack, write_labels


@pytest.fixture
def data_folder(tmp_path):
    """A user's data folder: the probability map and an unrelated file."""
    d = tmp_path / "data"
    d.mkdir()
    tifffile.imwrite(d / "prob.tif", nuclei_video(n_frames=3, shape=(64, 64), n_cells=4)["prob"])
    (d / "notes.txt").write_text("my notes")
    return d


def _segment(*args):
    return main(["segment", *map(str, args), "--no-progress", "--iterations", "2"])


def test_overwrite_never_deletes_the_input_folder(data_folder, capsys):
    before = sorted(p.name for p in data_folder.iterdir())
    assert _segment(data_folder / "prob.tif", "-o", data_folder, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "would replace the input" in err and err.count("\n") == 1
    assert sorted(p.name for p in data_folder.iterdir()) == before
    assert (data_folder / "notes.txt").read_text() == "my notes"


def test_overwrite_refuses_a_foreign_folder(data_folder, tmp_path, capsys):
    other = tmp_path / "results"
    other.mkdir()
    (other / "thesis.docx").write_text("years of work")
    assert _segment(data_folder / "prob.tif", "-o", other, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "napari-hemd did not write" in err and "thesis" not in err
    assert (other / "thesis.docx").read_text() == "years of work"


def test_overwrite_replaces_our_own_output(data_folder, tmp_path):
    out = tmp_path / "res"
    assert _segment(data_folder / "prob.tif", "-o", out) == 0
    assert is_our_output(out) and (out / MARKER).is_file()
    assert _segment(data_folder / "prob.tif", "-o", out, "--overwrite") == 0
    assert read_stack(out).shape == (3, 64, 64)
    zarr_out = tmp_path / "l.zarr"
    write_labels(np.ones((2, 8, 8), np.uint32), zarr_out)
    write_labels(np.ones((2, 8, 8), np.uint32), zarr_out, overwrite=True)  # ours: replaced
    assert is_our_output(zarr_out)


@pytest.mark.parametrize(
    ("make", "out", "message"),
    [
        ("folder", "dir.tif", "is a folder, but a .tif output is a file"),
        ("file", "plain", "is a file, but this output is a folder"),
        (None, ".", "must name a new file or folder"),
        ("file", "plain/x.tif", "is a file, not a folder"),
    ],
)
def test_wrong_kind_of_output_is_refused(
    data_folder, tmp_path, monkeypatch, capsys, make, out, message
):
    monkeypatch.chdir(tmp_path)
    first = out.split("/")[0]
    if make == "folder":
        (tmp_path / first).mkdir()
        (tmp_path / first / "x").write_text("x")
    elif make == "file":
        (tmp_path / first).write_text("x")
    assert _segment(data_folder / "prob.tif", "-o", out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_check_output_path_direct(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_output_path(tmp_path / "empty", overwrite=True) == tmp_path / "empty"
    with pytest.raises(ValueError, match="would replace the input"):
        check_output_path(tmp_path, overwrite=True, inputs=[tmp_path / "a" / "b.tif"])


def test_kill_during_folder_swap_is_recovered(tmp_path):
    """A run killed between moving the old result aside and moving the new one in: the next run
    on that output finds it whole again and removes the hidden leftovers."""
    from napari_hemd._atomic import recover_output

    out = tmp_path / "res"
    write_labels(np.ones((1, 8, 8), np.uint32), out)
    for complete, expected in ((False, 1), (True, 2)):
        leftover = tmp_path / f".res.{expected}x.tmp"
        leftover.mkdir()
        os.replace(out, leftover / "res.old")  # the old one moved aside, then the kill
        new = leftover / "res"
        write_labels(np.full((1, 8, 8), 2, np.uint32), tmp_path / "scratch")
        os.replace(tmp_path / "scratch", new)
        if not complete:
            (new / MARKER).unlink()  # killed before the new one was complete
        assert not out.exists()
        assert recover_output(out) == ("finished" if complete else "restored")
        assert read_stack(out).max() == expected
        assert not list(tmp_path.glob(".res.*"))


def test_half_written_temporaries_are_cleaned_at_the_next_run(tmp_path, data_folder):
    junk = tmp_path / ".o.tif.abc123.tmp"
    junk.mkdir()
    (junk / "o.tif").write_bytes(b"II*\x00truncated")
    assert _segment(data_folder / "prob.tif", "-o", tmp_path / "o.tif") == 0
    assert not junk.exists() and read_stack(tmp_path / "o.tif").shape == (3, 64, 64)


def test_disk_full_keeps_the_old_output_and_leaves_no_debris(
    data_folder, tmp_path, monkeypatch, capsys
):
    import errno

    import tifffile as tf

    out = tmp_path / "o.tif"
    assert _segment(data_folder / "prob.tif", "-o", out) == 0
    before = out.read_bytes()
    capsys.readouterr()

    def full(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"II*\x00partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tf, "imwrite", full)
    assert _segment(data_folder / "prob.tif", "-o", out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing was replaced" in err
    assert err.count("\n") == 1
    assert out.read_bytes() == before  # the old result is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "o.tif"]  # no debris


def test_outputs_of_earlier_versions_count_as_ours(tmp_path):
    """Projects and CTC results written before the marker existed can still be replaced
    (autosave into an older project), a user's folder still cannot."""
    from napari_hemd.workflows import save_project

    proj = save_project(
        tmp_path / "p.zarr",
        prob=np.zeros((2, 8, 8), np.float32),
        labels=np.zeros((2, 8, 8), np.uint32),
        params={},
    )
    _unmark_zarr(proj)
    assert not has_marker(proj)
    res = write_labels(np.ones((1, 8, 8), np.uint32), tmp_path / "res", metadata={"tau": 0.5})
    (res / MARKER).unlink()
    assert is_our_output(proj) and is_our_output(res)
    check_output_path(proj, overwrite=True)
    check_output_path(res, overwrite=True)


def _unmark_zarr(store) -> None:
    """Remove the mark from a zarr store, as written before :data:`MARKER_ATTR` existed."""
    import json

    if (store / "zarr.json").is_file():
        meta = json.loads((store / "zarr.json").read_text())
        del meta["attributes"][MARKER_ATTR]
        (store / "zarr.json").write_text(json.dumps(meta))
    else:  # zarr v2 (OME-Zarr 0.4)
        meta = json.loads((store / ".zattrs").read_text())
        del meta[MARKER_ATTR]
        (store / ".zattrs").write_text(json.dumps(meta))


def _zarr_outputs(tmp_path) -> dict:
    """Every kind of zarr folder napari-hemd writes, each written by its own code path."""
    import zarr

    from napari_hemd.core.streaming import hemd_follow, hemd_stream
    from napari_hemd.workflows import save_project

    prob = nuclei_video(n_frames=3, shape=(48, 48), n_cells=3)["prob"].astype(np.float32)
    labels = np.ones((2, 8, 8), np.uint32)
    source = tmp_path / "source.zarr"
    zarr.create_array(str(source), shape=prob.shape, chunks=(1, 48, 48), dtype=np.float32)[...] = (
        prob
    )
    return {
        "label store": write_labels(labels, tmp_path / "l.zarr"),
        "OME-Zarr labels": write_labels(labels, tmp_path / "l.ome.zarr"),
        "project": save_project(tmp_path / "p.zarr", prob=prob, labels=labels, params={}),
        "windowed stream": hemd_stream(prob, tmp_path / "s.zarr", chunk=2, iterations=2),
        "online stream": hemd_follow(
            source, tmp_path / "f.zarr", idle_timeout=0, sleep=lambda s: None, iterations=2
        ),
    }


def test_zarr_outputs_open_without_zarr_warnings(tmp_path):
    """A zarr folder napari-hemd wrote holds nothing zarr does not know (no marker file, which
    zarr reported as "not recognized as a component of a Zarr hierarchy" to anyone opening it);
    it is marked as ours in its root attributes, so ``overwrite`` may still replace it."""
    import warnings

    import zarr

    for what, store in _zarr_outputs(tmp_path).items():
        assert not (store / MARKER).exists(), what
        assert has_marker(store) and is_our_output(store), what
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            node = zarr.open(str(store), mode="r")
            if isinstance(node, zarr.Group):
                list(node.members(max_depth=None))
        assert MARKER_ATTR in node.attrs, what
        check_output_path(store, overwrite=True)


def test_zarr_outputs_of_earlier_versions_with_the_marker_file(tmp_path, data_folder):
    """A zarr store written with the old marker file is still ours: replaced by ``overwrite``,
    and the replacement is marked the new way."""
    out = write_labels(np.ones((2, 8, 8), np.uint32), tmp_path / "l.zarr")
    _unmark_zarr(out)
    (out / MARKER).write_text('{"writer": "napari-hemd", "version": "0.0.9"}\n')
    assert has_marker(out) and is_our_output(out)
    write_labels(np.full((2, 8, 8), 2, np.uint32), out, overwrite=True)
    assert read_stack(out).max() == 2 and not (out / MARKER).exists() and has_marker(out)


def test_a_foreign_zarr_store_is_not_replaced(tmp_path):
    import zarr

    foreign = tmp_path / "theirs.zarr"
    zarr.create_array(str(foreign), shape=(2, 8, 8), dtype=np.uint16)
    assert not has_marker(foreign) and not is_our_output(foreign)
    with pytest.raises(FileExistsError, match="napari-hemd did not write"):
        write_labels(np.ones((2, 8, 8), np.uint32), foreign, overwrite=True)


def test_a_store_whose_attributes_only_mention_napari_hemd_is_not_ours(tmp_path):
    """A text search of the attributes took a user's store holding the word "predicted" or
    "napari-hemd" for an output of an earlier version, and ``--overwrite`` replaced it (audit
    28). The attributes those versions wrote still count; every kind of output, unmarked."""
    import zarr

    for attrs in ({"stage": "predicted"}, {"notes": "to compare with napari-hemd later"},
                  {"method": "hemd-like"}):  # fmt: skip
        store = tmp_path / f"theirs{len(list(tmp_path.iterdir()))}.zarr"
        group = zarr.open_group(str(store), mode="w")
        group.attrs.update(attrs)
        group.create_array("raw", shape=(4, 4), dtype=np.uint16)
        assert not is_our_output(store), attrs
        with pytest.raises(FileExistsError, match="napari-hemd did not write"):
            write_labels(np.ones((2, 8, 8), np.uint32), store, overwrite=True)
        assert "raw" in zarr.open_group(str(store), mode="r")
    (tmp_path / "ours").mkdir()
    stores = _zarr_outputs(tmp_path / "ours")
    # OME-Zarr labels hold the run's parameters at their root (none in _zarr_outputs': then
    # nothing but the mark says whose they are)
    params = {"method": "hemd", "tau": 0.5}
    stores["OME-Zarr labels"] = write_labels(
        np.ones((2, 8, 8), np.uint32), tmp_path / "ours" / "m.ome.zarr", metadata=params
    )
    for what, store in stores.items():
        _unmark_zarr(store)
        assert not has_marker(store) and is_our_output(store), what


def test_an_interrupt_between_the_renames_keeps_the_old_output(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) after the old folder was moved aside and before the new one took its
    place: the clean-up removed the folder holding both (audit 28). The old one is put back."""
    import os

    from napari_hemd import _atomic

    out = write_labels(np.ones((2, 8, 8), np.uint32), tmp_path / "res")
    real = os.replace
    calls = []

    def interrupted(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new folder onto the output: the signal arrives first
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(_atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_labels(np.full((2, 8, 8), 2, np.uint32), out, overwrite=True)
    monkeypatch.setattr(_atomic.os, "replace", real)
    assert read_stack(out).max() == 1 and has_marker(out)  # the old output, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]  # nothing left behind


def test_settle_writes_waits_for_zarrs_writes_in_flight(tmp_path):
    """After a failed chunk write (a full disk) or an interrupt, zarr's other writes of that
    call went on in its IO thread: the clean-up removed the temporary and they made it again
    (audit 28: a hidden ``.NAME.partial`` left, "Task was destroyed" on exit)."""
    import asyncio

    import zarr
    from zarr.core.sync import _get_loop

    from napari_hemd._atomic import settle_writes

    zarr.create_array(str(tmp_path / "a.zarr"), shape=(2,), dtype=np.uint8)  # zarr in use
    late = tmp_path / "late"

    async def slow_write():
        await asyncio.sleep(0.5)
        late.write_text("written")

    async def failing():
        raise OSError(28, "No space left on device")

    loop = _get_loop()
    asyncio.run_coroutine_threadsafe(slow_write(), loop)
    asyncio.run_coroutine_threadsafe(failing(), loop)
    settle_writes()
    assert late.read_text() == "written"  # waited for it


def test_a_second_run_leaves_the_first_runs_temporary_alone(tmp_path):
    """Review 31: a stream run started on an output another run was writing removed that
    run's temporary folder before the lock refused it (the first then published a broken
    store). Before its lock a run only puts back an output a killed run left aside."""
    import os
    import socket

    from napari_hemd._atomic import restore_published
    from napari_hemd.pipeline import stream_segment

    prob = nuclei_video(n_frames=4, shape=(32, 32), n_cells=2)["prob"].astype(np.float32)
    out = tmp_path / "out.zarr"
    busy = tmp_path / ".out.zarr.abcd.tmp"
    (busy / "out.zarr").mkdir(parents=True)
    host = socket.gethostname() or "localhost"
    (tmp_path / ".out.zarr.lock").write_text(f"{os.getppid()} {host}\n")  # a live run's
    with pytest.raises(FileExistsError, match="being written by another napari-hemd run"):
        stream_segment(prob, out, chunk=2, iterations=2)
    assert (busy / "out.zarr").is_dir()
    assert not restore_published(out) and busy.is_dir()


def test_a_successful_write_does_not_wait_for_zarrs_other_work(tmp_path, monkeypatch):
    """Review 31: every atomic write waited for whatever zarr's shared IO loop was doing (a
    napari layer's reads: up to 1.8 s for a tiny file); only a failed one waits, for its own
    writes in flight."""
    from napari_hemd import _atomic

    waited = []
    monkeypatch.setattr(_atomic, "settle_writes", lambda: waited.append(1))
    write_labels(np.ones((2, 8, 8), np.uint32), tmp_path / "a.zarr")
    assert waited == []
    with pytest.raises(RuntimeError), _atomic.atomic_path(tmp_path / "b.zarr"):
        raise RuntimeError("a failed write")
    assert waited == [1]
