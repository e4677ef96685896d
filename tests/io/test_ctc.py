from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_hemd.io.ctc import (
    read_ctc_labels,
    read_ctc_sequence,
    read_ctc_tracks,
    write_ctc_result,
)


def _validate(folder) -> int:
    """py-ctcmetrics' validity check of a result folder (1 = valid)."""
    validate = pytest.importorskip("ctc_metrics.scripts.validate")
    return validate.validate_sequence(str(folder), threads=1)["Valid"]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return np.unique(pairs[0]).size == pairs.shape[1] == np.unique(pairs[1]).size


def test_read_sparse_labels_by_frame_index(tmp_path):
    for t in (3, 12):
        tifffile.imwrite(tmp_path / f"man_seg{t:03d}.tif", np.full((4, 5), t, np.uint16))
    (tmp_path / "notes.txt").write_text("ignored")
    frames = read_ctc_labels(tmp_path)
    assert sorted(frames) == [3, 12]
    assert frames[12].shape == (4, 5) and frames[12][0, 0] == 12


def test_read_labels_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_ctc_labels(tmp_path / "nope")
    with pytest.raises(ValueError, match="found none"):
        read_ctc_labels(tmp_path)
    tifffile.imwrite(tmp_path / "mask001.tif", np.zeros((2, 2), np.uint16))
    tifffile.imwrite(tmp_path / "mask0001.tif", np.zeros((2, 2), np.uint16))
    with pytest.raises(ValueError, match="frame 1 appears twice"):
        read_ctc_labels(tmp_path)


def test_tracks_round_trip_and_errors(tmp_path):
    labels = np.zeros((3, 4, 4), np.uint16)
    labels[:, 0, 0] = 1
    labels[1:, 3, 3] = 2
    write_ctc_result(labels, tmp_path / "res")
    tracks = read_ctc_tracks(tmp_path / "res" / "res_track.txt")
    assert tracks.tolist() == [[1, 0, 2, 0], [2, 1, 2, 0]]
    (tmp_path / "bad.txt").write_text("1 0 2\n")
    with pytest.raises(ValueError, match="4 integers per line"):
        read_ctc_tracks(tmp_path / "bad.txt")
    (tmp_path / "bad.txt").write_text("1 0 2 x\n")
    with pytest.raises(ValueError, match="expected integers"):
        read_ctc_tracks(tmp_path / "bad.txt")


def test_write_splits_labels_that_come_back_after_a_gap(tmp_path):
    labels = np.zeros((4, 6, 6), np.int32)
    labels[0, :2, :2] = 1
    labels[2, :2, :2] = 1  # gap at frame 1
    labels[3, 2:, 2:] = 1
    labels[:, 4:, :2] = 7
    out = write_ctc_result(labels, tmp_path / "01_RES")
    tracks = read_ctc_tracks(out / "res_track.txt")
    assert tracks.tolist() == [[1, 0, 0, 0], [7, 0, 3, 0], [8, 2, 3, 0]]
    back = read_ctc_labels(out)
    assert sorted(back) == [0, 1, 2, 3]
    assert back[2][0, 0] == 8 and back[3][5, 0] == 7
    for t in range(4):
        assert back[t].dtype == np.uint16
        assert _same_partition(back[t], labels[t])
    assert _validate(out) == 1


def test_write_renumbers_labels_beyond_uint16(tmp_path):
    """A label of 65536 or more (Relabel allows up to 2**31 - 1) was refused (audit 29): the
    folder's labels are renumbered 1..K, tracks and gaps alike; too many tracks are refused."""
    labels = np.zeros((4, 6, 6), np.int64)
    labels[:, :2, :2] = 70000
    labels[1, :2, :2] = 0  # a gap: 70000 comes back as a track of its own
    labels[:2, 4:, 4:] = 5
    labels[2:, 4:, 4:] = 2**31 - 1  # 5's daughter
    out = write_ctc_result(labels, tmp_path / "res")
    back = read_ctc_labels(out)
    for t in range(4):
        assert back[t].dtype == np.uint16 and _same_partition(back[t], labels[t])
    assert read_ctc_tracks(out / "res_track.txt").tolist() == [
        [1, 0, 1, 0],
        [2, 0, 0, 0],
        [3, 2, 3, 0],
        [4, 2, 3, 0],
    ]  # 5, 70000 (frame 0), 2**31 - 1, 70000 again (a fresh label)
    assert _validate(out) == 1
    tracks = np.array([[5, 0, 1, 0], [70000, 0, 0, 0], [2**31 - 1, 2, 3, 5]])
    tracks = np.vstack([tracks, [2**31, 2, 3, 0]])
    linked = labels.copy()
    linked[2:, :2, :2] = 2**31
    out = write_ctc_result(linked, tmp_path / "linked", tracks=tracks)
    assert read_ctc_tracks(out / "res_track.txt").tolist() == [
        [1, 0, 1, 0],
        [2, 0, 0, 0],
        [3, 2, 3, 1],
        [4, 2, 3, 0],
    ]
    assert _validate(out) == 1
    with pytest.raises(ValueError, match="label 2147483648 has no row"):
        write_ctc_result(linked, tmp_path / "short", tracks=tracks[:3])
    many = np.arange(2**16, dtype=np.int64).reshape(1, 256, 256) + 1
    with pytest.raises(ValueError, match="65536 tracks; CTC result files hold labels < 65536"):
        write_ctc_result(many, tmp_path / "many")
    assert not (tmp_path / "many").exists() and not (tmp_path / "short").exists()


def test_write_keeps_given_tracks(tmp_path):
    labels = np.zeros((2, 3, 3), np.uint16)
    labels[0, 0, 0] = 1
    labels[1, 0, 0] = 2
    labels[1, 2, 2] = 3
    tracks = np.array([[1, 0, 0, 0], [2, 1, 1, 1], [3, 1, 1, 1]])
    out = write_ctc_result(labels, tmp_path / "res", tracks=tracks)
    assert read_ctc_tracks(out / "res_track.txt").tolist() == tracks.tolist()
    assert _validate(out) == 1


@pytest.mark.shared
def test_read_real_sequence(shared_data, hela_gt_frames):
    seq = read_ctc_sequence(shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01")
    assert seq.raw.shape == (92, 700, 1100)  # the whole Fluo-N2DL-HeLa 01 sequence
    assert sorted(seq.gt_seg) == hela_gt_frames
    assert sorted(seq.st_seg) == list(range(92)) and sorted(seq.gt_tra) == list(range(92))
    assert seq.tracks.shape[1] == 4 and seq.tracks[:, 0].size == np.unique(seq.tracks[:, 0]).size
    # every track label is in the TRA markers of its first frame
    lab, begin = seq.tracks[0, 0], seq.tracks[0, 1]
    assert (seq.gt_tra[int(begin)] == lab).any()


@pytest.mark.shared
def test_silver_truth_written_as_result_is_valid(shared_data, tmp_path):
    seq = read_ctc_sequence(shared_data / "ctc" / "PhC-C2DL-PSC" / "01", lazy=True)
    stack = np.stack([seq.st_seg[t] for t in range(10)])  # labels not linked over time
    out = write_ctc_result(stack, tmp_path / "01_RES")
    assert _validate(out) == 1


def test_missing_sequence(tmp_path):
    with pytest.raises(FileNotFoundError, match="01_GT/ or 01_ST/"):
        read_ctc_sequence(tmp_path / "01")
