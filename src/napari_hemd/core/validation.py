"""Input checks shared by the public functions.

Errors name the argument, what was expected and what was received.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "binary_mask",
    "channels_last",
    "check_label_ids",
    "check_probability",
    "not_a_probability_map",
    "not_instance_labels",
    "refuse_raw_image",
    "resolve_connectivity",
    "to_probability",
]


def channels_last(shape: tuple[int, ...]) -> bool:
    """Whether an input's last axis holds channels: ``(..., Y, X, C)`` with C at most 4.

    What ilastik, Cellpose or a multi-class network export (background / foreground /
    boundary per pixel) and ``np.stack(maps, -1)`` give. A 3D or 4D array whose last axis is 4
    or shorter while the two before it are 16 or longer: no movie or stack is 4 pixels wide.
    """
    return len(shape) in (3, 4) and shape[-1] <= 4 and min(shape[-3:-1]) >= 16


def to_probability(arr: np.ndarray, *, name: str = "prob") -> np.ndarray:
    """Convert an array to float probabilities; uint8/uint16 are rescaled to [0, 1].

    Floats are kept as they are, except float16, which becomes float32.

    Raises
    ------
    TypeError
        For other dtypes (bool, signed integers, complex, objects).
    """
    arr = np.asarray(arr)
    if not arr.dtype.isnative:  # big-endian data (zarr v2 ">f4", .npy) are legitimate
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535)
    if arr.dtype == np.float16:  # the compiled kernels take float32/float64
        return arr.astype(np.float32)
    if arr.dtype.kind == "f":
        return arr
    raise TypeError(
        f"{name} must hold probabilities as floats in [0, 1] (or uint8/uint16, rescaled); "
        f"got dtype {arr.dtype}"
    )


def _map_sample(arr, frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """A few frames of a map (first, middle, last) and every 7th of their values, as floats."""
    n = arr.shape[0] if len(arr.shape) > 2 else 1
    idx = sorted({0, n // 2, n - 1})[:frames] if len(arr.shape) > 2 else [None]
    planes = [np.asarray(arr if i is None else arr[i]) for i in idx]
    return planes, np.concatenate([f.ravel()[::7] for f in planes]).astype(np.float64)


def not_a_probability_map(arr, *, frames: int = 3) -> str | None:
    """Why an integer array looks like a raw image rather than a probability map, or ``None``.

    A probability map stored as uint8/uint16 spans (nearly) the whole range: background near 0,
    cell interiors near the maximum. A raw microscopy image stored in those types typically
    occupies a narrow band (a uint16 fluorescence frame at 86-171 of 0-65535); thresholds of it,
    rescaled to [0, 1], all lie near 0 and every frame becomes one object or none. Floats are not
    judged here (out-of-range values are refused by :func:`check_probability`).

    Parameters
    ----------
    arr : (T, ...) or (Y, X) array-like
        Read a few frames only (first, middle, last).
    """
    dtype = np.dtype(arr.dtype)
    if dtype not in (np.uint8, np.uint16) or 0 in tuple(arr.shape):
        return None
    planes, sample = _map_sample(arr, frames)
    top = float(np.iinfo(dtype).max)
    peak = max(int(f.max()) for f in planes)
    if peak == 0:  # an empty field of view's map: no cells, as its float twin says (audit 24)
        return None
    if peak >= 0.5 * top and np.mean(sample == 0) > 0.5:
        # a sparse field: background exactly 0, a few confident objects (under the 99.9th
        # percentile). A raw frame whose dark background was clipped to 0 (an 8-bit export)
        # is that too, but its signal is mostly dim: of a map's non-zero pixels most are
        # confident (77 % at half the range or more on a real sparse map; 0.1 % of a clipped
        # raw HeLa or DIC frame, review 30)
        lit = np.concatenate([f[f > 0].ravel() for f in planes])
        if np.mean(lit >= 0.5 * top) >= 0.25:
            return None
    lo, hi = np.percentile(sample, [0.1, 99.9])
    if hi - lo < 0.25 * top or hi < 0.5 * top:
        return (
            f"{dtype} values {lo:.0f}-{hi:.0f} use only {100 * (hi - lo) / top:.1f} % of the "
            f"0-{top:.0f} range of a probability map"
        )
    # A probability map is mostly confident (near 0 or near the top); a raw image mostly grey.
    middle = float(np.mean((sample > 0.1 * top) & (sample < 0.9 * top)))
    if middle > 0.5:
        return (
            f"{100 * middle:.0f} % of its {dtype} values lie between 10 % and 90 % of the range, "
            "where a probability map has few"
        )
    return None


def faint_float_map(arr, *, frames: int = 3) -> str | None:
    """Why a float map may be a raw image rescaled to [0, 1] (its cells never confident), or None.

    Floats in [0, 1] are taken as probabilities (:func:`not_a_probability_map` judges integers
    only). A raw fluorescence frame rescaled so (a Fiji 32-bit export) sits mostly near 0, its
    nuclei at 0.1-0.4: below any threshold, so it gave an almost empty result without a word
    (audit 35: 12 of 196,608 pixels). A map is mostly near 0 or confident, even a sparse one;
    this says so where it is not. A note, not a refusal: a real map may be faint or soft.
    """
    dtype = np.dtype(arr.dtype)
    if dtype.kind != "f" or 0 in tuple(arr.shape):
        return None
    _, sample = _map_sample(arr, frames)
    sample = sample[np.isfinite(sample)]
    lit = sample[sample > 0.05]
    if not lit.size:
        return None
    # measured on the shared data: a model's maps hold 3-6 % of grey values (0.05-0.5), 51-77 %
    # of their lit pixels at 0.5 or more, and reach 0.98 at the 99.9th percentile; raw frames
    # scaled to 0-1, 29-99 % grey (HeLa, SIM+, PSC, DIC), or few confident pixels (HeLa: 13 %,
    # 0.63)
    grey = float(np.mean((sample > 0.05) & (sample < 0.5)))
    top = float(np.percentile(sample, 99.9))
    if grey > 0.4:
        return f"{100 * grey:.0f} % of its values lie between 0.05 and 0.5, where a map has few"
    if np.mean(lit >= 0.5) < 0.25 and top < 0.7:
        return f"99.9 % of its values lie below {top:.2f}, where a map's cells are near 1"
    return None


def refuse_raw_image(arr, *, name: str = "prob") -> None:
    """Raise where ``arr`` looks like a raw image, not probabilities (:func:`not_a_probability_map`).

    Thresholds of a raw uint16 movie rescaled to [0, 1] all lie near 0: every frame became one
    object or none, without a word. Views that say their source was checked already
    (``probability_checked``: a window of a checked movie) are not read again.
    """
    if getattr(arr, "probability_checked", False):
        return
    why = not_a_probability_map(arr)
    if why:
        raise ValueError(
            f"{name} does not look like a probability map ({why}). For a raw image use "
            "segment_image(image, model=...), which predicts the probabilities first; a real "
            "probability map can be given as floats in [0, 1]"
        )


#: :func:`not_instance_labels`: an image whose values each fall apart into at least this many
#: pieces on average ...
_PIECES_PER_VALUE = 4.0
#: ... of fewer pixels than this on average, is an intensity image. Measured on the shared data:
#: raw frames (fluorescence, DIC, phase contrast, EM, uint8/uint16) have 22-3000 pieces per value
#: of 1-6 pixels; label images (CTC ST/GT/TRA, BBBC039, volumes, EM fragments) 1-2 pieces of 26
#: pixels and more.
_PIECE_PIXELS = 16.0


def _label_sample(frame: np.ndarray, side: int = 1024) -> np.ndarray:
    """One 2D plane of ``frame`` (the middle one of a volume), its centre cropped to ``side``.

    A lazy array (zarr, dask) is indexed before it is read: only that window is (a whole
    12000 x 12000 plane was read to look at its centre; review 29b).
    """
    shape = tuple(frame.shape)
    if len(shape) < 2:
        return np.asarray(frame).reshape(1, -1)
    lead = tuple(n // 2 for n in shape[:-2])  # the middle plane of a volume
    y0, x0 = (max(0, (n - side) // 2) for n in shape[-2:])
    return np.asarray(frame[(*lead, slice(y0, y0 + side), slice(x0, x0 + side))])


class _FrameOf:
    """Frame ``t`` of a lazy stack, indexed together with the window :func:`_label_sample` wants."""

    def __init__(self, arr, t: int) -> None:
        self.arr, self.t, self.shape = arr, int(t), tuple(arr.shape)[1:]

    def __getitem__(self, key):
        return self.arr[(self.t, *(key if isinstance(key, tuple) else (key,)))]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.arr[self.t], dtype=dtype)


def not_instance_labels(arr, *, frames: int = 3) -> str | None:
    """Why an array looks like an intensity image rather than instance labels, or ``None``.

    Instance labels give every object one value over one connected region; in a raw image each
    grey value is scattered over the frame in many tiny pieces (noise makes neighbours differ).
    So the test counts the 4-connected regions of equal non-zero value
    (``skimage.measure.label``) per distinct value, and their mean size, on a few frames (first,
    middle, last; of a volume its middle plane; at most a 1024 x 1024 centre). Floats that are
    not whole numbers are intensities or probabilities outright. Cheap: a few frames, O(pixels).

    Parameters
    ----------
    arr : (T, ...) array-like, (Y, X) array, or mapping (dict) of frame index to array
        Labels as read (a lazy stack is read a few frames only; a dict: CTC frames).
    frames : int
        How many frames to look at.

    Returns
    -------
    str or None
        What was found (values, pieces per value, pixels per piece), for an error message.
    """
    from skimage.measure import label

    if isinstance(arr, Mapping):
        keys = sorted(arr)
        if not keys:
            return None
        picks = [arr[keys[i]] for i in sorted({0, len(keys) // 2, len(keys) - 1})[:frames]]
    elif len(arr.shape) <= 2:
        picks = [arr]
    else:  # each frame's window read alone (a zarr frame is read whole when indexed by t)
        n = arr.shape[0]
        picks = [_FrameOf(arr, i) for i in sorted({0, n // 2, n - 1})[:frames]] if n else []
    pieces = values = pixels = 0
    for frame in picks:
        plane = _label_sample(frame)
        if plane.dtype.kind == "f":
            finite = plane[np.isfinite(plane)]
            fractional = finite[finite != np.round(finite)]
            if fractional.size:
                return (
                    f"it holds {plane.dtype} values that are not whole numbers (e.g. "
                    f"{float(fractional[0]):.4g}), as an intensity image or a probability map "
                    "does; labels are integer object ids"
                )
            plane = np.nan_to_num(plane).astype(np.int64)
        elif plane.dtype.kind not in "iub":
            return None  # other dtypes are refused by the readers' own checks
        nonzero = plane[plane != 0]
        if not nonzero.size:
            continue
        values += int(np.unique(nonzero).size)
        pieces += int(label(plane, background=0, connectivity=1).max())
        pixels += int(nonzero.size)
    if not values:
        return None
    per_value, per_piece = pieces / values, pixels / max(pieces, 1)
    if per_value >= _PIECES_PER_VALUE and per_piece < _PIECE_PIXELS:
        return (
            f"each of its values falls apart into {per_value:.0f} separate pieces of "
            f"{per_piece:.1f} pixels on average ({values} values in the {len(picks)} frame(s) "
            "looked at), as the grey values of an intensity image do; in instance labels each "
            "object is one connected region"
        )
    return None


#: :func:`binary_mask`: separate regions per value from which a 1- or 2-valued image is a mask.
_MASK_REGIONS = 5


def binary_mask(arr, *, frames: int = 3) -> str | None:
    """Why an integer image looks like a binary (foreground) mask, not instance labels, or None.

    A mask gives all its objects one value (0/1, 0/255): one "object" of many separate regions,
    which training takes for one cell and a table measures as one. Found where a looked-at plane
    (as :func:`not_instance_labels` picks them) has one or two values, each of at least
    :data:`_MASK_REGIONS` separate (4-connected) regions on average.
    """
    from skimage.measure import label

    if isinstance(arr, Mapping):
        keys = sorted(arr)
        picks = (
            [arr[keys[i]] for i in sorted({0, len(keys) // 2, len(keys) - 1})[:frames]]
            if keys
            else []
        )
    elif len(arr.shape) <= 2:
        picks = [arr]
    else:
        n = arr.shape[0]
        picks = [arr[i] for i in sorted({0, n // 2, n - 1})[:frames]] if n else []
    for frame in picks:
        plane = _label_sample(frame)
        if plane.dtype.kind not in "iub":
            continue
        ids = np.unique(plane[plane != 0])
        if not 0 < ids.size <= 2:
            continue
        regions = int(label(plane, background=0, connectivity=1).max())
        if regions >= _MASK_REGIONS * ids.size:
            values = " and ".join(str(int(i)) for i in ids)
            return (
                f"its objects share {ids.size} value(s) ({values}) over {regions} separate "
                "regions: a binary mask, not instance labels, in which each object has its own "
                "id (skimage.measure.label(mask) numbers the regions)"
            )
    return None


def check_probability(
    prob: np.ndarray, *, name: str = "prob", ndims: Sequence[int] = (2, 3), values: bool = True
) -> np.ndarray:
    """Validate a probability map and return it as a float array.

    Parameters
    ----------
    prob : ndarray
        Probabilities in ``[0, 1]`` (floats) or uint8/uint16 (rescaled).
    name : str
        Argument name used in error messages.
    ndims : sequence of int
        Accepted numbers of dimensions.
    values : bool
        Whether to check that every value is finite and in ``[0, 1]`` (callers that scan the
        values anyway pass ``False`` and call again with ``True`` only to raise).
    """
    arr = to_probability(prob, name=name)
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}D" for d in ndims)
        raise ValueError(f"{name} must be {want}; got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}")
    if values and arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(
                f"{name} must be finite; got {int(bad.sum())} NaN/inf values "
                f"(first at index {tuple(int(i) for i in np.argwhere(bad)[0])})"
            )
        lo, hi = float(arr.min()), float(arr.max())
        if (lo < 0.0 or hi > 1.0) and lo > -1e-3 and hi < 1.0 + 1e-3:  # 1.0000001 read "[0, 1]"
            raise ValueError(
                f"{name} must hold probabilities in [0, 1]; got values from {lo!r} to {hi!r}, a "
                "rounding error outside it (a float32 softmax can give 1.0000001): clip them "
                "first, numpy.clip(prob, 0, 1)"
            )
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} must hold probabilities in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]. "
                "If these are logits, apply a sigmoid/softmax first; a raw image needs a model "
                "to predict them (CLI: --model NAME)."
            )
    return arr


def resolve_connectivity(connectivity: int | None, ndim: int) -> int:
    """Return a valid connectivity for ``ndim`` dimensions (``None`` means 1, face neighbours)."""
    if connectivity is None:
        return 1
    c = int(connectivity)
    if not 1 <= c <= ndim:
        raise ValueError(
            f"connectivity must be between 1 (faces) and {ndim} (full) for {ndim}D frames; "
            f"got {connectivity!r}"
        )
    return c


def check_label_ids(frame, t: int | None = None) -> None:
    """Refuse ids a uint32 label file cannot hold (negative, or 2**32 and more, or not whole).

    They were wrapped silently: ids 5 and 2**32 + 5 both came back as 5, -1 as 65535; float
    labels were cut (2.6 as 2). Floats of whole numbers are ids; booleans are one object.
    """
    arr = np.asarray(frame)
    where = "" if t is None else f" (frame {t})"
    if not arr.size or arr.dtype.kind == "b":
        return
    if arr.dtype.kind == "f":  # whole numbers are ids; -1.0 and 2.6 were wrapped or cut (audit 24)
        bad = ~np.isfinite(arr) | (arr != np.floor(arr))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            value = f"{float(arr[index]):.{7 if arr.itemsize <= 4 else 12}g}"  # its digits
            raise ValueError(
                f"labels: expected whole-number instance ids; got {arr.dtype} value {value} at "
                f"{index}{where} (labels are integers: round or relabel them first, e.g. "
                "skimage.measure.label of a mask)"
            )
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"labels: expected integer instance ids; got dtype {arr.dtype}{where}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise ValueError(f"labels: expected ids >= 0; got {lo}{where}")
    if hi >= 2**32:
        raise ValueError(
            f"labels: a label file holds ids up to 2**32 - 1 = {2**32 - 1}; got {hi}{where}. "
            "Renumber them first (skimage.segmentation.relabel_sequential)"
        )
