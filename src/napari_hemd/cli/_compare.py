"""``napari-hemd compare``: run H-EMD and the baselines on the same maps and score them."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from napari_hemd._log import NOTE

__all__ = ["compare_methods", "register", "run"]

logger = logging.getLogger(__name__)

_DEFAULT_METHODS = "hemd,threshold,otsu,watershed,maxvalue,nms"


def register(subparsers) -> None:
    """Add the ``compare`` parser."""
    p = subparsers.add_parser(
        "compare",
        help="run H-EMD and the baselines on the same probability maps; print a metrics table",
        description=(
            "Segment the same probability maps with each method, score every result against "
            "the reference (see `napari-hemd evaluate`) and print one row per method with the "
            "seconds per frame — the shape of Table II of the H-EMD paper."
        ),
    )
    p.add_argument(
        "prob", metavar="PROB", help="foreground probabilities (T, Y, X) or (T, Z, Y, X)"
    )
    p.add_argument("--gt", required=True, help="reference labels (stack or CTC folder)")
    p.add_argument(
        "--methods",
        default=_DEFAULT_METHODS,
        help=f"comma-separated methods (default {_DEFAULT_METHODS})",
    )
    p.add_argument(
        "--boundary",
        help="boundary probabilities, same shape as PROB (needed by maxvalue; without it "
        "maxvalue is left out of the default list)",
    )
    p.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    p.add_argument("--tau", type=float, default=0.5, help="lowest threshold (default 0.5)")
    p.add_argument("--min-size", type=int, default=0, help="smallest object in pixels")
    p.add_argument("--volume", action="store_true", help="PROB and GT are single volumes (Z, Y, X)")
    p.set_defaults(func=run)


def compare_methods(
    prob,
    gt,
    methods,
    *,
    boundary=None,
    frames=None,
    warmup: bool = True,
    **params,
) -> list[dict]:
    """Segment ``prob`` with each method and score it against ``gt``.

    Parameters
    ----------
    prob : (T, ...) float array
        Foreground probabilities, frames on axis 0.
    gt : (T, ...) integer array or dict of frame index to array
        Reference labels (a dict is a sparse reference, scored on its frames only).
    methods : sequence of str
        Methods of :func:`napari_hemd.segment`.
    boundary : (T, ...) float array, optional
        Boundary probabilities (``maxvalue``).
    frames : sequence of int, optional
        Frames to score; default all of ``gt``.
    warmup : bool
        Run each method once on the first frames, untimed, so that one-off costs (numba
        compilation, imports) do not count as seconds per frame.
    **params
        Passed to :func:`napari_hemd.segment` (``tau``, ``min_size``, ...).

    Returns
    -------
    list of dict
        One row per method: ``"method"``, the scores of
        :func:`napari_hemd.core.metrics.evaluate_sequence` (aggregated) and ``"s_per_frame"``
        (wall-clock seconds of segmentation divided by the number of frames).
    """
    from napari_hemd import segment
    from napari_hemd.core.metrics import evaluate_sequence

    rows = []
    n_frames = prob.shape[0]
    for method in methods:
        kw = dict(params)
        if method == "maxvalue":
            kw["boundary"] = boundary
        if warmup:
            head = dict(kw, boundary=None if boundary is None else boundary[:2])
            if method != "maxvalue":
                head.pop("boundary")
            segment(prob[:2], method=method, **head)
        t0 = time.perf_counter()
        labels = segment(prob, method=method, **kw)
        elapsed = time.perf_counter() - t0
        scores = evaluate_sequence(gt, labels, frames=frames)
        logger.info("%s: %.2f s for %d frames", method, elapsed, n_frames)
        rows.append(
            {
                "method": method,
                **{k: v for k, v in scores.items() if k not in ("frames", "counts")},
                "s_per_frame": elapsed / max(n_frames, 1),
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    """Run ``compare``; prints the table on stdout."""
    import numpy as np

    from napari_hemd import segment  # noqa: F401  (fail early if the engine is missing)
    from napari_hemd.cli._evaluate import _frames_to_score, format_table, read_labels
    from napari_hemd.core.metrics import METRIC_NAMES
    from napari_hemd.io.stacks import read_stack

    try:
        from napari_hemd.core.segment import METHODS
    except ImportError:  # pragma: no cover
        METHODS = tuple(_DEFAULT_METHODS.split(","))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(
            f"--methods: expected a comma-separated subset of {','.join(METHODS)}; got "
            f"{args.methods!r}"
        )
    if "maxvalue" in methods and args.boundary is None:
        if args.methods == _DEFAULT_METHODS:
            logger.log(NOTE, "maxvalue left out: it needs --boundary")
            methods.remove("maxvalue")
        else:
            raise ValueError("--methods: maxvalue needs the boundary probabilities (--boundary)")

    prob = np.asarray(read_stack(args.prob, array="foreground"))
    from napari_hemd.core.validation import not_a_probability_map

    why = not_a_probability_map(prob)
    if why:
        raise ValueError(
            f"PROB {args.prob!r} does not look like a probability map ({why}). Predict it first "
            "(napari-hemd predict RAW --model NAME -o PROB.tif), or compare a model's methods "
            "with napari-hemd segment RAW --model NAME --method M"
        )
    if args.volume or prob.ndim == 2:
        prob = prob[None]
    boundary = None
    if args.boundary is not None:
        boundary = np.asarray(read_stack(args.boundary, array="boundary"))
        if args.volume or boundary.ndim == 2:
            boundary = boundary[None]
        if boundary.shape != prob.shape:
            raise ValueError(
                f"--boundary: expected the shape of PROB {prob.shape}; got {boundary.shape}"
            )
    gt = read_labels(args.gt, name="--gt", volume=args.volume)
    frames = _frames_to_score(gt, prob, pred_name="PROB")
    first = gt[frames[0]] if isinstance(gt, dict) else gt[0]
    if tuple(first.shape) != prob.shape[1:]:
        raise ValueError(
            f"--gt: frames of shape {tuple(first.shape)} do not match PROB frames {prob.shape[1:]}"
        )
    rows = compare_methods(
        prob, gt, methods, boundary=boundary, frames=frames, tau=args.tau, min_size=args.min_size
    )
    columns = ["method", *METRIC_NAMES, "s_per_frame"]
    sys.stdout.write(format_table(rows, columns, fmt=args.format))
    return 0
