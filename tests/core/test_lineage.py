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
