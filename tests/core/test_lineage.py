"""Lineage of labels edited after linking (what Export writes for a proofread linked run)."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_divisions_whose_daughters_moved_apart_are_found(shared_data):
    """HeLa daughters seldom overlap their mother in the frame after it (half of them not at
    all): the overlap rule alone found 1 of the 94 divisions of Fluo-N2DL-HeLa 01's tracking
    truth, linking its own silver-truth masks. A mother whose track ends and the two nearest
    new objects within 2.5 of its radii are a division too. First 40 frames here."""
    import glob

    import tifffile

    from napari_hemd.core.linking import link_labels

    seq = shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01"
    n = 40
    seg = np.stack([tifffile.imread(seq.parent / "01_ST" / "SEG" / f"man_seg{t:03d}.tif")
                    for t in range(n)])  # fmt: skip
    tra = np.stack([tifffile.imread(seq.parent / "01_GT" / "TRA" / f"man_track{t:03d}.tif")
                    for t in range(n)])  # fmt: skip
    assert len(glob.glob(str(seq.parent / "01_GT" / "TRA" / "man_track*.tif"))) >= n
    truth = np.loadtxt(seq.parent / "01_GT" / "TRA" / "man_track.txt", dtype=np.int64, ndmin=2)
    born: dict[tuple[int, int], list[int]] = {}
    for label, begin, _end, parent in truth:
        if parent and 0 < begin < n:
            born.setdefault((int(parent), int(begin)), []).append(int(label))
    divisions = {k: v for k, v in born.items() if len(v) == 2}
    linked, tracks = link_labels(seg)
    parent_of = {int(label): int(p) for label, _b, _e, p in tracks}

    def under(t: int, marker: int) -> int:  # our object holding most of a tracking marker
        ids = linked[t][tra[t] == marker]
        ids = ids[ids > 0]
        return int(np.bincount(ids).argmax()) if ids.size else 0

    found = 0
    for (mother, t), (a, b) in divisions.items():
        da, db, m = under(t, a), under(t, b), under(t - 1, mother)
        found += bool(m and da and db and da != db and parent_of[da] == parent_of[db] == m)
    made = sum(1 for _label, _b, _e, p in tracks if p) // 2
    assert len(divisions) >= 30
    assert found >= 0.6 * len(divisions)  # 1 in all 94 before
    assert found >= 0.75 * made  # most divisions made are true ones


def test_track_points_are_each_cells_centre_per_frame_with_its_parent():
    """A napari Tracks layer's data: [id, t, y, x] per object and frame (centres of mass),
    sorted by id then frame, and the divisions as daughter -> [parent]; 3D frames give z."""
    from napari_hemd.core.linking import track_points

    lab, tracks = _movie()
    data, graph = track_points(lab, tracks)
    assert data.shape == (10, 4)  # cells 1-3 in two frames each, cell 4 in four
    ids_t = [tuple(r) for r in data[:, :2].astype(int)]
    expected = sorted({(int(i), t) for t in range(4) for i in np.unique(lab[t]) if i})
    assert ids_t == expected
    np.testing.assert_allclose(data[0, 2:], [1.0, 1.0])  # cell 1's 3 x 3 square at (0..2)
    np.testing.assert_allclose(data[ids_t.index((2, 2)), 2:], [1.0, 0.5])
    assert graph == {2: [1], 3: [1]}
    # a parent that is not in the labels (deleted) makes no edge; (T, Z, Y, X) gives z
    lab[lab == 1] = 0
    assert track_points(lab, tracks)[1] == {}
    data3, _ = track_points(np.stack([lab, lab], axis=1))
    assert data3.shape[1] == 5 and set(data3[:, 2]) == {0.5}
    empty, none = track_points(np.zeros((2, 5, 5), np.uint8))
    assert empty.shape == (0, 4) and none == {}


def _disc(shape, centre, r):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r


def test_a_cell_whole_again_after_a_cut_continues_a_track():
    """A cell the segmentation cut in two for a frame: whole again, it differs from either half
    in size past the EMD's tolerance, so it started a new track (its cell's track ended at the
    cut); now it continues the half it overlaps most. (The cut itself is still a division: at
    the frame of the cut it cannot be told from a cell dividing in place.)"""
    from napari_hemd.core.linking import link_labels

    lab = np.zeros((5, 40, 40), np.uint16)
    for t in range(5):
        lab[t][_disc((40, 40), (20, 20), 8)] = 1
    cut = lab[2].copy()
    cut[:, 20:][cut[:, 20:] == 1] = 2  # the larger half: x 20-28
    lab[2] = cut
    out, tracks = link_labels(lab, delta=0.35)
    rows = {int(k): (int(b), int(e), int(p)) for k, b, e, p in tracks}
    larger, whole = int(out[2][20, 24]), int(out[3][20, 20])
    assert whole == larger and all(int(out[t][20, 20]) == whole for t in (3, 4))
    assert rows[whole][:2] == (2, 4)  # from the cut to the end: one track, not two
    assert len(rows) == 3


def test_a_division_whose_daughter_kept_the_mothers_place_is_found():
    """SIM+ daughters: one stays where the mother was (about half her size, matched to her),
    the other moves off: the mother's track went on into one daughter and the other had no
    parent. Now both are her daughters."""
    from napari_hemd.core.linking import link_labels

    lab = np.zeros((4, 60, 60), np.uint16)
    lab[0][_disc((60, 60), (30, 24), 10)] = 1
    lab[1][_disc((60, 60), (30, 24), 10)] = 1
    for t in (2, 3):
        lab[t][_disc((60, 60), (30, 23), 8.5)] = 1  # 0.72 of her size: the EMD matches it
        lab[t][_disc((60, 60), (30, 44), 5)] = 2  # no overlap with the mother
    out, tracks = link_labels(lab)
    mother = int(out[0][30, 24])
    rows = {int(k): (int(b), int(e), int(p)) for k, b, e, p in tracks}
    assert rows[mother][:2] == (0, 1)
    daughters = {int(out[2][30, 23]), int(out[2][30, 44])}
    assert len(daughters) == 2 and all(rows[d] == (2, 3, mother) for d in daughters)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, np.int64, np.uint64])
def test_frame_ids_are_the_ids_np_unique_finds(dtype):
    """frame_ids counts a frame's ids in one pass (bincount) where they are small, as the
    count and tracks of a result arriving in napari need (audit 25), else sorts."""
    from napari_hemd.core.linking import frame_ids

    rng = np.random.default_rng(4)
    top = min(np.iinfo(dtype).max, 5000)
    frame = rng.integers(0, top, (60, 70)).astype(dtype)
    frame[:5] = 0
    want = np.unique(frame)
    np.testing.assert_array_equal(frame_ids(frame), want[want > 0])
    assert frame_ids(frame).dtype == dtype
    frame[0, 0] = np.iinfo(dtype).max  # far beyond the frame's size: sorted instead
    want = np.unique(frame)
    np.testing.assert_array_equal(frame_ids(frame), want[want > 0])
    assert frame_ids(np.zeros((3, 3), dtype)).size == 0
