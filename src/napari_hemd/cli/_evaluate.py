"""``napari-hemd evaluate``: score a label result against a reference."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

__all__ = ["check_looks_like_labels", "format_table", "read_labels", "register", "run"]

_CTC_LABEL_PREFIXES = ("man_seg", "man_track", "mask")


def register(subparsers) -> None:
    """Add the ``evaluate`` parser."""
    p = subparsers.add_parser(
        "evaluate",
        help="score labels against a reference (F1, AJI, SEG, DET, PQ, SBD, VOI, ARAND)",
        description=(
            "Score result labels against reference labels, per frame and over the sequence. "
            "GT and PRED are label stacks (.tif, .zarr, .npy, a folder of .tif frames) or CTC "
            "folders (SEQ_GT, SEQ_GT/SEG, SEQ_GT/TRA, SEQ_ST, SEQ_ST/SEG, SEQ_RES). Frames are "
            "matched by index; a sparse reference (CTC gold truth) is scored only on its frames."
        ),
    )
    p.add_argument("--gt", required=True, help="reference labels")
    p.add_argument("--pred", required=True, help="result labels")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--volume",
        action="store_true",
        help="the files hold one 3D volume each (Z, Y, X), not a stack of 2D frames",
    )
    p.add_argument(
        "--ignore-gt-background",
        action="store_true",
        help="VOI and ARAND ignore pixels where GT is 0 (the EM convention)",
    )
    p.set_defaults(func=run)


def read_labels(path: str | Path, *, name: str, volume: bool = False):
    """Read reference or result labels as frames.

    Parameters
    ----------
    path : path-like
        A label stack file or folder, or a CTC folder (see ``napari-hemd evaluate --help``).
    name : str
        Argument name for error messages (``"--gt"``).
    volume : bool
        The file is one volume, not a stack of frames.

    Returns
    -------
    dict of int to ndarray, or (T, ...) array
        A dict for CTC folders (frames by file index), else the stack (frames on axis 0).
    """
    from napari_hemd.io.ctc import read_ctc_labels
    from napari_hemd.io.stacks import read_stack

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: {str(path)!r} does not exist")
    if path.is_dir() and not path.suffix:
        if (path / "SEG").is_dir():
            path = path / "SEG"
        names = [q.name for q in path.iterdir()]
        if any(n.startswith(_CTC_LABEL_PREFIXES) and n.endswith((".tif", ".tiff")) for n in names):
            return read_ctc_labels(path)
    arr = read_stack(path, lazy=True)
    if volume or arr.ndim == 2:
        arr = arr[None]
    if arr.ndim < 3:
        raise ValueError(
            f"{name}: expected a (T, Y, X) or (T, Z, Y, X) stack; got shape {arr.shape}"
        )
    return arr


def check_looks_like_labels(labels, path, name: str) -> None:
    """Refuse an intensity image given where instance labels belong (``--gt``, LABELS ...).

    Scoring or measuring raw frames as labels "works" and reports thousands of objects; see
    :func:`napari_hemd.core.validation.not_instance_labels`.
    """
    from napari_hemd.core.validation import not_instance_labels

    why = not_instance_labels(labels)
    if why:
        raise ValueError(
            f"{name}: {str(path)!r} looks like a raw image, not instance labels: {why}. Give a "
            "label image (napari-hemd segment IMAGE -o LABELS.tif makes one from a raw movie)"
        )


def _frames_to_score(gt, pred, gt_name: str = "--gt", pred_name: str = "--pred") -> list[int]:
    gt_frames = sorted(gt) if isinstance(gt, dict) else list(range(gt.shape[0]))
    pred_frames = set(pred) if isinstance(pred, dict) else set(range(pred.shape[0]))
    missing = [t for t in gt_frames if t not in pred_frames]
    if missing:
        raise ValueError(
            f"{pred_name}: has no frame for reference frame(s) {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''} of {gt_name} ({len(pred_frames)} frames)"
        )
    if not gt_frames:
        raise ValueError(f"{gt_name}: holds no frame")
    return gt_frames


def unmatched_predictions(gt, pred, frames) -> tuple[int, int]:
    """(predicted objects overlapping no reference object, predicted objects) over ``frames``."""
    import numpy as np

    lonely = total = 0
    for t in frames:
        g, p = np.asarray(gt[t]), np.asarray(pred[t])
        ids = np.unique(p[p > 0])
        hit = np.unique(p[(p > 0) & (g > 0)])
        total += ids.size
        lonely += ids.size - hit.size
    return lonely, total


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def format_table(rows: list[dict], columns: list[str], fmt: str = "markdown") -> str:
    """Rows of dicts as a markdown or CSV table (floats with 4 decimals)."""
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([_fmt(r.get(c, "")) for c in columns])
        return buf.getvalue()
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _json_safe(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``; prints the table or JSON on stdout."""
    from napari_hemd.core.metrics import METRIC_NAMES, evaluate_sequence

    gt = read_labels(args.gt, name="--gt", volume=args.volume)
    check_looks_like_labels(gt, args.gt, "--gt")
    pred = read_labels(args.pred, name="--pred", volume=args.volume)
    check_looks_like_labels(pred, args.pred, "--pred")
    frames = _frames_to_score(gt, pred)
    result = evaluate_sequence(
        gt, pred, frames=frames, ignore_gt_background=args.ignore_gt_background
    )
    lonely, total = unmatched_predictions(gt, pred, frames)
    result["sparse_reference"] = bool(total and lonely > 0.5 * total)
    if result["sparse_reference"]:
        print(
            f"note: {lonely} of {total} predicted objects overlap no reference object: the "
            "reference looks sparse (e.g. a gold truth that annotates a few cells per frame). F1, "
            "AJI, DET and PQ count those objects as errors; SEG (reference objects only) is the "
            "meaningful score here",
            file=sys.stderr,
        )
    if args.json:
        json.dump(_json_safe(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    columns = ["frame", *METRIC_NAMES, "n_gt", "n_pred"]
    rows = [*result["frames"], {"frame": "all", **result, **result["counts"]}]
    sys.stdout.write(format_table(rows, columns))
    return 0
