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
def quantize_pad_kernel(prob, tau_q, scale, pad_z, q):
    """Quantise, threshold and pad a frame in one pass, checking its values on the way.

    Parameters
    ----------
    prob : (Z, Y, X) float ndarray
        The frame (a 2D frame as ``Z = 1`` with ``pad_z = False``).
    tau_q : int
        Lowest quantised level kept; lower pixels become ``-1``.
    scale : float
        Levels per unit probability, of ``prob``'s dtype (so rounding matches ``quantize``).
    pad_z : bool
        Whether the first axis is padded too (3D frames).
    q : (P,) int16 ndarray
        Output, overwritten: flattened levels of the one-pixel-padded frame; ``-1`` on the pad and
        below ``tau_q``.

    Returns
    -------
    counts : (102,) int64 ndarray
        Pixels per kept level.
    n_bad : int
        Non-finite values.
    lo, hi : float
        Minimum and maximum of the finite values.
    """
    nz, ny, nx = prob.shape
    pz = 1 if pad_z else 0
    yp = ny + 2
    xp = nx + 2
    q[:] = -1
    counts = np.zeros(102, np.int64)
    n_bad = 0
    lo = np.inf
    hi = -np.inf
    for z in range(nz):
        for y in range(ny):
            base = ((z + pz) * yp + y + 1) * xp + 1
            for x in range(nx):
                p = prob[z, y, x]
                if not np.isfinite(p):
                    n_bad += 1
                    continue
                lo = min(lo, p)
                hi = max(hi, p)
                v = np.rint(p * scale)
                if v >= tau_q and v <= 100:
                    q[base + x] = np.int16(v)
                    counts[np.int64(v)] += 1
    return counts, n_bad, lo, hi


@njit(cache=True, nogil=True)
def build_forest_kernel(q, counts, offsets, uf, size, comp_node, pix_node):
    """Union-find sweep.

    Parameters
    ----------
    q : (P,) int16 ndarray
        Padded, flattened quantised levels; ``-1`` on the pad and below the lowest level.
    counts : (102,) int64 ndarray
        Pixels per level (as returned by :func:`quantize_pad_kernel`).
    offsets : (K,) int64 ndarray
        Flat offsets of the neighbours of a pixel in the padded array.
    uf, size, comp_node : (P,) int32 ndarray
        Work space (contents ignored).
    pix_node : (P,) int32 ndarray
        Output, overwritten: deepest node of each padded pixel, ``-1`` for background.

    Returns
    -------
    parent : (N,) int32 ndarray
        Parent node of each node (``-1`` for roots), in creation order (children before parents).
    level : (N,) int16 ndarray
        Quantised level of each node (the minimum level of its pixels).
    """
    n_total = q.shape[0]
    # Counting sort of the foreground pixels by level, highest first, raster order within a level.
    start = np.zeros(102, np.int64)
    acc = 0
    for v in range(101, -1, -1):
        start[v] = acc
        acc += counts[v]
    m = acc
    order = np.empty(m, np.int32)
    for x in range(n_total):
        v = q[x]
        if v >= 0:
            k = start[v]
            order[k] = x
            start[v] = k + 1
    # Union-find indexed by padded pixel, so neighbours are close in memory. ``comp_node`` of a
    # root is its component's node from an earlier level, or -1 once the component has been
    # touched at the current level (it will get a new node).
    pix_node[:] = -1
    # Only neighbours already processed count: those of a higher level, and those of the same
    # level earlier in raster order (negative offsets); the others link to this pixel in their
    # turn. So a neighbour counts iff its level exceeds ``v - behind``.
    behind = (offsets < 0).astype(np.int16)
    parent = np.full(m, -1, np.int32)
    level = np.empty(m, np.int16)
    pend_node = np.empty(m, np.int32)
    pend_pix = np.empty(m, np.int32)
    n_nodes = 0
    i = 0
    while i < m:
        v = q[order[i]]
        j = i
        while j < m and q[order[j]] == v:
            j += 1
        n_pend = 0
        for k in range(i, j):
            p = order[k]
            uf[p] = p
            size[p] = 1
            comp_node[p] = -1
            rp = p
            for t in range(offsets.shape[0]):
                nb = p + offsets[t]
                if q[nb] <= v - behind[t]:
                    continue
                rq = _find(uf, nb)
                if rp == rq:
                    continue
                if comp_node[rq] >= 0:
                    # First touch of an older component at this level: its node becomes a child.
                    pend_node[n_pend] = comp_node[rq]
                    pend_pix[n_pend] = p
                    n_pend += 1
                if size[rp] < size[rq]:
                    rp, rq = rq, rp
                uf[rq] = rp
                size[rp] += size[rq]
                comp_node[rp] = -1
        # One new node per component touched at this level.
        for k in range(i, j):
            p = order[k]
            r = _find(uf, p)
            if comp_node[r] == -1:
                comp_node[r] = n_nodes
                level[n_nodes] = v
                n_nodes += 1
            pix_node[p] = comp_node[r]
        for k in range(n_pend):
            parent[pend_node[k]] = comp_node[_find(uf, pend_pix[k])]
        i = j
    return parent[:n_nodes].copy(), level[:n_nodes].copy()


@njit(cache=True, nogil=True)
def node_map_stats_kernel(pix_node, new_id, prob, pad_z, n_nodes):
    """Node map and per-node statistics of the deepest pixels, in one raster pass.

    Returns the unpadded node map in pre-order ids, and the pixel count, probability sum and
    bounding box of the pixels whose deepest node is each node. ``prob`` is the ``(Z, Y, X)`` frame; bounding boxes have three columns (drop the first for 2D).
    """
    nz, ny, nx = prob.shape
    pz = 1 if pad_z else 0
    yp = ny + 2
    xp = nx + 2
    node_map = np.empty((nz, ny, nx), np.int32)
    area = np.zeros(n_nodes, np.int64)
    psum = np.zeros(n_nodes, np.float64)
    lo = np.full((n_nodes, 3), np.iinfo(np.int32).max, np.int32)
    hi = np.full((n_nodes, 3), -1, np.int32)
    for z in range(nz):
        for y in range(ny):
            base = ((z + pz) * yp + y + 1) * xp + 1
            for x in range(nx):
                c = pix_node[base + x]
                if c < 0:
                    node_map[z, y, x] = -1
                    continue
                nd = new_id[c]
                node_map[z, y, x] = nd
                area[nd] += 1
                psum[nd] += prob[z, y, x]
                if z < lo[nd, 0]:
                    lo[nd, 0] = z
                if z >= hi[nd, 0]:
                    hi[nd, 0] = z + 1
                if y < lo[nd, 1]:
                    lo[nd, 1] = y
                if y >= hi[nd, 1]:
                    hi[nd, 1] = y + 1
                if x < lo[nd, 2]:
                    lo[nd, 2] = x
                if x >= hi[nd, 2]:
                    hi[nd, 2] = x + 1
    return node_map, area, psum, lo, hi


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
