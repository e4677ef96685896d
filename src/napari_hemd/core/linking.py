"""Linking final instances across frames: one more EMD matching per frame pair.

The same object gets the same label in every frame; a division (one instance at frame ``t`` whose
region is covered by two instances at ``t + 1``) starts two daughter tracks whose parent is the
mother's track, as in the Cell Tracking Challenge ``res_track.txt``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from napari_hemd.core.matching import emd_matching

__all__ = ["FrameLinker", "frame_ids", "link_labels", "track_points", "tracks_after_removal"]


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
        Daughters that moved apart are found too: an instance at ``t`` that continues into none
        at ``t + 1`` and the two nearest new instances there, within :data:`DIVISION_RADIUS`
        (2.5) of its radii of its centre, of 0.4-3 times its size together; and a mother
        that continues into an object of at most :data:`SHRUNK` her size beside a new object
        within that radius (the daughter that kept her place and the one that moved off; 0.6-1.6
        times her size together). Objects the size-limited EMD leaves unmatched are then linked
        by overlap (a cell whole again after the segmentation cut it for a frame continues a
        track instead of starting one). On Fluo-N2DL-HeLa 01's
        silver-truth masks (92 frames): 71 of the 94 divisions of its tracking truth found, 86
        made (68 / 82 before the last two rules; 1 with the overlap rule alone), 392 tracks
        (483); PhC-C2DL-PSC 01 (101 frames): 105 of 213, 117 made (82 / 90), 969 tracks (1,039).

    Returns
    -------
    tracked : (T, ...) uint32 ndarray
        Relabelled stack: one label per track.
    tracks : (K, 4) int64 ndarray
        ``L B E P`` rows (label, first frame, last frame, parent label or 0).
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"labels must be integer instance labels (0: background); got dtype {labels.dtype}"
        )
    if labels.ndim < 3:
        raise ValueError(
            f"labels must be a (T, Y, X) or (T, Z, Y, X) stack, frames on axis 0; got shape "
            f"{labels.shape}"
        )
    if labels.size and labels.dtype.kind == "i" and int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0 (0: background); got minimum {int(labels.min())}")
    from napari_hemd.core.validation import not_instance_labels

    why = not_instance_labels(labels)  # a raw movie: linked as millions of one-pixel objects
    if why:
        raise ValueError(
            f"labels does not look like instance labels: {why}. Give the segmentation's labels "
            "(napari_hemd.segment or segment_image), not the raw movie"
        )
    if not float(delta) > 0:
        raise ValueError(f"delta must be > 0; got {delta!r}")
    if not 0.0 < float(min_iou) <= 1.0:  # nan or 2 linked nothing, without a word (audit 24)
        raise ValueError(f"min_iou must be in (0, 1]; got {min_iou!r}")
    if not 0.0 <= float(division_cover) <= 1.0:
        raise ValueError(f"division_cover must be in [0, 1]; got {division_cover!r}")
    if labels.size and int(labels.max()) > max(4 * labels[0].size, 2**20):
        # ids far beyond the objects (2**40 + k): the overlaps are counted per id, so the ids
        # are made consecutive first (the result's ids are the tracks' own anyway)
        ids, inverse = np.unique(labels, return_inverse=True)
        # no background anywhere: the smallest id is an object and must not become 0
        labels = (inverse + (ids[0] != 0)).reshape(labels.shape)
    out = np.zeros(labels.shape, np.uint32)
    linker = FrameLinker(delta=delta, min_iou=min_iou, division_cover=division_cover)
    for t in range(labels.shape[0]):
        out[t] = linker.push(labels[t])
    return out, linker.tracks()


def _matched(prev: np.ndarray, cur: np.ndarray, delta: float, min_iou: float):
    """One-to-one matches ``{cur id: prev id}`` of two frames (EMD matching, IoU >= min_iou).

    Also returns the overlap matrix and both frames' areas per id.
    """
    na, nb = int(prev.max()), int(cur.max())
    inter = _overlaps(prev, cur, na, nb)
    area_a = np.bincount(prev.ravel(), minlength=na + 1)
    area_b = np.bincount(cur.ravel(), minlength=nb + 1)
    rows, cols, iou = emd_matching(inter, area_a, area_b, delta)
    good = iou >= min_iou
    links = dict(zip(cols[good].tolist(), rows[good].tolist(), strict=True))
    links.update(_leftover_links(inter, area_a, area_b, links, min_iou))
    return links, inter, area_a, area_b


def _leftover_links(inter, area_a, area_b, links: dict, min_iou: float) -> dict:
    """Links ``{cur id: prev id}`` by overlap alone among the objects the EMD left unmatched.

    The EMD matching allows a pair only within ``delta`` of each other's size (eq. 7); a cell
    the segmentation cut in two for a frame, or joined to a neighbour, changes size more than
    that and its track would end there. The objects neither matched are paired one to one by
    the largest IoU (at least ``min_iou``; ``scipy.optimize.linear_sum_assignment``).
    """
    from scipy.optimize import linear_sum_assignment

    coo = sp.coo_matrix(inter)
    keep = (
        (coo.row > 0)
        & (coo.col > 0)
        & ~np.isin(coo.row, list(links.values()))
        & ~np.isin(coo.col, list(links))
    )
    r, c, x = coo.row[keep], coo.col[keep], coo.data[keep].astype(np.float64)
    iou = x / (area_a[r] + area_b[c] - x)
    ok = iou >= min_iou
    r, c, iou = r[ok], c[ok], iou[ok]
    if not r.size:
        return {}
    ur, ri = np.unique(r, return_inverse=True)
    uc, ci = np.unique(c, return_inverse=True)
    cost = np.zeros((ur.size, uc.size))
    cost[ri, ci] = -iou
    a, b = linear_sum_assignment(cost)
    return {int(uc[j]): int(ur[i]) for i, j in zip(a, b, strict=True) if cost[i, j] < 0}


#: A mother continuing into an object at most this share of her size, beside a new object:
#: a division whose first daughter kept the mother's place.
SHRUNK = 0.75

#: A mother whose track ends and two new objects of the next frame within this many of its
#: radii (of the disk of its area) of its centre: a division (daughters that moved apart).
DIVISION_RADIUS = 2.5


def _divisions(
    links, inter, area_a, area_b, delta: float, division_cover: float, frames=None
) -> dict:
    """Divisions ``{mother: [daughter, daughter]}`` between two frames.

    A mother covering two objects of the next frame (each ``division_cover`` inside it, their
    sum its size within ``delta``), neither matched to another object. With ``frames`` (the two
    frames' labels) also a mother that continues into no object and
    the two nearest objects that continue none, both within :data:`DIVISION_RADIUS` of its
    radii of its centre, their sizes together 0.4-3 times its own (daughters that moved
    apart: on Fluo-N2DL-HeLa's silver truth the median daughter lies 1.5 radii from its
    mother's centre, and half of them do not overlap it at all).
    """
    coo = sp.coo_matrix(inter)
    cover = coo.data / np.maximum(area_b[coo.col], 1)
    daughters: dict[int, list[int]] = {}
    for m, d, c in zip(coo.row.tolist(), coo.col.tolist(), cover.tolist(), strict=True):
        if m and d and c >= division_cover:
            daughters.setdefault(m, []).append(d)
    out = {}
    for m, ds in daughters.items():
        if len(ds) != 2 or abs(area_b[ds].sum() - area_a[m]) / area_a[m] >= delta:
            continue
        if all(d not in links or links[d] == m for d in ds):
            out[m] = ds
    if frames is not None:
        out.update(_divisions_apart(links, area_a, area_b, frames, out))
    return out


def _divisions_apart(links, area_a, area_b, frames, found: dict) -> dict:
    """Divisions whose daughters moved apart from their ended mother (see :func:`_divisions`)."""
    prev, cur = frames
    taken = {d for ds in found.values() for d in ds}
    linked = set(links.values())
    ended = [m for m in np.flatnonzero(area_a).tolist() if m and m not in found and m not in linked]
    free = [d for d in np.flatnonzero(area_b).tolist() if d and d not in links and d not in taken]
    if not free:
        return {}
    free_arr = np.asarray(free)
    ca, cb = _centres(prev, ended), _centres(cur, free)
    pairs = []  # (the farther daughter's distance in radii, mother, daughters)
    for i, m in enumerate(ended if len(free) >= 2 else []):
        r = np.sqrt(area_a[m] / np.pi)
        dist = np.sqrt(((cb - ca[i]) ** 2).sum(axis=1)) / max(r, 1.0)
        near = np.argsort(dist)[:2]
        if len(near) == 2 and dist[near[1]] <= DIVISION_RADIUS:
            ratio = area_b[free_arr[near]].sum() / area_a[m]
            if 0.4 <= ratio <= 3.0:
                pairs.append((float(dist[near[1]]), m, free_arr[near].tolist()))
    # a mother that continues into one object of about half her size, and a new object beside
    # it: the daughter that kept her place and the one that moved off
    kept = {m: d for d, m in links.items() if m not in found and d not in taken}
    for m, d in kept.items():
        if area_b[d] > SHRUNK * area_a[m]:
            continue
        r = np.sqrt(area_a[m] / np.pi)
        centre = _centres(prev, [m])[0]
        dist = np.sqrt(((cb - centre) ** 2).sum(axis=1)) / max(r, 1.0)
        j = int(np.argmin(dist))
        if dist[j] <= DIVISION_RADIUS:
            ratio = (area_b[d] + area_b[free_arr[j]]) / area_a[m]
            if 0.6 <= ratio <= 1.6:
                pairs.append((float(dist[j]), m, [d, int(free_arr[j])]))
    out: dict[int, list[int]] = {}
    used: set[int] = set()
    for _, m, ds in sorted(pairs):  # the closest pairs first; an object is one mother's
        if not used & set(ds):
            out[m] = ds
            used.update(ds)
    return out


def frame_ids(frame) -> np.ndarray:
    """The object ids (> 0) in ``frame``, sorted.

    Counted with ``np.bincount`` (one pass) where the ids are small for the frame's size, else
    ``np.unique`` (a sort): half its time on the HeLa silver truth's 700 x 1100 frames
    (``benchmarks/bench_frame_ids.py``), what a movie's count and tracks take on napari's
    thread when a result arrives (audit 25).
    """
    flat = np.asarray(frame).ravel()
    if flat.size and flat.dtype.kind in "iu":
        lo, hi = int(flat.min()), int(flat.max())
        if lo >= 0 and hi <= max(4 * flat.size, 1 << 16):
            ids = np.flatnonzero(np.bincount(flat.astype(np.intp, copy=False), minlength=1))
            return ids[ids > 0].astype(flat.dtype)
    ids = np.unique(flat)
    return ids[ids > 0]


def _centres(labels: np.ndarray, ids: list[int]) -> np.ndarray:
    """``(len(ids), ndim)`` centres of mass of objects ``ids`` of ``labels``.

    Each within its bounding box (``scipy.ndimage.find_objects``): no frame-sized coordinate
    arrays (a 3D stack's would take hundreds of MB), work in proportion to the objects' sizes.
    """
    from scipy import ndimage as ndi

    boxes = ndi.find_objects(labels, max_label=max(ids) if ids else 0)
    out = np.zeros((len(ids), labels.ndim))
    for i, k in enumerate(ids):
        box = boxes[k - 1] if k - 1 < len(boxes) else None
        if box is None:
            continue
        where = np.nonzero(labels[box] == k)
        out[i] = [w.mean() + s.start for w, s in zip(where, box, strict=True)]
    return out


def track_points(labels, tracks: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Each object's centre in each frame, as a napari ``Tracks`` layer takes them.

    Parameters
    ----------
    labels : (T, Y, X) or (T, Z, Y, X) integer array-like
        Labels linked over time: an id is one cell in every frame it is in (read a frame at a
        time: zarr and dask stay on disk).
    tracks : (K, 4) int array, optional
        The CTC lineage (``L B E P``): each daughter's parent becomes an edge of ``graph``.

    Returns
    -------
    data : (N, 2 + spatial) float64 ndarray
        Rows ``[id, t, (z,) y, x]`` in pixels of ``labels`` (centres of mass), sorted by id,
        then frame.
    graph : dict of int to list of int
        Daughter id -> ``[parent id]``, for parents that are in ``labels``.
    """
    rows = []
    for t in range(labels.shape[0]):
        frame = np.asarray(labels[t])
        ids = frame_ids(frame).tolist()
        if not ids:
            continue
        centres = _centres(frame, ids)
        rows.append(np.column_stack([ids, np.full(len(ids), t), centres]))
    spatial = len(labels.shape) - 1
    if not rows:
        return np.zeros((0, 2 + spatial)), {}
    data = np.concatenate(rows)
    data = data[np.lexsort((data[:, 1], data[:, 0]))]
    graph: dict[int, list[int]] = {}
    if tracks is not None and len(tracks):
        present = set(np.unique(data[:, 0]).astype(int).tolist())
        for label, _, _, parent in np.asarray(tracks, dtype=np.int64).reshape(-1, 4):
            if parent > 0 and int(label) in present and int(parent) in present:
                graph[int(label)] = [int(parent)]
    return data, graph


def match_ids(
    prev, cur, *, delta: float = 0.5, min_iou: float = 0.2, division_cover: float = 0.6
) -> dict[int, int]:
    """Which object of ``prev`` each object of ``cur`` continues: ``{cur id: prev id}``.

    The one-to-one overlap matching :func:`link_labels` links neighbouring frames with (the
    EMD matching of their objects, size change below ``delta``, IoU >= ``min_iou``); objects of
    ``cur`` that continue none, and the two daughters of a division, are left out.
    """
    prev, cur = np.asarray(prev), np.asarray(cur)
    if not prev.any() or not cur.any():
        return {}
    links, inter, area_a, area_b = _matched(prev, cur, delta, min_iou)
    divided = _divisions(links, inter, area_a, area_b, delta, division_cover, (prev, cur))
    for ds in divided.values():
        for d in ds:
            links.pop(d, None)
    return {int(d): int(m) for d, m in links.items() if d and m}


class FrameLinker:
    """:func:`link_labels` one frame at a time: frames pushed in order come back relabelled.

    For movies that are segmented (and written) frame by frame or stack by stack: only the
    previous frame's labels are kept. :meth:`state` and :meth:`from_state` carry the linking
    over an interruption (a resumed run links exactly as an uninterrupted one).

    Parameters
    ----------
    delta, min_iou, division_cover : float
        As for :func:`link_labels`.
    """

    def __init__(self, *, delta: float = 0.5, min_iou: float = 0.2, division_cover: float = 0.6):
        self.delta, self.min_iou, self.division_cover = delta, min_iou, division_cover
        self.t = 0  # the next frame's index
        self.next_id = 1
        self._tracks: dict[int, list[int]] = {}
        self.prev: np.ndarray | None = None  # the last frame's labels as pushed
        self.prev_map: dict[int, int] = {}  # its labels -> their track ids

    def push(self, cur) -> np.ndarray:
        """Link frame ``self.t`` to the previous one; its labels as track ids (uint32)."""
        cur = np.asarray(cur)
        t, prev, prev_map, tracks = self.t, self.prev, self.prev_map, self._tracks
        delta = self.delta
        ids = np.unique(cur)
        ids = ids[ids > 0]
        cur_map: dict[int, int] = {}
        if prev is not None and ids.size and prev_map:
            links, inter, area_a, area_b = _matched(prev, cur, delta, self.min_iou)
            divided = _divisions(
                links, inter, area_a, area_b, delta, self.division_cover, (prev, cur)
            )
            for m, ds in divided.items():
                if m not in prev_map:
                    continue
                for d in ds:
                    links.pop(d, None)
                    tid = self.next_id
                    self.next_id += 1
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
                tid = self.next_id
                self.next_id += 1
                tracks[tid] = [t, t, 0]
                cur_map[d] = tid
        lut = np.zeros(int(cur.max()) + 1 if cur.size else 1, np.uint32)
        for d, tid in cur_map.items():
            lut[d] = tid
        self.prev, self.prev_map, self.t = cur, cur_map, t + 1
        return lut[cur]

    def tracks(self) -> np.ndarray:
        """``(K, 4)`` int64 ``L B E P`` rows of the frames pushed so far, sorted by label."""
        return np.array(
            [[tid, b, e, p] for tid, (b, e, p) in sorted(self._tracks.items())], dtype=np.int64
        ).reshape(-1, 4)

    def state(self) -> dict:
        """JSON-able state but the last frame's labels (``self.prev``, saved beside it)."""
        return {
            "params": [self.delta, self.min_iou, self.division_cover],
            "t": self.t,
            "next_id": self.next_id,
            "tracks": {str(k): v for k, v in self._tracks.items()},
            "prev_map": [[int(k), int(v)] for k, v in self.prev_map.items()],
        }

    @classmethod
    def from_state(cls, state: dict, prev: np.ndarray | None) -> FrameLinker:
        """The linker :meth:`state` described, with the last frame's labels ``prev``."""
        delta, min_iou, cover = state["params"]
        linker = cls(delta=delta, min_iou=min_iou, division_cover=cover)
        linker.t, linker.next_id = int(state["t"]), int(state["next_id"])
        linker._tracks = {int(k): [int(x) for x in v] for k, v in state["tracks"].items()}
        linker.prev_map = {int(k): int(v) for k, v in state["prev_map"]}
        linker.prev = None if prev is None else np.asarray(prev)
        return linker


def tracks_after_removal(labels: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make tracks true again after objects were removed from some of their frames.

    A track ``L B E P`` must hold its label in exactly frames ``B..E`` (the Cell Tracking
    Challenge's rule). After removals (e.g. :func:`napari_hemd.core.cells.clear_border_objects`)
    a track keeps its first run of frames; every later run, after a gap, becomes a new track
    with a fresh label and no parent. Daughters point to the last run of their mother (the one
    that ends before they begin); a track that lost all its frames is dropped, and its daughters
    lose their parent. A track keeps a parent only while it still begins where it began.

    Parameters
    ----------
    labels : (T, ...) integer ndarray
        Labels per frame after the removal, one label per track (as :func:`link_labels` gives).
    tracks : (K, 4) integer array
        ``L B E P`` rows from before the removal.

    Returns
    -------
    labels : (T, ...) ndarray
        ``labels``, relabelled where a track was split (a copy then).
    tracks : (K', 4) int64 ndarray
        Sorted by label.
    """
    labels = np.asarray(labels)
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    present = [set(np.unique(labels[t]).tolist()) - {0} for t in range(labels.shape[0])]
    top = max(int(labels.max(initial=0)), int(tracks[:, 0].max(initial=0)))
    out = labels
    rows: list[list[int]] = []
    last: dict[int, int] = {}  # old label -> label of its last run (0: no frame left)
    for lab, begin, end, parent in tracks.tolist():
        frames = [t for t in range(begin, min(end, len(present) - 1) + 1) if lab in present[t]]
        last[lab] = 0
        if not frames:
            continue
        runs = np.split(np.array(frames), np.flatnonzero(np.diff(frames) > 1) + 1)
        first = runs[0]
        rows.append([lab, int(first[0]), int(first[-1]), parent if first[0] == begin else 0])
        last[lab] = lab
        for run in runs[1:]:
            if out is labels:  # room for the new labels
                out = labels.astype(np.result_type(labels.dtype, np.uint32))
            top += 1
            for t in run.tolist():
                out[t][out[t] == lab] = top
            rows.append([top, int(run[0]), int(run[-1]), 0])
            last[lab] = top
    for row in rows:
        row[3] = last.get(row[3], row[3])
    rows.sort()
    return out, np.array(rows, dtype=np.int64).reshape(-1, 4)


def tracks_from_presence(
    present: list[np.ndarray],
) -> tuple[np.ndarray, dict[int, dict[int, int]]]:
    """Tracks ``L B E 0`` from the labels present per frame; later runs of a label are renamed.

    ``present[t]``: the labels (without 0) of frame ``t``. Returns the tracks and, per frame,
    the renaming ``{label: new label}`` of a label that came back after a gap (each later run
    gets a fresh label above all others), so that every track's label is present in exactly its
    frames ``B..E`` (the CTC validity rule).
    """
    top = max([int(p.max()) for p in present if p.size], default=0)
    open_run: dict[int, list[int]] = {}  # label -> [track label, begin, end]
    rows: list[list[int]] = []
    remap: dict[int, dict[int, int]] = {}
    for t, labs in enumerate(present):
        for lab in labs.tolist():
            run = open_run.get(lab)
            if run is not None and run[2] == t - 1:
                run[2] = t
            else:
                if run is not None:  # a gap: close the old run, start a renamed one
                    rows.append([run[0], run[1], run[2], 0])
                    top += 1
                    new = top
                else:
                    new = lab
                open_run[lab] = run = [new, t, t]
            if run[0] != lab:
                remap.setdefault(t, {})[lab] = run[0]
    rows.extend([r[0], r[1], r[2], 0] for r in open_run.values())
    rows.sort()
    return np.array(rows, dtype=np.int64).reshape(-1, 4), remap


def lineage_after_edits(labels, tracks, present=None) -> tuple[np.ndarray, np.ndarray]:
    """The lineage of labels edited after linking: their tracks, with the run's divisions kept.

    ``tracks`` (``L B E P`` rows) are a linked run's; ``labels`` (frames first) that run's
    labels since edited (merged, deleted, split, painted, relabelled). Each label's tracks come
    from the frames it is present in (:func:`tracks_from_presence`: a label back after a gap
    continues under a fresh label, renamed in the returned copy). A daughter keeps its parent
    where the division still holds: it begins in the frame it began in the run, and its parent
    (under its label or the fresh one of that stretch) is present in the frame before and ends
    there. Anything else gets no parent (a lineage is never invented).

    ``present``: the labels of each frame (:func:`frame_ids`), where the caller knows them.

    Returns
    -------
    labels : ndarray
        ``labels`` (a copy where a label was renamed).
    tracks : (K, 4) int64 ndarray
    """
    labels = np.asarray(labels)
    if present is None:
        present = [frame_ids(labels[t]) for t in range(labels.shape[0])]
    present = [np.asarray(p, np.int64) for p in present]
    new, remap = tracks_from_presence(present)
    if remap:  # a copy that holds the fresh labels (above every other)
        labels = labels.astype(np.result_type(labels.dtype, np.uint32))
        for t, names in remap.items():  # a few labels per frame: no table as long as the ids
            frame = labels[t]  # (a relabelled id of 2e9 made one of 8 GB, review 31)
            for old, fresh in names.items():  # fresh labels are above every old one
                frame[frame == old] = fresh
    run = {int(r[0]): (int(r[1]), int(r[3])) for r in np.asarray(tracks).reshape(-1, 4)}
    original = {int(r[0]): int(r[0]) for r in new}  # track label -> label it had
    for names in remap.values():
        for old, fresh in names.items():
            original[int(fresh)] = int(old)
    by_end = {(original[int(r[0])], int(r[2])): int(r[0]) for r in new}  # (label, end) -> track
    for row in new:
        label = original[int(row[0])]
        if label != int(row[0]) or label not in run:  # a later stretch, or not the run's
            continue
        begin, parent = run[label]
        if parent and begin == int(row[1]) and begin > 0:
            row[3] = by_end.get((parent, begin - 1), 0)  # the parent ends just before
    return labels, new


def carry_ids(labels: np.ndarray, redone, **match) -> int:
    """Give the objects of re-segmented frames the ids of the kept frames' objects they continue.

    ``labels`` (frames first) are linked (an object keeps its id from frame to frame), but the
    frames ``redone`` were segmented again: their ids are consistent among themselves and apart
    from the other frames'. Each run of consecutive redone frames takes, for every object that
    continues an object of the kept frame just before the run (:func:`match_ids`), else of the
    one just after it, that object's id, in all of the run's frames; the others keep theirs.
    In place. Returns the number of objects that took a kept id.
    """
    n = labels.shape[0]
    todo = sorted({int(t) for t in redone})
    runs: list[list[int]] = []
    for t in todo:
        if runs and runs[-1][-1] == t - 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    carried = 0
    for run in runs:
        a, b = run[0], run[-1]
        block = labels[a : b + 1]
        present = set(np.unique(block).tolist())
        mapping: dict[int, int] = {}
        for kept, edge in ((a - 1, a), (b + 1, b)):
            if not 0 <= kept < n or kept in todo:
                continue
            for f, k in match_ids(labels[kept], labels[edge], **match).items():
                if f not in mapping and k not in mapping.values() and k not in present:
                    mapping[f] = k
        if mapping:
            lut = np.arange(max(int(block.max()), *mapping.values()) + 1, dtype=labels.dtype)
            lut[list(mapping)] = list(mapping.values())
            labels[a : b + 1] = lut[block]
            carried += len(mapping)
    return carried
