"""Instance candidate forests (H-EMD, Section III-A).

Every connected component of ``{round(p, 2) >= v}`` at every level ``v >= tau`` is an instance
candidate; its parent is the component one level down that contains it. Components that are the same
region at several levels are one node.

Storage
-------
Nodes are numbered in depth-first pre-order, so the subtree of node ``n`` is the contiguous range
``n .. end[n] - 1``. The only per-pixel array is ``node_map``: the *deepest* node containing each
pixel (``-1`` for background). Then

* the mask of node ``n`` is ``(node_map >= n) & (node_map < end[n])`` (evaluated in its bounding box),
* ``n`` is an ancestor-or-self of ``m`` iff ``n <= m < end[n]``,
* a cut of the forest at any level is a lookup table applied to ``node_map``.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_hemd.core import _forest_kernels as _k
from napari_hemd.core.validation import check_probability, resolve_connectivity

__all__ = ["CandidateForest", "build_candidate_forest", "quantize"]

#: Number of quantisation steps per unit probability (the paper rounds to 2 decimals).
LEVELS_PER_UNIT = 100


def quantize(prob: np.ndarray) -> np.ndarray:
    """Round probabilities to two decimals, as integer levels ``0 .. 100`` (int16)."""
    prob = np.asarray(prob)
    scale = prob.dtype.type(LEVELS_PER_UNIT) if prob.dtype.kind == "f" else LEVELS_PER_UNIT
    return np.rint(prob * scale).astype(np.int16)


@dataclass(frozen=True, eq=False)
class CandidateForest:
    """The instance candidate forest of one 2D frame or one 3D volume.

    Attributes
    ----------
    node_map : (M, N[, P]) int32 ndarray
        Deepest candidate containing each pixel; ``-1`` where ``round(p, 2) < tau``.
    parent : (K,) int32 ndarray
        Parent of each node, ``-1`` for roots. Parents precede children (pre-order).
    level : (K,) float32 ndarray
        Threshold of each node: its region is a connected component of ``round(p, 2) >= level``
        (the minimum rounded probability in the region).
    end : (K,) int32 ndarray
        One past the last node of each subtree.
    area : (K,) int64 ndarray
        Pixels (voxels) in each node.
    prob_sum : (K,) float64 ndarray
        Sum of the (unrounded) probabilities over each node; ``prob_sum / area`` is the mean.
    n_leaves : (K,) int32 ndarray
        Leaves in each subtree (a root with one leaf is a single-path tree).
    bbox : (K, 2 * ndim) int32 ndarray
        ``(min_0, .., min_d, max_0, .., max_d)`` with exclusive maxima.
    tau : float
        Lowest threshold used.
    connectivity : int
        Neighbourhood used for connected components (1 = faces only, ``ndim`` = full).
    """

    node_map: np.ndarray
    parent: np.ndarray
    level: np.ndarray
    end: np.ndarray
    area: np.ndarray
    prob_sum: np.ndarray
    n_leaves: np.ndarray
    bbox: np.ndarray
    tau: float
    connectivity: int

    # ------------------------------------------------------------------ structure
    @property
    def n_nodes(self) -> int:
        """Number of candidates."""
        return int(self.parent.shape[0])

    @property
    def ndim(self) -> int:
        """Spatial dimensions of the frame (2 or 3)."""
        return self.node_map.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the frame."""
        return self.node_map.shape

    @property
    def roots(self) -> np.ndarray:
        """Ids of the root candidates (components at ``tau``)."""
        return np.flatnonzero(self.parent < 0)

    @property
    def leaves(self) -> np.ndarray:
        """Ids of the leaf candidates."""
        return np.flatnonzero(self.end == np.arange(1, self.n_nodes + 1))

    @property
    def mean_prob(self) -> np.ndarray:
        """Mean probability of each candidate."""
        return self.prob_sum / np.maximum(self.area, 1)

    def children(self, node: int) -> np.ndarray:
        """Direct children of ``node``, in increasing id."""
        sub = np.arange(node + 1, self.end[node])
        return sub[self.parent[sub] == node]

    def ancestors(self, node: int) -> np.ndarray:
        """``node`` and its ancestors up to the root (a leaf-to-root path when ``node`` is a leaf)."""
        path = [int(node)]
        p = int(self.parent[node])
        while p >= 0:
            path.append(p)
            p = int(self.parent[p])
        return np.asarray(path, dtype=np.int64)

    def root_of(self, nodes: np.ndarray | int) -> np.ndarray:
        """Root of the tree holding each node."""
        roots = self.roots
        return roots[np.searchsorted(roots, nodes, side="right") - 1]

    def leaf_to_root_paths(self) -> Iterator[np.ndarray]:
        """Yield every leaf-to-root path (``N^w`` in the paper)."""
        for leaf in self.leaves:
            yield self.ancestors(leaf)

    def is_ancestor(self, a: int, b: int) -> bool:
        """Whether ``a`` is ``b`` or one of its ancestors."""
        return bool(a <= b < self.end[a])

    # ------------------------------------------------------------------ regions
    def bbox_slices(self, node: int) -> tuple[slice, ...]:
        """Bounding box of ``node`` as a tuple of slices."""
        b = self.bbox[node]
        d = self.ndim
        return tuple(slice(int(b[i]), int(b[i + d])) for i in range(d))

    def mask(self, node: int, *, crop: bool = False) -> np.ndarray:
        """Boolean mask of ``node``: full frame, or cropped to its bounding box with ``crop=True``."""
        sl = self.bbox_slices(node)
        sub = self.node_map[sl]
        m = (sub >= node) & (sub < self.end[node])
        if crop:
            return m
        out = np.zeros(self.shape, dtype=bool)
        out[sl] = m
        return out

    def labels_of(self, nodes: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """Paint disjoint ``nodes`` into a label image (``values`` default to ``1 .. len(nodes)``).

        Raises
        ------
        ValueError
            If two of ``nodes`` overlap (one is an ancestor of the other).
        """
        lut = self.node_lut(nodes, values)
        out = np.zeros(self.shape, dtype=lut.dtype)
        fg = self.node_map >= 0
        out[fg] = lut[self.node_map[fg]]
        return out

    def node_lut(self, nodes: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """Lookup table from deepest node to the label of its ancestor among ``nodes`` (0 if none)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        if values is None:
            values = np.arange(1, len(nodes) + 1)
        values = np.asarray(values)
        dtype = np.uint32 if values.size == 0 or values.max() < 2**32 else np.uint64
        lut = np.zeros(self.n_nodes, dtype=dtype)
        order = np.argsort(nodes)
        s = nodes[order]
        if s.size > 1 and np.any(self.end[s[:-1]] > s[1:]):
            raise ValueError("nodes must be disjoint candidates (no ancestor of another)")
        for n, v in zip(s, values[order], strict=True):
            lut[n : self.end[n]] = v
        return lut

    def cut(self, threshold: float) -> np.ndarray:
        """Label image of the connected components of ``round(p, 2) >= threshold``.

        Labels are ``1 + node id`` of the component's candidate, so they are stable across calls.
        """
        t = level_at_or_above(threshold)  # as build_candidate_forest's tau (review 32)
        comp = _k.cut_kernel(self.parent, np.rint(self.level * LEVELS_PER_UNIT).astype(np.int16), t)
        lut = (comp + 1).astype(np.int32)
        out = np.zeros(self.shape, dtype=np.int32)
        fg = self.node_map >= 0
        out[fg] = lut[self.node_map[fg]]
        return out

    def node_table(self) -> dict[str, np.ndarray]:
        """Per-node columns (id, parent, level, area, mean probability, leaves, bbox) for display."""
        return {
            "id": np.arange(self.n_nodes),
            "parent": self.parent,
            "level": self.level,
            "area": self.area,
            "mean_prob": self.mean_prob,
            "n_leaves": self.n_leaves,
            "bbox": self.bbox,
        }


def level_at_or_above(value: float) -> int:
    """The lowest level (in hundredths) at or above ``value``: the paper's ``v >= tau`` (eq. 1).

    ``round`` kept 0.50 for a tau of 0.504, below it (audit 34). Rounded to 4 decimals first, so
    a level given with float error stays itself: 0.29 * 100 = 28.999999999999996, a float32
    0.3 * 100 = 30.0000012 (review 32).
    """
    return math.ceil(round(float(value) * LEVELS_PER_UNIT, 4))


def build_candidate_forest(
    prob: np.ndarray,
    tau: float = 0.5,
    connectivity: int | None = None,
    min_size: int = 0,
) -> CandidateForest:
    """Build the instance candidate forest of one probability map.

    Parameters
    ----------
    prob : (M, N) or (M, N, P) ndarray
        Foreground probability of one 2D frame or one 3D volume, floats in ``[0, 1]``.
    tau : float, optional
        Lowest threshold; only levels ``>= tau`` make candidates.
    connectivity : int, optional
        Maximum number of orthogonal steps to reach a neighbour, as in
        :func:`scipy.ndimage.generate_binary_structure`. ``None`` (default) means 1: 4-connectivity in
        2D, 6-connectivity in 3D, which is also the default of :func:`scipy.ndimage.label`.
    min_size : int, optional
        Candidates smaller than this many pixels are dropped; their pixels go to the nearest
        remaining ancestor (or to background).

    Returns
    -------
    CandidateForest

    Examples
    --------
    >>> import numpy as np
    >>> p = np.zeros((5, 9))
    >>> p[1:4, 1:8] = 0.6
    >>> p[2, 2] = p[2, 6] = 0.9
    >>> f = build_candidate_forest(p)
    >>> f.n_nodes, f.roots.tolist(), f.n_leaves[0]
    (3, [0], 2)
    """
    prob = check_probability(prob, name="prob", ndims=(2, 3), values=False)
    if not 0.0 <= float(tau) <= 1.0:
        raise ValueError(f"tau must be in [0, 1]; got {tau!r}")
    if int(min_size) < 0:
        raise ValueError(f"min_size must be >= 0; got {min_size!r}")
    conn = resolve_connectivity(connectivity, prob.ndim)
    tau_q = level_at_or_above(tau)
    pad_z = prob.ndim == 3
    prob3 = prob if pad_z else prob[np.newaxis]
    padded_shape = tuple(s + 2 for s in prob.shape)
    q, uf, comp_node, touch, pix_node, order = _workspace(int(np.prod(padded_shape)))
    dt = prob.dtype.type
    counts, n_bad = _k.quantize_pad_kernel(prob3, dt(tau_q - 0.5), dt(LEVELS_PER_UNIT), pad_z, q)
    if n_bad:  # the precise message comes from the full check
        check_probability(prob, name="prob", ndims=(2, 3))
    offsets = _neighbour_offsets(padded_shape, conn)
    parent, level_q, area_c, touch_node = _k.build_forest_kernel(
        q, counts, offsets, uf, comp_node, touch, pix_node, order
    )

    node_map3, parent, level, end, area, psum, n_leaves, box = _k.finish_kernel(
        q, pix_node, touch_node, parent, level_q, area_c, prob3, pad_z, float(LEVELS_PER_UNIT)
    )
    if not pad_z:
        node_map3 = node_map3[0]
        box = box[:, [1, 2, 4, 5]]
    forest = CandidateForest(
        node_map=node_map3,
        parent=parent,
        level=level,
        end=end,
        area=area,
        prob_sum=psum,
        n_leaves=n_leaves,
        bbox=box,
        tau=float(tau),
        connectivity=conn,
    )
    if min_size > 0 and area.size and area.min() < min_size:
        forest = _drop_small(forest, int(min_size))
    return forest


#: Frames up to this many (padded) pixels reuse one work space per thread (22 bytes a pixel).
MAX_CACHED_WORKSPACE = 1 << 22

_local = threading.local()


def _workspace(n: int) -> tuple[np.ndarray, ...]:
    """Per-pixel work arrays of the union-find sweep.

    Levels (int16), then union-find parent, component node, touch, deepest node and sort order
    (int32). A sequence has frames of one shape: reusing the arrays of the previous frame saves the
    page faults of fresh large allocations, which cost more than the sweep itself on big sparse
    frames.
    """
    cached = getattr(_local, "arrays", None)
    if cached is not None and cached[0].size == n:
        return cached
    arrays = (np.empty(n, np.int16), *(np.empty(n, np.int32) for _ in range(5)))
    if n <= MAX_CACHED_WORKSPACE:
        _local.arrays = arrays
    return arrays


@functools.lru_cache(maxsize=64)
def _neighbour_offsets(padded_shape: tuple[int, ...], connectivity: int) -> tuple[int, ...]:
    """Flat offsets of a pixel's neighbours in the padded frame, in raster order (negative first)."""
    struct = ndi.generate_binary_structure(len(padded_shape), connectivity)
    centre = np.array(struct.shape) // 2
    strides = np.array(
        [int(np.prod(padded_shape[i + 1 :])) for i in range(len(padded_shape))], dtype=np.int64
    )
    offs = [
        int(np.dot(np.array(idx) - centre, strides))
        for idx in zip(*np.nonzero(struct), strict=False)
    ]
    return tuple(o for o in offs if o != 0)


def _drop_small(forest: CandidateForest, min_size: int) -> CandidateForest:
    """Remove candidates smaller than ``min_size`` (whole subtrees, since area grows rootwards)."""
    keep = forest.area >= min_size
    nearest = _k.nearest_marked_ancestor_kernel(forest.parent, keep)
    new_id = np.cumsum(keep, dtype=np.int32) - 1
    new_id[~keep] = -1
    # Pixels move to the nearest kept ancestor-or-self.
    remap = np.where(nearest >= 0, new_id[np.maximum(nearest, 0)], -1).astype(np.int32)
    fg = forest.node_map >= 0
    node_map = np.full(forest.shape, -1, dtype=np.int32)
    node_map[fg] = remap[forest.node_map[fg]]
    idx = np.flatnonzero(keep)
    parent = forest.parent[idx]
    parent = np.where(parent >= 0, new_id[np.maximum(parent, 0)], -1).astype(np.int32)
    # Pre-order is preserved when whole subtrees are removed; recompute ends and leaf counts.
    n = idx.size
    zeros_box = np.zeros((n, forest.ndim), np.int32)
    end, _, n_leaves, _, _ = _k.subtree_stats_kernel(parent, np.zeros(n), zeros_box, zeros_box)
    return CandidateForest(
        node_map=node_map,
        parent=parent,
        level=forest.level[idx],
        end=end,
        area=forest.area[idx],
        prob_sum=forest.prob_sum[idx],
        n_leaves=n_leaves,
        bbox=forest.bbox[idx],
        tau=forest.tau,
        connectivity=forest.connectivity,
    )
