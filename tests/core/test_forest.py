from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi

from napari_hemd.core.forest import build_candidate_forest, quantize


def naive_forest(prob, tau=0.5, connectivity=1):
    """One labelling per level: the set of distinct candidate regions (as frozensets of pixels)."""
    q = quantize(prob)
    struct = ndi.generate_binary_structure(prob.ndim, connectivity)
    regions = set()
    for v in np.unique(q[q >= round(tau * 100)]):
        lab, n = ndi.label(q >= v, struct)
        for i in range(1, n + 1):
            regions.add(frozenset(np.flatnonzero(lab.ravel() == i).tolist()))
    return regions


probs_2d = arrays(
    np.float32,
    st.tuples(st.integers(1, 9), st.integers(1, 9)),
    elements=st.floats(0, 1, width=32),
)


@settings(max_examples=150, deadline=None)
@given(probs_2d, st.sampled_from([0.3, 0.5, 0.7]), st.sampled_from([1, 2]))
def test_forest_matches_naive_labelling(prob, tau, conn):
    f = build_candidate_forest(prob, tau=tau, connectivity=conn)
    got = {frozenset(np.flatnonzero(f.mask(n).ravel()).tolist()) for n in range(f.n_nodes)}
    assert got == naive_forest(prob, tau, conn)
    assert len(got) == f.n_nodes  # lossless: no two nodes with the same region


@settings(max_examples=100, deadline=None)
@given(probs_2d)
def test_forest_invariants(prob):
    f = build_candidate_forest(prob)
    q = quantize(prob)
    for n in range(f.n_nodes):
        m = f.mask(n)
        # Every pixel of a node is >= its level; the node is one connected component.
        assert (q[m] >= round(float(f.level[n]) * 100)).all()
        assert ndi.label(m)[1] == 1
        assert m.sum() == f.area[n]
        assert np.isclose(f.prob_sum[n], prob[m].sum(dtype=np.float64), rtol=1e-6)
        # The bounding box is tight.
        idx = np.argwhere(m)
        assert f.bbox[n].tolist() == [*idx.min(0).tolist(), *(idx.max(0) + 1).tolist()]
        p = f.parent[n]
        if p >= 0:
            # Containment, and the parent is one level down.
            assert (f.mask(p) >= m).all()
            assert f.level[p] < f.level[n]
    # Exclusion-inclusion: any two nodes are disjoint or nested.
    for a in range(f.n_nodes):
        for b in range(a + 1, f.n_nodes):
            ma, mb = f.mask(a), f.mask(b)
            inter = (ma & mb).sum()
            assert inter == 0 or inter == min(ma.sum(), mb.sum())
            assert (inter > 0) == f.is_ancestor(a, b)


def test_three_dimensional_forest_matches_naive():
    rng = np.random.default_rng(3)
    prob = ndi.gaussian_filter(rng.random((6, 7, 8)), 1).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    f = build_candidate_forest(prob, tau=0.4)
    got = {frozenset(np.flatnonzero(f.mask(n).ravel()).tolist()) for n in range(f.n_nodes)}
    assert got == naive_forest(prob, 0.4)


@pytest.mark.parametrize(
    ("shape", "conn", "sigma"),
    [
        ((48, 56), 1, 1.5),
        ((48, 56), 2, 1.5),
        ((9, 12, 14), 1, 1),
        ((9, 12, 14), 2, 1),
        ((9, 12, 14), 3, 1),
    ],
)
def test_larger_maps_match_naive_with_exact_statistics(shape, conn, sigma):
    # Smooth blobs plus pixel noise: many merges per level, as in real probability maps.
    rng = np.random.default_rng(sum(shape) + conn)
    prob = ndi.gaussian_filter(rng.random(shape), sigma) + 0.02 * rng.standard_normal(shape)
    prob = ((prob - prob.min()) / (prob.max() - prob.min())).astype(np.float32)
    f = build_candidate_forest(prob, tau=0.45, connectivity=conn)
    masks = [f.mask(n) for n in range(f.n_nodes)]
    got = {frozenset(np.flatnonzero(m.ravel()).tolist()) for m in masks}
    assert got == naive_forest(prob, 0.45, conn) and len(got) == f.n_nodes
    for n, m in enumerate(masks):
        idx = np.argwhere(m)
        assert f.area[n] == len(idx)
        assert np.isclose(f.prob_sum[n], prob[m].sum(dtype=np.float64), rtol=1e-6)
        assert f.bbox[n].tolist() == [*idx.min(0).tolist(), *(idx.max(0) + 1).tolist()]


def test_paths_cut_and_labels():
    p = np.zeros((5, 9))
    p[1:4, 1:8] = 0.6
    p[2, 2] = p[2, 6] = 0.9
    f = build_candidate_forest(p)
    assert f.n_nodes == 3 and f.roots.tolist() == [0] and f.n_leaves[0] == 2
    paths = [path.tolist() for path in f.leaf_to_root_paths()]
    assert paths == [[1, 0], [2, 0]]
    assert f.children(0).tolist() == [1, 2]
    cut = f.cut(0.8)
    assert len(np.unique(cut)) == 3 and cut[2, 2] != cut[2, 6]
    assert (f.cut(0.5) > 0).sum() == 21
    assert np.isclose(f.mean_prob[0], (19 * 0.6 + 2 * 0.9) / 21)
    with pytest.raises(ValueError, match="disjoint"):
        f.labels_of(np.array([0, 1]))


def test_min_size_drops_small_candidates():
    p = np.zeros((6, 12))
    p[1:5, 1:11] = 0.6
    p[2, 2] = 0.9  # a 1-pixel peak
    p[2:4, 6:10] = 0.8  # an 8-pixel peak
    f = build_candidate_forest(p, min_size=2)
    assert f.n_nodes == 2
    assert sorted(f.area.tolist()) == [8, 40]
    assert f.n_leaves[0] == 1


@pytest.mark.parametrize(
    ("prob", "match"),
    [
        (np.full((4, 4), np.nan), "finite"),
        (np.full((4, 4), 1.5), r"\[0, 1\]"),
        (np.zeros((4,)), "2D or 3D"),
        (np.zeros((4, 4), dtype=np.int32), "dtype"),
    ],
)
def test_bad_input(prob, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build_candidate_forest(prob)


def test_half_precision_input_equals_single():
    rng = np.random.default_rng(5)
    p16 = ndi.gaussian_filter(rng.random((30, 40)), 2).astype(np.float16)
    a = build_candidate_forest(p16)
    b = build_candidate_forest(p16.astype(np.float32))
    assert a.n_nodes == b.n_nodes > 1
    assert (a.node_map == b.node_map).all() and (a.parent == b.parent).all()


def test_constant_and_empty_frames():
    assert build_candidate_forest(np.zeros((8, 8))).n_nodes == 0
    f = build_candidate_forest(np.ones((8, 8)))
    assert f.n_nodes == 1 and f.area[0] == 64
    assert build_candidate_forest(np.full((8, 8), 255, np.uint8)).n_nodes == 1


def test_forests_from_threads_and_alternating_shapes_equal_serial():
    # The union-find work space is reused per thread across frames of one shape.
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    frames = [ndi.gaussian_filter(rng.random(s), 2).astype(np.float32) for s in [(64, 80)] * 4]
    frames += [ndi.gaussian_filter(rng.random((50, 30)), 2).astype(np.float32)] * 2
    frames = [(f - f.min()) / (f.max() - f.min()) for f in frames]
    serial = [build_candidate_forest(f) for f in frames]
    with ThreadPoolExecutor(3) as ex:
        threaded = list(ex.map(build_candidate_forest, frames[::-1] * 3))[::-1][: len(frames)]
    for a, b in zip(serial, threaded, strict=True):
        assert (a.node_map == b.node_map).all() and (a.parent == b.parent).all()
        assert (a.area == b.area).all() and np.allclose(a.prob_sum, b.prob_sum)


@pytest.mark.parametrize(("bridge", "tau"), [(0.50, 0.504), (0.48, 0.485), (0.60, 0.603)])
def test_no_level_below_tau(bridge, tau):
    """The paper's levels are those >= tau (eq. 1): a tau between two levels kept the one below
    it (round, not up; audit 34), so a bridge below tau joined two cells the threshold at tau
    keeps apart."""
    import napari_hemd as nh

    p = np.zeros((32, 32))
    p[8:24, 4:14] = p[8:24, 18:28] = 0.9
    p[14:18, 14:18] = bridge
    forest = build_candidate_forest(p, tau=tau)
    assert float(forest.level.min()) >= tau
    video = np.stack([p, p, p])
    for variant in ("paper", "refined"):
        labels = nh.segment(video, "hemd", variant=variant, tau=tau)
        assert [int(f.max()) for f in labels] == [2, 2, 2], variant
    assert [int(f.max()) for f in nh.segment(video, "threshold", tau=tau)] == [2, 2, 2]
    for exact in (0.29, 0.35, 0.5, 0.57, np.float32(0.3), np.float32(0.57)):
        # a level itself stays (float error: 0.29 * 100 = 28.999..., float32 0.3 * 100 = 30.0000012)
        forest = build_candidate_forest(np.full((4, 4), exact), tau=exact)
        assert round(float(forest.level.min()), 2) == round(float(exact), 2), exact
        assert forest.cut(exact).max() == 1
    # the inspector's cut at a level between two: the one above, as the forest's tau (review 32)
    forest = build_candidate_forest(p, tau=0.3)
    assert len(np.unique(forest.cut(tau))) - 1 == 2 and len(np.unique(forest.cut(bridge))) - 1 == 1
