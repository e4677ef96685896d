from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_hemd as nh
from napari_hemd.core.forest import build_candidate_forest, quantize
from napari_hemd.core.selection import HOW, select_instances
from napari_hemd.data.synthetic import nuclei_video, nuclei_volume


def two_cells(contact: float, shape=(40, 60)):
    """Two touching square cells; the contact column has probability ``contact``."""
    p = np.zeros(shape, np.float32)
    p[10:30, 10:29] = 0.9
    p[10:30, 30:49] = 0.9
    p[10:30, 29] = contact
    return p


def tiny_video():
    # Frames 0 and 2: the contact is below 0.5 -> two roots. Frame 1: it is 0.6 -> one root at 0.5,
    # splitting into the two cells at higher thresholds.
    return np.stack([two_cells(0.3), two_cells(0.6), two_cells(0.3)])


def test_merged_frame_is_split_by_hemd_not_by_threshold():
    prob = tiny_video()
    th = nh.segment(prob, "threshold")
    assert [len(np.unique(f)) - 1 for f in th] == [2, 1, 2]
    for variant in ("paper", "refined"):
        lab = nh.segment(prob, "hemd", variant=variant)
        assert [len(np.unique(f)) - 1 for f in lab] == [2, 2, 2]
        assert lab[1, 20, 20] != lab[1, 20, 40]


def test_selection_records_how_each_instance_was_chosen():
    res = nh.hemd(tiny_video(), variant="paper")
    s0, s1, _s2 = res.selections
    assert (s0.how == HOW["initial"]).all() and s0.nodes.size == 2
    assert sorted(s1.how.tolist()) == [HOW["left"], HOW["left"]]  # ties go left (eq. 16)
    assert np.allclose(s1.score, 1.0)
    f1 = res.forests[1]
    assert (f1.parent[s1.nodes] == f1.roots[0]).all()  # the two children of the merged root
    assert set(s1.partner.tolist()) == set(s0.nodes.tolist())


def test_right_wins_when_it_matches_better():
    a = two_cells(0.3)
    b = np.zeros_like(a)
    b[10:30, 10:49] = 0.9  # one big cell, single path
    prob = np.stack([b, two_cells(0.6), a])
    res = nh.hemd(prob, variant="paper")
    # Left offers the merged root (IoU 1 with the big cell), right offers both halves (IoU 1 each).
    assert sorted(res.selections[1].how.tolist()) == [HOW["right"], HOW["right"]]


def test_padding_and_leftovers():
    # A cell with a side bump: matched from the neighbours to the main body, the bump is a leftover.
    def cell(bump):
        p = np.zeros((40, 60), np.float32)
        p[10:30, 10:30] = 0.9
        if bump:
            p[10:30, 10:30] = 0.8
            p[12:28, 12:28] = 0.9
            p[18:21, 30:33] = 0.85
            p[19, 30] = 0.8
        return p

    prob = np.stack([cell(False), cell(True), cell(False)])
    paper = nh.hemd(prob, variant="paper")
    refined = nh.hemd(prob, variant="refined")
    assert len(np.unique(paper.labels[1])) - 1 >= 1
    assert len(np.unique(refined.labels[1])) - 1 == 1
    assert (HOW["padding"] in paper.selections[1].how) == (len(np.unique(paper.labels[1])) > 2)


def test_iterations_propagate_over_several_frames():
    frames = [two_cells(0.3)] + [two_cells(0.6)] * 4
    prob = np.stack(frames)
    one = nh.hemd(prob, iterations=1, variant="paper")
    many = nh.hemd(prob, iterations=10, variant="paper")
    n_one = [len(np.unique(f)) - 1 for f in one.labels]
    n_many = [len(np.unique(f)) - 1 for f in many.labels]
    assert n_one == [2, 2, 1, 1, 1]  # one frame per iteration, rest padded as the merged root
    assert n_many == [2] * 5


def test_locked_choice_propagates():
    prob = np.stack([two_cells(0.6)] * 3)
    free = nh.hemd(prob, variant="paper")
    assert all(len(np.unique(f)) == 2 for f in free.labels)  # one merged blob everywhere
    f0 = build_candidate_forest(prob[0])
    children = f0.children(f0.roots[0])
    locked = nh.hemd(prob, variant="paper", locked={0: children.tolist()})
    assert [len(np.unique(f)) - 1 for f in locked.labels] == [2, 2, 2]
    assert (locked.selections[0].how == HOW["locked"]).all()


def test_selection_is_exclusive_and_deterministic():
    v = nuclei_video(n_frames=6, seed=3)
    a = nh.hemd(v["prob"])
    b = nh.hemd(v["prob"])
    assert np.array_equal(a.labels, b.labels)
    for f, s in zip(a.forests, a.selections, strict=True):
        order = np.sort(s.nodes)
        assert not np.any(f.end[order[:-1]] > order[1:])


def test_axis_and_3d_time():
    vol = nuclei_volume(shape=(20, 48, 48), n_cells=5)
    p = vol["prob"]
    lab0 = nh.segment(p, axis=0)
    lab2 = nh.segment(np.moveaxis(p, 0, 2), axis=2)
    assert np.array_equal(np.moveaxis(lab2, 2, 0), lab0)
    lab4 = nh.segment(np.stack([p, p]), variant="paper")
    assert lab4.shape == (2, *p.shape)
    # Two identical volumes carry no temporal information: the result is the 3D components at tau.
    # (Candidates use round(p, 2) >= tau, as in the paper.)
    th, n = ndi.label(quantize(p) >= 50)
    assert np.array_equal(lab4[0] > 0, th > 0)
    assert lab4[0].max() == n >= 1


def test_bad_parameters_are_named():
    p = tiny_video()
    with pytest.raises(ValueError, match="method"):
        nh.segment(p, "magic")
    with pytest.raises(ValueError, match="axis"):
        nh.segment(p, axis=5)
    with pytest.raises(ValueError, match="variant"):
        nh.segment(p, variant="best")
    with pytest.raises(ValueError, match="boundary"):
        nh.segment(p, "maxvalue")
    with pytest.raises(ValueError, match="noise"):
        rng = np.random.default_rng(0)
        nh.segment(rng.random((2, 64, 64)).astype(np.float32), max_candidates=100)
    with pytest.raises(ValueError, match="same shape"):
        select_instances([build_candidate_forest(p[0]), build_candidate_forest(p[0, :20])])


def test_single_frame_warns_and_works():
    with pytest.warns(UserWarning, match="single 2D frame"):
        lab = nh.segment(two_cells(0.3))
    assert lab.shape == (40, 60) and lab.max() == 2


def test_weak_single_path_roots_do_not_seed():
    # Frame 0: a faint blob (peak 0.6) beside a cell; frame 1: the cell has two peaks.
    p0 = two_cells(0.3)
    p0[10:30, 30:49] = 0.0
    p0[2:6, 2:6] = 0.6
    strong = nh.hemd(np.stack([p0, p0]), variant="paper")
    assert HOW["initial"] in strong.selections[0].how
    weak = nh.hemd(np.stack([p0, p0]), seed_min_peak=0.9)
    f = weak.forests[0]
    seeds = weak.selections[0].nodes[weak.selections[0].how == HOW["initial"]]
    assert all(f.level[f.end[n] - 1] >= 0.9 for n in seeds)
    # The faint blob is still an object, by padding: nothing is lost.
    assert len(np.unique(weak.labels[0])) == len(np.unique(strong.labels[0]))


def test_lone_match_grows_to_the_ancestor_only_its_reference_overlaps():
    # Frame 0: one object with two peaks (a tree with two leaves). Frame 1: one small cell over its
    # left peak, the same size as that peak: eq. 14 lets it select the left peak only.
    p0 = np.zeros((40, 60), np.float32)
    p0[10:30, 10:36] = 0.6  # 520 px, at most 1.5 x the reference
    p0[10:30, 10:28] = 0.95  # 360 px
    p0[10:30, 30:36] = 0.95  # 120 px
    p1 = np.zeros_like(p0)
    p1[10:30, 10:28] = 0.95  # the reference, 360 px
    prob = np.stack([p0, p1])
    paper = nh.hemd(prob, variant="paper")
    f0, s0 = paper.forests[0], paper.selections[0]
    assert len(np.unique(paper.labels[0])) - 1 == 2  # the matched peak + the other one, padded
    assert f0.parent[s0.nodes[s0.how == HOW["right"]][0]] >= 0
    node = nh.hemd(prob, lone_growth=1)
    s0 = node.selections[0]
    assert f0.parent[s0.nodes[s0.how == HOW["right"]][0]] >= 0
    # refined: nothing else in frame 1 overlaps the object -> the whole object is selected
    tree = nh.hemd(prob)
    f0, s0 = tree.forests[0], tree.selections[0]
    assert s0.nodes.tolist() == f0.roots.tolist() and s0.how.tolist() == [HOW["right"]]
    assert np.isclose(s0.score[0], 360 / 520)  # IoU of the reference with the whole object
    assert len(np.unique(tree.labels[0])) - 1 == 1
    # Two references overlapping the tree still split it (the merged frame of the tiny video).
    assert [len(np.unique(f)) - 1 for f in nh.segment(tiny_video())] == [2, 2, 2]


def test_lone_growth_is_bounded_and_validated():
    p0 = np.zeros((40, 60), np.float32)
    p0[10:30, 10:50] = 0.6
    p0[10:30, 10:28] = 0.95
    p0[10:30, 32:50] = 0.95
    p1 = np.zeros_like(p0)
    p1[10:30, 10:28] = 0.95
    # The whole object (800 px) is more than 2.0 but less than 2.5 times the reference (360 px).
    small = nh.hemd(np.stack([p0, p1]), lone_growth=2.0)
    big = nh.hemd(np.stack([p0, p1]), lone_growth=2.5)
    assert len(np.unique(small.labels[0])) - 1 == 2
    assert len(np.unique(big.labels[0])) - 1 == 1
    with pytest.raises(ValueError, match="lone_growth"):
        nh.hemd(tiny_video(), lone_growth=0.5)
    with pytest.raises(ValueError, match="seed_min_peak"):
        nh.hemd(tiny_video(), seed_min_peak=1.5)


def _touching_pair(sibling_peak: float = 0.95) -> np.ndarray:
    """Three lone cells (400 px) and two cells touching at a dip (800 + 300 px, a 40 px bridge)."""
    p = np.zeros((40, 180), np.float32)
    for x in (70, 110, 150):
        p[10:30, x : x + 20] = 0.95  # lone cells: the frame's median tree, the typical object
    p[10:30, 5:45] = 0.95  # cell S, 800 px
    p[10:30, 45:47] = 0.6  # the contact: children fill 1100 / 1140 of the merged candidate
    p[10:30, 47:62] = sibling_peak  # its neighbour, 300 px (>= 0.7 x 400)
    return np.stack([p, p, p])


def test_touching_cells_that_never_separate_are_split_by_the_refined_variant():
    prob = _touching_pair()
    # The paper pads the never-resolved pair as one object; refined keeps the two cells.
    assert [len(np.unique(f)) - 1 for f in nh.hemd(prob, variant="paper").labels] == [4, 4, 4]
    assert [len(np.unique(f)) - 1 for f in nh.hemd(prob, split_coverage=0).labels] == [4, 4, 4]
    res = nh.hemd(prob)
    assert res.params["split_coverage"] == 0.8 and res.params["split_size"] == 0.7
    for lab in res.labels:
        assert len(np.unique(lab)) - 1 == 5
        assert len(np.unique(lab[10:30, 5:45])) == 1 and len(np.unique(lab[10:30, 47:62])) == 1
        assert lab[20, 20] != lab[20, 50]


def test_split_pieces_are_never_absorbed_back():
    # The neighbour is too faint to seed (peak 0.85 < 0.9) and is padded at the end, a leftover
    # under S's old parent and smaller than half of S: "absorb" would join it to S without the
    # split's guard.
    res = nh.hemd(_touching_pair(sibling_peak=0.85))
    assert [len(np.unique(f)) - 1 for f in res.labels] == [5, 5, 5]
    assert all(not s.absorbed for s in res.selections)


def test_a_dip_inside_one_object_is_not_a_split():
    p = np.zeros((60, 120), np.float32)
    p[10:50, 5:45] = 0.95  # a lone object of 1,600 px: with the next, the typical size
    p[10:50, 60:80] = 0.95  # one 1,600 px object whose two halves (800 px each, < 0.7 x 1,600)
    p[10:50, 80:82] = 0.6  # fill it: pieces smaller than the objects around -> one object
    p[10:50, 82:100] = 0.95
    prob = np.stack([p, p])
    assert [len(np.unique(f)) - 1 for f in nh.hemd(prob).labels] == [2, 2]
    assert [len(np.unique(f)) - 1 for f in nh.hemd(prob, split_size=0.4).labels] == [3, 3]
    # Small cores covering little of an object (a textured nucleus) keep it whole at any size.
    q = np.zeros((40, 60), np.float32)
    q[5:35, 5:55] = 0.6  # 1,500 px
    q[10:20, 10:20] = 0.95  # two 100 px cores: 200 / 1,500 covered
    q[22:32, 40:50] = 0.95
    assert [len(np.unique(f)) - 1 for f in nh.hemd(np.stack([q, q]), split_size=0).labels] == [1, 1]


def test_split_options_are_validated():
    with pytest.raises(ValueError, match="split_coverage"):
        nh.hemd(tiny_video(), split_coverage=1.5)
    with pytest.raises(ValueError, match="split_size"):
        nh.hemd(tiny_video(), split_size=-1)
