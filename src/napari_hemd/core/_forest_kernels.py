"""Compiled kernels for the candidate forest. No argument checking here: see ``forest.py``.

The forest is built with one union-find sweep over the foreground pixels sorted by quantised level,
highest level first (the component-tree construction of Najman & Couprie, 2006, restricted to the
levels ``>= tau``). Nodes are created only when a component changes, which makes the forest lossless:
a region that stays the same over several levels is one node.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _find(uf, x):
    # Path halving.
    while uf[x] != x:
        uf[x] = uf[uf[x]]
        x = uf[x]
    return x


@njit(cache=True, nogil=True)
def build_forest_kernel(q, tau_q, offsets):
    """Union-find sweep.

    Parameters
    ----------
    q : (P,) int16 ndarray
        Padded, flattened quantised levels (``0 .. 100``); the one-pixel pad holds ``-1``.
    tau_q : int
        Lowest quantised level that makes candidates.
    offsets : (K,) int64 ndarray
        Flat offsets of the neighbours of a pixel in the padded array.

    Returns
    -------
    order : (M,) int64 ndarray
        Padded flat indices of the foreground pixels, highest level first (raster order within a
        level).
    pix_node : (M,) int32 ndarray
        Deepest node of each pixel in ``order``.
    parent : (N,) int32 ndarray
        Parent node of each node (``-1`` for roots), in creation order (children before parents).
    level : (N,) int16 ndarray
        Quantised level of each node (the minimum level of its pixels).
    """
    n_total = q.shape[0]
    # Counting sort of the foreground pixels by level, highest first.
    counts = np.zeros(102, np.int64)
    for x in range(n_total):
        v = q[x]
        if v >= tau_q:
            counts[v] += 1
    start = np.zeros(102, np.int64)
    acc = 0
    for v in range(101, -1, -1):
        start[v] = acc
        acc += counts[v]
    m = acc
    order = np.empty(m, np.int64)
    loc = np.full(n_total, -1, np.int32)
    for x in range(n_total):
        v = q[x]
        if v >= tau_q:
            k = start[v]
            order[k] = x
            loc[x] = k
            start[v] = k + 1
    # Union-find over local indices: a pixel is processed iff its local index is below the end of
    # the current level, because ``order`` is sorted by level.
    uf = np.empty(m, np.int32)
    size = np.empty(m, np.int32)
    comp_node = np.empty(m, np.int32)
    stamp = np.empty(m, np.int32)  # level index at which a root was last touched
    pix_node = np.empty(m, np.int32)
    parent = np.full(m, -1, np.int32)
    level = np.empty(m, np.int16)
    pend_node = np.empty(m, np.int32)
    pend_pix = np.empty(m, np.int32)
    n_nodes = 0
    i = 0
    cur = 0
    while i < m:
        v = q[order[i]]
        j = i
        while j < m and q[order[j]] == v:
            j += 1
        n_pend = 0
        for k in range(i, j):
            uf[k] = k
            size[k] = 1
            stamp[k] = cur
            comp_node[k] = -1
        # Union with every processed neighbour. The first time an old component is touched at this
        # level its node is remembered: it becomes a child of the new node.
        for k in range(i, j):
            p = order[k]
            rp = _find(uf, k)
            for o in offsets:
                kk = loc[p + o]
                if kk < 0 or kk >= j:
                    continue
                rq = _find(uf, kk)
                if rp == rq:
                    continue
                if stamp[rq] != cur:
                    pend_node[n_pend] = comp_node[rq]
                    pend_pix[n_pend] = k
                    n_pend += 1
                    stamp[rq] = cur
                if stamp[rp] != cur:
                    pend_node[n_pend] = comp_node[rp]
                    pend_pix[n_pend] = k
                    n_pend += 1
                    stamp[rp] = cur
                if size[rp] < size[rq]:
                    rp, rq = rq, rp
                uf[rq] = rp
                size[rp] += size[rq]
                comp_node[rp] = -1
        # One new node per component touched at this level.
        for k in range(i, j):
            r = _find(uf, k)
            if comp_node[r] == -1:
                comp_node[r] = n_nodes
                level[n_nodes] = v
                n_nodes += 1
            pix_node[k] = comp_node[r]
        for k in range(n_pend):
            parent[pend_node[k]] = comp_node[_find(uf, pend_pix[k])]
        i = j
        cur += 1
    return order, pix_node, parent[:n_nodes].copy(), level[:n_nodes].copy()


@njit(cache=True, nogil=True)
def preorder_kernel(parent):
    """Order nodes depth first so that every subtree is one contiguous range.

    Parameters
    ----------
    parent : (N,) int32 ndarray
        Parent of each node, ``-1`` for roots; children are visited in increasing id.

    Returns
    -------
    new_id : (N,) int32 ndarray
        Position of each node in the depth-first (pre-)order.
    """
    n = parent.shape[0]
    n_child = np.zeros(n + 1, np.int64)
    for i in range(n):
        if parent[i] >= 0:
            n_child[parent[i] + 1] += 1
    start = np.cumsum(n_child)
    fill = start.copy()
    children = np.empty(max(start[n], 1), np.int64)
    for i in range(n):
        pi = parent[i]
        if pi >= 0:
            children[fill[pi]] = i
            fill[pi] += 1
    new_id = np.empty(n, np.int32)
    stack = np.empty(n, np.int64)
    nxt = 0
    for root in range(n):
        if parent[root] >= 0:
            continue
        top = 0
        stack[0] = root
        top = 1
        while top > 0:
            top -= 1
            node = stack[top]
            new_id[node] = nxt
            nxt += 1
            # Push children in reverse so the smallest id is visited first.
            for c in range(start[node + 1] - 1, start[node] - 1, -1):
                stack[top] = children[c]
                top += 1
    return new_id


@njit(cache=True, nogil=True)
def subtree_stats_kernel(parent, own_area, own_prob, own_lo, own_hi):
    """Fold per-node statistics of pre-ordered nodes into their ancestors.

    Children follow their parent in pre-order, so one reverse sweep suffices.
    Returns subtree end, area, probability sum, leaf count and bounding box of every node.
    """
    n = parent.shape[0]
    end = np.arange(1, n + 1).astype(np.int32)
    area = own_area.copy()
    prob = own_prob.copy()
    lo = own_lo.copy()
    hi = own_hi.copy()
    n_child = np.zeros(n, np.int32)
    n_leaves = np.zeros(n, np.int32)
    for i in range(n - 1, -1, -1):
        if n_child[i] == 0:
            n_leaves[i] += 1
        p = parent[i]
        if p >= 0:
            n_child[p] += 1
            n_leaves[p] += n_leaves[i]
            area[p] += area[i]
            prob[p] += prob[i]
            if end[i] > end[p]:
                end[p] = end[i]
            for d in range(lo.shape[1]):
                if lo[i, d] < lo[p, d]:
                    lo[p, d] = lo[i, d]
                if hi[i, d] > hi[p, d]:
                    hi[p, d] = hi[i, d]
    return end, area, prob, n_leaves, lo, hi


@njit(cache=True, nogil=True)
def own_stats_kernel(flat_idx, node, prob, shape, n_nodes):
    """Pixel count, probability sum and bounding box of the pixels whose deepest node is each node.

    ``flat_idx`` are flat indices into the one-pixel-padded array of ``shape`` (padded shape);
    ``prob`` is the padded, flattened probability map. Bounding boxes are in unpadded coordinates.
    """
    ndim = shape.shape[0]
    area = np.zeros(n_nodes, np.int64)
    psum = np.zeros(n_nodes, np.float64)
    lo = np.full((n_nodes, ndim), np.iinfo(np.int32).max, np.int32)
    hi = np.full((n_nodes, ndim), -1, np.int32)
    coord = np.empty(ndim, np.int64)
    for k in range(flat_idx.shape[0]):
        f = flat_idx[k]
        nd = node[k]
        area[nd] += 1
        psum[nd] += prob[f]
        for d in range(ndim - 1, -1, -1):
            coord[d] = f % shape[d] - 1
            f //= shape[d]
        for d in range(ndim):
            c = coord[d]
            if c < lo[nd, d]:
                lo[nd, d] = c
            if c + 1 > hi[nd, d]:
                hi[nd, d] = c + 1
    return area, psum, lo, hi


@njit(cache=True, nogil=True)
def nearest_marked_ancestor_kernel(parent, marked):
    """For pre-ordered nodes: the nearest ancestor-or-self that is marked, or ``-1``."""
    n = parent.shape[0]
    out = np.full(n, -1, np.int32)
    for i in range(n):
        if marked[i]:
            out[i] = i
        elif parent[i] >= 0:
            out[i] = out[parent[i]]
    return out


@njit(cache=True, nogil=True)
def cut_kernel(parent, level, threshold):
    """For pre-ordered nodes: the component at ``threshold`` containing each node, or ``-1``.

    That is the highest ancestor-or-self whose level is ``>= threshold``.
    """
    n = parent.shape[0]
    out = np.full(n, -1, np.int32)
    for i in range(n):
        if level[i] < threshold:
            continue
        p = parent[i]
        if p >= 0 and level[p] >= threshold:
            out[i] = out[p]
        else:
            out[i] = i
    return out
