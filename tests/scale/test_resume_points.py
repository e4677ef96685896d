"""A streaming run stopped at any point (mid-window, mid-record, mid-publish) resumes to the same labels."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_hemd.core import streaming
from napari_hemd.core.segment import hemd
from napari_hemd.core.streaming import hemd_stream


class Crash(RuntimeError):
    pass


@pytest.fixture(scope="module")
def expected(video):
    return hemd(video, iterations=2).labels


def _resume_and_check(prob, out, expected, **kw):
    hemd_stream(prob, out, chunk=4, iterations=2, **kw)
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], expected)


def test_killed_in_the_middle_of_writing_a_window(prob_zarr, tmp_path, expected, monkeypatch):
    """Window 2 dies after writing half its frames: it is not recorded and is recomputed."""
    real = streaming.hemd_window

    def half_then_die(prob, window, **params):
        labels = real(prob, window, **params)
        if window.index == 2:
            store = next((tmp_path / ".lab.zarr.partial").glob("labels-*.zarr"))
            z = zarr.open_array(str(store), mode="r+")
            z[window.start : window.start + 2] = labels[:2] + 7  # garbage, half written
            raise Crash
        return labels

    monkeypatch.setattr(streaming, "hemd_window", half_then_die)
    with pytest.raises(Crash):
        hemd_stream(prob_zarr, tmp_path / "lab.zarr", chunk=4, iterations=2)
    monkeypatch.setattr(streaming, "hemd_window", real)
    recomputed = []
    _resume_and_check(prob_zarr, tmp_path / "lab.zarr", expected, on_window=recomputed.append)
    assert recomputed == [2, 3, 4]


def test_killed_while_recording_progress(prob_zarr, tmp_path, expected, monkeypatch):
    """Death between writing progress.json.tmp and replacing progress.json loses one record only."""
    real = streaming.os.replace
    calls = []

    def die_on_third_record(src, dst):
        if str(dst).endswith("progress.json"):
            calls.append(dst)
            if len(calls) == 3:  # store created, window 0 recorded, window 1 being recorded
                raise Crash
        return real(src, dst)

    monkeypatch.setattr(streaming.os, "replace", die_on_third_record)
    with pytest.raises(Crash):
        hemd_stream(prob_zarr, tmp_path / "lab.zarr", chunk=4, iterations=2)
    monkeypatch.setattr(streaming.os, "replace", real)
    again = []
    _resume_and_check(prob_zarr, tmp_path / "lab.zarr", expected, on_window=again.append)
    assert again == [1, 2, 3, 4]


@pytest.mark.parametrize("killed", [False, True])
def test_killed_while_publishing_over_an_old_output(
    prob_zarr, tmp_path, expected, monkeypatch, killed
):
    """Old output moved aside, new one not yet renamed in. Stopped there (an exception, Ctrl-C)
    the old output is put back at once; killed (SIGKILL: nothing runs), by the next run, even
    one with other settings that does not resume (it was removed with the partial run, audit
    28). The same run again publishes without recomputing."""
    from napari_hemd import _atomic

    out = tmp_path / "lab.zarr"
    hemd_stream(prob_zarr, out, chunk=4, iterations=3)  # an old result, other parameters
    old = zarr.open_array(str(out))[:]
    real = streaming.os.replace

    def die_before_the_new_store_moves_in(src, dst):
        if str(dst) == str(out) and "labels-" in str(src):
            raise Crash
        return real(src, dst)

    monkeypatch.setattr(streaming.os, "replace", die_before_the_new_store_moves_in)
    if killed:  # nothing of the run's own clean-up happens
        monkeypatch.setattr(_atomic, "restore_published", lambda path: False)
    with pytest.raises(Crash):
        hemd_stream(prob_zarr, out, chunk=4, iterations=2, overwrite=True)
    monkeypatch.undo()
    if killed:
        assert not out.exists() and (tmp_path / ".lab.zarr.partial" / "old").is_dir()
        with pytest.raises(FileExistsError):  # other settings, no --overwrite: refused...
            hemd_stream(prob_zarr, out, chunk=4, iterations=1, resume=False)
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], old)  # ...the old one back
    again = []
    _resume_and_check(prob_zarr, out, expected, overwrite=True, on_window=again.append)
    assert again == []  # every window was done; only the publish was missing
    assert not (tmp_path / ".lab.zarr.partial").exists()
