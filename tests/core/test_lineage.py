"""Lineage of labels edited after linking (what Export writes for a proofread linked run)."""

from __future__ import annotations

import numpy as np

from napari_hemd.core.linking import lineage_after_edits


def _movie() -> tuple[np.ndarray, np.ndarray]:
    """Cell 1 divides into 2 and 3 at frame 2; cell 4 is alone."""
    lab = np.zeros((4, 12, 12), np.uint32)
    lab[0:2, 0:3, 0:3] = 1
    lab[2:4, 0:3, 0:2], lab[2:4, 5:8, 5:8] = 2, 3
    lab[:, 9:, 9:] = 4
    return lab, np.array([[1, 0, 1, 0], [2, 2, 3, 1], [3, 2, 3, 1], [4, 0, 3, 0]])


def test_divisions_an_edit_did_not_touch_are_kept():
    lab, tracks = _movie()
    lab[1][lab[1] == 4] = 0  # cell 4 deleted in frame 1: it comes back under a fresh label
    out, got = lineage_after_edits(lab, tracks)
    np.testing.assert_array_equal(
        got, [[1, 0, 1, 0], [2, 2, 3, 1], [3, 2, 3, 1], [4, 0, 0, 0], [5, 2, 3, 0]]
    )
    assert (out[2:, 9:, 9:] == 5).all() and (out[0, 9:, 9:] == 4).all()
    assert (lab[2:, 9:, 9:] == 4).all()  # the caller's labels untouched


def test_a_division_that_no_longer_holds_is_dropped():
    lab, tracks = _movie()
    lab[lab == 3] = 0  # a daughter deleted: the other keeps its parent
    assert lineage_after_edits(lab, tracks)[1][:, 3].tolist() == [0, 1, 0]
    lab, _ = _movie()
    lab[1][lab[1] == 1] = 0  # the parent gone the frame before: a gap, no division claimed
    assert lineage_after_edits(lab, tracks)[1][:, 3].tolist() == [0, 0, 0, 0]
    lab, _ = _movie()
    lab[2][lab[2] == 2] = 0  # a daughter now begins a frame later: not the run's division
    assert lineage_after_edits(lab, tracks)[1][:, 3].tolist() == [0, 0, 1, 0]


def test_re_segmented_frames_take_the_ids_of_the_cells_they_continue():
    from napari_hemd.core.linking import carry_ids

    lab, _ = _movie()  # frames 0-1 kept; 2-3 re-segmented, ids apart from the kept ones
    lab[2:] = np.where(lab[2:] > 0, lab[2:] + 10, 0)
    # 12 overlaps cell 1 (IoU 0.67): it goes on as 1; 13 is new; 14 goes on as 4
    assert carry_ids(lab, [2, 3]) == 2
    assert set(np.unique(lab[2:])) == {0, 1, 4, 13} and (lab[2:, 9:, 9:] == 4).all()
    lab, _ = _movie()  # frames 2-3 kept, 0-1 re-segmented: matched to the frame after them
    lab[:2] = np.where(lab[:2] > 0, lab[:2] + 10, 0)
    assert carry_ids(lab, [0, 1]) == 2 and set(np.unique(lab[:2])) == {0, 2, 4}
    lab = np.zeros((2, 12, 12), np.uint32)  # a division: the daughters take no id
    lab[0, 0:6, 0:6] = 1
    lab[1, 0:6, 0:3], lab[1, 0:6, 3:6] = 11, 12
    assert carry_ids(lab, [1]) == 0 and set(np.unique(lab[1])) == {0, 11, 12}
