"""Affinities -> instances: Mutex watershed, then merging of too-small instances.

The Mutex watershed (Wolf et al. 2020) runs in ``python-elf`` (compiled core ``bioimage-cpp``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

__all__ = ["merge_small_instances", "mutex_watershed_labels"]

logger = logging.getLogger(__name__)


#: Rounding a network's cosine affinities may carry past [0, 1] (clipped, not refused).
_UNIT_SLACK = 1e-3


def _check_unit_range(arr: np.ndarray, name: str) -> None:
    """Refuse NaN / inf and values outside [0, 1]: they gave other objects, silently."""
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must be finite probabilities in [0, 1]; got {int(bad.sum())} NaN/inf "
            f"values (first at index {first})"
        )
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if lo < -_UNIT_SLACK or hi > 1 + _UNIT_SLACK:
        raise ValueError(
            f"{name} must be probabilities in [0, 1]; got values from {lo:g} to {hi:g}"
        )


def mutex_watershed_labels(
    affinities: np.ndarray,
    offsets: Sequence[Sequence[int]],
    *,
    foreground: np.ndarray | None = None,
    threshold: float = 0.5,
    min_size: int = 30,
    strides: Sequence[int] | None = None,
    bias: float = 0.0,
) -> np.ndarray:
    """Instance labels from affinities with the Mutex watershed.

    Parameters
    ----------
    affinities : (N, Y, X) float ndarray
        ``affinities[c, y, x]`` is the probability (cosine, clipped to [0, 1]) that pixel ``(y, x)``
        and ``(y, x) + offsets[c]`` belong to the same segment.
    offsets : sequence of N (dy, dx)
        Must start with the unit offsets (one per axis): these are the attractive edges, all others
        are repulsive (mutex) edges.
    foreground : (Y, X) float ndarray, optional
        Foreground probability; pixels below ``threshold`` become background (label 0).
    threshold : float
        Foreground threshold.
    min_size : int
        Instances smaller than this (pixels) are merged into their best-connected neighbour, or
        removed when they touch none (see :func:`merge_small_instances`).
    strides : sequence of int, optional
        Sub-sampling of the repulsive edges (``None``: all edges).
    bias : float
        Repulsive (long-range) edges weigh ``1 - affinity + bias`` (capped at 1): a network whose
        affinities across touching nuclei stay high separates them only with a bias. A model file
        records the bias chosen on its training images (``metadata["mutex_bias"]``,
        :func:`napari_hemd.models.calibrate_mutex_bias`); 0: the Mutex watershed as published.

    Returns
    -------
    (Y, X) int32 ndarray
        Labels ``1..K``, 0 = background.
    """
    try:
        from elf.segmentation.mutex_watershed import mutex_watershed
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "the Mutex watershed needs python-elf (pip install python-elf)"
        ) from exc
    affs = np.asarray(affinities, dtype=np.float32)
    offsets = [list(map(int, o)) for o in offsets]
    if affs.ndim != 3 or affs.shape[0] != len(offsets):
        raise ValueError(
            f"affinities must have shape (N, Y, X) with N = len(offsets) = {len(offsets)}; "
            f"got {affs.shape}"
        )
    ndim = affs.ndim - 1
    units = sorted(tuple(sorted(map(abs, o))) for o in offsets[:ndim])
    if units != [(0, 1)] * ndim:
        raise ValueError(
            f"offsets must start with the {ndim} unit offsets (attractive edges); "
            f"got {offsets[:ndim]}"
        )
    _check_unit_range(affs, "affinities")
    if not 0.0 <= threshold <= 1.0:  # nan too: every pixel background, no error
        raise ValueError(f"threshold must be a foreground probability in [0, 1]; got {threshold}")
    if not min_size >= 0:
        raise ValueError(f"min_size must be >= 0 pixels; got {min_size}")
    # elf expects boundary-like values (1 = cut) and flips the attractive channels itself.
    if not 0.0 <= bias < 1.0:
        raise ValueError(f"bias must be in [0, 1); got {bias}")
    boundary = 1.0 - np.clip(affs, 0.0, 1.0)
    if bias:
        boundary[ndim:] = np.minimum(boundary[ndim:] + bias, 1.0)
    mask = None
    if foreground is not None:
        fg = np.asarray(foreground)
        if fg.shape != affs.shape[1:]:
            raise ValueError(
                f"foreground must have shape {affs.shape[1:]} like the affinities; got {fg.shape}"
            )
        _check_unit_range(fg, "foreground")
        mask = fg >= threshold
    seg = mutex_watershed(
        np.ascontiguousarray(boundary),
        offsets,
        strides=list(strides) if strides is not None else [1] * ndim,
        randomize_strides=False,
        mask=mask,
    ).astype(np.int64)
    if mask is not None:
        seg[~mask] = 0
    labels = merge_small_instances(seg, min_size, affinities=affs, offsets=offsets)
    return labels


def merge_small_instances(
    labels: np.ndarray,
    min_size: int,
    *,
    affinities: np.ndarray | None = None,
    offsets: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Merge instances smaller than ``min_size`` into their best-connected neighbour.

    The best neighbour is the one with the largest summed short-range affinity across the shared
    border (with ``affinities``), else the one sharing the longest border. An instance touching no
    other instance is removed. Smallest instances are handled first; labels are renumbered
    ``1..K`` at the end.

    Parameters
    ----------
    labels : (Y, X) int ndarray
        0 = background.
    min_size : int
        Size threshold in pixels.
    affinities : (N, Y, X) ndarray, optional
        With ``offsets``; channels with a unit offset weigh the contacts.

    Returns
    -------
    (Y, X) int32 ndarray
    """
    from skimage.segmentation import relabel_sequential

    labels = np.asarray(labels)
    lab, _, _ = relabel_sequential(labels.astype(np.int64))
    n = int(lab.max())
    if n == 0 or min_size <= 1:
        return lab.astype(np.int32)
    # Contacts between 4-neighbours with different non-zero labels, weighted by affinity.
    pairs, weights = [], []
    for axis in range(lab.ndim):
        a = np.moveaxis(lab, axis, 0)
        u, v = a[1:].ravel(), a[:-1].ravel()
        w = np.ones(u.shape, dtype=np.float64)
        if affinities is not None and offsets is not None:
            for c, off in enumerate(offsets):
                if abs(off[axis]) == 1 and sum(map(abs, off)) == 1:
                    aff = np.moveaxis(np.asarray(affinities[c]), axis, 0)
                    # channel c at pixel p relates p and p - 1 along axis (offset -1)
                    w = np.clip(aff[1:].ravel(), 0, 1) + 1e-3 if off[axis] == -1 else w
        keep = (u != v) & (u > 0) & (v > 0)
        pairs.append(np.stack([u[keep], v[keep]], 1))
        weights.append(w[keep])
    pairs = np.concatenate(pairs)
    weights = np.concatenate(weights)
    sizes = np.bincount(lab.ravel(), minlength=n + 1).astype(np.int64)
    parent = np.arange(n + 1)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    contact: dict[tuple[int, int], float] = {}
    for (u, v), w in zip(pairs.tolist(), weights.tolist(), strict=True):
        key = (u, v) if u < v else (v, u)
        contact[key] = contact.get(key, 0.0) + w
    neighbours: dict[int, dict[int, float]] = {}
    for (u, v), w in contact.items():
        neighbours.setdefault(u, {})[v] = w
        neighbours.setdefault(v, {})[u] = w
    removed = np.zeros(n + 1, dtype=bool)
    for s in np.argsort(sizes[1:], kind="stable") + 1:
        r = find(int(s))
        if sizes[r] >= min_size:
            continue
        best, best_w = None, 0.0
        totals: dict[int, float] = {}
        for nb, w in neighbours.get(r, {}).items():
            rn = find(nb)
            if rn != r and not removed[rn]:
                totals[rn] = totals.get(rn, 0.0) + w
        for rn, w in totals.items():
            if w > best_w:
                best, best_w = rn, w
        if best is None:
            removed[r] = True
            continue
        parent[r] = best
        sizes[best] += sizes[r]
        neighbours.setdefault(best, {})
        for nb, w in neighbours.get(r, {}).items():
            neighbours[best][nb] = neighbours[best].get(nb, 0.0) + w
    roots = np.array([find(i) for i in range(n + 1)])
    roots[0] = 0
    roots[removed[roots]] = 0
    out, _, _ = relabel_sequential(roots[lab])
    logger.debug("merge_small_instances: %d -> %d instances", n, int(out.max()))
    return out.astype(np.int32)
