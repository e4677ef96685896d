"""Baseline post-processing methods of the H-EMD paper's comparison, one frame at a time.

All take the same foreground probability map as H-EMD, so comparisons run on identical inputs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_hemd.core.forest import CandidateForest, build_candidate_forest

__all__ = [
    "maxvalue_labels",
    "nms_labels",
    "otsu_labels",
    "threshold_labels",
    "watershed_labels",
]


def _label(mask: np.ndarray, connectivity: int, min_size: int) -> np.ndarray:
    lab, n = ndi.label(mask, ndi.generate_binary_structure(mask.ndim, connectivity))
    if min_size > 0 and n:
        sizes = np.bincount(lab.ravel())
        small = sizes < min_size
        small[0] = False
        if small.any():
            lab[small[lab]] = 0
            lab = _relabel(lab)
    return lab.astype(np.uint32)


def _relabel(lab: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(lab, return_inverse=True)
    out = inv.reshape(lab.shape)
    return out if uniq[0] == 0 else out + 1


def threshold_labels(
    prob: np.ndarray, tau: float = 0.5, connectivity: int = 1, min_size: int = 0
) -> np.ndarray:
    """Connected components of ``prob >= tau`` (the paper's "0.5-Th")."""
    return _label(prob >= tau, connectivity, min_size)


def otsu_labels(prob: np.ndarray, connectivity: int = 1, min_size: int = 0) -> np.ndarray:
    """Connected components above Otsu's threshold of the frame (empty for a constant frame)."""
    from skimage.filters import threshold_otsu

    if float(prob.min()) == float(prob.max()):
        return np.zeros(prob.shape, np.uint32)
    return _label(prob > threshold_otsu(prob), connectivity, min_size)


def watershed_labels(
    prob: np.ndarray,
    tau: float = 0.5,
    connectivity: int = 1,
    min_size: int = 0,
    sigma: float = 1.0,
    min_distance: int = 5,
) -> np.ndarray:
    """Marker-controlled watershed of the smoothed distance map of ``prob >= tau``, holes filled.

    Markers are the local maxima of the Gaussian-smoothed (``sigma`` pixels) Euclidean distance
    transform, at least ``min_distance`` pixels apart, one or more per connected component.
    Holes of the mask (pixels below ``tau`` that no path of them joins to the frame's edge) are
    filled first: a distance transform assumes solid objects, and a dip inside a cell (a map
    that sinks in a nucleus' middle) would otherwise ring it with maxima and cut it into pieces.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    struct = ndi.generate_binary_structure(prob.ndim, connectivity)
    # The background's connectivity is the dual of the objects' (4 <-> 8 in 2D): a hole is a
    # region of background that touches the outside by no path of that connectivity.
    dual = ndi.generate_binary_structure(prob.ndim, prob.ndim if connectivity == 1 else 1)
    mask = ndi.binary_fill_holes(prob >= tau, structure=dual)
    if not mask.any():
        return np.zeros(prob.shape, np.uint32)
    comps, _ = ndi.label(mask, struct)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask), sigma)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=comps, exclude_border=False)
    markers = np.zeros(prob.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # Components without a peak (tiny ones) keep one marker at their maximum.
    missing = np.setdiff1d(np.arange(1, comps.max() + 1), comps[tuple(peaks.T)])
    if missing.size:
        pos = ndi.maximum_position(dist, comps, missing)
        markers[tuple(np.array(pos).T)] = np.arange(len(peaks) + 1, len(peaks) + 1 + missing.size)
    lab = watershed(-dist, markers, mask=mask, connectivity=struct)
    if min_size > 0:
        sizes = np.bincount(lab.ravel())
        small = sizes < min_size
        small[0] = False
        lab[small[lab]] = 0
    return _relabel(lab).astype(np.uint32)


def maxvalue_labels(
    prob: np.ndarray,
    boundary: np.ndarray | None,
    background: np.ndarray | None = None,
    connectivity: int = 1,
    min_size: int = 0,
) -> np.ndarray:
    """Connected components of pixels whose most likely class is foreground ("MaxValue").

    ``background`` defaults to ``1 - prob - boundary`` (the three classes sum to one).
    """
    if boundary is None:
        raise ValueError(
            "method 'maxvalue' needs the boundary probability (argument boundary=, CLI "
            "--boundary); got only the foreground map"
        )
    if background is None:
        background = np.clip(1.0 - prob - boundary, 0.0, 1.0)
    mask = (prob >= boundary) & (prob >= background) & (prob > 0)
    return _label(mask, connectivity, min_size)


def nms_labels(
    prob: np.ndarray,
    tau: float = 0.5,
    connectivity: int = 1,
    min_size: int = 0,
    forest: CandidateForest | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression over the candidate forest of the frame.

    Candidates are taken in decreasing *objectness*; a taken candidate suppresses every candidate
    it overlaps (its ancestors and descendants), so the result is exclusive. The paper leaves the
    objectness score open; ours is the candidate's *volume* in the component tree: its area times
    the range of thresholds over which it stays the same region (from its level up to where it
    splits, or to its peak). Mean probability alone picks the tiny highest leaves, and mean times
    stability the small stable cores; area times stability scored best on the bundled synthetic
    video and on maps derived from Fluo-N2DH-SIM+ masks (``docs/algorithm.md``).
    """
    if forest is None:
        forest = build_candidate_forest(prob, tau=tau, connectivity=connectivity, min_size=min_size)
    n = forest.n_nodes
    if n == 0:
        return np.zeros(prob.shape, np.uint32)
    level = forest.level.astype(np.float64)
    # Upper end of each node's stability range: the lowest level of its children, or its peak.
    top = np.full(n, np.nan)
    has_p = forest.parent >= 0
    np.fmin.at(top, forest.parent[has_p], level[has_p])
    peak = _subtree_max(forest, level)
    top = np.where(np.isnan(top), peak, top)
    score = forest.area * (top - level + 0.01)
    order = np.lexsort((-forest.area, -score))
    taken = np.zeros(n, bool)
    blocked = np.zeros(n, bool)
    for i in order:
        if blocked[i]:
            continue
        taken[i] = True
        blocked[i : forest.end[i]] = True
        p = forest.parent[i]
        while p >= 0 and not blocked[p]:
            blocked[p] = True
            p = forest.parent[p]
    nodes = np.flatnonzero(taken)
    return forest.labels_of(nodes)


def _subtree_max(forest: CandidateForest, values: np.ndarray) -> np.ndarray:
    out = values.copy()
    for i in range(forest.n_nodes - 1, -1, -1):
        p = forest.parent[i]
        if p >= 0 and out[i] > out[p]:
            out[p] = out[i]
    return out
