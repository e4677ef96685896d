"""``napari-hemd segment INPUT -o OUT``: H-EMD or a baseline; INPUT raw with ``--model``.

With ``--model`` the input is a raw movie: prediction, segmentation and whole-cell masks in one go
(:mod:`napari_hemd.image_segmentation`); without, it is a probability stack.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from napari_hemd._log import NOTE
from napari_hemd.cli._progress import Progress

#: napari_hemd.core.segment.METHODS, spelled out so that ``--help`` does not import the engine
#: (tests/cli/test_segment_cli.py checks they agree).
METHODS = ("hemd", "threshold", "otsu", "watershed", "maxvalue", "nms")

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``segment`` subcommand."""
    p = sub.add_parser(
        "segment",
        help="instance labels from a raw movie (--model) or from probability maps",
        description="Segment a raw movie or stack with a model (--model NAME_OR_FILE: predict, "
        "segment, masks grown to whole cells), or a probability stack (no --model). INPUT: TIFF "
        "stack, .npy, zarr array, HDF5 file (volume.h5/DATASET) or a folder of TIFF frames; probabilities are floats in [0, 1] "
        "(uint8/uint16 are rescaled). OUT by extension: .tif stack, .zarr, or a folder (CTC "
        "result: maskTTT.tif + res_track.txt).",
    )
    p.add_argument("prob", metavar="INPUT", help="raw movie (with --model) or probability stack")
    p.add_argument("-o", "--output", required=True, help="output .tif, .zarr or CTC folder")
    p.add_argument(
        "--method",
        choices=(*METHODS, "mutex"),
        default=None,
        help="hemd, or a baseline on the same maps: threshold, otsu, watershed, maxvalue (needs "
        "--boundary), nms; with an affinity --model also mutex (its Mutex watershed "
        "instances). Default: the model's own (mutex for an affinity model, hemd otherwise)",
    )
    add_hemd_arguments(p)
    p.add_argument("--axis", type=int, default=0, help="frame/slice axis of a 3D array (0)")
    p.add_argument(
        "--link",
        action="store_true",
        help="same id for the same object over time (a 3D model links a stack's slices itself)",
    )
    p.add_argument(
        "--exclude-border",
        action="store_true",
        help="remove the cells that the image's edge cuts, in each frame (a 3D model's volume: "
        "those touching any face); linked tracks split where a cell left a gap",
    )
    p.add_argument("--boundary", help="boundary probability stack (method maxvalue)")
    add_invert_argument(p)
    add_channel_arguments(p)
    m = p.add_argument_group("model (raw input)")
    m.add_argument(
        "--model",
        metavar="NAME_OR_FILE",
        help="shipped model (napari-hemd models) or model file: INPUT is a raw movie",
    )
    m.add_argument(
        "--grow",
        type=int,
        default=None,
        help="whole-cell growth of the instances in pixels (default: what the model needs; 0: "
        "none)",
    )
    m.add_argument(
        "--grow-threshold",
        type=float,
        default=None,
        help="the growth takes pixels whose background probability is below this (default: the "
        "model's calibrated value, e.g. 0.6 for cells-phc; 0.5: the network's own decision)",
    )
    add_tile_argument(m)
    add_tta_argument(m)
    add_scale_argument(m)
    m.add_argument(
        "--batch-size", type=int, default=None, help="tiles per forward pass (default: ~1 Mpx)"
    )
    m.add_argument(
        "--device", default=None, help="cpu, cuda[:N], mps, auto (CUDA, MPS or CPU) (default: cpu)"
    )
    m.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    add_volume_arguments(m)
    m.add_argument(
        "--min-volume",
        type=int,
        default=None,
        help="with --link: remove objects smaller than this over all frames/slices (3D "
        "fragments; default: the model's, else none)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "--no-memory-check",
        action="store_true",
        help="start even when the movie's maps, forests and labels look larger than the memory "
        "free (default: refuse before the work and say so; napari-hemd stream runs in bounded "
        "memory)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_tile_argument(p) -> None:
    """``--tile``, shared by ``segment --model`` and ``stream --model``."""
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="prediction tile core size (0: untiled; default: one tile up to 4 Mpx, else 1024)",
    )


def add_invert_argument(p) -> None:
    """``--invert``, shared by ``segment`` and ``stream``."""
    p.add_argument(
        "--invert",
        action="store_true",
        help="INPUT is a boundary (membrane) probability, as ilastik or an EM boundary detector "
        "export: segment its complement 1 - INPUT (cells high, their borders low)",
    )


def inverted(prob, args: argparse.Namespace, argument: str = "INPUT"):
    """``prob``, or its complement with ``--invert`` (refused with ``--model``)."""
    if not getattr(args, "invert", False):
        return prob
    if args.model is not None:
        raise ValueError(
            f"--invert takes a boundary probability map as {argument}; with --model {argument} "
            "is a raw movie (the model predicts its own foreground)"
        )
    from napari_hemd.io.channels import InvertedView

    return InvertedView(prob, str(Path(getattr(args, "prob", "")).resolve()))


def add_channel_arguments(p) -> None:
    """``--channel`` / ``--channel-axis``, shared by ``segment``, ``predict`` and ``stream``."""
    p.add_argument(
        "--channel",
        type=int,
        default=None,
        help="the channel to segment of a multi-channel movie (an ImageJ or OME hyperstack, "
        "OME-Zarr, a colour TIFF): 0, 1, ...; needed when the input has several",
    )
    p.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        help="with --channel: the axis holding the channels, for an input that does not name "
        "its axes (.npy, plain zarr or TIFF); default: the one the file names",
    )


def channel_of(read, path, args: argparse.Namespace, argument: str = "INPUT", maps: bool = False):
    """``read(path)`` reduced to ``--channel`` (refused if it has several).

    ``maps``: INPUT is a probability map (a colour TIFF's channels are refused, not averaged).
    """
    from napari_hemd.io.channels import select_channel

    with warnings.catch_warnings():
        if args.channel is not None:  # a colour file's channel is taken, not its grey mean
            warnings.filterwarnings("ignore", message=".*read as grey")
        data = read(path)
    return select_channel(
        data, path, args.channel, args.channel_axis, argument=argument, maps=maps,
        frame_axis=getattr(args, "axis", 0),
    )  # fmt: skip


def _lazy(reader, **kwargs):
    """``reader(path, lazy=True, **kwargs)`` as a one-argument reader."""
    return lambda path: reader(path, lazy=True, **kwargs)


def add_tta_argument(p) -> None:
    """``--tta``, shared by ``predict``, ``segment --model`` and ``stream --model``."""
    p.add_argument(
        "--tta",
        type=int,
        choices=(1, 2, 4, 8),
        default=None,
        help="test-time flips (U-Nets): average the probabilities of this many mirrored views "
        "of each tile, at that many times the prediction time; 1: off. Default: the model's "
        "own, chosen on its training frames (napari-hemd models shows it: 4 for nuclei-fluo, "
        "cells-dic and nuclei-3d, 1 for cells-phc; --tta 1 is 4x faster)",
    )


def positive_int(text: str) -> int:
    """An option's value that must be a whole number >= 1 (``--threads``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {value}")
    return value


def _scale(text: str):
    """``--scale`` value: a number, or ``auto`` (found on a few frames)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto; got {text!r}") from None


def add_scale_argument(p) -> None:
    """``--scale`` of ``predict``, ``segment --model`` and ``stream``: a number or ``auto``."""
    p.add_argument(
        "--scale",
        type=_scale,
        default=None,
        help="zoom the frames by this factor before the network (U-Nets), the maps back to "
        "your frames' size: for objects of another size than the model's training objects "
        "(napari-hemd models lists them), e.g. 0.5 when yours are twice as large; 1: as they "
        "are; auto: segment a few frames, follow the size advice (up to 4 zooms). Default: the "
        "model's own zoom (1, or the zoom a fine-tuned model was trained at)",
    )


def add_volume_arguments(p) -> None:
    """``--planes`` and ``--z-scale`` (tri-planar prediction of a stack), for segment and predict."""
    p.add_argument(
        "--planes",
        type=int,
        choices=(1, 3),
        default=None,
        help="3: predict a (Z, Y, X) stack on its z-, y- and x-slices and average; 1: z-slices "
        "only (default: the model's; nuclei-3d: 3)",
    )
    p.add_argument(
        "--z-scale",
        type=float,
        default=None,
        help="with 3 planes: voxel depth / pixel width of the stack (default: the one the "
        "stack's file records, Fiji's or OME's voxel size; else the model's training volume's, "
        "nuclei-3d 2.2)",
    )


def volume_kwargs(
    args: argparse.Namespace, source=None, model=None, stack_shape: tuple | None = None
) -> dict:
    """``planes`` / ``z_scale`` keyword arguments from ``add_volume_arguments`` options.

    Without ``--z-scale``, a stack predicted on three planes takes the voxel shape its file
    ``source`` records (z size over x size; said on stderr); ``model`` (loaded) and
    ``stack_shape`` (one stack's ``(Z, Y, X)``) decide whether it is.
    """
    if args.z_scale is not None and not 0 < args.z_scale < float("inf"):
        raise ValueError(f"--z-scale must be a voxel depth / pixel width > 0; got {args.z_scale}")
    out = {"planes": args.planes, "z_scale": args.z_scale}
    if args.z_scale is None and source is not None and model is not None and stack_shape:
        from napari_hemd.models.prediction import resolve_planes

        if len(stack_shape) == 3 and resolve_planes(model, args.planes, stack_shape) == 3:
            out["z_scale"] = recorded_z_scale(source)
    return out


def recorded_z_scale(source) -> float | None:
    """A stack file's voxel depth over its pixel width, as its pixel size records (said)."""
    from napari_hemd.io.calibration import read_pixel_size

    size = read_pixel_size(source)
    if size is None or "z" not in size.sizes:
        return None
    ratio = size.sizes["z"] / size.sizes["x"]
    print(
        f"z step / pixel width {ratio:.3g} from the stack's voxel size ({size.describe()}); "
        "--z-scale replaces it",
        file=sys.stderr,
    )
    return ratio


def add_hemd_arguments(p: argparse.ArgumentParser) -> None:
    """The H-EMD parameters shared by ``segment`` and ``stream``."""
    p.add_argument("--tau", type=float, default=0.5, help="lowest threshold (default 0.5)")
    p.add_argument(
        "--delta",
        type=float,
        default=0.35,
        help="size-change tolerance (0.35; with --model the model's own: nuclei-3d 2.0)",
    )
    p.add_argument("--iterations", type=int, default=10, help="H-EMD iterations T (10)")
    p.add_argument("--connectivity", type=int, default=None, help="1 = faces (default)")
    p.add_argument(
        "--min-size",
        type=int,
        default=0,
        help="smallest candidate, pixels (0; with --model the model's own)",
    )
    p.add_argument(
        "--variant",
        choices=("refined", "paper"),
        default="refined",
        help="refined (default: absorbs small leftovers, seeds from confident roots) or paper "
        "(Section III exactly)",
    )
    p.add_argument(
        "--seed-min-peak",
        type=float,
        default=None,
        help="peak a single-path root needs to seed the selection (refined 0.9, paper 0)",
    )
    p.add_argument(
        "--lone-growth",
        type=float,
        default=None,
        help="a match only its reference overlaps grows up to this many times the reference "
        "(refined 1.5, paper 1)",
    )
    p.add_argument(
        "--split-coverage",
        type=float,
        default=None,
        help="a candidate whose children fill this share of it, each child at least "
        "--split-size times the typical object, is touching cells, not one (refined 0.8, paper 0)",
    )
    p.add_argument(
        "--split-size",
        type=float,
        default=None,
        help="with --split-coverage: smallest child, as a fraction of the median candidate tree "
        "of its frame (0.7)",
    )
    p.add_argument(
        "--max-candidates",
        type=int,
        default=None,
        help="H-EMD refuses a frame with more candidates than this (noise guard; default "
        "max(10000, 0.05 per pixel))",
    )


def hemd_params(args: argparse.Namespace) -> dict:
    """The H-EMD keyword arguments from parsed ``add_hemd_arguments`` options."""
    return dict(
        tau=args.tau,
        delta=args.delta,
        iterations=args.iterations,
        connectivity=args.connectivity,
        min_size=args.min_size,
        variant=args.variant,
        seed_min_peak=args.seed_min_peak,
        lone_growth=args.lone_growth,
        split_coverage=args.split_coverage,
        **({"split_size": args.split_size} if args.split_size is not None else {}),
        max_candidates=args.max_candidates,
    )


#: Options of the probability-map methods that the Mutex watershed does not use, with their
#: defaults (left there, they are dropped; changed, refused).
_NOT_MUTEX = {"tau": 0.5, "iterations": 10, "variant": "refined", "connectivity": None}


def _mutex_params(hp: dict) -> dict:
    """``hemd_params`` for ``--method mutex``: its own (min size, link delta) only."""
    changed = [f"--{k}" for k, default in _NOT_MUTEX.items() if hp.get(k, default) != default]
    if changed:
        raise ValueError(
            f"{', '.join(changed)}: not used by --method mutex (the affinity model's Mutex "
            "watershed instances; --min-size merges smaller ones, --link links them over time)"
        )
    return {k: v for k, v in hp.items() if k not in _NOT_MUTEX}


def run(args: argparse.Namespace) -> int:
    """Execute ``segment``."""
    from napari_hemd._atomic import check_output_path
    from napari_hemd.io.stacks import check_labels_path

    # Fail on the output before doing the work.
    check_labels_path(args.output)
    check_output_path(
        args.output, overwrite=args.overwrite, name="output", inputs=[args.prob, args.boundary]
    )
    if args.no_memory_check:  # for this run only
        from napari_hemd._memory import memory_check_off

        with memory_check_off():
            return _run_checked(args)
    return _run_checked(args)


def _run_checked(args: argparse.Namespace) -> int:
    """``segment`` once its output is known to be writable."""
    from napari_hemd.core.linking import link_labels
    from napari_hemd.core.segment import hemd, segment
    from napari_hemd.io import read_stack, write_labels

    if args.model is not None:
        inverted(None, args)  # --invert is for maps
        return _run_with_model(args)
    asked = args.method  # None: the maps' model's own (an affinity model's: mutex), else hemd
    args.method = args.method or "hemd"
    for opt in ("grow", "grow_threshold", "tile", "device", "threads", "planes", "z_scale"):
        if getattr(args, opt) is not None:
            flag = opt.replace("_", "-")
            raise ValueError(f"--{flag} needs --model (INPUT is then a raw movie)")
    if args.tta is not None:
        raise ValueError("--tta needs --model (INPUT is then a raw movie)")
    if args.scale is not None:
        raise ValueError("--scale needs --model (INPUT is then a raw movie)")
    if args.boundary is not None and args.method != "maxvalue":
        raise ValueError(
            f"--boundary is used by --method maxvalue only; got --method {args.method}"
        )
    from napari_hemd.core.validation import not_a_probability_map

    prob = channel_of(_lazy(read_stack, array="foreground"), args.prob, args, maps=True)
    from napari_hemd.cli._segment_maps import model_maps_of

    made = model_maps_of(args, prob)  # maps predict or stream wrote: the model they name
    if args.method == "mutex" and made is None:
        raise ValueError(
            "--method mutex segments an affinity model's affinities: give --model (e.g. "
            "nuclei-affinity) and the raw image as INPUT, or the maps predict wrote with it"
        )
    why = not_a_probability_map(prob)
    if why:
        raise ValueError(
            f"INPUT {args.prob!r} does not look like a probability map ({why}). For a raw movie "
            "add --model NAME (napari-hemd models lists them); a real probability map can be "
            "given as floats in [0, 1]"
        )
    from napari_hemd.core.validation import faint_float_map

    faint = faint_float_map(prob) if made is None else None
    if faint:
        print(f"note: INPUT is taken as a probability map, but {faint}: a raw image scaled to "
              "0-1? If so, add --model NAME (napari-hemd models lists them)",
              file=sys.stderr)  # fmt: skip
    prob = inverted(prob, args)
    from napari_hemd.io.stacks import check_labels_path
    from napari_hemd.workflows import check_maps_fit

    if check_labels_path(args.output) == "ctc" and prob.ndim == 3 and args.axis % 3:
        raise ValueError(
            f"--axis {args.axis}: a CTC result folder (-o without suffix) holds frames on axis 0; "
            "write the slices of another axis to a .tif or .zarr"
        )
    check_maps_fit(prob, f"segment ({args.method})", "INPUT")
    from napari_hemd.cli._segment_maps import run_on_model_maps

    if (
        made is not None
        and prob.ndim in (2, 3, 4)
        and args.axis == 0
        and args.boundary is None
        and not args.invert
    ):  # as segment --model segments its maps
        done = run_on_model_maps(args, prob, *made, method=asked)
        if done is not None:
            return done
    if args.method == "mutex":  # the model cannot be loaded: its maps are plain maps
        raise ValueError(
            "--method mutex needs the affinity model that predicted INPUT; it cannot be loaded"
        )
    boundary = read_stack(args.boundary, lazy=True, array="boundary") if args.boundary else None
    t0 = time.perf_counter()
    hp = hemd_params(args)
    from napari_hemd.core.segment import HEMD_ONLY

    hemd_only = {k: hp.pop(k) for k in HEMD_ONLY if k in hp}
    params = {**hp, "axis": args.axis}  # shared by H-EMD and the baselines
    tracks = None
    flat = prob.ndim == 2  # one 2D image: one frame inside, written as the image's shape
    with warnings.catch_warnings(), Progress(disabled=args.no_progress) as bar:
        warnings.simplefilter("always")
        if args.method == "hemd":
            res = hemd(prob, link=args.link, progress=bar, **hemd_only, **params)
            labels, tracks = res.labels, res.tracks
            if prob.ndim == 3 and args.axis % 3:
                labels = np.moveaxis(labels, 0, args.axis % 3)
        else:
            labels = segment(prob, args.method, boundary=boundary, progress=bar, **params)
        if labels.ndim == 2:
            labels = labels[None]
        if args.method != "hemd" and args.link:
            labels, tracks = link_labels(labels, delta=args.delta)
    if not args.min_size:  # objects per frame: frames on the --axis
        _note_specks(
            np.moveaxis(labels, args.axis % labels.ndim, 0) if labels.ndim == 3 else labels
        )
    if args.exclude_border:  # each frame (frames on the --axis), linked tracks made valid
        from napari_hemd.core.cells import remove_border_cells

        axis = args.axis % labels.ndim
        frames, tracks = remove_border_cells(np.moveaxis(labels, axis, 0), tracks, frame_axis=True)
        labels = np.moveaxis(frames, 0, axis)
        params["exclude_border"] = True
    note_unlinked(args, labels, tracks)
    meta = {"method": args.method, "source": str(args.prob), **_channel_meta(args), **params}
    if args.invert:
        meta["invert"] = True
    if args.method == "hemd":
        meta.update({k: res.params[k] for k in hemd_only if k in res.params})
    from napari_hemd.io.calibration import read_pixel_size

    write_labels(
        labels[0] if flat else labels,
        args.output,
        overwrite=args.overwrite,
        tracks=tracks,
        metadata=meta,
        first_frame=_first_frame(args, labels.shape[0]),
        pixel_size=read_pixel_size(args.prob),  # the input's, as Fiji or the microscope wrote it
        time_step=None
        if flat or args.axis % labels.ndim
        else input_time_step(args.prob, args.output),
    )
    n_obj = int(labels.max()) if labels.size else 0
    if flat:
        what = "one image"
    elif args.axis % labels.ndim:
        what = f"{labels.shape[args.axis % labels.ndim]} slice(s) along axis {args.axis}"
    else:
        what = f"{labels.shape[0]} frame(s)"
    over_time = not flat and args.axis % labels.ndim == 0
    print(
        f"{args.method}: {what}, max label {n_obj}{lineage_summary(tracks, over_time)}, "
        f"{time.perf_counter() - t0:.2f} s -> {args.output}",
        file=sys.stderr,
    )
    return 0


def _run_with_model(args: argparse.Namespace) -> int:
    """``segment INPUT --model M``: raw movie -> whole-cell masks (one implementation for all)."""
    from napari_hemd.image_segmentation import segment_image
    from napari_hemd.io import read_stack

    if args.boundary:
        raise ValueError("--boundary is not used with --model (the model predicts it)")
    if args.axis != 0:
        raise ValueError(f"--axis must be 0 with --model (frames first); got {args.axis}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    if args.grow_threshold is not None and not 0 < args.grow_threshold <= 1:
        raise ValueError(f"--grow-threshold must be in (0, 1]; got {args.grow_threshold}")
    from napari_hemd.cli._models import load_model_arg
    from napari_hemd.core.segment import check_params

    check_params(**hemd_params(args))  # the options, then the model, then the movie
    if args.min_volume is not None and args.min_volume < 0:
        raise ValueError(f"--min-volume must be >= 0 voxels; got {args.min_volume}")
    loaded = load_model_arg(args.model)  # a wrong --model fails before the movie is read
    from napari_hemd.image_segmentation import model_method

    args.method = args.method or model_method(loaded)  # the model's own, else the one asked
    if args.method == "mutex" and loaded.kind != "affinity":
        raise ValueError(
            f"--method mutex segments an affinity model's affinities (nuclei-affinity); "
            f"--model {args.model} is a U-Net: --method hemd or a baseline"
        )
    image = channel_of(_lazy(read_stack), args.prob, args)
    if image.ndim > 4 or (
        image.ndim == 4 and args.channel is None and _has_channels(args.prob, image)
    ):
        shape = tuple(image.shape)
        single = [a for a in range(1, len(shape) - 2) if shape[a] == 1]
        fix = (  # (Z, 1, Y, X): an axis of one channel (or one slice) names its own way out
            f" (axis {single[0]} holds one plane: --channel 0 --channel-axis {single[0]} drops it)"
            if single
            else ""
        )
        raise ValueError(
            "INPUT must be a (T, Y, X) movie, a (Z, Y, X) stack, a (T, Z, Y, X) time-lapse of "
            f"stacks or a (Y, X) image with --model; got shape {shape}{fix}. One channel "
            "of a multi-channel movie: --channel N (and --channel-axis A where the file does not "
            f"name its axes){_FEW_SLICES if image.ndim == 4 else ''}"
        )
    if image.ndim == 4 and args.scale == "auto":
        raise ValueError(AUTO_ON_STACKS)
    t0 = time.perf_counter()
    hp = hemd_params(args)
    if args.method == "mutex":  # the affinity model's instances: none of the maps' thresholds
        hp = _mutex_params(hp)
    if args.method != "hemd":
        from napari_hemd.core.segment import HEMD_ONLY

        for k in HEMD_ONLY:
            hp.pop(k, None)
    # options left at their defaults give way to the model's own segment_defaults
    # (image_segmentation.NEUTRAL)
    with warnings.catch_warnings(), Progress(disabled=args.no_progress) as bar:
        warnings.simplefilter("always")
        res = segment_image(
            image,
            args.model,
            args.method,
            progress=bar,
            grow=args.grow,
            tile=args.tile,
            batch_size=args.batch_size,
            device=args.device,
            threads=args.threads,
            tta=args.tta,
            scale=args.scale,
            link=args.link,
            min_volume=args.min_volume or 0,
            exclude_border=args.exclude_border,
            # a 4D INPUT here is stacks: the file names its Z, or has more than 4 slices
            axes="TZYX" if image.ndim == 4 else None,
            **volume_kwargs(args, args.prob, loaded, tuple(image.shape[-3:])),
            **({"grow_threshold": args.grow_threshold} if args.grow_threshold is not None else {}),
            **hp,
        )
    labels = res.labels  # shaped like INPUT (a 2D image: a 2D mask)
    write_segmentation(args, res)
    n_obj = len(np.unique(labels)) - 1
    dt = time.perf_counter() - t0
    zoom = f", zoom {res.params['scale']:g}" if "scale" in res.params else ""
    if zoom and args.scale is None:  # not asked for: the zoom the model file records
        zoom += " (the model's own)"
    if "scale_tried" in res.params:
        from napari_hemd.image_segmentation import found_zoom

        zoom = f", {found_zoom(res.params['scale'], res.params['scale_tried'])}"
    views = int(res.params.get("tta", 1))
    flips = f", {views} mirrored views averaged" if views > 1 else ""
    if flips and args.tta is None:  # not asked for: the model's own (--tta 1 is faster)
        flips += f" (the model's own; --tta 1: {views}x faster prediction)"
    print(
        f"{args.method} with model {args.model}: {segmented(res)}, {n_obj} labels"
        f"{lineage_summary(res.tracks, linked_over_time(res))}, "
        f"whole cells (grown {res.grow} px){zoom}{flips}, {dt:.1f} s -> {args.output}",
        file=sys.stderr,
    )
    if res.advice:
        print(f"note: {res.advice}", file=sys.stderr)
    return 0


def write_segmentation(args: argparse.Namespace, seg, extra: dict | None = None) -> None:
    """Write an :class:`~napari_hemd.image_segmentation.ImageSegmentation` to ``-o``.

    With the run's parameters, its selection choices (a rebuild selects alike), ``extra`` and
    its lineage; one stack (a 3D model's) as a ``ZYX`` stack.
    """
    from napari_hemd.image_segmentation import one_stack
    from napari_hemd.io import write_labels
    from napari_hemd.io.calibration import read_pixel_size
    from napari_hemd.workflows import selection_choices

    labels = seg.labels
    note_unlinked(args, labels, seg.tracks)
    meta = {"source": str(args.prob), **_channel_meta(args), **seg.params}
    meta.update({**selection_choices(seg.result), **(extra or {})})
    write_labels(
        labels,
        args.output,
        overwrite=args.overwrite,
        tracks=seg.tracks,
        metadata=meta,
        axes="ZYX" if labels.ndim == 3 and one_stack(seg.params) else None,
        first_frame=_first_frame(args, 1 if labels.ndim == 2 else labels.shape[0]),
        pixel_size=read_pixel_size(args.prob),  # the input's, as Fiji or the microscope wrote it
        time_step=input_time_step(args.prob, args.output),
    )


def input_time_step(source, output) -> tuple[float, str | None] | None:
    """The frame interval ``source`` records, for an output that keeps it.

    For ``segment``'s and ``link``'s TIFF ``output`` (Fiji's ``finterval``): an ImageJ or
    OME-TIFF's interval, an OME-Zarr's ``t`` scale
    (:func:`napari_hemd.io.calibration.read_time_step`). For an OME-Zarr ``output`` an OME-Zarr
    ``source``'s (audit 26: a movie at 60 s a frame gave labels at 1): napari shows both at the
    interval, where a TIFF movie stays at one per frame (review 32: the labels of a TIFF at 60 s
    did not lie over it). None for other outputs.
    """
    from napari_hemd.io.calibration import read_time_step
    from napari_hemd.io.ome_zarr import is_ome_zarr
    from napari_hemd.io.stacks import check_labels_path

    kind = check_labels_path(output)
    if kind == "tif" or (kind == "ome.zarr" and is_ome_zarr(source)):
        return read_time_step(source)
    return None


#: Objects smaller than this (pixels, or voxels of a 3D frame) are specks to a ``note``.
SPECK_SIZE = 20


def _note_specks(labels: np.ndarray) -> None:
    """Say when most objects of a plain map's segmentation are specks (``--min-size`` 0).

    A model's maps come with its smallest object; a user's own map (ilastik, an EM boundary
    detector's complement) is taken at every size, and its noise gives thousands of specks.
    """
    counts = [np.unique(np.asarray(f), return_counts=True) for f in labels]
    sizes = np.concatenate([c[ids > 0] for ids, c in counts])  # any ids (no bincount of 2**31)
    small = int((sizes < SPECK_SIZE).sum())
    if sizes.size >= 20 and small > sizes.size // 2:
        log.log(
            NOTE, "%d of the %d objects are smaller than %d pixels: specks of the map's noise? "
            "--min-size %d drops them (a cell's area at the smallest)",
            small, sizes.size, SPECK_SIZE, SPECK_SIZE,
        )  # fmt: skip


def note_unlinked(args: argparse.Namespace, labels: np.ndarray, tracks) -> None:
    """Say that a CTC result folder of labels not linked over time holds no real tracks.

    Each frame's objects are numbered on their own, so ``res_track.txt`` would follow ids, not
    cells (the challenge's TRA of such a folder is meaningless); ``--link`` links them.
    """
    from napari_hemd.io.stacks import check_labels_path

    if tracks is not None or labels.ndim < 3 or labels.shape[0] < 2:
        return
    if check_labels_path(args.output) == "ctc" and not args.link:
        log.log(
            NOTE, "the objects are not linked over time (each frame's ids are its own): "
            "res_track.txt follows ids, not cells; add --link for tracks and divisions",
        )  # fmt: skip


def linked_over_time(seg) -> bool:
    """Whether a segmentation's ids follow cells over time (not one stack's slices linked)."""
    from napari_hemd.image_segmentation import one_stack

    labels = seg.labels
    return labels.ndim == 4 or (labels.ndim == 3 and not one_stack(seg.params))


def lineage_summary(tracks, over_time: bool = True) -> str:
    """``, 312 tracks, 32 divisions`` for the summary line of a run linked over time, else ``""``.

    Divisions far more numerous than the cells that divide mean a segmentation that cuts cells
    for a frame or two (each cut reads as a division): a number worth a look.
    """
    if tracks is None or not over_time:
        return ""
    tracks = np.asarray(tracks).reshape(-1, 4)
    divisions = len({int(p) for p in tracks[:, 3] if p > 0})
    return f", {len(tracks)} tracks, {divisions} division{'s' if divisions != 1 else ''}"


def segmented(seg) -> str:
    """What a segmentation holds, for the summary line: ``12 frame(s)``, ``one image`` ..."""
    from napari_hemd.image_segmentation import one_stack

    labels = seg.labels
    if labels.ndim == 2:
        return "one image"
    if labels.ndim == 4:
        unit = "stack(s) over time"
    else:
        unit = "slices (one 3D stack)" if one_stack(seg.params) else "frame(s)"
    if seg.params.get("link_time"):
        unit += ", objects linked over time"
    return f"{labels.shape[0]} {unit}"


def _first_frame(args: argparse.Namespace, n: int) -> int:
    """The movie's number of INPUT's first frame, where napari opens it (else 0).

    A folder of frames numbered in their names (``t050.tif`` ... ``t059.tif``), an OME-Zarr
    movie placed at frame 50 (its ``t`` translation), or maps ``predict`` made of either: the
    labels are placed there too, in every format (a CTC result folder: ``mask050.tif`` ...,
    lined up with the challenge's reference of those frames). Maps of a numbered folder that
    an older ``predict`` wrote (``first_frame`` without ``placed``) number a CTC folder alike.
    """
    from napari_hemd.io.stacks import (
        _is_zarr,
        check_labels_path,
        placed_first_frame,
        recorded_first_frame,
    )
    from napari_hemd.io.tiff import first_frame_number

    kind = check_labels_path(args.output)
    path = Path(args.prob)
    if path.is_dir() and not _is_zarr(path):
        first, note = first_frame_number(path, n)
        if note and kind == "ctc":
            print(f"note: INPUT {note}", file=sys.stderr)
        return first
    placed = placed_first_frame(path, n)
    if placed or kind != "ctc":
        return placed
    return recorded_first_frame(path, n)


def _channel_meta(args: argparse.Namespace) -> dict:
    """The channel segmented, for the labels' parameters (nothing for one-channel input)."""
    if args.channel is None:
        return {}
    out = {"channel": int(args.channel)}
    if args.channel_axis is not None:
        out["channel_axis"] = int(args.channel_axis)
    return out


#: ``--scale auto`` on a (T, Z, Y, X) time-lapse of stacks (``segment``, ``predict``).
AUTO_ON_STACKS = (
    "--scale auto is not available for a (T, Z, Y, X) time-lapse of stacks: give a zoom (found "
    "on one stack with --scale auto)"
)

#: For a 4D file taken for (T, C, Y, X): what to do if it really is stacks of few slices.
_FEW_SLICES = (
    "; stacks of at most 4 slices: save the file with its axes named (an ImageJ TZYX hyperstack)"
)


def _has_channels(path, image) -> bool:
    """Whether a 4D INPUT looks like (T, C, Y, X), by the axis names the file gives.

    :func:`napari_hemd.io.channels.looks_like_channels`.
    """
    from napari_hemd.io.channels import input_axes, looks_like_channels

    return looks_like_channels(tuple(image.shape), input_axes(path))
