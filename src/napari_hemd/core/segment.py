"""``segment``: one entry point for H-EMD and the baselines on 2D+t, 3D and 3D+t probability maps."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Real

import numpy as np

from napari_hemd.core import baselines
from napari_hemd.core.forest import CandidateForest, build_candidate_forest
from napari_hemd.core.linking import link_labels
from napari_hemd.core.selection import FrameSelection, select_instances
from napari_hemd.core.validation import (
    channels_last,
    check_probability,
    refuse_raw_image,
    resolve_connectivity,
)

__all__ = [
    "METHODS",
    "HEMDResult",
    "TooManyCandidates",
    "check_keywords",
    "check_params",
    "hemd",
    "method_keywords",
    "segment",
]

log = logging.getLogger(__name__)

METHODS = ("hemd", "threshold", "otsu", "watershed", "maxvalue", "nms")
VARIANTS = {"paper": "keep", "refined": "absorb"}
#: Default peak a single-path root needs to seed the initial state, per variant (0 = the paper).
SEED_MIN_PEAK = {"paper": 0.0, "refined": 0.9}
#: Growth of a match that only its reference overlaps, per variant (1 = the paper).
LONE_GROWTH = {"paper": 1.0, "refined": 1.5}
#: Share of a candidate its children must cover for it to be several touching objects, per
#: variant (0 = the paper's forest, every candidate kept).
SPLIT_COVERAGE = {"paper": 0.0, "refined": 0.8}
#: With a split coverage: each child at least this times the frame's typical object (median tree).
SPLIT_SIZE = 0.7

#: H-EMD's selection options, resolved in ``HEMDResult.params`` (variant defaults filled in): saved
#: with a result so that a rebuild or a record says how it selected.
SELECTION_KEYS = ("variant", "seed_min_peak", "lone_growth", "split_coverage", "split_size")
#: Options only H-EMD takes: a model's ``segment_defaults`` may carry them, the baselines drop them.
HEMD_ONLY = (*SELECTION_KEYS, "max_candidates")

#: Keywords a baseline takes beyond ``segment``'s own (``segment(..., **kwargs)`` passes them on).
BASELINE_KEYWORDS = {"watershed": ("sigma", "min_distance")}

#: A forest with more candidates than this per pixel-megapixel is almost surely noise.
MAX_NODES_PER_PIXEL = 0.05


@dataclass
class HEMDResult:
    """Everything H-EMD decided, for inspection and proofreading.

    Attributes
    ----------
    labels : (T, ...) uint32 ndarray
        Instance labels, frames along axis 0 (the original axis order is restored by ``segment``).
    forests : list of CandidateForest
        The candidate forest of each frame.
    selections : list of FrameSelection
        Selected candidates of each frame and how they were chosen.
    tracks : (K, 4) int64 ndarray or None
        CTC track table when linking was requested.
    params : dict
        Parameters of the run.
    """

    labels: np.ndarray
    forests: list[CandidateForest]
    selections: list[FrameSelection]
    tracks: np.ndarray | None = None
    params: dict = field(default_factory=dict)


def _frames(prob, axis: int, *, hemd: bool = False):
    """Validate shape; return (n_frames, getter of frame t as float ndarray, frame ndim).

    ``hemd``: warn that a single 2D frame leaves H-EMD nothing to match.
    """
    ndim = prob.ndim
    if 0 in tuple(prob.shape):
        raise ValueError(f"prob is empty (shape {tuple(prob.shape)}): there is no frame to segment")
    if channels_last(tuple(prob.shape)) and axis % ndim != ndim - 1:  # frames last: not channels
        raise ValueError(
            f"prob has shape {tuple(prob.shape)}: its last axis ({prob.shape[-1]}) looks like "
            "channels (an ilastik or multi-class export); give the foreground probability "
            f"alone, e.g. prob[..., 1]"
        )
    if ndim == 2:
        if axis not in (0, -1):
            raise ValueError(f"axis must be 0 for a single 2D frame; got {axis}")
        if hemd:
            warnings.warn(
                "prob is a single 2D frame: H-EMD has no neighbouring frames to match, so it "
                "reduces to initial selection + padding",
                stacklevel=3,
            )
        return 1, (lambda t: np.asarray(prob)), 2
    if ndim == 3:
        if not -3 <= axis <= 2:
            raise ValueError(f"axis must be 0, 1 or 2 for a 3D array; got {axis}")
        axis %= 3

        def get(t):
            idx = [slice(None)] * 3
            idx[axis] = t
            return np.asarray(prob[tuple(idx)])

        return prob.shape[axis], get, 2
    if ndim == 4:
        if axis not in (0, -4):
            raise ValueError(
                f"a 4D array is (T, Z, Y, X) with time on axis 0 (3D forests matched across time); "
                f"got axis={axis}"
            )
        return prob.shape[0], (lambda t: np.asarray(prob[t])), 3
    raise ValueError(
        f"prob must be 2D (Y, X), 3D (T or Z, Y, X) or 4D (T, Z, Y, X); got shape {prob.shape}"
    )


def hemd(
    prob,
    *,
    tau: float = 0.5,
    delta: float = 0.35,
    iterations: int = 10,
    axis: int = 0,
    connectivity: int | None = None,
    min_size: int = 0,
    variant: str = "refined",
    seed_min_peak: float | None = None,
    lone_growth: float | None = None,
    split_coverage: float | None = None,
    split_size: float = SPLIT_SIZE,
    link: bool = False,
    locked: dict[int, list[int]] | None = None,
    time_limit: float = 10.0,
    max_candidates: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    first_frame: int = 0,
) -> HEMDResult:
    """Run H-EMD and keep everything it decided (see :func:`segment` for the parameters).

    ``first_frame`` is the index of ``prob``'s first frame in the whole movie (a window of a long
    run): messages name the movie's frame, not the window's.

    Returns
    -------
    HEMDResult
        ``labels`` has frames on axis 0; use :func:`segment` for labels in the input's axis order.
    """
    # Checked before the forests are built, so a bad value fails at once.
    _required(tau=tau, delta=delta, iterations=iterations, min_size=min_size, variant=variant,
              split_size=split_size, time_limit=time_limit)  # fmt: skip
    check_params(
        tau=tau, delta=delta, iterations=iterations, connectivity=connectivity,
        min_size=min_size, variant=variant, seed_min_peak=seed_min_peak, lone_growth=lone_growth,
        split_coverage=split_coverage, split_size=split_size, max_candidates=max_candidates,
        time_limit=time_limit, link=link, axis=axis, locked=locked,
    )  # fmt: skip
    check_progress(progress)
    if not hasattr(prob, "shape") or not hasattr(prob, "ndim"):  # a list of frames
        prob = np.asarray(prob)
    refuse_raw_image(prob)  # a raw uint16 movie gave one object per frame, without a word
    seed_min_peak = SEED_MIN_PEAK[variant] if seed_min_peak is None else float(seed_min_peak)
    lone_growth = LONE_GROWTH[variant] if lone_growth is None else float(lone_growth)
    split_coverage = SPLIT_COVERAGE[variant] if split_coverage is None else float(split_coverage)
    n, get, fdim = _frames(prob, axis, hemd=True)
    conn = resolve_connectivity(connectivity, fdim)
    forests = []
    for t in range(n):
        frame = check_probability(get(t), name=f"prob (frame {first_frame + t})", ndims=(fdim,))
        f = build_candidate_forest(frame, tau=tau, connectivity=conn, min_size=min_size)
        limit = max_candidates
        if limit is None:
            limit = max(10_000, int(MAX_NODES_PER_PIXEL * frame.size))
        if f.n_nodes > limit:
            raise TooManyCandidates(
                f"prob (frame {first_frame + t}) gives {f.n_nodes} instance candidates (limit {limit}): this "
                "looks like noise, not cell probabilities. Smooth it, raise tau or min_size, or "
                "pass max_candidates (CLI: --max-candidates) to allow it"
            )
        forests.append(f)
        if progress:
            progress("forests", t + 1, n)
    sels = select_instances(
        forests,
        delta=delta,
        iterations=iterations,
        leftovers=VARIANTS[variant],
        seed_min_peak=seed_min_peak,
        lone_growth=lone_growth,
        split_coverage=split_coverage,
        split_size=float(split_size),
        locked=locked,
        time_limit=time_limit,
        progress=(lambda d, tot: progress("selection", d, tot)) if progress else None,
    )
    labels = np.stack([s.labels(f) for s, f in zip(sels, forests, strict=True)]).astype(np.uint32)
    tracks = None
    if link:
        labels, tracks = link_labels(labels, delta=delta)
    params = dict(
        method="hemd",
        tau=tau,
        delta=delta,
        iterations=iterations,
        axis=axis,
        connectivity=conn,
        min_size=min_size,
        variant=variant,
        seed_min_peak=seed_min_peak,
        lone_growth=lone_growth,
        split_coverage=split_coverage,
        split_size=float(split_size),
        link=link,
    )
    return HEMDResult(labels, forests, sels, tracks, params)


def segment(
    prob,
    method: str = "hemd",
    *,
    tau: float = 0.5,
    delta: float = 0.35,
    iterations: int = 10,
    axis: int = 0,
    connectivity: int | None = None,
    min_size: int = 0,
    variant: str = "refined",
    link: bool = False,
    boundary=None,
    background=None,
    progress: Callable[[str, int, int], None] | None = None,
    **kwargs,
) -> np.ndarray:
    """Instance labels from foreground probability maps.

    Parameters
    ----------
    prob : (T, Y, X), (Z, Y, X), (T, Z, Y, X) or (Y, X) array-like
        Foreground probabilities in ``[0, 1]`` (uint8/uint16 are rescaled). numpy, zarr or dask
        arrays; zarr and dask are read one frame at a time.
    method : {"hemd", "threshold", "otsu", "watershed", "maxvalue", "nms"}
        H-EMD or a baseline of the paper's comparison.
    tau : float
        Lowest threshold (candidate forests, threshold/watershed/NMS baselines).
    delta : float
        Size-change tolerance of the matchings (H-EMD, linking).
    iterations : int
        H-EMD matching iterations ``T``.
    axis : int
        Axis of a 3D array along which frames (or slices of a 3D stack) run. 4D arrays must be
        ``(T, Z, Y, X)``: 3D forests matched across time.
    connectivity : int, optional
        1 (default) = face neighbours; up to the frame's dimensionality for full connectivity.
    min_size : int
        Smallest candidate / object, in pixels.
    variant : {"refined", "paper"}
        ``"paper"`` is Section III exactly; ``"refined"`` absorbs small leftover siblings of matched
        candidates instead of padding them as objects, seeds only from confident single-path
        roots, grows a match up to 1.5 times its reference's size where only that reference
        overlaps, and drops candidates that split into cell-sized pieces filling them (touching
        cells; ``split_coverage``) (see ``docs/algorithm.md``).
    link : bool
        Give the same id to the same object across frames (any method).
    boundary, background : array-like, optional
        Boundary / background probabilities, same shape as ``prob``: ``maxvalue``'s (it needs
        boundary); refused with another method, which would not use them.
    progress : callable, optional
        ``progress(stage, done, total)``.
    **kwargs
        Passed to the method (e.g. ``time_limit``, ``locked`` for H-EMD; ``sigma``,
        ``min_distance`` for watershed); one the method does not take raises a TypeError
        (:func:`method_keywords`).

    Raises
    ------
    ValueError
        For a uint8/uint16 ``prob`` that looks like a raw image
        (:func:`napari_hemd.core.validation.not_a_probability_map`): use
        :func:`napari_hemd.segment_image`. For ``boundary`` / ``background`` with a method
        other than ``maxvalue``.

    Returns
    -------
    labels : uint32 ndarray
        Same shape as ``prob``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_hemd import segment
    >>> p = np.zeros((3, 32, 32), np.float32)
    >>> p[:, 8:24, 8:24] = 0.9
    >>> segment(p).max(axis=(1, 2)).tolist()
    [1, 1, 1]
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    check_keywords(method, kwargs, caller="segment")  # a typo must not be ignored
    check_progress(progress)
    if not hasattr(prob, "shape") or not hasattr(prob, "ndim"):
        prob = np.asarray(prob)
    if method != "hemd":  # (hemd() judges it itself: the frames read once)
        # the baselines took tau 1.5 (nothing), -0.2 (one object), min_size -5 (audit 24)
        _required(tau=tau, min_size=min_size)
        check_params(tau=tau, min_size=min_size, connectivity=connectivity, link=link, axis=axis)
        refuse_raw_image(prob)  # a raw movie: as the CLI and the widget refuse it
    given = [n for n, a in (("boundary", boundary), ("background", background)) if a is not None]
    if given and method != "maxvalue":  # was ignored, a wrong shape too
        raise ValueError(
            f"{' and '.join(given)} {'are' if len(given) > 1 else 'is'} used by "
            f"method='maxvalue' only; got method={method!r}. To grow objects into whole cells "
            "where the background is low: napari_hemd.core.cells.grow_to_cells(labels, "
            "background, grow), or segment_image(image, model=...)"
        )
    if method == "hemd":
        res = hemd(
            prob,
            tau=tau,
            delta=delta,
            iterations=iterations,
            axis=axis,
            connectivity=connectivity,
            min_size=min_size,
            variant=variant,
            link=link,
            progress=progress,
            **kwargs,
        )
        return _restore_axis(res.labels, prob.ndim, axis)
    n, get, fdim = _frames(prob, axis)
    conn = resolve_connectivity(connectivity, fdim)
    _check_companion(boundary, prob, axis, "boundary")
    _check_companion(background, prob, axis, "background")
    get_b = _frames(boundary, axis)[1] if boundary is not None else None
    get_g = _frames(background, axis)[1] if background is not None else None
    out = []
    for t in range(n):
        p = check_probability(get(t), name=f"prob (frame {t})", ndims=(fdim,))
        if method == "threshold":
            lab = baselines.threshold_labels(p, tau, conn, min_size)
        elif method == "otsu":
            lab = baselines.otsu_labels(p, conn, min_size)
        elif method == "watershed":
            lab = baselines.watershed_labels(p, tau, conn, min_size, **kwargs)
        elif method == "maxvalue":
            b = check_probability(get_b(t), name="boundary", ndims=(fdim,)) if get_b else None
            g = check_probability(get_g(t), name="background", ndims=(fdim,)) if get_g else None
            lab = baselines.maxvalue_labels(p, b, g, conn, min_size)
        else:
            lab = baselines.nms_labels(p, tau, conn, min_size)
        out.append(lab)
        if progress:
            progress(method, t + 1, n)
    labels = np.stack(out).astype(np.uint32)
    if link:
        labels, _ = link_labels(labels, delta=delta)
    return _restore_axis(labels, prob.ndim, axis)


def method_keywords(method: str) -> tuple[str, ...]:
    """The keyword arguments ``segment(prob, method, ...)`` takes for ``method``.

    ``segment``'s own parameters, and H-EMD's (:func:`hemd`) or the baseline's extras
    (:data:`BASELINE_KEYWORDS`).
    """
    own = [
        k for k in inspect.signature(segment).parameters if k not in ("prob", "method", "kwargs")
    ]
    if method == "hemd":
        extra = [k for k in inspect.signature(hemd).parameters if k not in ("prob", "first_frame")]
    else:
        extra = list(BASELINE_KEYWORDS.get(method, ()))
    return tuple(dict.fromkeys([*own, *extra]))


def check_keywords(method: str, names, *, caller: str, extra=(), drop=()) -> None:
    """Refuse keyword arguments that ``method`` does not take (a typo would be ignored).

    ``names``: the keywords given; ``extra``: others ``caller`` takes itself; ``drop``: those of
    :func:`method_keywords` that ``caller`` does not pass on. Raises a TypeError naming the
    unknown keywords, the method and the keywords it takes.
    """
    known = [k for k in method_keywords(method) if k not in drop] + list(extra)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise TypeError(
            f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))} for "
            f"method {method!r}; it takes {', '.join(sorted(known))}"
        )


class TooManyCandidates(ValueError):
    """A frame gives more instance candidates than ``max_candidates``: noise, not cells."""


#: Iterations are counted in int16 inside the selection (ample: the paper uses T = 10).
MAX_ITERATIONS = 10_000


def _check_iterations(iterations) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise TypeError(f"iterations must be an integer; got {type(iterations).__name__}")
    if not 0 <= int(iterations) <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be between 0 and {MAX_ITERATIONS}; got {iterations}")


def check_params(
    *,
    tau=None,
    delta=None,
    iterations=None,
    connectivity=None,
    min_size=None,
    variant=None,
    seed_min_peak=None,
    lone_growth=None,
    split_coverage=None,
    split_size=None,
    max_candidates=None,
    time_limit=None,
    link=None,
    axis=None,
    locked=None,
    **_other,
) -> None:
    """Refuse out-of-range H-EMD / baseline parameters (``None``: not given, not checked).

    Called by :func:`hemd` before any work, and by the workflows that predict first (a model's
    prediction can take hours: a typo in ``tau`` must not wait for it). Other keywords are
    ignored. ``connectivity`` is checked against 3D frames here (``hemd`` checks it against the
    frames' own dimensions).
    """
    tau, delta, seed_min_peak, lone_growth, split_coverage, split_size = (
        _number(name, value)
        for name, value in (
            ("tau", tau), ("delta", delta), ("seed_min_peak", seed_min_peak),
            ("lone_growth", lone_growth), ("split_coverage", split_coverage),
            ("split_size", split_size),
        )
    )  # fmt: skip
    min_size = _number("min_size", min_size, whole=True)
    connectivity = _number("connectivity", connectivity, whole=True)  # 2.7 was taken as 2
    if link is not None and not (isinstance(link, (bool, np.bool_, Real)) and link in (0, 1)):
        raise ValueError(f"link must be True or False; got {link!r}")  # "no" linked
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, (int, np.integer))):
        raise ValueError(f"axis must be a whole number (the axis frames run along); got {axis!r}")
    if locked is not None and not isinstance(locked, Mapping) and not _empty_sequence(locked):
        raise ValueError(
            "locked must be a mapping {frame: [candidate node, ...]}; got "
            f"{type(locked).__name__} {locked!r}"
        )
    max_candidates = _number("max_candidates", max_candidates, whole=True)
    time_limit = _number("time_limit", time_limit)
    if tau is not None and not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1]; got {tau!r}")
    if delta is not None and not delta > 0:
        raise ValueError(f"delta must be > 0; got {delta!r}")
    if iterations is not None:
        _check_iterations(iterations)
    if connectivity is not None and not 1 <= int(connectivity) <= 3:  # frames not seen yet
        raise ValueError(
            "connectivity must be 1 (faces) up to 2 (full) for 2D frames, up to 3 for 3D "
            f"frames; got {connectivity!r}"
        )
    if min_size is not None and not min_size >= 0:
        raise ValueError(f"min_size must be >= 0; got {min_size!r}")
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VARIANTS)}; got {variant!r}")
    if seed_min_peak is not None and not 0.0 <= seed_min_peak <= 1.0:
        raise ValueError(f"seed_min_peak must be in [0, 1]; got {seed_min_peak!r}")
    if lone_growth is not None and not lone_growth >= 1.0:
        raise ValueError(f"lone_growth must be >= 1 (1 = the paper); got {lone_growth!r}")
    if split_coverage is not None and not 0.0 <= split_coverage <= 1.0:
        raise ValueError(
            f"split_coverage must be in [0, 1] (0 = the paper); got {split_coverage!r}"
        )
    if split_size is not None and not split_size >= 0.0:
        raise ValueError(f"split_size must be >= 0; got {split_size!r}")
    if max_candidates is not None and not max_candidates >= 1:
        raise ValueError(f"max_candidates must be >= 1; got {max_candidates!r}")
    if time_limit is not None and not time_limit > 0:
        raise ValueError(
            f"time_limit must be > 0 (seconds per integer program); got {time_limit!r}"
        )


def _empty_sequence(value) -> bool:
    """``[]`` or ``()``: no locked choices, as ``{}`` (accepted before the checks, review 30)."""
    return isinstance(value, (list, tuple)) and not value


def _required(**values) -> None:
    """Refuse ``None`` for parameters that have no 'not given' (``tau=None`` failed in float())."""
    for name, value in values.items():
        if value is None:
            raise ValueError(f"{name} must be given (its default is a value, not None); got None")


def check_progress(progress) -> None:
    """Refuse a ``progress`` that is neither ``None`` nor callable (before any work)."""
    if progress is not None and not callable(progress):
        raise TypeError(
            "progress must be None or a callable progress(stage, done, total); got "
            f"{type(progress).__name__} {progress!r}"
        )


def _number(name: str, value, *, whole: bool = False) -> float | int | None:
    """``value`` as a float (``whole``: an int), or a ValueError naming ``name``."""
    if value is None:
        return None
    what = "a whole number" if whole else "a number"
    try:
        number = float(value) if not isinstance(value, str) else None
    except (TypeError, ValueError):
        number = None
    if number is None or (whole and not number.is_integer()):
        raise ValueError(f"{name} must be {what}; got {value!r}")
    return int(number) if whole else number


def _check_companion(arr, prob, axis: int, name: str) -> None:
    """``boundary`` / ``background`` must have ``prob``'s shape (same frames, same size)."""
    if arr is None:
        return
    shape = tuple(getattr(arr, "shape", np.shape(arr)))
    if shape != tuple(prob.shape):
        raise ValueError(
            f"{name} must have the shape of prob {tuple(prob.shape)} (same frames and size); "
            f"got {shape}"
        )


def _restore_axis(labels: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if ndim == 2:
        return labels[0]
    if ndim == 3 and axis % 3 != 0:
        return np.moveaxis(labels, 0, axis % 3)
    return labels
