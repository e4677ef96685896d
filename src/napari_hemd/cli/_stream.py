"""``napari-hemd stream PROB.zarr -o OUT.zarr``: out-of-core H-EMD in windows, resumable, on Dask."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``stream`` subcommand."""
    from napari_hemd.cli._segment import (
        add_channel_arguments,
        add_hemd_arguments,
        add_invert_argument,
        add_scale_argument,
        add_tile_argument,
        add_tta_argument,
        add_volume_arguments,
        positive_int,
    )

    p = sub.add_parser(
        "stream",
        help="H-EMD on long time-lapses: windows of frames, zarr in/out, resume, Dask",
        description="Segment a (T, Y, X) or (T, Z, Y, X) probability stack window by window with "
        "bounded memory; labels equal a whole-video run when --halo >= --iterations. The output "
        "zarr appears only when complete; a killed run rerun with the same arguments resumes.",
    )
    p.add_argument(
        "prob",
        help="probability stack (zarr, TIFF, .npy, HDF5, TIFF folder; time on axis 0); raw frames with "
        "--model",
    )
    p.add_argument("-o", "--output", required=True, help="output .zarr label store")
    p.add_argument("--chunk", type=int, default=16, help="frames kept per window (16)")
    p.add_argument("--halo", type=int, default=None, help="frames each side (default T)")
    add_hemd_arguments(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, help="local Dask cluster of N processes")
    g.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    p.add_argument(
        "--follow",
        type=float,
        default=None,
        metavar="SECONDS",
        help="online: PROB is a zarr another process grows; write frames as they are final "
        "(lag --halo), stop after SECONDS without a new frame",
    )
    m = p.add_argument_group("prediction first (--model): chunks of frames as tasks")
    m.add_argument(
        "--model",
        default=None,
        metavar="NAME_OR_PATH",
        help="predict foreground from raw (T, Y, X) frames first (shipped model or model file)",
    )
    m.add_argument(
        "--prob-output",
        default=None,
        metavar="PROB.zarr",
        help="where predictions go (default OUT.prob.zarr; kept, reused by a rerun)",
    )
    m.add_argument("--predict-chunk", type=int, default=8, help="frames per prediction task (8)")
    add_tile_argument(m)
    add_tta_argument(m)
    add_scale_argument(m)
    add_invert_argument(p)
    add_channel_arguments(p)
    add_volume_arguments(m)
    m.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads per prediction task (default 1 on Dask workers)",
    )
    p.add_argument(
        "--exclude-border",
        action="store_true",
        help="remove the cells that the image's edge cuts, in each frame",
    )
    p.add_argument(
        "--link",
        action="store_true",
        help="then link the labels over time (same id for the same cell, divisions: what "
        "segment --link gives), two frames in memory; -o may then also be a CTC result folder "
        "(no suffix) or a .tif",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore a previous partial run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``stream``."""
    from pathlib import Path

    from napari_hemd._atomic import check_output_path
    from napari_hemd.cli._progress import Progress
    from napari_hemd.cli._segment import hemd_params

    if args.link:
        from napari_hemd.io.stacks import check_labels_path

        check_labels_path(args.output)  # a CTC folder, .zarr or .tif
    elif Path(args.output).suffix != ".zarr":
        raise ValueError(
            f"--output must be a .zarr store; got {args.output!r} (with --link also a CTC "
            "result folder or a .tif)"
        )
    check_output_path(args.output, overwrite=args.overwrite, name="output", inputs=[args.prob])
    params = hemd_params(args)
    from napari_hemd.core.segment import check_params

    check_params(**params)  # before the model is loaded or any frame read
    if args.follow is not None:
        from napari_hemd.core.streaming import hemd_follow

        if args.follow < 0:
            raise ValueError(f"--follow must be 0 or more seconds; got {args.follow}")
        if args.link:
            raise ValueError(
                "--follow writes frames as they are final; link them afterwards (napari-hemd "
                "link OUT.zarr -o RESULT), drop --link"
            )
        if Path(args.prob).suffix != ".zarr":
            raise ValueError(
                f"--follow reads a .zarr array that another process grows frame by frame; got "
                f"{args.prob!r} (without --follow any stack is read as it is)"
            )
        if args.workers is not None or args.scheduler is not None:
            raise ValueError("--follow runs in one process; drop --workers / --scheduler")
        if args.channel is not None or args.channel_axis is not None:
            raise ValueError("--follow reads a one-channel stack; drop --channel / --channel-axis")
        if args.model is not None or args.tta is not None or args.scale is not None:
            raise ValueError(
                "--follow segments probabilities another process writes; drop --model / --tta "
                "/ --scale "
                "(predict them with napari-hemd predict ... -o PROB.zarr)"
            )
        hemd_follow(
            args.prob,
            args.output,
            halo=args.halo,
            idle_timeout=args.follow,
            poll=min(1.0, args.follow),
            overwrite=args.overwrite,
            exclude_border=args.exclude_border,
            **params,
        )
        print(f"stream --follow: done -> {args.output}", file=sys.stderr)
        return 0
    if args.model is None:
        for opt in ("prob_output", "threads"):
            if getattr(args, opt) is not None:
                raise ValueError(f"--{opt.replace('_', '-')} needs --model")
        if args.tta is not None:
            raise ValueError("--tta needs --model (PROB is then raw frames)")
        if args.scale is not None:
            raise ValueError("--scale needs --model (PROB is then raw frames)")
    else:
        from napari_hemd.cli._models import load_model_arg

        loaded = load_model_arg(args.model)  # a wrong --model fails before any frame is read
        if loaded.kind == "affinity":  # windows are linked on H-EMD's candidates: its maps
            from napari_hemd._log import NOTE

            log.log(
                NOTE, "stream segments the foreground of affinity model %s with H-EMD, window "
                "by window; its own Mutex watershed instances (what its held-out scores measure) "
                "come from napari-hemd segment --model %s", args.model, args.model,
            )  # fmt: skip
    from napari_hemd.cli._segment import channel_of, inverted
    from napari_hemd.pipeline import open_input, stream_segment

    array = "foreground" if args.model is None else None  # of a maps group
    prob = channel_of(
        lambda p: open_input(p, array), args.prob, args, "PROB", maps=args.model is None
    )
    prob = inverted(prob, args, "PROB")
    if args.link and len(prob.shape) != 3:
        raise ValueError(
            f"--link links a (T, Y, X) movie's objects over time; PROB has shape "
            f"{tuple(prob.shape)} (a time-lapse of stacks is linked by its model's own settings: "
            "nuclei-3d links them); drop --link"
        )
    if args.model is not None and len(prob.shape) == 4:
        return _run_stacks(args, prob, params, loaded)
    if args.model is not None and len(prob.shape) == 3:
        _refuse_one_stack(args, loaded)
    if args.planes is not None or args.z_scale is not None:
        raise ValueError(
            "--planes / --z-scale are for a (T, Z, Y, X) time-lapse of stacks with --model; "
            f"PROB has shape {tuple(prob.shape)} (one (Z, Y, X) stack: napari-hemd segment)"
        )
    final = args.output
    if args.link:  # streamed into a hidden sibling, then linked into OUT
        args.output = str(_unlinked_store(final, args, prob))
    t0 = time.perf_counter()
    reused = args.link and Path(args.output).exists()
    with Progress(disabled=args.no_progress, unit="step") as bar:
        if reused:
            print(
                f"stream: linking the labels a previous run left in {args.output}", file=sys.stderr
            )
        else:
            stream_segment(
                prob,
                args.output,
                model=args.model,
                prob_output=args.prob_output,
                workers=args.workers,
                scheduler=args.scheduler,
                chunk=args.chunk,
                halo=args.halo,
                predict_chunk=args.predict_chunk,
                tile=args.tile,
                threads=args.threads,
                tta=args.tta,
                scale=args.scale,
                overwrite=args.overwrite,
                resume=not args.no_resume,
                progress=bar,
                exclude_border=args.exclude_border,
                **params,
            )
    dt = time.perf_counter() - t0
    if args.channel is not None:  # the labels' provenance, as segment records it
        import zarr

        from napari_hemd.cli._segment import _channel_meta

        zarr.open_array(str(args.output), mode="r+").attrs.update(_channel_meta(args))
    from napari_hemd.pipeline import record_pixel_size

    record_pixel_size(args.output, args.prob)  # the movie's (Fiji's, the microscope's)
    if not args.link:  # (linked: _link places the final labels)
        _record_first_frame(args, prob.shape[0])
    import zarr

    if zarr.open_array(str(args.output), mode="r").attrs.get("stack_by_stack"):
        what = "stack(s) over time, stack by stack as with its model"  # a model's 4D maps
        rate = f"{prob.shape[0] / dt:.2f} stacks/s"
    else:
        what, rate = "frame(s)", f"{prob.shape[0] / dt:.2f} frames/s"
    where = "now linking them over time" if args.link else f"-> {args.output}"
    if not reused:  # (a previous run's labels: said above, no rate)
        print(f"stream: {prob.shape[0]} {what}, {rate} {where}", file=sys.stderr)
    if args.model is not None:  # the size advice of segment --model, on a few finished frames
        import zarr

        from napari_hemd.image_segmentation import found_zoom
        from napari_hemd.pipeline import stream_size_advice

        used = zarr.open_array(str(args.output), mode="r").attrs  # the zoom auto found
        if "scale_tried" in used:
            print(f"stream: {found_zoom(used['scale'], used['scale_tried'])}", file=sys.stderr)
        elif args.scale is None and used.get("scale", 1.0) != 1.0:  # the model file's zoom
            print(f"stream: zoom {used['scale']:g} (the model's own)", file=sys.stderr)
        views = int(used.get("tta", 1))
        if args.tta is None and views > 1:  # the model file's flips, and how to go faster
            print(
                f"stream: {views} mirrored views averaged (the model's own; --tta 1: {views}x "
                "faster prediction)",
                file=sys.stderr,
            )
        note = stream_size_advice(args.model, args.output)  # at the zoom it records
        if note:
            print(f"note: {note}", file=sys.stderr)
    if args.link:
        _link(args, final, params["delta"], prob.shape[0])
    return 0


def _unlinked_store(final: str, args: argparse.Namespace, prob) -> Path:
    """Where ``stream --link`` writes the labels before linking: ``.OUT.unlinked.zarr``.

    Hidden beside OUT, kept until they are linked (a run killed while linking is rerun from
    them). One a run with other arguments or another input left is removed (it is napari-hemd's
    own, never the user's). The run's identity (its arguments, the input's
    :func:`napari_hemd.core.streaming._source_id`) is recorded in its attributes, ``run``.
    """
    import hashlib
    import json
    import shutil

    import zarr

    from napari_hemd.core.streaming import _source_id
    from napari_hemd.pipeline import default_prob_output

    path = Path(final)
    store = path.with_name(f".{path.name}.unlinked.zarr")
    if args.model is not None and args.prob_output is None:  # beside OUT, not hidden
        args.prob_output = str(default_prob_output(path.with_suffix(".zarr")))
    skip = {"output", "overwrite", "no_progress", "no_resume", "func", "workers", "scheduler"}
    run = {k: v for k, v in sorted(vars(args).items()) if k not in skip}
    digest = hashlib.sha256((json.dumps(run, default=str) + _source_id(prob)).encode())
    key = args.link_run = digest.hexdigest()[:16]
    if store.exists():
        try:
            same = zarr.open_array(str(store), mode="r").attrs.get("run") == key
        except Exception:  # not a finished store
            same = False
        if not same or args.no_resume:
            shutil.rmtree(store)
    return store


def _record_first_frame(args: argparse.Namespace, n: int) -> None:
    """Place the labels where INPUT opens (an OME-Zarr or a folder of frames t050 ...: at 50).

    As ``segment`` records it with its labels (review 33: stream's opened at frame 0).
    """
    import zarr

    from napari_hemd.cli._segment import _first_frame

    first = _first_frame(args, n)
    if first:
        zarr.open_array(str(args.output), mode="r+").attrs.update(first_frame=first, frames=n)


def _link(args: argparse.Namespace, final: str, delta: float, n: int) -> None:
    """Link the streamed labels (``args.output``) over time into ``final``; remove them after."""
    import shutil

    import zarr

    from napari_hemd.cli._progress import Progress
    from napari_hemd.cli._segment import _first_frame, lineage_summary
    from napari_hemd.io.calibration import read_pixel_size
    from napari_hemd.pipeline import link_stack

    labels = zarr.open_array(str(args.output), mode="r+")
    labels.attrs["run"] = args.link_run  # finished: a rerun killed while linking starts here
    out_args = argparse.Namespace(**{**vars(args), "output": final})
    first = _first_frame(out_args, n)  # a CTC folder of frames t050 ...: mask050 ...
    t0 = time.perf_counter()
    with Progress(disabled=args.no_progress) as bar:
        out, tracks = link_stack(
            labels, final, delta=delta, overwrite=args.overwrite, first_frame=first,
            metadata={**dict(labels.attrs), "link": True}, progress=bar,
            pixel_size=read_pixel_size(args.output),  # the movie's, recorded with the labels
        )  # fmt: skip
    shutil.rmtree(args.output)
    print(
        f"stream: linked over time{lineage_summary(tracks)}, {time.perf_counter() - t0:.2f} s "
        f"-> {out}",
        file=sys.stderr,
    )


def _refuse_one_stack(args: argparse.Namespace, loaded) -> None:
    """Refuse one (Z, Y, X) stack (its file names the axes so) with a three-plane model.

    ``segment`` predicts it from three planes; ``stream`` takes frames (it ran the stack's
    slices as 2D frames, without a word).
    """
    from napari_hemd.io.channels import input_axes, names_its_z
    from napari_hemd.models import volume_settings

    axes = (input_axes(args.prob) or "").replace("C", "")
    if volume_settings(loaded)["planes"] != 3 or axes == "TYX":  # a movie a file says is one
        return
    named = axes == "ZYX" and names_its_z(args.prob)
    why = "its file names the axes ZYX" if named else "segment takes a 3D input so"
    raise ValueError(
        f"PROB {args.prob!r} is one (Z, Y, X) stack ({why}), which --model {args.model}, a 3D "
        "model, predicts from three planes and links across its slices: napari-hemd segment "
        "does that (it ran here as a movie of 2D frames, each slice's ids its own). stream "
        "takes a (T, Z, Y, X) time-lapse of stacks with a 3D model; a (T, Y, X) movie needs "
        "a 2D model, or a file that names its axes TYX"
    )


def _run_stacks(args: argparse.Namespace, stacks, params: dict, loaded) -> int:
    """``stream MOVIE --model M`` on a (T, Z, Y, X) time-lapse of stacks: stack by stack."""
    import zarr

    from napari_hemd.cli._progress import Progress
    from napari_hemd.cli._segment import (
        _FEW_SLICES,
        _channel_meta,
        _has_channels,
        volume_kwargs,
    )
    from napari_hemd.pipeline import stream_stacks

    if args.channel is None and _has_channels(args.prob, stacks):
        raise ValueError(
            f"PROB {args.prob!r} of shape {tuple(stacks.shape)} looks like (T, C, Y, X): one "
            "channel of a multi-channel movie: --channel N (and --channel-axis A where the file "
            f"does not name its axes){_FEW_SLICES}"
        )
    if args.prob_output is not None:
        raise ValueError(
            "--prob-output: a (T, Z, Y, X) time-lapse of stacks is segmented stack by stack, its "
            "maps not kept; drop it"
        )
    from napari_hemd.distributed import dask_client

    t0 = time.perf_counter()
    with (
        Progress(disabled=args.no_progress, unit="stack") as bar,
        dask_client(workers=args.workers, scheduler=args.scheduler) as client,
    ):
        stream_stacks(
            stacks,
            args.output,
            args.model,
            overwrite=args.overwrite,
            resume=not args.no_resume,
            progress=bar,
            client=client,
            tile=args.tile,
            threads=args.threads,
            tta=args.tta,
            scale=args.scale,
            exclude_border=args.exclude_border,
            **volume_kwargs(args, args.prob, loaded, tuple(stacks.shape[1:])),
            **params,
        )
    if args.channel is not None:
        zarr.open_array(str(args.output), mode="r+").attrs.update(_channel_meta(args))
    from napari_hemd.pipeline import record_pixel_size

    record_pixel_size(args.output, args.prob)
    n, dt = int(stacks.shape[0]), time.perf_counter() - t0
    _record_first_frame(args, n)
    linked = zarr.open_array(str(args.output), mode="r").attrs.get("link_time")
    how = ", objects linked over time" if linked else ""
    print(
        f"stream: {n} stack(s) over time, stack by stack{how}, {n / dt:.2f} stacks/s -> "
        f"{args.output}",
        file=sys.stderr,
    )
    return 0
