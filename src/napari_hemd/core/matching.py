"""EMD and hierarchical-EMD matching (H-EMD, Section III-B.2), solved to proven optimality.

* :func:`emd_matching` — eq. (4)–(8): one-to-one matching between two sets of disjoint instances,
  maximising total IoU. An assignment problem, solved exactly with
  :func:`scipy.optimize.linear_sum_assignment` on each connected component of the compatibility graph.
* :func:`hemd_matching` — eq. (11)–(15): reference instances against a candidate forest; each
  reference takes at most one candidate, and at most one candidate per leaf-to-root path is taken.
  The problem splits into independent components (references linked through the trees they reach);
  a component with one reference is solved by taking its best candidate, small components by exact
  enumeration with branch-and-bound, and the rest with OR-Tools CP-SAT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

__all__ = ["HEMDSolution", "emd_matching", "hemd_matching"]

log = logging.getLogger(__name__)

#: CP-SAT needs integer objectives: IoU is scaled by this factor (resolution 1e-6).
IOU_SCALE = 1_000_000


def emd_matching(
    inter: sp.spmatrix, area_a: np.ndarray, area_b: np.ndarray, delta: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of two sets of disjoint instances (eq. 4–8).

    Parameters
    ----------
    inter : (R, S) sparse matrix
        Pixels shared by instance ``i`` of the first set and ``j`` of the second.
    area_a, area_b : (R,), (S,) int arrays
        Instance sizes.
    delta : float
        A pair is allowed only if ``2 |a - b| / (a + b) < delta`` (eq. 7).

    Returns
    -------
    rows, cols : int arrays
        Matched pairs; only pairs with positive IoU are reported.
    iou : float array
        IoU of each matched pair.
    """
    coo = sp.coo_matrix(inter)
    keep = coo.data > 0
    r, c, x = coo.row[keep], coo.col[keep], coo.data[keep].astype(np.float64)
    ar, ac = area_a[r].astype(np.float64), area_b[c].astype(np.float64)
    ok = 2.0 * np.abs(ar - ac) / (ar + ac) < delta
    r, c, x, ar, ac = r[ok], c[ok], x[ok], ar[ok], ac[ok]
    iou = x / (ar + ac - x)
    if r.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    n_a = inter.shape[0]
    graph = sp.coo_matrix((np.ones(r.size), (r, n_a + c)), shape=(n_a + inter.shape[1],) * 2)
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[r]
    out_r, out_c, out_v = [], [], []
    order = np.argsort(edge_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
    for idx in np.split(order, bounds):
        if idx.size == 1:
            out_r.append(r[idx])
            out_c.append(c[idx])
            out_v.append(iou[idx])
            continue
        ur, ri = np.unique(r[idx], return_inverse=True)
        uc, ci = np.unique(c[idx], return_inverse=True)
        w = np.zeros((ur.size, uc.size))
        w[ri, ci] = iou[idx]
        rr, cc = linear_sum_assignment(w, maximize=True)
        pos = w[rr, cc] > 0
        out_r.append(ur[rr[pos]])
        out_c.append(uc[cc[pos]])
        out_v.append(w[rr[pos], cc[pos]])
    return (
        np.concatenate(out_r).astype(np.int64),
        np.concatenate(out_c).astype(np.int64),
        np.concatenate(out_v),
    )


@dataclass(frozen=True)
class HEMDSolution:
    """Chosen pairs of an H-EMD matching: reference index, candidate node, IoU."""

    ref: np.ndarray
    node: np.ndarray
    iou: np.ndarray
    #: True when a CP-SAT time limit stopped a component before optimality was proven.
    suboptimal: bool = False


def hemd_matching(
    inter: sp.spmatrix,
    area_ref: np.ndarray,
    parent: np.ndarray,
    end: np.ndarray,
    area_node: np.ndarray,
    alive: np.ndarray,
    tree_of: np.ndarray,
    delta: float,
    *,
    enum_limit: int = 20_000,
    time_limit: float = 10.0,
    context: str = "",
) -> HEMDSolution:
    """Optimal H-EMD matching of reference instances to a candidate forest (eq. 11–15).

    Parameters
    ----------
    inter : (R, K) sparse matrix
        Pixels shared by reference ``i`` and candidate ``k`` (all candidates, ancestors included).
    area_ref : (R,) int array
        Reference sizes.
    parent, end, area_node : (K,) arrays
        Forest structure (pre-order parent, subtree end) and candidate sizes.
    alive : (K,) bool array
        Candidates still unselected and not excluded (the remaining forest ``F_t``).
    tree_of : (K,) int array
        Root of each alive candidate in the remaining forest.
    delta : float
        An edge ``(r, d)`` is allowed only if ``|r - d| / r < delta`` (eq. 14).
    enum_limit : int
        Components with at most this many joint choices are solved by enumeration; larger ones by
        CP-SAT. ``0`` sends every multi-reference component to CP-SAT.
    time_limit : float
        Seconds per CP-SAT component; on timeout the best feasible solution is used, with a warning.
    context : str
        Names the frame pair in warnings.
    """
    coo = sp.coo_matrix(inter)
    keep = coo.data > 0
    r, d, x = coo.row[keep], coo.col[keep], coo.data[keep].astype(np.float64)
    keep = alive[d]
    r, d, x = r[keep], d[keep], x[keep]
    ar, ad = area_ref[r].astype(np.float64), area_node[d].astype(np.float64)
    ok = np.abs(ar - ad) / ar < delta
    r, d, x, ar, ad = r[ok], d[ok], x[ok], ar[ok], ad[ok]
    iou = x / (ar + ad - x)
    empty = HEMDSolution(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    if r.size == 0:
        return empty
    # Components: references linked through the remaining trees they reach.
    trees, tree_idx = np.unique(tree_of[d], return_inverse=True)
    n_r = inter.shape[0]
    graph = sp.coo_matrix((np.ones(r.size), (r, n_r + tree_idx)), shape=(n_r + trees.size,) * 2)
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[r]
    order = np.lexsort((d, r, edge_comp))
    bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
    chosen: list[np.ndarray] = []
    suboptimal = False
    for idx in np.split(order, bounds):
        refs = np.unique(r[idx])
        if refs.size == 1:
            best = idx[np.argmax(iou[idx])]  # first maximum = smallest node id
            chosen.append(np.array([best]))
            continue
        n_choices = 1.0
        for ref in refs:
            n_choices *= 1 + np.count_nonzero(r[idx] == ref)
        if n_choices <= enum_limit:
            chosen.append(_solve_enumerate(idx, r, d, iou, end))
        else:
            sel, proven = _solve_cpsat(idx, r, d, iou, end, time_limit)
            if not proven:
                suboptimal = True
                log.warning(
                    "H-EMD matching %s: CP-SAT time limit (%g s) reached on a component of "
                    "%d references and %d candidates; using the best feasible solution found",
                    context,
                    time_limit,
                    refs.size,
                    np.unique(d[idx]).size,
                )
            chosen.append(sel)
    if not chosen:
        return empty
    sel = np.concatenate(chosen).astype(np.int64)
    return HEMDSolution(r[sel].astype(np.int64), d[sel].astype(np.int64), iou[sel], suboptimal)


def _compatible(a: int, b: int, end: np.ndarray) -> bool:
    """Two candidates can both be selected iff neither contains the other."""
    return not (a <= b < end[a] or b <= a < end[b])


def _solve_enumerate(
    idx: np.ndarray, r: np.ndarray, d: np.ndarray, iou: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Exact branch-and-bound over the references of one component (edges ``idx``)."""
    refs = np.unique(r[idx])
    options = [idx[r[idx] == ref] for ref in refs]
    # Best-first within each reference helps the bound prune early.
    options = [o[np.argsort(-iou[o], kind="stable")] for o in options]
    best_rest = np.zeros(len(options) + 1)
    for i in range(len(options) - 1, -1, -1):
        best_rest[i] = best_rest[i + 1] + iou[options[i][0]]
    best_val = -1.0
    best_sel: list[int] = []
    cur: list[int] = []

    def rec(i: int, val: float) -> None:
        nonlocal best_val, best_sel
        if val + best_rest[i] <= best_val + 1e-12:
            return
        if i == len(options):
            best_val, best_sel = val, cur.copy()
            return
        for e in options[i]:
            node = int(d[e])
            if all(_compatible(node, int(d[c]), end) for c in cur):
                cur.append(int(e))
                rec(i + 1, val + iou[e])
                cur.pop()
        rec(i + 1, val)

    rec(0, 0.0)
    return np.asarray(best_sel, dtype=np.int64)


def _solve_cpsat(
    idx: np.ndarray,
    r: np.ndarray,
    d: np.ndarray,
    iou: np.ndarray,
    end: np.ndarray,
    time_limit: float,
) -> tuple[np.ndarray, bool]:
    """CP-SAT model of one component. Returns chosen edges and whether optimality was proven."""
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    x = {int(e): model.new_bool_var(f"x{e}") for e in idx}
    for ref in np.unique(r[idx]):
        model.add_at_most_one(x[int(e)] for e in idx[r[idx] == ref])
    # Path constraints (eq. 13): for every candidate with no candidate below it, the edges into it
    # and into its candidate ancestors share one unit of capacity. This covers every leaf-to-root
    # path restricted to the candidates of this component.
    nodes = np.unique(d[idx])
    edges_of = {int(n): [int(e) for e in idx[d[idx] == n]] for n in nodes}
    for n in nodes:
        below = nodes[(nodes > n) & (nodes < end[n])]
        if below.size:
            continue
        chain = [m for m in nodes if m <= n < end[m]]
        model.add_at_most_one(x[e] for m in chain for e in edges_of[int(m)])
    model.maximize(sum(round(iou[e] * IOU_SCALE) * var for e, var in x.items()))
    greedy = _solve_greedy(idx, r, d, iou, end)
    chosen = set(greedy.tolist())
    for e, var in x.items():
        model.add_hint(var, e in chosen)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = 1  # deterministic
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return greedy, False
    sel = np.array([e for e, var in x.items() if solver.value(var)], dtype=np.int64)
    if status != cp_model.OPTIMAL and iou[sel].sum() < iou[greedy].sum():
        return greedy, False
    return sel, status == cp_model.OPTIMAL


def _solve_greedy(
    idx: np.ndarray, r: np.ndarray, d: np.ndarray, iou: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """A feasible solution: edges by decreasing IoU, skipping conflicts (hint and fallback)."""
    taken: list[int] = []
    used_refs: set[int] = set()
    for e in idx[np.argsort(-iou[idx], kind="stable")]:
        ref, node = int(r[e]), int(d[e])
        if ref in used_refs or not all(_compatible(node, int(d[c]), end) for c in taken):
            continue
        taken.append(int(e))
        used_refs.add(ref)
    return np.asarray(taken, dtype=np.int64)
