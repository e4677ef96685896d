"""Whole-cell masks from instances found on a U-Net's foreground map.

A U-Net's ``foreground`` class stops short of what an annotator draws: with ``"interior"`` targets
it is the cell minus its outermost pixels, with ``"cell"`` targets the cell minus the pixels where
it touches another cell. Either way the missing pixels are the ``boundary`` class, so growing every
instance by a few pixels into pixels that are *not* background restores the whole cell without
letting it bleed into the background. What the growth cannot reach, a hole that one instance
encloses (where a network's map sinks in a cell's middle), is filled with that instance: a cell
an annotator draws has no holes.

:func:`clear_border_objects` removes the cells that the image's edge cuts, for measurements that
need whole cells (areas, shapes, intensities) and to match annotations that leave them out.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "GROW_BY_TARGETS",
    "clear_border_objects",
    "fill_instance_holes",
    "grow_to_cells",
    "remove_border_cells",
]

#: Pixels an instance is grown by, per U-Net target kind: the width of the boundary class on one
#: cell (the outer ring for "interior", 2 px plus one of slack; for "cell" the contact band, which
#: reaches 2 px into each cell, ``napari_hemd.models.training.contact_pixels``).
GROW_BY_TARGETS = {"interior": 3, "cell": 2}


def grow_to_cells(
    labels: np.ndarray,
    background: np.ndarray,
    grow: int,
    *,
    threshold: float = 0.5,
    frame_axis: bool = False,
) -> np.ndarray:
    """Grow instances into pixels whose background probability is low, then fill their holes.

    Each instance takes the pixels within ``grow`` pixels of it whose background probability is
    below ``threshold``, then the background it encloses (:func:`fill_instance_holes`).

    Parameters
    ----------
    labels : (Y, X) or (Z, Y, X) int ndarray, or (T, ...) with ``frame_axis``
        Instances (0 = background).
    background : ndarray of the same shape
        Background probability in ``[0, 1]``.
    grow : int
        Largest growth in pixels (Euclidean, ``skimage.segmentation.expand_labels``); 0: unchanged
        (no growth, no filling).
    threshold : float
        Pixels with ``background < threshold`` may be taken (0.5: the classes' own decision; a
        model whose background class reaches into the cells records a higher one,
        ``segment_defaults["grow_threshold"]``).
    frame_axis : bool
        Axis 0 holds independent frames (grown one at a time, never across frames).

    Returns
    -------
    ndarray of ``labels.dtype``
        Every original instance pixel is kept; new pixels go to the nearest instance, and
        background that one instance encloses (a hole: no path of background pixels, 4-connected
        in 2D, 6 in 3D, leads out of its bounding box) goes to it.
    """
    from skimage.segmentation import expand_labels

    labels = np.asarray(labels)
    background = np.asarray(background)
    if labels.shape != background.shape:
        raise ValueError(
            f"background must have the shape of labels {labels.shape}; got {background.shape}"
        )
    if grow < 0:
        raise ValueError(f"grow must be >= 0; got {grow}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    if grow == 0:
        return labels
    if frame_axis:
        out = labels.copy()
        for t in range(len(labels)):
            out[t] = grow_to_cells(labels[t], background[t], grow, threshold=threshold)
        return out
    grown = expand_labels(labels, grow)
    keep = (labels > 0) | (background < threshold)
    return fill_instance_holes(np.where(keep, grown, 0).astype(labels.dtype, copy=False))


def fill_instance_holes(labels: np.ndarray) -> np.ndarray:
    """Give every hole of an instance (background it encloses) to that instance, in place.

    Parameters
    ----------
    labels : (Y, X) or (Z, Y, X) int ndarray
        Instances (0 = background); one frame or one volume.

    Returns
    -------
    ndarray
        ``labels`` itself, its holes filled. Pixels of another instance inside a hole stay its.
    """
    from scipy import ndimage as ndi

    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        crop = labels[box]
        hole = ndi.binary_fill_holes(crop == i) & (crop == 0)
        if hole.any():
            crop[hole] = i
    return labels


def clear_border_objects(labels: np.ndarray, *, frame_axis: bool = False) -> np.ndarray:
    """Remove the instances that touch the edge of the image (the cells its border cuts).

    A cell touching the edge goes, its neighbour touching that cell stays. Unlike
    :func:`skimage.segmentation.clear_border`, which labels connected pieces first and removes
    those at the edge, this removes whole instances by label (an instance in two pieces, one at
    the edge, goes as a whole) and needs no labelling pass (1.4x faster on 8 HeLa frames).

    Parameters
    ----------
    labels : (Y, X) or (Z, Y, X) int ndarray, or (T, ...) with ``frame_axis``
        Instances (0 = background). In 3D an instance that touches any face of the volume is
        removed.
    frame_axis : bool
        Axis 0 holds frames, each cleared on its own: an instance is removed from the frames in
        which it touches the frame's edge and kept in the others.

    Returns
    -------
    ndarray
        A new array of ``labels.dtype``.

    Examples
    --------
    >>> lab = np.zeros((5, 5), int)
    >>> lab[0, 1], lab[2, 2] = 1, 2
    >>> clear_border_objects(lab)[[0, 2], [1, 2]]
    array([0, 2])
    """
    labels = np.asarray(labels)
    need = 3 if frame_axis else 2
    if labels.ndim < need or labels.ndim > need + 1:
        what = "(T, Y, X) or (T, Z, Y, X)" if frame_axis else "(Y, X) or (Z, Y, X)"
        raise ValueError(f"labels must be {what}; got shape {labels.shape}")
    if frame_axis:
        out = np.empty_like(labels)
        for t in range(len(labels)):
            out[t] = clear_border_objects(labels[t])
        return out
    faces = []
    for axis in range(labels.ndim):
        for end in (0, -1):
            faces.append(np.unique(np.take(labels, end, axis=axis)))
    cut = np.unique(np.concatenate(faces))
    cut = cut[cut != 0]
    if not cut.size:
        return labels.copy()
    return np.where(np.isin(labels, cut), 0, labels).astype(labels.dtype, copy=False)


def remove_border_cells(
    labels: np.ndarray, tracks: np.ndarray | None = None, *, frame_axis: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`clear_border_objects`, with linked ``tracks`` made valid again.

    Where a cell left a gap in its track, the track is split
    (:func:`napari_hemd.core.linking.tracks_after_removal`).

    Returns
    -------
    labels : ndarray
    tracks : (K, 4) int64 ndarray or None
        ``None`` when ``tracks`` is.
    """
    labels = clear_border_objects(labels, frame_axis=frame_axis)
    if tracks is not None:
        from napari_hemd.core.linking import tracks_after_removal

        labels, tracks = tracks_after_removal(labels, tracks)
    return labels, tracks
