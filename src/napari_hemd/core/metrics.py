"""Instance segmentation metrics, all from one sparse overlap table per frame pair.

Every metric of a reference frame ``gt`` and a result frame ``pred`` is a function of their
contingency table ``n[i, j]`` (pixels labelled ``i`` in ``gt`` and ``j`` in ``pred``, label 0 =
background). :func:`overlap_table` builds it once; :func:`frame_statistics` reduces it to additive
counts; :func:`aggregate_statistics` turns counts of one or many frames into scores. Definitions,
with the aggregation over a sequence or volume, are in ``docs/evaluation.md`` and below.

Notation: ``a_i`` = size of reference object ``i``, ``b_j`` = size of result object ``j``,
``n_ij`` = their intersection, ``IoU_ij = n_ij / (a_i + b_j - n_ij)``.

- **F1** (H-EMD paper): TP = size of a maximum one-to-one matching among object pairs with
  ``IoU >= 0.5``; FP = result objects, FN = reference objects not in it;
  ``F1 = 2 TP / (2 TP + FP + FN)``. Pairs with ``IoU > 0.5`` are unique per object, so the
  matching only settles exact ``IoU == 0.5`` ties.
- **AJI** (Kumar et al. 2017): each reference object ``i`` takes the result object ``j*`` of
  largest IoU (smallest label on ties); ``C = sum_i n_ij*``, ``U = sum_i |g_i ∪ s_j*|`` (``a_i``
  when nothing overlaps ``i``) plus the size of every result object never taken;
  ``AJI = C / U``.
- **SEG** (Cell Tracking Challenge): reference object ``i`` matches result ``j`` when
  ``n_ij > 0.5 a_i`` (at most one ``j``); ``SEG = mean_i IoU_ij`` with 0 for unmatched ``i``.
- **DET** (CTC, AOGM-D): same matching; FN = unmatched references, FP = result objects matching
  no reference, NS = ``sum_j (k_j - 1)`` over results matching ``k_j >= 1`` references;
  ``AOGM_D = 5 NS + 10 FN + 1 FP``, ``DET = 1 - min(AOGM_D, AOGM_D0) / AOGM_D0`` with
  ``AOGM_D0 = 10 * n_reference``.
- **PQ** (Kirillov et al. 2019): matches are pairs with ``IoU > 0.5``;
  ``PQ = sum_TP IoU / (TP + FP/2 + FN/2)``.
- **SBD**, **|DiC|** (CVPPP): ``BD(A, B) = mean_{a in A} max_{b in B} Dice(a, b)``,
  ``SBD = min(BD(gt, pred), BD(pred, gt))``; ``DiC = n_pred - n_gt``.
- **VOI** split / merge (Meilă 2007): ``H(pred | gt)`` / ``H(gt | pred)`` in bits over all pixels
  (label 0 is one more segment), **ARAND** (Arganda-Carreras et al. 2015):
  ``1 - 2 sum_ij n_ij(n_ij - 1) / (sum_i a_i(a_i - 1) + sum_j b_j(b_j - 1))`` over pixel pairs,
  as :func:`skimage.metrics.adapted_rand_error` with ``alpha=0.5``. With
  ``ignore_gt_background=True`` both drop the pixels where ``gt == 0`` (the EM convention).

A score whose denominator is zero (e.g. F1 with no object in either frame) is ``nan``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_bipartite_matching

__all__ = [
    "METRIC_NAMES",
    "SPARSE_REFERENCES",
    "FrameStatistics",
    "OverlapTable",
    "adapted_rand_error",
    "aggregate_statistics",
    "aggregated_jaccard_index",
    "ctc_det",
    "ctc_seg",
    "evaluate_frame",
    "evaluate_sequence",
    "f1_score",
    "frame_statistics",
    "overlap_table",
    "panoptic_quality",
    "symmetric_best_dice",
    "variation_of_information",
]

logger = logging.getLogger(__name__)

#: Score keys of :func:`evaluate_sequence`, in table order.
METRIC_NAMES = ("F1", "AJI", "SEG", "DET", "PQ", "SBD", "DiC", "VOI_split", "VOI_merge", "ARAND")

#: Held-out references of the shipped models' scores that annotate only some cells per frame:
#: F1 / AJI would count every other detected cell as a false positive, so only SEG (reference
#: objects only) is meaningful (``napari-hemd models``, the widgets' model summary).
SPARSE_REFERENCES = ("Fluo-N2DL-HeLa/01 GT",)

# AOGM-D weights of the Cell Tracking Challenge (Matula et al. 2015).
_W_NS, _W_FN, _W_FP = 5, 10, 1

# Largest dense histogram (bins) before falling back to a sort-based one.
_DENSE_BINS = 1 << 24


@dataclass(frozen=True)
class OverlapTable:
    """Sparse contingency table of a reference and a result label image.

    Attributes
    ----------
    gt_labels : (G + 1,) int64 ndarray
        Sorted labels present in the reference, ``gt_labels[0] == 0`` (background, even if absent).
    pred_labels : (P + 1,) int64 ndarray
        The same for the result.
    rows, cols : (K,) int64 ndarray
        Indices into ``gt_labels`` / ``pred_labels`` of every non-empty cell of the table.
    counts : (K,) int64 ndarray
        Pixels in each cell; ``counts.sum()`` is the number of pixels.
    gt_sizes : (G + 1,) int64 ndarray
        Row sums (object sizes; ``gt_sizes[0]`` is the background area).
    pred_sizes : (P + 1,) int64 ndarray
        Column sums.
    """

    gt_labels: np.ndarray
    pred_labels: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    counts: np.ndarray
    gt_sizes: np.ndarray
    pred_sizes: np.ndarray

    @property
    def n_gt(self) -> int:
        """Number of reference objects (label 0 excluded)."""
        return int(self.gt_labels.size - 1)

    @property
    def n_pred(self) -> int:
        """Number of result objects (label 0 excluded)."""
        return int(self.pred_labels.size - 1)

    def object_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Overlapping object pairs: ``(rows, cols, intersection, union)``, background excluded."""
        keep = (self.rows > 0) & (self.cols > 0)
        r, c, n = self.rows[keep], self.cols[keep], self.counts[keep]
        return r, c, n, self.gt_sizes[r] + self.pred_sizes[c] - n


def _as_labels(arr, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name}: expected an integer label array; got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and int(arr.min()) < 0:
        raise ValueError(f"{name}: expected labels >= 0; got minimum {int(arr.min())}")
    return arr.ravel()


def overlap_table(gt, pred) -> OverlapTable:
    """Count the pixels shared by every pair of labels of two label images.

    Parameters
    ----------
    gt, pred : (...) integer ndarray
        Reference and result labels of the same shape, 0 = background.

    Returns
    -------
    OverlapTable
        The sparse contingency table (one histogram over the combined label keys).

    Examples
    --------
    >>> t = overlap_table(np.array([[1, 1, 0]]), np.array([[2, 0, 0]]))
    >>> t.gt_labels.tolist(), t.pred_labels.tolist(), t.counts.tolist()
    ([0, 1], [0, 2], [1, 1, 1])
    """
    gt_arr, pred_arr = np.asarray(gt), np.asarray(pred)
    if gt_arr.shape != pred_arr.shape:
        raise ValueError(
            f"gt and pred must have the same shape; got gt {gt_arr.shape} and pred {pred_arr.shape}"
        )
    g, p = _as_labels(gt_arr, "gt"), _as_labels(pred_arr, "pred")
    gmax = int(g.max()) if g.size else 0
    pmax = int(p.max()) if p.size else 0
    if (gmax + 1) * (pmax + 1) >= 2**62:  # keys would overflow int64: compact the labels first
        gl_all, g = np.unique(g, return_inverse=True)
        pl_all, p = np.unique(p, return_inverse=True)
        gmax, pmax = gl_all.size - 1, pl_all.size - 1
    else:
        gl_all = pl_all = None
    width = pmax + 1
    key = g.astype(np.int64) * width + p
    if (gmax + 1) * width <= max(_DENSE_BINS, 4 * key.size):
        hist = np.bincount(key, minlength=(gmax + 1) * width)
        keys = np.flatnonzero(hist)
        counts = hist[keys]
    else:
        keys, counts = np.unique(key, return_counts=True)
    gk, pk = keys // width, keys % width
    if gl_all is not None:
        gk, pk = gl_all[gk].astype(np.int64), pl_all[pk].astype(np.int64)
    gt_labels = np.union1d([0], gk).astype(np.int64)
    pred_labels = np.union1d([0], pk).astype(np.int64)
    rows = np.searchsorted(gt_labels, gk)
    cols = np.searchsorted(pred_labels, pk)
    counts = counts.astype(np.int64)
    return OverlapTable(
        gt_labels=gt_labels,
        pred_labels=pred_labels,
        rows=rows,
        cols=cols,
        counts=counts,
        gt_sizes=np.bincount(rows, counts, minlength=gt_labels.size).astype(np.int64),
        pred_sizes=np.bincount(cols, counts, minlength=pred_labels.size).astype(np.int64),
    )


@dataclass
class FrameStatistics:
    """Additive counts of one frame pair.

    Sum them over frames (``+``) and score the sum with :func:`aggregate_statistics`.

    Attributes
    ----------
    n_gt, n_pred : int
        Object counts.
    tp, fp, fn : int
        F1 counts (one-to-one matching at IoU >= 0.5).
    aji_intersection, aji_union : int
        AJI numerator and denominator (pixels).
    seg_iou : float
        Sum over reference objects of the CTC SEG Jaccard (0 when unmatched).
    det_ns, det_fn, det_fp : int
        AOGM-D operations: vertex splits, false negatives, false positives.
    pq_tp, pq_fp, pq_fn : int
        PQ counts (matches at IoU > 0.5).
    pq_iou : float
        Sum of IoU over PQ matches.
    sbd_sum, abs_dic_sum, frames : float, int, int
        Sums of per-frame SBD (frames where it is defined: ``sbd_frames``) and |DiC|, and frame
        count; these two are averaged over frames (the CVPPP convention).
    sbd_frames : int
        Frames where SBD is defined (at least one object in either image).
    voi_split_sum, voi_merge_sum : float
        ``N * H(pred | gt)`` and ``N * H(gt | pred)`` in bits (pixel-weighted pooling).
    n_pixels : int
        ``N``, the pixels VOI and ARAND count (all, or those with ``gt != 0``).
    rand_joint, rand_gt, rand_pred : int
        Same-segment pixel pairs (ordered, excluding self-pairs): in both, in gt, in pred.
    """

    n_gt: int = 0
    n_pred: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    aji_intersection: int = 0
    aji_union: int = 0
    seg_iou: float = 0.0
    det_ns: int = 0
    det_fn: int = 0
    det_fp: int = 0
    pq_tp: int = 0
    pq_fp: int = 0
    pq_fn: int = 0
    pq_iou: float = 0.0
    sbd_sum: float = 0.0
    sbd_frames: int = 0
    abs_dic_sum: int = 0
    frames: int = 0
    voi_split_sum: float = 0.0
    voi_merge_sum: float = 0.0
    n_pixels: int = 0
    rand_joint: int = 0
    rand_gt: int = 0
    rand_pred: int = 0

    def __add__(self, other: FrameStatistics) -> FrameStatistics:
        return FrameStatistics(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


def _f1_tp(r: np.ndarray, c: np.ndarray, inter: np.ndarray, union: np.ndarray, shape) -> int:
    cand = 2 * inter >= union  # IoU >= 0.5, exact in integers
    if not cand.any():
        return 0
    r, c = r[cand], c[cand]
    if np.unique(r).size == r.size and np.unique(c).size == c.size:
        return int(r.size)  # already one-to-one (no exact 0.5 ties): the usual case
    graph = sp.csr_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=shape)
    return int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())


def _aji(t: OverlapTable, r, c, inter, union) -> tuple[int, int]:
    if t.n_gt == 0:
        return 0, int(t.pred_sizes[1:].sum())
    # best result object per reference object: sort by row, IoU descending, label ascending
    order = np.lexsort((c, -(inter / union), r))
    first = np.unique(r[order], return_index=True)[1]
    best = order[first]
    matched_rows = r[best]
    used = np.zeros(t.pred_labels.size, dtype=bool)
    used[c[best]] = True
    unmatched_gt = np.ones(t.gt_labels.size, dtype=bool)
    unmatched_gt[0] = False
    unmatched_gt[matched_rows] = False
    c_sum = int(inter[best].sum())
    u_sum = int(union[best].sum() + t.gt_sizes[unmatched_gt].sum())
    u_sum += int(t.pred_sizes[1:][~used[1:]].sum())
    return c_sum, u_sum


def _best_dice(index: np.ndarray, dice: np.ndarray, n: int) -> float:
    """Mean over ``n`` objects of their best Dice (0 for objects overlapping nothing)."""
    if n == 0:
        return math.nan
    best = np.zeros(n + 1)
    np.maximum.at(best, index, dice)
    return float(best[1:].mean())


def _xlogx_sum(n: np.ndarray) -> float:
    n = n[n > 0].astype(np.float64)
    return float((n * np.log2(n)).sum())


def frame_statistics(
    gt=None, pred=None, *, table: OverlapTable | None = None, ignore_gt_background: bool = False
) -> FrameStatistics:
    """Additive evaluation counts of one frame pair.

    Parameters
    ----------
    gt, pred : (...) integer ndarray, optional
        Reference and result labels (not needed when ``table`` is given).
    table : OverlapTable, optional
        A table from :func:`overlap_table`, reused instead of recomputed.
    ignore_gt_background : bool
        VOI and ARAND ignore pixels with ``gt == 0`` (the EM convention); default counts them.

    Returns
    -------
    FrameStatistics
    """
    t = table if table is not None else overlap_table(gt, pred)
    r, c, inter, union = t.object_pairs()
    shape = (t.gt_labels.size, t.pred_labels.size)
    n_gt, n_pred = t.n_gt, t.n_pred
    s = FrameStatistics(n_gt=n_gt, n_pred=n_pred, frames=1, abs_dic_sum=abs(n_pred - n_gt))

    # F1
    s.tp = _f1_tp(r, c, inter, union, shape)
    s.fp, s.fn = n_pred - s.tp, n_gt - s.tp

    # AJI
    s.aji_intersection, s.aji_union = _aji(t, r, c, inter, union)

    # CTC SEG / DET: result j covers more than half of reference i (unique j per i)
    m = 2 * inter > t.gt_sizes[r]
    s.seg_iou = float((inter[m] / union[m]).sum())
    matched_pred = np.unique(c[m]).size
    s.det_fn = n_gt - int(m.sum())
    s.det_fp = n_pred - matched_pred
    s.det_ns = int(m.sum()) - matched_pred

    # PQ
    pq = 2 * inter > union
    s.pq_tp = int(pq.sum())
    s.pq_fp, s.pq_fn = n_pred - s.pq_tp, n_gt - s.pq_tp
    s.pq_iou = float((inter[pq] / union[pq]).sum())

    # SBD
    if n_gt and n_pred:
        dice = 2 * inter / (t.gt_sizes[r] + t.pred_sizes[c])
        sbd = min(_best_dice(r, dice, n_gt), _best_dice(c, dice, n_pred))
        s.sbd_sum, s.sbd_frames = sbd, 1
    elif n_gt or n_pred:
        s.sbd_frames = 1  # one side empty: SBD = 0

    # VOI / ARAND over the full table (background is a segment), optionally without gt == 0
    counts, rows, cols = t.counts, t.rows, t.cols
    if ignore_gt_background:
        keep = rows > 0
        counts, rows, cols = counts[keep], rows[keep], cols[keep]
    a = np.bincount(rows, counts, minlength=t.gt_labels.size).astype(np.int64)
    b = np.bincount(cols, counts, minlength=t.pred_labels.size).astype(np.int64)
    n = int(counts.sum())
    s.n_pixels = n
    # N H(pred|gt) = sum_i a_i log2 a_i - sum_ij n_ij log2 n_ij, and symmetrically
    s.voi_split_sum = max(_xlogx_sum(a) - _xlogx_sum(counts), 0.0)
    s.voi_merge_sum = max(_xlogx_sum(b) - _xlogx_sum(counts), 0.0)
    s.rand_joint = int((counts * (counts - 1)).sum())
    s.rand_gt = int((a * (a - 1)).sum())
    s.rand_pred = int((b * (b - 1)).sum())
    return s


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def aggregate_statistics(stats: FrameStatistics | Iterable[FrameStatistics]) -> dict[str, float]:
    """Scores from the counts of one frame or the sum over many.

    F1, PQ, SEG, DET pool their counts over all objects of all frames, AJI pools intersections
    and unions, SBD and |DiC| are means over frames, VOI is pixel-weighted (the conditional
    entropy of the frames taken together, each frame its own set of segments) and ARAND pools
    pixel-pair counts.

    Parameters
    ----------
    stats : FrameStatistics or iterable of them

    Returns
    -------
    dict
        Keys :data:`METRIC_NAMES`; ``nan`` where undefined.
    """
    if not isinstance(stats, FrameStatistics):
        stats = sum(stats, FrameStatistics())
    s = stats
    aogm_d0 = _W_FN * s.n_gt
    aogm_d = _W_NS * s.det_ns + _W_FN * s.det_fn + _W_FP * s.det_fp
    return {
        "F1": _ratio(2 * s.tp, 2 * s.tp + s.fp + s.fn),
        "AJI": _ratio(s.aji_intersection, s.aji_union),
        "SEG": _ratio(s.seg_iou, s.n_gt),
        "DET": 1.0 - min(aogm_d, aogm_d0) / aogm_d0 if aogm_d0 else math.nan,
        "PQ": _ratio(s.pq_iou, s.pq_tp + 0.5 * s.pq_fp + 0.5 * s.pq_fn),
        "SBD": _ratio(s.sbd_sum, s.sbd_frames),
        "DiC": _ratio(s.abs_dic_sum, s.frames),
        "VOI_split": _ratio(s.voi_split_sum, s.n_pixels),
        "VOI_merge": _ratio(s.voi_merge_sum, s.n_pixels),
        "ARAND": 1.0 - _ratio(2 * s.rand_joint, s.rand_gt + s.rand_pred),
    }


def _counts(s: FrameStatistics) -> dict[str, int]:
    return {
        "n_gt": s.n_gt,
        "n_pred": s.n_pred,
        "TP": s.tp,
        "FP": s.fp,
        "FN": s.fn,
        "det_NS": s.det_ns,
        "det_FN": s.det_fn,
        "det_FP": s.det_fp,
    }


def evaluate_frame(gt, pred, *, ignore_gt_background: bool = False) -> dict[str, float]:
    """All scores of one reference / result pair (a 2D frame or a 3D volume).

    Parameters
    ----------
    gt, pred : (...) integer ndarray
        Reference and result labels of the same shape, 0 = background.
    ignore_gt_background : bool
        See :func:`frame_statistics`.

    Returns
    -------
    dict
        Keys :data:`METRIC_NAMES` plus the counts ``n_gt, n_pred, TP, FP, FN, det_NS, det_FN,
        det_FP``.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> evaluate_frame(gt, gt)["F1"]
    1.0
    """
    s = frame_statistics(gt, pred, ignore_gt_background=ignore_gt_background)
    return {**aggregate_statistics(s), **_counts(s)}


def evaluate_sequence(
    gt,
    pred,
    frames: Sequence[int] | None = None,
    *,
    ignore_gt_background: bool = False,
) -> dict:
    """Score a result sequence (2D+t or 3D+t) against a reference, per frame and aggregated.

    Parameters
    ----------
    gt : (T, ...) integer array or mapping of frame index to (...) integer array
        Reference labels. A mapping is a sparse reference (e.g. CTC gold truth on some frames):
        only its frames are scored.
    pred : (T, ...) integer array or mapping of frame index to (...) integer array
        Result labels, frames matched to ``gt`` by index. Arrays may be lazy (zarr, dask):
        frames are read one at a time.
    frames : sequence of int, optional
        Frame indices to score; default every frame of ``gt``.
    ignore_gt_background : bool
        See :func:`frame_statistics`.

    Returns
    -------
    dict
        Aggregated scores under :data:`METRIC_NAMES` (see :func:`aggregate_statistics` for how
        frames are pooled), ``"counts"`` (summed object counts) and ``"frames"``: a list with one
        dict per scored frame (``"frame"``, its scores and counts).
    """
    if frames is None:
        frames = sorted(gt.keys()) if isinstance(gt, Mapping) else range(_n_frames(gt))
    frames = [int(f) for f in frames]
    from napari_hemd.core.validation import not_instance_labels

    for name, labels in (("gt", gt), ("pred", pred)):  # a raw image scores as noise, silently
        if isinstance(labels, (list, tuple)):
            labels = dict(enumerate(labels))
        # (other frame sources, such as the CLI's shifted readers, are checked where they open)
        why = (
            not_instance_labels(labels)
            if isinstance(labels, Mapping) or hasattr(labels, "shape")
            else None
        )
        if why:
            raise ValueError(
                f"{name} does not look like instance labels: {why}. Score labels (integer "
                "object ids), not the raw image"
            )
    if not isinstance(gt, Mapping) and not isinstance(pred, Mapping):
        if _n_frames(gt) != _n_frames(pred):
            raise ValueError(
                f"gt and pred must have the same number of frames; got {_n_frames(gt)} and "
                f"{_n_frames(pred)}"
            )
    total = FrameStatistics()
    per_frame = []
    for t in frames:
        g, p = _frame(gt, t, "gt"), _frame(pred, t, "pred")
        if g.shape != p.shape:
            raise ValueError(
                f"frame {t}: gt and pred must have the same shape; got gt {g.shape} and "
                f"pred {p.shape}"
            )
        s = frame_statistics(g, p, ignore_gt_background=ignore_gt_background)
        total = total + s
        per_frame.append({"frame": t, **aggregate_statistics(s), **_counts(s)})
        logger.debug("frame %d: %d reference, %d result objects", t, s.n_gt, s.n_pred)
    return {**aggregate_statistics(total), "counts": _counts(total), "frames": per_frame}


def _n_frames(stack) -> int:
    shape = getattr(stack, "shape", None)  # zarr arrays have no len()
    return int(shape[0]) if shape is not None else len(stack)


def _frame(stack, t: int, name: str) -> np.ndarray:
    if isinstance(stack, Mapping):
        if t not in stack:
            raise ValueError(f"{name}: no frame {t}; it has frames {sorted(stack)}")
        frame = np.asarray(stack[t])
    else:
        if not 0 <= t < _n_frames(stack):
            raise ValueError(f"{name}: frame {t} out of range; it has {_n_frames(stack)} frames")
        frame = np.asarray(stack[t])
    if frame.ndim < 2:  # a single (Y, X) image would be scored row by row
        raise ValueError(
            f"{name}: frames must be (Y, X) or (Z, Y, X) label images; frame {t} has shape "
            f"{frame.shape}. For one 2D image pass {name}[None] or use evaluate_frame"
        )
    return frame


# -- one metric at a time ---------------------------------------------------------------------


def _scores(gt, pred, table, **kw) -> dict[str, float]:
    return aggregate_statistics(frame_statistics(gt, pred, table=table, **kw))


def f1_score(gt=None, pred=None, *, table: OverlapTable | None = None) -> float:
    """F1 at IoU >= 0.5 (one-to-one matching) of one frame pair; see the module docstring."""
    return _scores(gt, pred, table)["F1"]


def aggregated_jaccard_index(gt=None, pred=None, *, table: OverlapTable | None = None) -> float:
    """Compute the aggregated Jaccard index (Kumar et al. 2017) of one frame pair."""
    return _scores(gt, pred, table)["AJI"]


def ctc_seg(gt=None, pred=None, *, table: OverlapTable | None = None) -> float:
    """Cell Tracking Challenge SEG of one frame pair."""
    return _scores(gt, pred, table)["SEG"]


def ctc_det(gt=None, pred=None, *, table: OverlapTable | None = None) -> float:
    """Cell Tracking Challenge DET (AOGM-D) of one frame pair."""
    return _scores(gt, pred, table)["DET"]


def panoptic_quality(gt=None, pred=None, *, table: OverlapTable | None = None) -> float:
    """Panoptic quality (matches at IoU > 0.5) of one frame pair."""
    return _scores(gt, pred, table)["PQ"]


def symmetric_best_dice(
    gt=None, pred=None, *, table: OverlapTable | None = None
) -> tuple[float, int]:
    """Symmetric best Dice and |DiC| of one frame pair (CVPPP)."""
    sc = _scores(gt, pred, table)
    return sc["SBD"], int(sc["DiC"])


def variation_of_information(
    gt=None, pred=None, *, table: OverlapTable | None = None, ignore_gt_background: bool = False
) -> tuple[float, float]:
    """``(split, merge) = (H(pred | gt), H(gt | pred))`` in bits of one frame pair."""
    sc = _scores(gt, pred, table, ignore_gt_background=ignore_gt_background)
    return sc["VOI_split"], sc["VOI_merge"]


def adapted_rand_error(
    gt=None, pred=None, *, table: OverlapTable | None = None, ignore_gt_background: bool = False
) -> float:
    """Adapted Rand error (1 - pixel-pair F-score) of one frame pair."""
    return _scores(gt, pred, table, ignore_gt_background=ignore_gt_background)["ARAND"]
