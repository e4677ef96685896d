"""``napari-hemd link LABELS -o OUT``: a label movie linked over time, with its tracks."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``link`` subcommand."""
    p = sub.add_parser(
        "link",
        help="link a label movie over time: one id per cell, divisions, tracks (two frames in "
        "memory)",
        description="Give the same cell the same id in every frame of a label movie and find its "
        "divisions (what segment --link does), reading two frames at a time: for movies that "
        "stream segmented (each window's ids its own) or labels from another tool. OUT by "
        "extension: a folder without suffix (CTC result: maskTTT.tif + res_track.txt), .zarr "
        "(the lineage in its attributes' tracks) or .tif.",
    )
    p.add_argument(
        "labels",
        metavar="LABELS",
        help="labels: .zarr (a stream's output), .tif stack, .npy, or a folder of frames (a CTC "
        "result folder: its masks' frame numbers are kept)",
    )
    p.add_argument("-o", "--output", required=True, help="output CTC folder, .zarr or .tif")
    p.add_argument(
        "--delta",
        type=float,
        default=0.5,
        help="size-change tolerance of the matching between frames (0.5)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``link``."""
    from napari_hemd._atomic import check_output_path
    from napari_hemd.cli._progress import Progress
    from napari_hemd.cli._segment import input_time_step, lineage_summary
    from napari_hemd.io import read_stack
    from napari_hemd.io.stacks import _is_zarr, check_labels_path, recorded_first_frame
    from napari_hemd.io.tiff import first_frame_number
    from napari_hemd.pipeline import link_stack

    check_labels_path(args.output)
    check_output_path(args.output, overwrite=args.overwrite, inputs=[args.labels])
    labels = read_stack(args.labels, lazy=True, array="instances")
    # placed where LABELS lie, in every format (review 33: segment's TIFF of an OME-Zarr's
    # frames 3-6 linked to frame 0): a folder of numbered masks at its first number; a file
    # at the frame it records (an OME-Zarr's translation, Export's TIFF of a frame range)
    if Path(args.labels).is_dir() and not _is_zarr(Path(args.labels)):
        first, note = first_frame_number(args.labels, labels.shape[0])
        if note and check_labels_path(args.output) == "ctc":
            print(f"note: LABELS {note}", file=sys.stderr)
    else:
        first = recorded_first_frame(args.labels, labels.shape[0])
    from napari_hemd.io.calibration import read_pixel_size

    t0 = time.perf_counter()
    with Progress(disabled=args.no_progress) as bar:
        out, tracks = link_stack(
            labels, args.output, delta=args.delta, overwrite=args.overwrite, first_frame=first,
            metadata={"source": str(args.labels), "delta": args.delta}, progress=bar,
            pixel_size=read_pixel_size(args.labels),  # the input's (stream's, Fiji's), kept
            # an OME-Zarr's frame interval (review 30b: it was 1)
            time_step=input_time_step(args.labels, args.output),
        )  # fmt: skip
    what = lineage_summary(tracks)
    print(
        f"link: {labels.shape[0]} frame(s){what}, {time.perf_counter() - t0:.2f} s -> {out}",
        file=sys.stderr,
    )
    return 0
