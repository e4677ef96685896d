"""Instance candidate selection (H-EMD, Section III-B).

Initial state, iterative EMD / H-EMD matching, left/right competition, padding.

Choices the paper leaves open (see ``docs/algorithm.md``):

* Iterations are *synchronous*: every frame pair is matched from the state at the start of the
  iteration, then all frames are updated (the paper's eq. 16–18 reading). Iterating stops early when
  an iteration selects nothing new — later iterations would then repeat it exactly.
* EMD pairs and H-EMD edges with zero IoU are not matches (they add nothing to eq. 4/11).
* Ties: the left/right competition keeps the left side on equal sums (eq. 16, "larger than or
  equal"); among equally good matchings the one found first in node-id order wins.
* ``leftovers`` (beyond the paper): after a match selects a node below a branch point, its unselected
  siblings become roots of the remaining forest and the paper's padding selects them as objects.
  ``"keep"`` is the paper; ``"absorb"`` merges a small leftover into the one selected instance
  that shares its lowest selected-containing ancestor (see :func:`_absorb_leftovers`).
* ``lone_growth`` (beyond the paper): eq. 14 compares a candidate's size with its reference only,
  so a reference that is itself too small (a core, a daughter cell next to her undivided mother)
  selects a core of the object in the other frame. With ``lone_growth = g > 1``, a matched
  candidate is replaced by its highest remaining ancestor of at most ``g`` times the reference's
  size when no other selected instance of the reference's frame overlaps that ancestor: nothing
  there supports the split (see :func:`_widen_lone_matches`). 1 is the paper.
* ``split_coverage`` (beyond the paper): a candidate whose children (the components it splits into
  at the next threshold) cover at least this fraction of its pixels, each child at least
  ``split_size`` times the frame's typical object (the median size of its candidate trees, i.e.
  of its roots), is two or more objects touching at a dip, not one object: it and
  every candidate containing it are dropped from the forest before the selection starts, so neither
  the initial state, nor a match, nor padding can take the merged region, and ``"absorb"`` never
  joins pieces across such a split (see :func:`_split_nodes`). A dip inside one object leaves cores
  that cover little of it, or pieces smaller than the objects around it, and stays a candidate.
  Touching objects that never separate in any frame are otherwise padded as one (eq. 19). 0 is
  the paper.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from napari_hemd.core.forest import CandidateForest
from napari_hemd.core.matching import emd_matching, hemd_matching
from napari_hemd.core.overlap import (
    PairHistogram,
    antichain_index,
    overlap_matrix,
    pair_histogram,
)

__all__ = ["HOW", "FrameSelection", "select_instances"]

log = logging.getLogger(__name__)

#: How an instance was selected.
HOW = {"initial": 0, "left": 1, "right": 2, "padding": 3, "locked": 4}
HOW_NAMES = {v: k for k, v in HOW.items()}
LEFTOVER_MODES = ("keep", "absorb")


@dataclass
class FrameSelection:
    """Selected candidates of one frame and how each was chosen.

    Attributes
    ----------
    nodes : (K,) int64 ndarray
        Selected candidate ids (disjoint regions).
    how : (K,) int8 ndarray
        :data:`HOW` code of each.
    iteration : (K,) int16 ndarray
        Iteration that selected it (0 for initial/locked, ``T + 1`` for padding).
    partner : (K,) int64 ndarray
        For matched instances, the reference node in the neighbouring frame (``how`` says which
        side); ``-1`` otherwise.
    score : (K,) float64 ndarray
        IoU of the match that selected it (0 when not matched).
    absorbed : dict
        ``node -> array of leftover nodes`` merged into it (``leftovers="absorb"``).
    split : (S,) int64 ndarray
        Candidates that are several touching cells (``split_coverage``): never selected.
    """

    nodes: np.ndarray
    how: np.ndarray
    iteration: np.ndarray
    partner: np.ndarray
    score: np.ndarray
    absorbed: dict[int, np.ndarray] = field(default_factory=dict)
    split: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @classmethod
    def empty(cls) -> FrameSelection:
        """No selection."""
        return cls(
            np.empty(0, np.int64),
            np.empty(0, np.int8),
            np.empty(0, np.int16),
            np.empty(0, np.int64),
            np.empty(0),
        )

    def add(self, nodes, how, iteration, partner=None, score=None) -> None:
        """Append selections."""
        nodes = np.asarray(nodes, dtype=np.int64)
        n = nodes.size
        self.nodes = np.concatenate([self.nodes, nodes])
        self.how = np.concatenate([self.how, np.broadcast_to(np.int8(how), n)])
        self.iteration = np.concatenate([self.iteration, np.full(n, iteration, np.int16)])
        self.partner = np.concatenate(
            [self.partner, np.full(n, -1) if partner is None else np.asarray(partner)]
        )
        self.score = np.concatenate([self.score, np.zeros(n) if score is None else score])

    def labels(self, forest: CandidateForest, values: np.ndarray | None = None) -> np.ndarray:
        """Label image of this selection (absorbed leftovers take their instance's label)."""
        if values is None:
            values = np.arange(1, self.nodes.size + 1)
        nodes, vals = [self.nodes], [np.asarray(values)]
        for i, n in enumerate(self.nodes):
            extra = self.absorbed.get(int(n))
            if extra is not None and extra.size:
                nodes.append(extra)
                vals.append(np.full(extra.size, vals[0][i]))
        return forest.labels_of(np.concatenate(nodes), np.concatenate(vals))


@njit(cache=True, nogil=True)
def _alive_roots(parent, alive):
    """Root of each alive node in the remaining forest (``-1`` for removed nodes)."""
    n = parent.shape[0]
    out = np.full(n, -1, np.int64)
    for i in range(n):
        if not alive[i]:
            continue
        p = parent[i]
        out[i] = out[p] if (p >= 0 and alive[p]) else i
    return out


class _Frame:
    """Mutable selection state of one frame."""

    def __init__(self, forest: CandidateForest) -> None:
        self.forest = forest
        self.alive = np.ones(forest.n_nodes, dtype=bool)
        self.sel = FrameSelection.empty()
        self.version = 0
        self.split = np.zeros(forest.n_nodes, dtype=bool)

    def select(self, nodes, how, iteration, partner=None, score=None) -> None:
        nodes = np.asarray(nodes, dtype=np.int64)
        if nodes.size == 0:
            return
        f = self.forest
        for n in nodes:
            self.alive[n : f.end[n]] = False
            p = f.parent[n]
            while p >= 0 and self.alive[p]:
                self.alive[p] = False
                p = f.parent[p]
        self.sel.add(nodes, how, iteration, partner, score)
        self.version += 1

    def tree_of(self) -> np.ndarray:
        return _alive_roots(self.forest.parent, self.alive)


def select_instances(
    forests: Sequence[CandidateForest],
    *,
    delta: float = 0.35,
    iterations: int = 10,
    leftovers: str = "keep",
    seed_min_peak: float = 0.0,
    lone_growth: float = 1.0,
    split_coverage: float = 0.0,
    split_size: float = 0.7,
    locked: dict[int, Sequence[int]] | None = None,
    enum_limit: int = 20_000,
    time_limit: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[FrameSelection]:
    """Select instances from a sequence of candidate forests (H-EMD Section III-B).

    Parameters
    ----------
    forests : sequence of CandidateForest
        One forest per frame (or slice), all of the same shape, in order.
    delta : float
        Size-change tolerance of eq. (7) and (14).
    iterations : int
        ``T``, the number of matching-and-selection iterations.
    leftovers : {"keep", "absorb"}
        What padding does with the unselected siblings of a matched node (see module docstring).
        ``"keep"`` is the paper.
    seed_min_peak : float
        Beyond the paper: a single-path root seeds the initial state only if its peak (the level of
        its leaf) is at least this; weaker ones stay candidates (matched or padded later). 0 is the
        paper.
    lone_growth : float
        Beyond the paper: a matched candidate is replaced by its highest remaining ancestor up to
        this many times the reference's size, when no other selected instance of the reference's
        frame overlaps that ancestor (see module docstring). 1 is the paper.
    locked : dict, optional
        ``frame -> candidate ids`` chosen by the user; they enter the initial state (and propagate).
    enum_limit, time_limit : see :func:`napari_hemd.core.matching.hemd_matching`.
    progress : callable, optional
        Called as ``progress(done, total)`` after each iteration (``total = iterations + 1``).

    Returns
    -------
    list of FrameSelection
    """
    if leftovers not in LEFTOVER_MODES:
        raise ValueError(f"leftovers must be one of {LEFTOVER_MODES}; got {leftovers!r}")
    if not float(lone_growth) >= 1.0:
        raise ValueError(f"lone_growth must be >= 1 (1 = the paper); got {lone_growth!r}")
    if not 0.0 <= float(split_coverage) <= 1.0:
        raise ValueError(
            f"split_coverage must be in [0, 1] (0 = the paper); got {split_coverage!r}"
        )
    if not 0.0 <= float(split_size):
        raise ValueError(f"split_size must be >= 0; got {split_size!r}")
    if not 0 < float(delta):
        raise ValueError(f"delta must be > 0; got {delta!r}")
    if isinstance(iterations, bool) or not float(iterations).is_integer() or iterations < 0:
        raise ValueError(f"iterations must be a whole number >= 0; got {iterations!r}")
    if not 0.0 <= float(seed_min_peak) <= 1.0:  # a peak above 1 seeded nothing (audit 24)
        raise ValueError(f"seed_min_peak must be in [0, 1]; got {seed_min_peak!r}")
    shapes = {f.shape for f in forests}
    if len(shapes) > 1:
        raise ValueError(f"all frames must have the same shape; got {sorted(shapes)}")
    frames = [_Frame(f) for f in forests]
    n_frames = len(frames)
    if 0.0 < float(split_coverage) <= 1.0:
        for fr in frames:
            typical = _typical_object_area(fr.forest)
            fr.split = _split_nodes(fr.forest, float(split_coverage), split_size * typical)
            fr.alive &= ~fr.split
            fr.sel.split = np.flatnonzero(fr.split).astype(np.int64)

    # Initial state (eq. 1–3), after the user's locked choices.
    for w, nodes in (locked or {}).items():
        if not 0 <= w < n_frames:
            raise ValueError(f"locked: frame {w} out of range 0..{n_frames - 1}")
        nodes = np.asarray(sorted(set(int(n) for n in nodes)), dtype=np.int64)
        f = frames[w].forest
        if nodes.size and (nodes.min() < 0 or nodes.max() >= f.n_nodes):
            raise ValueError(f"locked: frame {w} has candidates 0..{f.n_nodes - 1}; got {nodes}")
        if nodes.size > 1 and np.any(f.end[nodes[:-1]] > nodes[1:]):
            raise ValueError(f"locked: candidates of frame {w} overlap (one contains another)")
        frames[w].select(nodes, HOW["locked"], 0)
    for fr in frames:
        f = fr.forest
        roots = (
            f.roots if not fr.split.any() else np.flatnonzero(fr.tree_of() == np.arange(f.n_nodes))
        )
        easy = roots[(f.n_leaves[roots] == 1) & fr.alive[roots]]
        if seed_min_peak > 0 and easy.size:
            # In a single-path tree the last node in pre-order is the leaf, the peak level.
            easy = easy[f.level[f.end[easy] - 1] >= np.float32(seed_min_peak) - 1e-6]
        fr.select(easy, HOW["initial"], 0)
    if progress:
        progress(1, iterations + 1)

    hists: dict[int, PairHistogram] = {}
    cache: dict[int, tuple] = {}
    for t in range(int(iterations)):
        from_left: list[list] = [[] for _ in range(n_frames)]
        from_right: list[list] = [[] for _ in range(n_frames)]
        for w in range(n_frames - 1):
            key = (frames[w].version, frames[w + 1].version)
            hit = cache.get(w)
            if hit is None or hit[0] != key:
                if w not in hists:
                    hists[w] = pair_histogram(frames[w].forest, frames[w + 1].forest)
                res = _match_pair(
                    frames[w],
                    frames[w + 1],
                    hists[w],
                    delta,
                    enum_limit,
                    time_limit,
                    f"frames {w}->{w + 1}",
                    lone_growth,
                )
                cache[w] = (key, res)
            to_right, to_left = cache[w][1]
            from_left[w + 1].append(to_right)
            from_right[w].append(to_left)
        changed = False
        for w, fr in enumerate(frames):
            left = from_left[w][0] if from_left[w] else None
            right = from_right[w][0] if from_right[w] else None
            if _apply(fr, left, right, t + 1):
                changed = True
        if progress:
            progress(t + 2, iterations + 1)
        if not changed:
            log.debug("H-EMD converged after %d iteration(s)", t + 1)
            break
    if progress:
        progress(iterations + 1, iterations + 1)

    # Padding (eq. 19): every remaining root.
    for fr in frames:
        f = fr.forest
        rest = np.flatnonzero(fr.alive & ((f.parent < 0) | ~fr.alive[np.maximum(f.parent, 0)]))
        if leftovers == "absorb":
            rest = _absorb_leftovers(fr, rest)
        fr.select(rest, HOW["padding"], iterations + 1)
    return [fr.sel for fr in frames]


def _match_pair(
    a: _Frame,
    b: _Frame,
    hist: PairHistogram,
    delta,
    enum_limit,
    time_limit,
    ctx,
    lone_growth: float = 1.0,
):
    """EMD between the two selections, then H-EMD of the unmatched ones into the other forest."""
    fa, fb = a.forest, b.forest
    sa, sb = a.sel.nodes, b.sel.nodes
    matched_a = np.zeros(sa.size, bool)
    matched_b = np.zeros(sb.size, bool)
    if sa.size and sb.size:
        inter = overlap_matrix(hist, fa, sa, fb, sb)
        i, j, _ = emd_matching(inter, fa.area[sa], fb.area[sb], delta)
        matched_a[i] = True
        matched_b[j] = True
    out = []
    for src, dst, sel, matched, h in (
        (a, b, sa, matched_a, hist),
        (b, a, sb, matched_b, None),
    ):
        refs = sel[~matched]
        if refs.size == 0 or not dst.alive.any():
            out.append(None)
            continue
        if h is None:
            h = hist.swapped()
        inter = overlap_matrix(h, src.forest, refs, dst.forest)
        sol = hemd_matching(
            inter,
            src.forest.area[refs],
            dst.forest.parent,
            dst.forest.end,
            dst.forest.area,
            dst.alive,
            dst.tree_of(),
            delta,
            enum_limit=enum_limit,
            time_limit=time_limit,
            context=ctx,
        )
        if not sol.node.size:
            out.append(None)
            continue
        node, iou, ref = sol.node, sol.iou, refs[sol.ref]
        if lone_growth > 1:
            node, iou = _widen_lone_matches(src, dst, h, node, iou, ref, lone_growth)
        out.append((node, iou, ref))
    return out[0], out[1]


def _widen_lone_matches(
    src: _Frame, dst: _Frame, hist: PairHistogram, node, iou, ref, max_growth: float
):
    """Replace matched candidates by a larger ancestor that only their own reference overlaps.

    ``node`` are candidates of ``dst`` chosen by H-EMD for the instances ``ref`` of ``src``
    (``hist`` has ``src`` first). For each, take its highest remaining ancestor no larger than
    ``max_growth`` times the reference; when no selected instance of ``src`` but the reference
    overlaps that ancestor, nothing in ``src`` supports the split below it, and the ancestor is
    selected instead, with its IoU against the reference.
    """
    f = dst.forest
    limit = max_growth * src.forest.area[ref]
    up = node.copy()
    for i in range(node.size):
        a = int(node[i])
        p = int(f.parent[a])
        while p >= 0 and dst.alive[p] and f.area[p] <= limit[i]:
            a, p = p, int(f.parent[p])
        up[i] = a
    grown = np.flatnonzero(up != node)
    if not grown.size:
        return node, iou
    # Pixels shared by the selected instances of src and the deepest nodes of dst, sorted by the
    # dst node: a candidate's pixels are the contiguous node range [a, end[a]).
    sel = src.sel.nodes
    inst = antichain_index(src.forest, sel)[hist.a]
    keep = inst >= 0
    order = np.argsort(hist.b[keep], kind="stable")
    hb, owner, hc = hist.b[keep][order], inst[keep][order], hist.count[keep][order]
    row_of = np.argsort(sel)[np.searchsorted(np.sort(sel), ref)]
    node, iou = node.copy(), iou.copy()
    for i in grown:
        a = int(up[i])
        lo, hi = np.searchsorted(hb, [a, f.end[a]])
        if np.any(owner[lo:hi] != row_of[i]):
            continue  # another instance of src overlaps the ancestor: the split has support
        shared = float(hc[lo:hi].sum())
        node[i] = a
        iou[i] = shared / (float(src.forest.area[ref[i]]) + float(f.area[a]) - shared)
    return node, iou


def _typical_object_area(forest: CandidateForest) -> float:
    """Median size of a frame's candidate trees (its roots; inf when it has none).

    Per frame, so that a window of frames decides as the whole movie does (``hemd_windowed``).
    """
    roots = forest.roots
    return float(np.median(forest.area[roots])) if roots.size else float("inf")


def _split_nodes(forest: CandidateForest, coverage: float, min_child: float = 0.0) -> np.ndarray:
    """Candidates that are several objects: split nodes and every candidate containing one.

    A node is a split node when it has two or more children, each at least ``min_child``
    pixels, that together cover at least ``coverage`` of its pixels.
    """
    parent = forest.parent
    has_parent = parent >= 0
    n_children = np.bincount(parent[has_parent], minlength=forest.n_nodes)
    child_area = np.bincount(
        parent[has_parent], weights=forest.area[has_parent], minlength=forest.n_nodes
    )
    split = (n_children >= 2) & (child_area >= coverage * forest.area)
    if min_child > 0 and split.any():
        small = np.zeros(forest.n_nodes, dtype=bool)
        kids = has_parent & (forest.area < min_child)
        small[parent[kids]] = True
        split &= ~small
    # Parents precede children (pre-order): one backward pass marks every ancestor.
    for node in np.flatnonzero(split)[::-1]:
        p = parent[node]
        while p >= 0 and not split[p]:
            split[p] = True
            p = parent[p]
    return split


def _apply(fr: _Frame, left, right, iteration: int) -> bool:
    """Left/right competition per remaining tree (eq. 16), then the state update (eq. 17–18)."""
    if left is None and right is None:
        return False
    tree = fr.tree_of()
    take = []
    if left is not None and right is not None:
        ln, ls, lr = left
        rn, rs, rr = right
        lt, rt = tree[ln], tree[rn]
        trees = np.union1d(lt, rt)
        sum_l = np.array([ls[lt == tr].sum() for tr in trees])
        sum_r = np.array([rs[rt == tr].sum() for tr in trees])
        left_wins = set(trees[sum_l >= sum_r].tolist())
        lm = np.array([x in left_wins for x in lt.tolist()], dtype=bool)
        rm = ~np.array([x in left_wins for x in rt.tolist()], dtype=bool)
        take.append((ln[lm], HOW["left"], lr[lm], ls[lm]))
        take.append((rn[rm], HOW["right"], rr[rm], rs[rm]))
    elif left is not None:
        take.append((left[0], HOW["left"], left[2], left[1]))
    else:
        take.append((right[0], HOW["right"], right[2], right[1]))
    added = False
    for nodes, how, partner, score in take:
        if nodes.size:
            order = np.argsort(nodes)
            fr.select(nodes[order], how, iteration, partner[order], score[order])
            added = True
    return added


def _absorb_leftovers(fr: _Frame, rest: np.ndarray, max_fraction: float = 0.5) -> np.ndarray:
    """Merge small leftover siblings of a matched node into it.

    A remaining root is a leftover when its parent was removed, i.e. some node of its original tree
    was selected. Let ``A`` be its lowest ancestor that contains a selected node. When ``A`` contains
    exactly one selected node ``S`` and the leftover is smaller than ``max_fraction`` of ``S``, the
    leftover is part of the same object (a protrusion or a noise peak split off above ``A``'s level)
    and joins ``S``. Larger leftovers, or leftovers between several selected nodes, stay objects.
    (The leftover and ``S`` are separated by ``A``'s lower-level pixels, so a test for touching
    would almost never fire.)
    """
    f = fr.forest
    is_leftover = f.parent[rest] >= 0
    if not is_leftover.any():
        return rest
    sel = np.sort(fr.sel.nodes)
    keep = list(rest[~is_leftover])
    for n in rest[is_leftover]:
        a = int(f.parent[n])
        crosses = False
        while a >= 0:
            crosses |= bool(fr.split[a])
            lo, hi = np.searchsorted(sel, [a, f.end[a]])
            if hi > lo:
                break
            a = int(f.parent[a])
        if a < 0 or hi - lo != 1 or crosses:
            keep.append(n)
            continue
        target = int(sel[lo])
        if f.area[n] >= max_fraction * f.area[target]:
            keep.append(n)
            continue
        prev = fr.sel.absorbed.get(target, np.empty(0, np.int64))
        fr.sel.absorbed[target] = np.append(prev, n)
        fr.alive[n : f.end[n]] = False
    return np.asarray(sorted(keep), dtype=np.int64)
