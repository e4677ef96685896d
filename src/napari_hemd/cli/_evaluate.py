"""``napari-hemd evaluate``: score a label result against a reference."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
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
        "--frames",
        default=None,
        metavar="START:STOP",
        help="score only the reference frames START to STOP-1, for a result that covers part "
        "of a longer reference. A --pred stack of exactly that many frames holds those frames "
        "(its first is frame START); so does a shorter stack with 'START:' (no STOP); a stack "
        "as long as the reference, or a CTC folder, is matched by frame number (':4': frames "
        "0-3)",
    )
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
    from napari_hemd.io.hdf5 import on_disk
    from napari_hemd.io.stacks import read_stack

    path = Path(path)
    if not on_disk(path).exists():  # FILE.h5/DATASET: the file
        raise FileNotFoundError(f"{name}: {str(path)!r} does not exist")
    if path.is_dir() and not path.suffix:
        if (path / "SEG").is_dir():
            path = path / "SEG"
        names = [q.name for q in path.iterdir()]
        if any(n.startswith(_CTC_LABEL_PREFIXES) and n.endswith((".tif", ".tiff")) for n in names):
            return read_ctc_labels(path)
    arr = read_stack(path, lazy=True, array="instances")
    if arr.dtype.kind == "f":  # Fiji often saves label images as 32-bit floats
        arr = _whole_float_labels(arr, path, name)
    if volume or arr.ndim == 2:  # one frame: the whole of it is scored at once
        import numpy as np

        arr = np.asarray(arr)[None]  # (a lazy zarr array takes no new axis)
    if arr.ndim < 3:
        raise ValueError(
            f"{name}: expected a (T, Y, X) or (T, Z, Y, X) stack; got shape {arr.shape}"
        )
    return arr


def _whole_float_labels(arr, path, name: str):
    """Float labels as uint32 when every value is a whole number >= 0, else refused.

    Fiji saves label images as 32-bit floats; any other float image is refused, naming the
    argument.
    """
    import numpy as np

    data = np.asarray(arr)
    finite = data[np.isfinite(data)]
    if finite.size < data.size or (finite.size and (finite.min() < 0 or finite.max() >= 2**32)):
        raise ValueError(
            f"{name}: {str(path)!r} holds floats outside 0..2**32 or not finite; instance labels "
            "are whole numbers >= 0"
        )
    frac = finite[finite != np.round(finite)]
    if frac.size:
        raise ValueError(
            f"{name}: {str(path)!r} holds floats that are not whole numbers (e.g. {frac[0]:g}): a "
            "probability map or an image, not instance labels (segment it first)"
        )
    print(
        f"note: {name} {str(path)!r}: float labels, every value a whole number: read as integers",
        file=sys.stderr,
    )
    return data.astype(np.uint32)


def recorded_volume(path: str | Path, shape: tuple[int, ...]) -> bool:
    """Whether labels of ``shape`` at ``path`` are one 3D stack, as recorded with them.

    ``segment`` with a 3D model records ``planes`` (3, or 1 slice by slice) beside the labels (a CTC folder holds
    them as its one 3D frame: ``(1, Z, Y, X)``), the Export widget under ``napari_hemd``; an
    OME-Zarr or a TIFF (an ImageJ hyperstack or calibrated stack, OME, ``write_labels(axes=
    "zyx")``) names its first axis ``z``. Anything else (a plain TIFF, a plain ImageJ stack,
    whose pages Fiji calls slices even in a movie) is left to ``--volume``.
    """
    if not (len(shape) == 3 or (len(shape) == 4 and shape[0] == 1)):
        return False
    from napari_hemd.io.channels import input_axes, names_its_z
    from napari_hemd.io.stacks import recorded_params

    path = Path(path)
    axes = input_axes(path) or ""
    named_z = len(shape) == 3 and axes == "ZYX" and names_its_z(path)  # slices, not time
    params = recorded_params(path)
    exported = params.get("napari_hemd") if isinstance(params.get("napari_hemd"), dict) else {}
    from napari_hemd.image_segmentation import one_stack

    return bool(one_stack(params) or one_stack(exported) or named_z)


def check_looks_like_labels(labels, path, name: str) -> None:
    """Refuse an intensity image given where instance labels belong (``--gt``, LABELS ...).

    Scoring or measuring raw frames as labels "works" and reports thousands of objects; see
    :func:`napari_hemd.core.validation.not_instance_labels`.
    """
    from napari_hemd.core.validation import binary_mask, not_instance_labels

    why = not_instance_labels(labels)
    if why:
        raise ValueError(
            f"{name}: {str(path)!r} looks like a raw image, not instance labels: {why}. Give a "
            "label image (napari-hemd segment IMAGE -o LABELS.tif makes one from a raw movie)"
        )
    why = binary_mask(labels)  # measured as one object of a hundred nuclei (audit 17)
    if why:
        raise ValueError(f"{name}: {str(path)!r} {why}")


def check_paired_folders(gt_path, pred_path) -> None:
    """Refuse a --pred folder numbered with gaps against a --gt folder of frames in a row.

    Their frames are paired in name order (numbers as numbers): a result missing in the middle
    paired every later frame with the wrong reference, and the error named the last frame
    (audit 37). Names whose numbers are no run of frames (BBBC039's image ids), a sparse
    reference, or two runs of frames (from 0 and from 1) are left as they were (review 33c).
    """
    import itertools

    from napari_hemd.io.tiff import folder_frame_numbers

    paths = [Path(gt_path), Path(pred_path)]
    if not all(p.is_dir() and not p.suffix for p in paths):
        return
    gt_n, pred_n = (folder_frame_numbers(p) for p in paths)
    if not gt_n or not pred_n or len(set(pred_n)) != len(pred_n):
        return
    in_a_row = lambda ns: ns == list(range(ns[0], ns[0] + len(ns)))  # noqa: E731
    if not in_a_row(gt_n) or in_a_row(pred_n):  # names that number no frames (BBBC039's ids),
        return  # a sparse reference, or two runs of frames: as before
    rising = all(b > a for a, b in itertools.pairwise(pred_n))
    if not rising or pred_n[-1] - pred_n[0] > 2 * len(gt_n):  # ids, not a run with a gap
        return
    missing = sorted(set(gt_n) - set(pred_n))
    if len(pred_n) < len(gt_n) and missing:
        shown = ", ".join(str(t) for t in missing[:8]) + (" ..." if len(missing) > 8 else "")
        lack = f"--pred has no file numbered {shown}"
    else:  # numbered with a gap against frames in a row (1-10 against 1-4, 6-11: review 33b)
        gap = next(a for a, b in itertools.pairwise(pred_n) if b != a + 1)
        lack = f"--pred's files skip from number {gap} to {pred_n[pred_n.index(gap) + 1]}"
    raise ValueError(
        f"--pred: folder {str(paths[1])!r} holds {len(pred_n)} frames and --gt {len(gt_n)} "
        f"(numbered {gt_n[0]}-{gt_n[-1]}); {lack}, by the numbers in the file names. The frames "
        "of two folders are paired in name order: give a result for every reference frame (an "
        "empty mask where nothing was found), or choose the frames to score with --frames"
    )


def _frame_range(text: str | None) -> tuple[int, int | None] | None:
    """``--frames START:STOP`` as ``(start, stop)`` (``stop`` None: to the end); None: all."""
    if text is None:
        return None
    try:
        start, stop = (int(v) if v.strip() else None for v in text.split(":"))
    except ValueError:
        raise ValueError(
            f"--frames must be START:STOP (frame numbers, e.g. 0:4 or 40:); got {text!r}"
        ) from None
    start = 0 if start is None else start
    if start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"--frames must be START:STOP with 0 <= START < STOP; got {text!r}")
    return start, stop


def _frame_numbers(labels) -> list[int]:
    return sorted(labels) if isinstance(labels, Mapping) else list(range(labels.shape[0]))


class _Shifted(Mapping):
    """A stack whose frame ``i`` is reference frame ``start + i`` (read lazily, by frame)."""

    def __init__(self, stack, start: int):
        self.stack, self.start = stack, start

    def __getitem__(self, t: int):
        if not 0 <= t - self.start < self.stack.shape[0]:
            raise KeyError(t)
        return self.stack[t - self.start]

    def __iter__(self):
        return iter(range(self.start, self.start + self.stack.shape[0]))

    def __len__(self) -> int:
        return int(self.stack.shape[0])


class _Renumbered(Mapping):
    """A CTC folder's masks as reference frames: its mask ``t`` is reference frame ``t + by``."""

    def __init__(self, masks: Mapping, by: int):
        self.masks, self.by = masks, by

    def __getitem__(self, t: int):
        return self.masks[t - self.by]

    def __iter__(self):
        return (t + self.by for t in self.masks)

    def __len__(self) -> int:
        return len(self.masks)


def select_frames(gt, pred, text: str | None, pred_name: str = "--pred"):
    """Apply ``--frames START:STOP``: the reference frames to score, and ``pred`` aligned to them.

    Returns ``(frames, pred, note)``: ``frames`` None (all of the reference) without
    ``--frames``; ``note`` says how a shorter ``pred`` stack was aligned (or is None).
    """
    rng = _frame_range(text)
    if rng is None:
        return None, pred, None
    start, stop = rng
    known = _frame_numbers(gt)
    if stop is None and not isinstance(pred, Mapping) and known:
        if start > 0 and start + pred.shape[0] <= known[-1] + 1:
            stop = start + pred.shape[0]  # "START:": a shorter stack starts at START
    frames = [t for t in known if t >= start and (stop is None or t < stop)]
    if not frames:
        raise ValueError(
            f"--frames {text}: --gt has no frame there (its frames: {_span(_frame_numbers(gt))})"
        )
    stop = frames[-1] + 1 if stop is None else stop
    if isinstance(pred, Mapping):  # a CTC folder: by frame number ...
        own = sorted(pred)
        contiguous = own and own[-1] - own[0] + 1 == len(own)
        apart = own and own[0] == 0 and not set(own) & set(frames)
        if contiguous and apart and len(own) == stop - start:
            # ... unless its masks are numbered apart (a window of a movie exported from a
            # stack of its frames: mask000-020 for frames 80-100), do not hold the frames
            # asked for, and exactly fill the span
            note = (
                f"scoring --gt frames {start}-{stop - 1} against {pred_name} masks "
                f"{own[0]:03d}-{own[-1]:03d} (numbered apart, exactly those {len(own)} frames)"
            )
            return frames, _Renumbered(pred, start - own[0]), note
        return frames, pred, None
    if start == 0 or pred.shape[0] != stop - start:
        return frames, _Shifted(pred, 0), None  # by frame number, a stack of any length
    note = (
        f"scoring --gt frames {start}-{stop - 1} against {pred_name} frames 0-"
        f"{stop - start - 1} ({pred_name} holds exactly those {stop - start} frames)"
    )
    return frames, _Shifted(pred, start), note


def _span(frames: list[int]) -> str:
    if not frames:
        return "none"
    return f"{frames[0]}" if len(frames) == 1 else f"{frames[0]}-{frames[-1]}"


def _frames_to_score(
    gt, pred, gt_name: str = "--gt", pred_name: str = "--pred", frames: list[int] | None = None
) -> list[int]:
    gt_frames = _frame_numbers(gt) if frames is None else frames
    pred_frames = _frame_numbers(pred)
    have = set(pred_frames)
    missing = [t for t in gt_frames if t not in have]
    if missing:
        if frames is None:
            hint = " To score only the frames the result covers: --frames START:STOP."
            if isinstance(pred, Mapping) and not isinstance(pred, _Shifted):  # a CTC folder
                hint += (
                    f" A {pred_name} folder is matched by mask number; masks numbered apart "
                    "(from 0 ...) are taken as the reference frames of a --frames START:STOP "
                    f"spanning exactly as many ({len(pred_frames)})."
                )
        elif not isinstance(pred, _Shifted):  # a CTC folder
            hint = (
                f" A {pred_name} folder is matched by mask number; masks numbered apart (from 0 "
                f"...) are taken as the reference frames of a --frames START:STOP spanning "
                f"exactly as many ({len(pred_frames)})."
            )
        else:  # a stack of some frames: --frames must span exactly as many to be aligned
            n = len(pred_frames)
            hint = (
                f" A {pred_name} stack of {n} frame(s) is taken as reference frames START to "
                f"START+{n - 1} with --frames START: or START:STOP spanning exactly {n}."
            )
        raise ValueError(
            f"{pred_name}: has no frame for reference frame(s) {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}: {gt_name} has {len(gt_frames)} frame(s) to "
            f"score ({_span(gt_frames)}), {pred_name} has {len(pred_frames)} "
            f"({_span(pred_frames)}).{hint}"
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

    volume = args.volume
    if not volume:  # the labels of one 3D stack, as segment records them: scored as one volume
        from napari_hemd.io.stacks import read_stack

        for path, name in ((args.pred, "--pred"), (args.gt, "--gt")):
            try:
                shape = tuple(read_stack(path, lazy=True, array="instances").shape)
            except Exception:  # unreadable here: read_labels says why below
                continue
            if recorded_volume(path, shape):
                volume = True
                print(
                    f"note: {name} {str(path)!r} holds one 3D stack's labels (recorded with "
                    "them): scored as one volume (--volume)",
                    file=sys.stderr,
                )
                break
    gt = read_labels(args.gt, name="--gt", volume=volume)
    check_looks_like_labels(gt, args.gt, "--gt")
    pred = read_labels(args.pred, name="--pred", volume=volume)
    check_looks_like_labels(pred, args.pred, "--pred")
    if args.frames is None and not isinstance(gt, Mapping) and not isinstance(pred, Mapping):
        check_paired_folders(args.gt, args.pred)
    chosen, pred, note = select_frames(gt, pred, args.frames)
    frames = _frames_to_score(gt, pred, frames=chosen)
    if note:
        print(f"note: {note}", file=sys.stderr)
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
