"""Both matchings equal brute force on small random instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from napari_hemd.core.matching import emd_matching, hemd_matching


def brute_emd(inter, area_a, area_b, delta):
    inter = inter.toarray()
    n_a, n_b = inter.shape
    iou = inter / (area_a[:, None] + area_b[None, :] - inter)
    ok = (
        2 * np.abs(area_a[:, None] - area_b[None, :]) / (area_a[:, None] + area_b[None, :]) < delta
    ) & (inter > 0)
    best = 0.0
    for perm in itertools.permutations(range(max(n_a, n_b)), n_a):
        val = sum(iou[i, j] for i, j in enumerate(perm) if j < n_b and ok[i, j])
        best = max(best, val)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_emd_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_a, n_b = rng.integers(1, 5), rng.integers(1, 5)
    area_a = rng.integers(10, 40, n_a)
    area_b = rng.integers(10, 40, n_b)
    inter = np.minimum(
        rng.integers(0, 30, (n_a, n_b)) * (rng.random((n_a, n_b)) < 0.6),
        np.minimum.outer(area_a, area_b),
    )
    m = sp.csr_matrix(inter)
    r, c, v = emd_matching(m, area_a, area_b, 0.5)
    assert len(set(r)) == len(r) and len(set(c)) == len(c)
    assert np.isclose(v.sum(), brute_emd(m, area_a, area_b, 0.5))


def random_forest(rng, n):
    """A random forest in pre-order: parent of node i is a previous node on the current path."""
    parent = np.full(n, -1)
    stack = []
    for i in range(n):
        while stack and rng.random() < 0.4:
            stack.pop()
        parent[i] = stack[-1] if stack else -1
        stack.append(i)
    end = np.arange(1, n + 1)
    for i in range(n - 1, -1, -1):
        if parent[i] >= 0:
            end[parent[i]] = max(end[parent[i]], end[i])
    return parent, end


def brute_hemd(iou, ok, end):
    n_r, n_k = iou.shape
    best = 0.0
    for choice in itertools.product(*[[-1, *range(n_k)] for _ in range(n_r)]):
        nodes = [k for k in choice if k >= 0]
        if any(not ok[i, k] for i, k in enumerate(choice) if k >= 0):
            continue
        if any(a <= b < end[a] or b <= a < end[b] for a, b in itertools.combinations(nodes, 2)):
            continue
        best = max(best, sum(iou[i, k] for i, k in enumerate(choice) if k >= 0))
    return best


@pytest.mark.parametrize("solver", ["enumerate", "cpsat"])
@pytest.mark.parametrize("seed", range(30))
def test_hemd_equals_brute_force(seed, solver):
    rng = np.random.default_rng(seed)
    n_k = int(rng.integers(2, 8))
    n_r = int(rng.integers(1, 4))
    parent, end = random_forest(rng, n_k)
    # Areas grow rootwards; overlaps are consistent with containment (sum of descendants).
    area_node = np.zeros(n_k, int)
    for i in range(n_k - 1, -1, -1):
        area_node[i] += rng.integers(5, 20)
        if parent[i] >= 0:
            area_node[parent[i]] += area_node[i]
    area_ref = rng.integers(10, 60, n_r)
    own = rng.integers(0, 6, (n_r, n_k)) * (rng.random((n_r, n_k)) < 0.7)
    inter = np.zeros((n_r, n_k), int)
    for i in range(n_k - 1, -1, -1):
        inter[:, i] += own[:, i]
        if parent[i] >= 0:
            inter[:, parent[i]] += inter[:, i]
    inter = np.minimum(inter, np.minimum.outer(area_ref, area_node))
    alive = np.ones(n_k, bool)
    tree_of = np.array([i if parent[i] < 0 else 0 for i in range(n_k)])
    for i in range(n_k):
        if parent[i] >= 0:
            tree_of[i] = tree_of[parent[i]]
    delta = 0.8
    sol = hemd_matching(
        sp.csr_matrix(inter),
        area_ref,
        parent,
        end,
        area_node,
        alive,
        tree_of,
        delta,
        enum_limit=0 if solver == "cpsat" else 10**6,
    )
    iou = inter / (area_ref[:, None] + area_node[None, :] - inter)
    ok = (np.abs(area_ref[:, None] - area_node[None, :]) / area_ref[:, None] < delta) & (inter > 0)
    # Feasible: each reference once, chosen nodes pairwise unrelated.
    assert len(set(sol.ref.tolist())) == sol.ref.size
    for a, b in itertools.combinations(sol.node.tolist(), 2):
        assert not (a <= b < end[a] or b <= a < end[b])
    assert np.isclose(sol.iou.sum(), brute_hemd(iou, ok, end), atol=1e-5)


def test_hemd_respects_alive_and_size_filter():
    parent = np.array([-1, 0, 0])
    end = np.array([3, 2, 3])
    area = np.array([100, 40, 40])
    inter = sp.csr_matrix(np.array([[40, 40, 0]]))
    alive = np.array([True, False, True])
    sol = hemd_matching(inter, np.array([40]), parent, end, area, alive, np.array([0, -1, 0]), 0.35)
    # Node 1 is removed; node 0 fails |r - d| / r < delta; node 2 has no overlap.
    assert sol.node.size == 0


def test_time_limit_falls_back_to_a_feasible_solution_with_a_warning(caplog):
    rng = np.random.default_rng(0)
    n_k, n_r = 300, 40
    parent = np.array([-1] + [i - 1 if i % 10 else 0 for i in range(1, n_k)])
    end = np.arange(1, n_k + 1)
    for i in range(n_k - 1, -1, -1):
        if parent[i] >= 0:
            end[parent[i]] = max(end[parent[i]], end[i])
    inter = np.minimum(rng.integers(0, 30, (n_r, n_k)), 50)
    with caplog.at_level("WARNING"):
        sol = hemd_matching(
            sp.csr_matrix(inter),
            np.full(n_r, 50),
            parent,
            end,
            np.full(n_k, 50),
            np.ones(n_k, bool),
            np.zeros(n_k, int),
            0.9,
            enum_limit=0,
            time_limit=1e-4,
            context="frames 3->4",
        )
    assert sol.suboptimal
    assert "frames 3->4" in caplog.text and "time limit" in caplog.text
    # Feasible and not empty: the greedy solution (CP-SAT's hint) is the floor.
    assert sol.node.size > 0 and len(set(sol.ref.tolist())) == sol.ref.size
    for a, b in itertools.combinations(sol.node.tolist(), 2):
        assert not (a <= b < end[a] or b <= a < end[b])
