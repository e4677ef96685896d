"""Linking final instances across frames: one more EMD matching per frame pair.

The same object gets the same label in every frame; a division (one instance at frame ``t`` whose
region is covered by two instances at ``t + 1``) starts two daughter tracks whose parent is the
mother's track, as in the Cell Tracking Challenge ``res_track.txt``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from napari_hemd.core.matching import emd_matching

__all__ = ["link_labels"]


def _overlaps(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> sp.csr_matrix:
    both = (a > 0) & (b > 0)
    return sp.coo_matrix(
        (np.ones(int(both.sum()), np.int64), (a[both].astype(np.int64), b[both].astype(np.int64))),
        shape=(na + 1, nb + 1),
    ).tocsr()


def link_labels(
    labels: np.ndarray, *, delta: float = 0.5, min_iou: float = 0.2, division_cover: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """Give the same label to the same object across frames and find divisions.

    Parameters
    ----------
    labels : (T, ...) integer ndarray
        Instance labels per frame (labels need not be consistent across frames).
    delta : float
        Size-change tolerance of the EMD matching (eq. 7) between consecutive frames.
    min_iou : float
        Matches with a lower IoU are not links.
    division_cover : float
        An unmatched instance at ``t + 1`` is a daughter of the instance at ``t`` that covers at
        least this fraction of it, when that mother's other match (or another unmatched instance)
        is a daughter too and the two daughters together are within ``delta`` of the mother's size.

    Returns
    -------
    tracked : (T, ...) uint32 ndarray
        Relabelled stack: one label per track.
    tracks : (K, 4) int64 ndarray
        ``L B E P`` rows (label, first frame, last frame, parent label or 0).
    """
    labels = np.asarray(labels)
    n_t = labels.shape[0]
    out = np.zeros(labels.shape, np.uint32)
    tracks: dict[int, list[int]] = {}
    next_id = 1
    prev_map: dict[int, int] = {}
    prev = None
    for t in range(n_t):
        cur = labels[t]
        ids = np.unique(cur)
        ids = ids[ids > 0]
        cur_map: dict[int, int] = {}
        if prev is not None and ids.size and prev_map:
            na, nb = int(prev.max()), int(cur.max())
            inter = _overlaps(prev, cur, na, nb)
            area_a = np.bincount(prev.ravel(), minlength=na + 1)
            area_b = np.bincount(cur.ravel(), minlength=nb + 1)
            rows, cols, iou = emd_matching(inter, area_a, area_b, delta)
            good = iou >= min_iou
            links = dict(zip(cols[good].tolist(), rows[good].tolist(), strict=True))
            # Divisions: a mother covering two instances of the next frame.
            coo = sp.coo_matrix(inter)
            cover = coo.data / np.maximum(area_b[coo.col], 1)
            daughters: dict[int, list[int]] = {}
            for m, d, c in zip(coo.row.tolist(), coo.col.tolist(), cover.tolist(), strict=True):
                if m and d and c >= division_cover and m in prev_map:
                    daughters.setdefault(m, []).append(d)
            for m, ds in daughters.items():
                if len(ds) != 2:
                    continue
                total = area_b[ds].sum()
                if abs(total - area_a[m]) / area_a[m] >= delta:
                    continue
                if not all(d not in links or links[d] == m for d in ds):
                    continue
                for d in ds:
                    links.pop(d, None)
                    tid = next_id
                    next_id += 1
                    tracks[tid] = [t, t, prev_map[m]]
                    cur_map[d] = tid
            for d, m in links.items():
                if d in cur_map or m not in prev_map:
                    continue
                tid = prev_map[m]
                if tracks[tid][1] == t - 1 and tid not in cur_map.values():
                    tracks[tid][1] = t
                    cur_map[d] = tid
        for d in ids.tolist():
            if d not in cur_map:
                tid = next_id
                next_id += 1
                tracks[tid] = [t, t, 0]
                cur_map[d] = tid
        lut = np.zeros(int(cur.max()) + 1 if cur.size else 1, np.uint32)
        for d, tid in cur_map.items():
            lut[d] = tid
        out[t] = lut[cur]
        prev, prev_map = cur, cur_map
    table = np.array(
        [[tid, b, e, p] for tid, (b, e, p) in sorted(tracks.items())], dtype=np.int64
    ).reshape(-1, 4)
    return out, table
