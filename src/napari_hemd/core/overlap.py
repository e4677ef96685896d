"""Overlaps between the candidates of two frames, from one pixel histogram per frame pair.

The histogram counts pixels per pair of *deepest* nodes; the overlap of any two candidates is a sum
over it, because every candidate is a contiguous range of deepest nodes (see ``forest.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from napari_hemd.core.forest import CandidateForest

__all__ = ["PairHistogram", "antichain_index", "overlap_matrix", "pair_histogram"]


@dataclass(frozen=True)
class PairHistogram:
    """Pixel counts of co-occurring deepest nodes ``(a, b)`` of two forests, sorted by ``a``."""

    a: np.ndarray
    b: np.ndarray
    count: np.ndarray

    def swapped(self) -> PairHistogram:
        """The same histogram seen from the other frame."""
        order = np.lexsort((self.a, self.b))
        return PairHistogram(self.b[order], self.a[order], self.count[order])


def pair_histogram(forest_a: CandidateForest, forest_b: CandidateForest) -> PairHistogram:
    """Count pixels shared by each pair of deepest nodes of two same-shaped frames."""
    if forest_a.shape != forest_b.shape:
        raise ValueError(
            f"frames must have the same shape; got {forest_a.shape} and {forest_b.shape}"
        )
    ma, mb = forest_a.node_map.ravel(), forest_b.node_map.ravel()
    both = (ma >= 0) & (mb >= 0)
    nb = max(forest_b.n_nodes, 1)
    key = ma[both].astype(np.int64) * nb + mb[both]
    uniq, count = np.unique(key, return_counts=True)
    return PairHistogram((uniq // nb).astype(np.int32), (uniq % nb).astype(np.int32), count)


def antichain_index(forest: CandidateForest, nodes: np.ndarray) -> np.ndarray:
    """For each deepest node, the index in ``nodes`` of its ancestor-or-self, or ``-1``.

    ``nodes`` must be disjoint candidates (no one an ancestor of another).
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    diff = np.zeros(forest.n_nodes + 1, dtype=np.int64)
    idx = np.arange(1, nodes.size + 1)
    np.add.at(diff, nodes, idx)
    np.add.at(diff, forest.end[nodes], -idx)
    return (np.cumsum(diff[:-1]) - 1).astype(np.int64)


def overlap_matrix(
    hist: PairHistogram,
    forest_a: CandidateForest,
    nodes_a: np.ndarray,
    forest_b: CandidateForest,
    nodes_b: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Pixels shared by the candidates ``nodes_a`` of frame a and candidates of frame b.

    Parameters
    ----------
    hist : PairHistogram
        From :func:`pair_histogram` (frame a first).
    nodes_a : (R,) int array
        Disjoint candidates of frame a.
    nodes_b : (S,) int array, optional
        Disjoint candidates of frame b: the result is ``(R, S)``. When omitted, the result is
        ``(R, n_nodes_b)`` over *all* candidates of frame b (ancestors included).
    """
    ia = antichain_index(forest_a, nodes_a)[hist.a]
    keep = ia >= 0
    rows, cols, vals = ia[keep], hist.b[keep].astype(np.int64), hist.count[keep]
    if nodes_b is not None:
        ib = antichain_index(forest_b, nodes_b)[cols]
        k2 = ib >= 0
        m = sp.coo_matrix((vals[k2], (rows[k2], ib[k2])), shape=(len(nodes_a), len(nodes_b)))
        return m.tocsr()
    # Lift every count to all ancestors of its deepest node (depth <= number of levels).
    parent = forest_b.parent
    r_parts, c_parts, v_parts = [], [], []
    while cols.size:
        r_parts.append(rows)
        c_parts.append(cols)
        v_parts.append(vals)
        up = parent[cols]
        has = up >= 0
        rows, cols, vals = rows[has], up[has].astype(np.int64), vals[has]
    if r_parts:
        rows, cols, vals = (np.concatenate(x) for x in (r_parts, c_parts, v_parts))
    m = sp.coo_matrix((vals, (rows, cols)), shape=(len(nodes_a), forest_b.n_nodes))
    return m.tocsr()
