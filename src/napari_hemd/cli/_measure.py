"""``napari-hemd measure LABELS -o TABLE.csv``: one row per object per frame."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _channels(text: str) -> list[int] | str:
    """``--channel`` of ``measure``: ``N``, ``N,M,...`` or ``all``."""
    if text.strip().lower() == "all":
        return "all"
    try:
        found = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a channel number, a comma-separated list (0,2) or all; got {text!r}"
        ) from None
    if any(c < 0 for c in found) or len(set(found)) != len(found):
        raise argparse.ArgumentTypeError(f"expected different channel numbers >= 0; got {text!r}")
    return found


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``measure`` subcommand."""
    p = sub.add_parser(
        "measure",
        help="a table of the objects: size, position, intensity, border, lineage (CSV)",
        description="Measure every object of a label movie or stack: frame, label, area "
        "(pixels; with --spacing also physical), centroid, bounding box, equivalent diameter, "
        "eccentricity and solidity (2D), whether the image's edge cuts it, with --image the mean, "
        "min, max and integrated intensity inside it, and for a CTC result folder (labels linked "
        "over time) each object's parent. One row per object per frame, as CSV.",
    )
    p.add_argument(
        "labels",
        metavar="LABELS",
        help="labels: .tif stack, .zarr / OME-Zarr, .npy, or a CTC result folder (maskTTT.tif + "
        "res_track.txt: parents from its tracks; likewise a stream zarr's tracks)",
    )
    p.add_argument("-o", "--output", required=True, help="the table to write (.csv)")
    p.add_argument(
        "--image",
        default=None,
        help="raw movie of the same shape: intensities inside each object (pick the channels "
        "of a multi-channel movie with --channel)",
    )
    p.add_argument(
        "--channel",
        type=_channels,
        default=None,
        help="the channel(s) of a multi-channel --image to measure: N, a list (0,2) or all; "
        "several give a set of intensity columns each, suffixed with the channel "
        "(mean_intensity_c1, or mean_intensity_c1_GFP where the file names it)",
    )
    p.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        help="with --channel: the axis holding the channels, for an --image that does not name "
        "its axes (.npy, plain zarr or TIFF); default: the one the file names",
    )
    p.add_argument(
        "--volume",
        action="store_true",
        help="LABELS is one (Z, Y, X) volume, not a (T, Y, X) movie (a 4D file is always "
        "(T, Z, Y, X)); the default for labels that segment made from one stack with a 3D model "
        "(recorded with them), a TIFF whose axes are z, y, x (an ImageJ hyperstack or a stack "
        "with a voxel depth) and an OME-Zarr whose first axis is z",
    )
    p.add_argument(
        "--spacing",
        default=None,
        help="pixel size per spatial axis, comma separated (y,x or z,y,x), e.g. 0.5,0.1,0.1: adds "
        "area_um2 / volume_um3. Default: the pixel size LABELS records (an ImageJ or OME TIFF, "
        "an OME-Zarr; segment and Export write the image's), none otherwise",
    )
    p.add_argument(
        "--unit",
        default=None,
        help="the unit of --spacing, for the column name (default: the one LABELS records, else "
        "um)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``measure``."""
    import numpy as np

    from napari_hemd._atomic import check_output_path
    from napari_hemd.cli._segment import _lazy, channel_of
    from napari_hemd.core.measure import measure_objects, write_table
    from napari_hemd.io import read_stack

    out = Path(args.output)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"--output must be a .csv file; got {args.output!r}")
    check_output_path(out, overwrite=args.overwrite, inputs=[args.labels, args.image])
    spacing = None
    if args.spacing:
        try:
            spacing = [float(v) for v in args.spacing.split(",")]
        except ValueError:
            raise ValueError(
                f"--spacing must be comma-separated numbers (y,x or z,y,x); got {args.spacing!r}"
            ) from None
    tracks = None
    path = Path(args.labels)
    if path.is_dir() and not path.suffix and (path / "res_track.txt").is_file():
        from napari_hemd.io.ctc import read_ctc_tracks

        tracks = read_ctc_tracks(path / "res_track.txt")
    labels = read_stack(path, lazy=True, array="instances")
    if tracks is None and "tracks" in getattr(labels, "attrs", {}):  # stream's linked stacks
        tracks = np.asarray(labels.attrs["tracks"], np.int64).reshape(-1, 4)
    if not np.issubdtype(np.dtype(labels.dtype), np.integer):
        raise ValueError(
            f"LABELS {args.labels!r} must hold integer instance ids; got dtype {labels.dtype} "
            "(a probability map? segment it first)"
        )
    from napari_hemd.cli._evaluate import check_looks_like_labels

    check_looks_like_labels(labels, args.labels, "LABELS")
    volume = args.volume
    if not volume:  # the labels of one 3D stack, as segment records them
        from napari_hemd.cli._evaluate import recorded_volume

        volume = recorded_volume(path, tuple(labels.shape)) and labels.ndim == 3
        if volume:
            print(
                f"measure: {args.labels} holds one 3D stack's labels (its axes are z, y, x, "
                "or segment recorded a 3D model's run with them): measured as one volume",
                file=sys.stderr,
            )
    frames = not volume or labels.ndim == 4
    spatial = labels.ndim - 1 if frames and labels.ndim > 2 else labels.ndim  # one image: y, x
    unit = args.unit
    if spacing is None:  # the pixel size the file records (Fiji's, the microscope's, ours)
        spacing, unit = _recorded_spacing(path, spatial, args)
    if spacing is not None and len(spacing) != spatial:
        raise ValueError(
            f"--spacing must give {spatial} pixel sizes ({'z,' * (spatial == 3)}y,x) for LABELS "
            f"of shape {tuple(labels.shape)}; got {args.spacing!r}"
        )
    if labels.ndim == 2:
        labels, frames = np.asarray(labels)[None], True
    image = None
    numbers = _frame_numbers(path, int(labels.shape[0])) if frames else None
    if args.image is not None:
        from napari_hemd.io.channels import input_axes

        if args.channel is None and (input_axes(args.image) or "").endswith("S"):
            raise ValueError(  # its grey mean is no stain's intensity (audit 22)
                f"--image {args.image!r} is a colour image: its intensities would be the mean of "
                "its colours, no one stain's; pick the stain with --channel N (0 red, 1 green, "
                "2 blue), or each colour in its own columns with --channel all"
            )
        images = {}
        for name, chosen in _chosen_channels(args):
            image = channel_of(_lazy(read_stack), args.image, chosen, "--image")
            images[name] = _under_labels(image, labels, numbers)
        image = images.pop(None) if None in images else images
        if isinstance(image, dict):
            from napari_hemd.core.measure import column_suffix

            named = ", ".join(f"mean_intensity_{column_suffix(c)} ..." for c in image)
            print(f"measure: intensities of each channel of {args.image}: {named}", file=sys.stderr)
    elif args.channel is not None or args.channel_axis is not None:
        raise ValueError("--channel needs --image (the movie whose channel is measured)")
    table = measure_objects(
        labels, image, frames=frames, spacing=spacing, unit=unit or "um", tracks=tracks
    )
    if numbers is not None and len(table["frame"]):  # a CTC folder's frames keep their numbers
        table["frame"] = np.asarray(numbers, np.int64)[np.asarray(table["frame"], np.int64)]
    write_table(table, out, overwrite=args.overwrite)
    n = len(table["label"])
    n_frames = len(np.unique(table["frame"])) if n else 0
    print(
        f"measure: {n} objects in {n_frames} frame(s), {len(table)} columns -> {out}",
        file=sys.stderr,
    )
    return 0


def _chosen_channels(args: argparse.Namespace) -> list[tuple[str | None, argparse.Namespace]]:
    """``[(column suffix, args with one --channel), ...]`` of ``--channel``.

    One channel (or none): ``[(None, args)]``, the columns unsuffixed as before. Several, or
    ``all``: ``c<N>``, with the name the file gives the channel (an OME-TIFF) after it.
    """
    from napari_hemd.io.channels import channel_names

    chosen = args.channel
    if chosen is None or (isinstance(chosen, list) and len(chosen) == 1):
        one = argparse.Namespace(**{**vars(args), "channel": chosen and chosen[0]})
        return [(None, one)]
    if chosen == "all":
        chosen = list(range(_channel_count(args)))
    names = channel_names(args.image, max(chosen) + 1) or []
    out = []
    for c in chosen:
        label = f"c{c}" + (f"_{names[c]}" if c < len(names) and names[c] else "")
        out.append((label, argparse.Namespace(**{**vars(args), "channel": c})))
    return out


def _channel_count(args: argparse.Namespace) -> int:
    """How many channels ``--image`` holds (``--channel all``), or a clear refusal."""
    from napari_hemd.io import read_stack
    from napari_hemd.io.channels import _file_shape, input_axes

    axes = input_axes(args.image) or ""
    shape = _file_shape(args.image, read_stack(args.image, lazy=True))
    if args.channel_axis is not None:
        if not -len(shape) <= args.channel_axis < len(shape):
            raise ValueError(
                f"--channel-axis must be an axis of --image (shape {shape}): 0..{len(shape) - 1}; "
                f"got {args.channel_axis}"
            )
        return shape[args.channel_axis]
    if "C" in axes:
        return shape[axes.index("C")]
    if axes.endswith("S"):
        return shape[-1]
    raise ValueError(
        f"--channel all: --image {args.image!r} does not name a channel axis (shape {shape}); "
        "give the axis holding the channels with --channel-axis (0 = the first)"
    )


def _under_labels(image, labels, numbers: list[int] | None):
    """``image`` (one channel of --image) shaped as LABELS, or a refusal naming the shapes."""
    import numpy as np

    if tuple(image.shape) != tuple(labels.shape) and image.ndim == labels.ndim - 1:
        image = np.asarray(image)[None]  # one frame's image (a 2D image, or the one stack
        # of a CTC folder, which holds it as its one (1, Z, Y, X) frame)
    if (
        tuple(image.shape) != tuple(labels.shape)
        and numbers is not None
        and tuple(image.shape[1:]) == tuple(labels.shape[1:])
        and max(numbers) < image.shape[0]
    ):  # a CTC folder of some frames (mask036 ...): the movie's frames of those numbers
        image = np.stack([np.asarray(image[t]) for t in numbers])
    if tuple(image.shape) != tuple(labels.shape):
        raise ValueError(
            f"--image must have the shape of LABELS {tuple(labels.shape)}; got "
            f"{tuple(image.shape)}"
            + (f" (the masks are the movie's frames {numbers[0]}-{numbers[-1]})" if numbers else "")
        )
    return image


def _frame_numbers(path: Path, n: int) -> list[int] | None:
    """The movie's frame numbers of labels of some of its frames (``mask036.tif`` is frame 36).

    Its ``res_track.txt`` counts in them; the table did from 0 (frames 36-43 became 0-7, and a
    missing mask shifted the later ones). None for anything else.
    """
    import re

    if not (path.is_dir() and not path.suffix):  # a TIFF / zarr of frames 3-6 records them
        from napari_hemd.io.stacks import recorded_first_frame

        first = recorded_first_frame(path, n)
        return list(range(first, first + n)) if first else None
    names = sorted(p.name for p in path.glob("mask*.tif"))
    found = [re.fullmatch(r"mask(\d+)\.tif", name) for name in names]
    if len(names) != n or not all(found):
        return None
    return [int(m.group(1)) for m in found]


def _recorded_spacing(path: Path, spatial: int, args) -> tuple[list[float] | None, str | None]:
    """``(spacing, unit)`` LABELS (else ``--image``) records.

    None where none is, or not for all ``spatial`` axes (said). ``--unit`` converts a recorded
    length unit (nm from um).
    """
    from napari_hemd.io.calibration import convert, normalise_unit, read_pixel_size

    size, source = read_pixel_size(path), path
    if size is None and args.image is not None:  # a CTC folder records none; its movie may
        size, source = read_pixel_size(args.image), Path(args.image)
    if size is None:
        return None, args.unit
    spacing = size.spacing(spatial)
    if spacing is None:
        print(
            f"measure: {source.name} records the pixel size of {size.describe()}, not of all "
            f"{spatial} axes: no physical columns (--spacing {'z,' * (spatial == 3)}y,x gives "
            "them)",
            file=sys.stderr,
        )
        return None, args.unit
    unit, converted = size.unit, ""
    if args.unit is not None and size.unit is None:  # sizes without a unit: --unit names it
        unit = args.unit
    elif args.unit is not None and normalise_unit(args.unit) != size.unit:
        factors = [convert(v, size.unit, normalise_unit(args.unit)) for v in spacing]
        if None in factors:
            raise ValueError(
                f"--unit {args.unit}: {source.name} records its pixel size in {size.unit}, "
                f"which cannot be converted to it; give --spacing in {args.unit}"
            )
        spacing, unit = factors, args.unit
        converted = f", in {unit}: {', '.join(f'{v:g}' for v in spacing)}"
    print(
        f"measure: pixel size from {source.name}: {size.describe()}{converted} (--spacing "
        "replaces it)",
        file=sys.stderr,
    )
    return spacing, unit or "units"
