"""Compiled kernels for the candidate forest. No argument checking here: see ``forest.py``.

The forest is built with one union-find sweep over the foreground pixels sorted by quantised level,
highest level first (the component-tree construction of Najman & Couprie, 2006, restricted to the
levels ``>= tau``). Nodes are created only when a component changes, which makes the forest lossless:
a region that stays the same over several levels is one node.

Three calls per frame: :func:`quantize_pad_kernel` (vectorised rounding and padding, level
histograms), :func:`build_forest_kernel` (sort and sweep) and :func:`finish_kernel` (pre-order ids,
node map, statistics). What made them fast is written next to the code; it was measured with
``benchmarks/bench_hemd.py`` (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros


@njit(cache=True, nogil=True, inline="always")
def _root(uf, x):
    """Root of ``x``'s set (roots hold minus their size), halving the path on the way."""
    u = uf[x]
    if u < 0:
        return x
    w = uf[u]
    if w < 0:
        return u
    while True:
        uf[x] = w
        x = w
        u = uf[x]
        if u < 0:
            return x
        w = uf[u]
        if w < 0:
            return u


@njit(cache=True, nogil=True)
def _grow(a, n, size):
    """``a[:n]`` in a new array of ``size`` elements."""
    b = np.empty(size, a.dtype)
    b[:n] = a[:n]
    return b


@njit(cache=True, nogil=True)
def quantize_pad_kernel(prob, threshold, scale, pad_z, q):
    """Quantise, threshold and pad a frame, and count the pixels of each level.

    Parameters
    ----------
    prob : (Z, Y, X) float ndarray
        The frame (a 2D frame as ``Z = 1`` with ``pad_z = False``).
    threshold : float
        ``tau_q - 0.5`` in ``prob``'s dtype, where ``tau_q`` is the lowest quantised level kept.
    scale : float
        Levels per unit probability, of ``prob``'s dtype (so rounding matches ``quantize``).
    pad_z : bool
        Whether the first axis is padded too (3D frames).
    q : (P,) int16 ndarray
        Output, overwritten: flattened levels of the one-pixel-padded frame; ``-1`` on the pad and
        below ``tau_q``.

    Returns
    -------
    counts : (2, 102) int64 ndarray
        Pixels per kept level in the first and the second half of ``q``.
    n_bad : int
        Rows with values not in ``[0, 1]`` (NaN included); when there are any, ``counts`` is zero.
    """
    nz, ny, nx = prob.shape
    pz = 1 if pad_z else 0
    yp = ny + 2
    xp = nx + 2
    # Only the pad is set here; the loop below writes every other entry.
    plane = yp * xp
    for zz in range(nz + 2 * pz):
        if pz and (zz == 0 or zz == nz + 1):
            q[zz * plane : (zz + 1) * plane] = -1
            continue
        q[zz * plane : zz * plane + xp] = -1
        q[zz * plane + (ny + 1) * xp : (zz + 1) * plane] = -1
        for y in range(1, ny + 1):
            q[zz * plane + y * xp] = -1
            q[zz * plane + y * xp + xp - 1] = -1
    # Branch-free so that it vectorises; the histogram is a separate pass for the same reason.
    # NaN fails both comparisons, so it counts as out of range.
    n_bad = 0
    for z in range(nz):
        for y in range(ny):
            base = ((z + pz) * yp + y + 1) * xp + 1
            row = prob[z, y]
            out = q[base : base + nx]
            bad = False
            for x in range(nx):
                p = row[x]
                bad |= not ((p >= 0) & (p <= 1))
                f = np.rint(p * scale)
                out[x] = np.int16(f) if f > threshold else np.int16(-1)
            n_bad += bad
    if n_bad:
        return np.zeros((2, 102), np.int64), n_bad
    # Histograms of the two halves of the padded frame (the sort fills both at once), each as four
    # interleaved ones so consecutive pixels of one level do not wait on each other; blocks of
    # four background pixels are skipped.
    h = np.zeros((8, 102), np.int64)
    half = q.shape[0] // 2
    end4 = half - half % 4
    for i in range(0, end4, 4):
        a, b, c, d = q[i], q[i + 1], q[i + 2], q[i + 3]
        if (a & b & c & d) >= 0:
            h[0, a + 1] += 1
            h[1, b + 1] += 1
            h[2, c + 1] += 1
            h[3, d + 1] += 1
        j = half + i
        a, b, c, d = q[j], q[j + 1], q[j + 2], q[j + 3]
        if (a & b & c & d) >= 0:
            h[4, a + 1] += 1
            h[5, b + 1] += 1
            h[6, c + 1] += 1
            h[7, d + 1] += 1
    for i in range(end4, half):
        h[0, q[i] + 1] += 1
    for i in range(half + end4, q.shape[0]):
        h[4, q[i] + 1] += 1
    counts = np.zeros((2, 102), np.int64)
    for v in range(101):
        counts[0, v] = h[0, v + 1] + h[1, v + 1] + h[2, v + 1] + h[3, v + 1]
        counts[1, v] = h[4, v + 1] + h[5, v + 1] + h[6, v + 1] + h[7, v + 1]
    return counts, 0


@njit(cache=True, nogil=True)
def build_forest_kernel(q, counts, offsets, uf, comp_node, touch, pix_node, order):
    """Union-find sweep.

    Parameters
    ----------
    q : (P,) int16 ndarray
        Padded, flattened quantised levels; ``-1`` on the pad and below the lowest level.
    counts : (2, 102) int64 ndarray
        Pixels per level in each half of ``q`` (as returned by :func:`quantize_pad_kernel`).
    offsets : tuple of int
        Flat offsets of the neighbours of a pixel in the padded array (a tuple, so the loops over
        the neighbours are unrolled for each neighbourhood size).
    uf, comp_node, touch, order : (P,) int32 ndarray
        Work space (contents ignored).
    pix_node : (P,) int32 ndarray
        Output: for each foreground pixel (``q >= 0``), the index into ``touch_node`` of its
        deepest node; other entries are left as they were.

    Returns
    -------
    parent : (N,) int32 ndarray
        Parent node of each node (``-1`` for roots), in creation order (children before parents).
    level : (N,) int16 ndarray
        Quantised level of each node (the minimum level of its pixels).
    area : (N,) int64 ndarray
        Pixels of each node (its whole region).
    touch_node : (G,) int32 ndarray
        Node of each (component, level) touch that ``pix_node`` refers to.
    """
    n_total = q.shape[0]
    # Counting sort of the foreground pixels by level, highest first, raster order within a level.
    # The two halves of the frame are sorted together, so the two chains of updates of the level
    # pointers overlap; within a level, the first half's pixels come first.
    start_a = np.zeros(102, np.int64)
    start_b = np.zeros(102, np.int64)
    level_counts = counts[0] + counts[1]
    acc = 0
    for v in range(101, -1, -1):
        start_a[v] = acc
        start_b[v] = acc + counts[0, v]
        acc += level_counts[v]
    m = acc
    half = n_total // 2
    for x in range(half):
        v = q[x]
        if v >= 0:
            k = start_a[v]
            order[k] = x
            start_a[v] = k + 1
        y = x + half
        w = q[y]
        if w >= 0:
            k = start_b[w]
            order[k] = y
            start_b[w] = k + 1
    for y in range(2 * half, n_total):
        w = q[y]
        if w >= 0:
            k = start_b[w]
            order[k] = y
            start_b[w] = k + 1
    n_nb = len(offsets)
    offs = np.empty(n_nb, np.int64)
    left = np.uint64(0)
    for t in range(n_nb):
        offs[t] = offsets[t]
        if offsets[t] == -1:
            left = np.uint64(t)
    # Node and merge tables grow on demand: sized for the worst case (one per pixel) they would be
    # large short-lived allocations, whose release and page faults cost more than the sweep.
    cap = 1024
    parent = np.empty(cap, np.int32)
    level = np.empty(cap, np.int16)
    area = np.empty(cap, np.int64)
    pend_node = np.empty(cap, np.int32)
    pend_pix = np.empty(cap, np.int32)
    touch_root = np.empty(cap, np.int32)
    touch_node = np.empty(cap, np.int32)
    # Union-find indexed by padded pixel; a root holds minus its size. ``comp_node`` of a root is
    # its component's latest node, or -1 after a merge at the current level (it needs a new node).
    # A pixel records which root it joined, as a "touch" (``touch[root]``, numbered from
    # ``g0`` at each level); after the level each touch gets the node of its root's component.
    # That spares a second pass over the level's pixels.
    n_nodes = 0
    n_touch = 0
    i = 0
    while i < m:
        v = q[order[i]]
        j = i + level_counts[v]
        n_pend = 0
        # Room for this level: at most one new node per pixel, and each current node is made a
        # child at most once.
        if n_nodes + (j - i) > parent.shape[0]:
            new_cap = max(2 * parent.shape[0], n_nodes + (j - i))
            parent = _grow(parent, n_nodes, new_cap)
            level = _grow(level, n_nodes, new_cap)
            area = _grow(area, n_nodes, new_cap)
        if n_nodes > pend_node.shape[0]:
            new_cap = max(2 * pend_node.shape[0], n_nodes)
            pend_node = _grow(pend_node, 0, new_cap)
            pend_pix = _grow(pend_pix, 0, new_cap)
        if n_touch + (j - i) > touch_root.shape[0]:
            new_cap = max(2 * touch_root.shape[0], n_touch + (j - i))
            touch_root = _grow(touch_root, n_touch, new_cap)
            touch_node = _grow(touch_node, n_touch, new_cap)
        g0 = n_touch
        prev_p = -1
        prev_root = -1
        prev_g = -1
        for k in range(i, j):
            p = order[k]
            # Neighbours already processed: a higher level, or the same level earlier in raster
            # order (negative offsets); the others link to this pixel in their turn.
            mask = np.uint64(0)
            for t in range(n_nb):
                ok = q[p + offsets[t]] > v - (offsets[t] < 0)
                mask |= np.uint64(ok) << np.uint64(t)
            if mask == 0:
                uf[p] = -1
                comp_node[p] = -1
                touch[p] = n_touch
                touch_root[n_touch] = p
                pix_node[p] = n_touch
                prev_p = p
                prev_root = p
                prev_g = n_touch
                n_touch += 1
                continue
            # Join a processed neighbour's component: the previous pixel's, when it is the left
            # neighbour (its root and touch are at hand, which spares two loads that would wait on
            # the previous pixel's stores), else the first one's.
            if p - 1 == prev_p and (mask >> left) & np.uint64(1):
                mask &= ~(np.uint64(1) << left)
                rp = prev_root
                uf[p] = rp
                uf[rp] -= 1
                g = prev_g
            else:
                t = trailing_zeros(mask)
                mask &= mask - np.uint64(1)
                rp = _root(uf, p + offs[t])
                uf[p] = rp
                uf[rp] -= 1
                g = touch[rp]
                if g < g0:
                    g = n_touch
                    touch[rp] = g
                    touch_root[g] = rp
                    n_touch += 1
            pix_node[p] = g
            prev_p = p
            prev_g = g
            # ... and look further only at neighbours not plainly in it (branch-free test: most
            # pixels have none, and an unpredictable branch per neighbour costs more than the loads).
            other = np.uint64(0)
            for t in range(n_nb):
                nb = p + offsets[t]
                same = (uf[nb] == rp) | (nb == rp)
                other |= np.uint64(not same) << np.uint64(t)
            mask &= other
            while mask:
                t = trailing_zeros(mask)
                mask &= mask - np.uint64(1)
                rq = _root(uf, p + offs[t])
                if rq == rp:
                    continue
                # Two components merge: their nodes from earlier levels become children.
                cq = comp_node[rq]
                if cq >= 0:
                    pend_node[n_pend] = cq
                    pend_pix[n_pend] = p
                    n_pend += 1
                cp = comp_node[rp]
                if cp >= 0:
                    pend_node[n_pend] = cp
                    pend_pix[n_pend] = p
                    n_pend += 1
                if uf[rp] > uf[rq]:
                    rp, rq = rq, rp
                uf[rp] += uf[rq]
                uf[rq] = rp
                comp_node[rp] = -1
            prev_root = rp
        # One new node per component touched at this level. A component that only grew still
        # holds its node from a higher level, which becomes the new node's child.
        for g in range(g0, n_touch):
            r = _root(uf, touch_root[g])
            c = comp_node[r]
            if c < 0 or level[c] != v:
                nc = n_nodes
                n_nodes += 1
                level[nc] = v
                parent[nc] = -1
                area[nc] = -uf[r]
                if c >= 0:
                    parent[c] = nc
                comp_node[r] = nc
                c = nc
            touch_node[g] = c
        for k in range(n_pend):
            parent[pend_node[k]] = comp_node[_root(uf, pend_pix[k])]
        i = j
    return (
        parent[:n_nodes].copy(),
        level[:n_nodes].copy(),
        area[:n_nodes].copy(),
        touch_node[:n_touch].copy(),
    )


@njit(cache=True, nogil=True)
def node_map_stats_kernel(q, pix_node, new_id, prob, pad_z, n_nodes):
    """Node map and per-node statistics of the deepest pixels, in one raster pass.

    ``new_id[pix_node[p]]`` is the node of foreground pixel ``p`` (``pix_node`` is not read where
    ``q < 0``). Returns the unpadded ``(Z, Y, X)`` node map (``-1`` for background), and the
    probability sum and bounding box ``(z0, y0, x0, z1, y1, x1)``, exclusive maxima, of the pixels
    whose deepest node is each node.
    """
    nz, ny, nx = prob.shape
    if nz == 1 and not pad_z:
        node_map, psum, box2 = _node_map_stats_2d(q, pix_node, new_id, prob, n_nodes)
        box = np.zeros((n_nodes, 6), np.int32)
        box[:, 3] = 1
        box[:, 1:3] = box2[:, :2]
        box[:, 4:] = box2[:, 2:]
        return node_map, psum, box
    pz = 1 if pad_z else 0
    yp = ny + 2
    xp = nx + 2
    node_map = np.empty((nz, ny, nx), np.int32)
    psum = np.zeros(n_nodes, np.float64)
    box = np.empty((n_nodes, 6), np.int32)
    box[:, :3] = np.iinfo(np.int32).max
    box[:, 3:] = -1
    for z in range(nz):
        for y in range(ny):
            base = ((z + pz) * yp + y + 1) * xp + 1
            src = pix_node[base : base + nx]
            lev = q[base : base + nx]
            out = node_map[z, y]
            row = prob[z, y]
            for x in range(nx):
                if lev[x] < 0:
                    out[x] = -1
                    continue
                nd = new_id[src[x]]
                out[x] = nd
                psum[nd] += row[x]
                # Raster order: z only grows, so its maximum is a plain store.
                box[nd, 0] = min(box[nd, 0], z)
                box[nd, 1] = min(box[nd, 1], y)
                box[nd, 2] = min(box[nd, 2], x)
                box[nd, 3] = z + 1
                box[nd, 4] = max(box[nd, 4], y + 1)
                box[nd, 5] = max(box[nd, 5], x + 1)
    return node_map, psum, box


@njit(cache=True, nogil=True)
def _node_map_stats_2d(q, pix_node, new_id, prob, n_nodes):
    # The 2D case of ``node_map_stats_kernel``, kept apart because it is a fifth faster (no z
    # updates; rows only grow, so the row maximum is a plain store): measured 0.42 -> 0.33 ms on a
    # 512x512 DIC prediction.
    _, ny, nx = prob.shape
    xp = nx + 2
    node_map = np.empty((1, ny, nx), np.int32)
    psum = np.zeros(n_nodes, np.float64)
    box = np.empty((n_nodes, 4), np.int32)
    box[:, :2] = np.iinfo(np.int32).max
    box[:, 2:] = -1
    for y in range(ny):
        base = (y + 1) * xp + 1
        src = pix_node[base : base + nx]
        lev = q[base : base + nx]
        out = node_map[0, y]
        row = prob[0, y]
        for x in range(nx):
            if lev[x] < 0:
                out[x] = -1
                continue
            nd = new_id[src[x]]
            out[x] = nd
            psum[nd] += row[x]
            box[nd, 0] = min(box[nd, 0], y)
            box[nd, 1] = min(box[nd, 1], x)
            box[nd, 2] = y + 1
            box[nd, 3] = max(box[nd, 3], x + 1)
    return node_map, psum, box


@njit(cache=True, nogil=True)
def finish_kernel(q, pix_node, touch_node, parent_c, level_c, area_c, prob, pad_z, scale):
    """Everything after the sweep, in one call: pre-order ids, node map, subtree statistics.

    ``pix_node``, ``touch_node``, ``parent_c``, ``level_c``, ``area_c`` come from
    :func:`build_forest_kernel` (nodes in creation order); ``scale`` is levels per unit probability. Returns node map
    ``(Z, Y, X)``, parent, level (float32 probability), end, area, probability sum, leaf count and
    bounding box ``(z0, y0, x0, z1, y1, x1)`` of every node, in pre-order.
    """
    n = parent_c.shape[0]
    new_id = preorder_kernel(parent_c)
    parent = np.empty(n, np.int32)
    level = np.empty(n, np.float32)
    area = np.empty(n, np.int64)
    for i in range(n):
        k = new_id[i]
        pc = parent_c[i]
        parent[k] = new_id[pc] if pc >= 0 else -1
        level[k] = np.float32(level_c[i] / scale)
        area[k] = area_c[i]
    lut = np.empty(touch_node.shape[0], np.int32)
    for g in range(touch_node.shape[0]):
        lut[g] = new_id[touch_node[g]]
    node_map, own_prob, own_box = node_map_stats_kernel(q, pix_node, lut, prob, pad_z, n)
    end, psum, n_leaves, lo, hi = subtree_stats_kernel(
        parent, own_prob, own_box[:, :3].copy(), own_box[:, 3:].copy()
    )
    box = np.empty((n, 6), np.int32)
    box[:, :3] = lo
    box[:, 3:] = hi
    return node_map, parent, level, end, area, psum, n_leaves, box


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
def subtree_stats_kernel(parent, own_prob, own_lo, own_hi):
    """Fold per-node statistics of pre-ordered nodes into their ancestors.

    Children follow their parent in pre-order, so one reverse sweep suffices.
    Returns subtree end, probability sum, leaf count and bounding box of every node.
    """
    n = parent.shape[0]
    end = np.arange(1, n + 1).astype(np.int32)
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
            prob[p] += prob[i]
            if end[i] > end[p]:
                end[p] = end[i]
            for d in range(lo.shape[1]):
                if lo[i, d] < lo[p, d]:
                    lo[p, d] = lo[i, d]
                if hi[i, d] > hi[p, d]:
                    hi[p, d] = hi[i, d]
    return end, prob, n_leaves, lo, hi


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
