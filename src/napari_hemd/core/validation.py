"""Input checks shared by the public functions.

Errors name the argument, what was expected and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["check_probability", "not_a_probability_map", "resolve_connectivity", "to_probability"]


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
    n = arr.shape[0] if len(arr.shape) > 2 else 1
    idx = sorted({0, n // 2, n - 1})[:frames] if len(arr.shape) > 2 else [None]
    sample = np.concatenate(
        [np.asarray(arr if i is None else arr[i]).ravel()[::7] for i in idx]
    ).astype(np.float64)
    top = float(np.iinfo(dtype).max)
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
