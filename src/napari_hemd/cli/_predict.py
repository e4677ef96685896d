"""``napari-hemd predict``: probability maps (and affinity-model instances) for an image stack."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import ExitStack

    import numpy as np

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the ``predict`` subcommand."""
    from napari_hemd.cli._segment import positive_int

    p = subparsers.add_parser(
        "predict",
        help="predict foreground probability (and more) with a shipped or trained model",
        description=(
            "Predict float32 (T, Y, X) foreground probability for IMAGE (a TIFF stack, a folder of "
            "TIFF frames or a zarr array; a (T, Z, Y, X) time-lapse of stacks: stack by stack). "
            "OUT is .tif or .zarr; with several --outputs a .zarr holds one array per output and "
            "a .tif becomes OUT_STEM_NAME.tif per output."
        ),
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="shipped model (see `napari-hemd models`) or a model file",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument(
        "--outputs",
        default="foreground",
        help="comma separated: foreground,boundary,background,affinities,embeddings,"
        "instances (the last three need an affinity model)",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile core size (0: untiled; default: one tile up to 4 Mpx frames, else 1024)",
    )
    p.add_argument(
        "--halo",
        type=int,
        default=None,
        help="context around each tile (default 16 px for one tile, else 64)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="tiles per forward pass (default: ~1 Mpx)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda ...")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    p.add_argument("--ranges", default=None, help="affinity ranges at inference, e.g. 1,3,5,9,27")
    p.add_argument("--neighbourhood", type=int, choices=(4, 8), default=None)
    p.add_argument("--min-size", type=int, default=30, help="instances: merge smaller ones")
    from napari_hemd.cli._segment import (
        add_channel_arguments,
        add_scale_argument,
        add_tta_argument,
        add_volume_arguments,
    )

    add_tta_argument(p)
    add_scale_argument(p)
    add_channel_arguments(p)
    add_volume_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    d = p.add_argument_group(
        "large data (.zarr OUT): chunks of frames as tasks, resumable, on Dask"
    )
    d.add_argument("--chunk", type=int, default=8, help="frames per task (8)")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, help="local Dask cluster of N processes")
    g.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    d.add_argument("--no-resume", action="store_true", help="ignore a previous partial run")
    p.set_defaults(func=run)


def _out_paths(out, outputs):
    from pathlib import Path

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".tif", ".tiff", ".zarr"):
        raise ValueError(f"output must end in .tif, .tiff or .zarr; got {str(out)!r}")
    if suffix == ".zarr" or len(outputs) == 1:
        return {name: out for name in outputs}
    return {name: out.with_name(f"{out.stem}_{name}{out.suffix}") for name in outputs}


def run(args: argparse.Namespace) -> int:
    """Predict and write the outputs; returns 0."""
    import json
    from contextlib import ExitStack

    import numpy as np

    try:
        import torch
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "napari-hemd predict needs torch: pip install 'napari-hemd[torch]'"
        ) from None
    from napari_hemd._atomic import atomic_path, check_output_path
    from napari_hemd.io.tiff import TiffFrames
    from napari_hemd.models import OUTPUTS, iter_predict, load_model, pick_device
    from napari_hemd.pipeline import open_input

    outputs = tuple(o.strip() for o in args.outputs.split(",") if o.strip())
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad or not outputs:
        raise ValueError(f"--outputs must be a subset of {','.join(OUTPUTS)}; got {args.outputs!r}")
    paths = _out_paths(args.output, outputs)
    for path in set(paths.values()):
        check_output_path(path, overwrite=args.overwrite, inputs=[args.image])
    if args.threads:
        torch.set_num_threads(args.threads)
    ranges = None
    if args.ranges:
        try:
            ranges = [int(r) for r in args.ranges.split(",")]
        except ValueError:
            raise ValueError(
                f"--ranges must be comma-separated integers; got {args.ranges!r}"
            ) from None
    model = load_model(args.model, name="--model")
    # frame by frame where it can be (a grey TIFF stack, a folder of frames, zarr): with the
    # page-by-page TIFF output below, the movie is never all in memory
    from napari_hemd.cli._segment import channel_of

    image = channel_of(open_input, args.image, args, "IMAGE")
    flat = image.ndim == 2  # one 2D image: its maps are 2D too
    if flat:
        image = np.asarray(image[:])[None]
    from napari_hemd.cli._segment import _FEW_SLICES, _has_channels

    if image.ndim not in (3, 4) or (
        image.ndim == 4 and args.channel is None and _has_channels(args.image, image)
    ):
        raise ValueError(
            f"IMAGE must be (T, Y, X), (Z, Y, X), (Y, X) or a (T, Z, Y, X) time-lapse of stacks; "
            f"got shape {tuple(image.shape)}. One channel of a multi-channel movie: --channel N "
            "(and --channel-axis A where the file does not name its axes)"
            f"{_FEW_SLICES if image.ndim == 4 else ''}"
        )
    meta = {"model": str(args.model), "model_metadata_version": model.metadata.get("version")}
    if model.kind == "affinity":  # which offset each affinity channel is (segment reads them)
        from napari_hemd.models.prediction import model_offsets

        meta["offsets"] = [list(o) for o in model_offsets(model, ranges, args.neighbourhood)]
    from napari_hemd.io.calibration import PIXEL_SIZE_KEY, read_pixel_size

    size = read_pixel_size(args.image)  # the maps keep the image's pixel size: segment on them
    if size is not None:  # writes it with the masks
        meta[PIXEL_SIZE_KEY] = size.to_json()
    from napari_hemd.io.stacks import placed_first_frame

    # frames t050.tif ... or an OME-Zarr of frames 50-59 open at frame 50: so do the maps, and
    # segment's labels of them (a CTC result folder: mask050.tif ...)
    if not flat and (first := placed_first_frame(args.image, image.shape[0])):
        meta.update(first_frame=first, frames=int(image.shape[0]), placed=True)
    from napari_hemd.models.prediction import _check_tta, tta_recorded

    # before any work (an affinity model is refused here); None: the model's own flips
    args.tta = _check_tta(args.tta, model)
    if tta_recorded(args.tta, model):
        meta["tta"] = args.tta
    if image.ndim == 4:
        return _run_stacks(args, model, image, outputs, paths, meta)
    if args.scale == "auto":
        args.scale, meta["scale_tried"] = _auto_scale(args, model, image)
    from napari_hemd.cli._segment import volume_kwargs
    from napari_hemd.models.prediction import _check_scale, model_scale, resolve_planes

    volume = volume_kwargs(args, args.image, model, tuple(image.shape))
    planes = resolve_planes(model, volume["planes"], tuple(image.shape))
    if args.scale is None and planes == 3:  # three planes take no zoom (z_scale sets the shape)
        args.scale = 1.0
    if planes == 3 and isinstance(image, TiffFrames):  # tri-planar: the whole stack at once
        image = image[:]
    # None: the model's own zoom; a zoom the model cannot take is refused here, before any work
    args.scale = _check_scale(args.scale, model)
    if args.scale != 1 or (planes == 1 and args.scale != model_scale(model)):
        meta["scale"] = args.scale
    zarr_out = paths[outputs[0]].suffix.lower() == ".zarr"
    if not zarr_out and (args.workers is not None or args.scheduler is not None):
        raise ValueError(
            f"--workers / --scheduler write a .zarr OUT chunk by chunk; got {args.output!r}"
        )
    if planes == 3:
        from napari_hemd.models.prediction import check_scale_planes

        check_scale_planes(args.scale, planes)
        if args.workers is not None or args.scheduler is not None:
            raise ValueError("--planes 3 predicts in one process; drop --workers / --scheduler")
        from napari_hemd.models import volume_settings

        scale = volume["z_scale"] or volume_settings(model)["z_scale"]
        meta.update(planes=3, z_scale=scale)
    elif zarr_out and not (flat and args.workers is None and args.scheduler is None):
        return _run_chunked(args, model, image, outputs, ranges, meta, paths[outputs[0]])
    tiling = dict(tile=args.tile, halo=args.halo, batch_size=args.batch_size, tta=args.tta)
    from napari_hemd.cli._progress import Progress

    n = image.shape[0]
    with ExitStack() as stack:
        bar = stack.enter_context(Progress(disabled=args.no_progress or n < 2))
        if planes == 3:  # the whole stack first (three planes), progress in 2D slices
            from napari_hemd.models import predict_volume_workflow
            from napari_hemd.workflows import run_workflow

            gen = predict_volume_workflow(
                model,
                image,
                outputs=outputs,
                z_scale=volume["z_scale"],
                device=pick_device(args.device),
                **tiling,
            )
            maps = run_workflow(gen, bar)
            frames = ((t, {k: v[t] for k, v in maps.items()}) for t in range(n))
        else:
            frames = iter_predict(
                model,
                image,
                outputs=outputs,
                scale=args.scale,
                device=pick_device(args.device),
                ranges=ranges,
                neighbourhood=args.neighbourhood,
                min_size=args.min_size,
                **tiling,
            )

        def counted(it):
            for t, res in it:
                yield t, res
                if planes == 1:
                    bar("predict", t + 1, n)

        if zarr_out:
            import zarr

            tmp = stack.enter_context(atomic_path(paths[outputs[0]], overwrite=args.overwrite))
            group = zarr.open_group(str(tmp), mode="w")
            group.attrs.update(meta)
            arrays = {}
            for t, res in counted(frames):
                for name, arr in res.items():
                    if flat:  # one 2D image: 2D maps
                        group.create_array(name, shape=arr.shape, dtype=arr.dtype)[...] = arr
                        continue
                    if name not in arrays:
                        arrays[name] = group.create_array(
                            name, shape=(n, *arr.shape), chunks=(1, *arr.shape), dtype=arr.dtype
                        )
                    arrays[name][t] = arr
        else:
            # one page per frame as it is predicted: the maps are never all in memory. Each
            # file is a temporary until the last frame is in (closed, then renamed: LIFO exit)
            writers = _TiffWriters(stack, paths, outputs, args.overwrite, n)
            for page, (_, res) in enumerate(counted(frames)):
                for name, arr in res.items():
                    # the run's parameters once, on the first page; a movie's shape and axes
                    # too (a 1-frame movie's maps read back as one 2D image: audit 35)
                    first = {**meta, "output": name}
                    if not flat:  # (no axes named: frames of a movie or slices of a stack)
                        first["shape"] = [n, *arr.shape]
                    writers.get(name, arr).write(
                        arr,
                        compression="zlib",
                        description=json.dumps(first) if page == 0 else None,
                        metadata=None,
                        photometric="minisblack",
                    )
    for path in dict.fromkeys(paths.values()):
        print(f"wrote {path}")
    return 0


class _TiffWriters:
    """Page-by-page TIFF writers of the maps, one per output file, each into its temporary.

    The temporaries are taken at once (an existing output is refused before any work); each
    writer opens at its map's first frame, a BigTIFF where ``n`` frames of it reach 2 GiB: a
    classic TIFF stops at 4 GiB, and a long movie's maps failed at the end of the run, their
    work lost (session 33: 4096 x 4096 float maps failed at frame 71).
    """

    def __init__(self, stack: ExitStack, paths: dict, outputs, overwrite: bool, n: int) -> None:
        from napari_hemd._atomic import atomic_path

        self._stack, self._n, self._writers = stack, n, {}
        self._tmp = {
            name: stack.enter_context(atomic_path(paths[name], overwrite=overwrite))
            for name in outputs
        }

    def get(self, name: str, arr: np.ndarray):
        """The writer of output ``name`` (opened for ``n`` frames like ``arr``, the first)."""
        if name not in self._writers:
            import tifffile

            from napari_hemd.io.stacks import IMAGEJ_MAX_BYTES

            big = self._n * arr.nbytes >= IMAGEJ_MAX_BYTES
            writer = tifffile.TiffWriter(self._tmp[name], bigtiff=big)
            self._writers[name] = self._stack.enter_context(writer)
        return self._writers[name]


def _auto_scale(args, model, image) -> tuple[float, list[float]]:
    """``--scale auto``: the zoom ``segment --scale auto`` finds, on 3 frames of IMAGE."""
    from napari_hemd.cli._segment import volume_kwargs
    from napari_hemd.image_segmentation import choose_scale_workflow, found_zoom
    from napari_hemd.models import pick_device
    from napari_hemd.models.prediction import check_scale_planes, resolve_planes
    from napari_hemd.workflows import run_workflow

    check_scale_planes("auto", resolve_planes(model, volume_kwargs(args)["planes"], image.shape))
    gen = choose_scale_workflow(model, image, tile=args.tile, device=pick_device(args.device))
    found, tried = run_workflow(gen)
    print(f"predict: {found_zoom(found, tried)}", file=sys.stderr)
    return found, tried


def _run_stacks(args, model, image, outputs, paths, meta) -> int:
    """A (T, Z, Y, X) time-lapse of stacks: each stack predicted as alone, written as it comes.

    Each stack as ``predict`` predicts it alone (a 3D model: three planes); one stack's maps in
    memory at a time. A .tif OUT is a TZYX hyperstack (one page per slice, its axes named on the
    first page, as tifffile writes them), a .zarr OUT holds (T, Z, Y, X) arrays, chunks of one
    slice.
    """
    import json
    from contextlib import ExitStack

    import numpy as np

    from napari_hemd._atomic import atomic_path
    from napari_hemd.cli._progress import Progress
    from napari_hemd.cli._segment import AUTO_ON_STACKS, _channel_meta, volume_kwargs
    from napari_hemd.models import pick_device, volume_settings
    from napari_hemd.models.prediction import (
        _check_scale,
        check_scale_planes,
        model_scale,
        resolve_planes,
    )
    from napari_hemd.workflows import predict_workflow, run_workflow

    if model.kind != "unet":
        raise ValueError(
            f"a (T, Z, Y, X) time-lapse of stacks takes a U-Net (nuclei-3d, or a 2D one on each "
            f"stack's slices); --model {args.model!r} is an affinity model, which predicts 2D "
            "frames: one stack at a time"
        )
    for opt in ("workers", "scheduler", "ranges", "neighbourhood"):
        if getattr(args, opt) is not None:
            raise ValueError(
                f"--{opt}: a (T, Z, Y, X) time-lapse of stacks is predicted stack by stack in "
                "this process with a U-Net; drop it"
            )
    if args.scale == "auto":
        raise ValueError(AUTO_ON_STACKS)
    n, stack_shape = int(image.shape[0]), tuple(int(s) for s in image.shape[1:])
    volume = volume_kwargs(args, args.image, model, stack_shape)
    planes = resolve_planes(model, volume["planes"], stack_shape)
    scale = 1.0 if planes == 3 and args.scale is None else _check_scale(args.scale, model)
    check_scale_planes(scale, planes)
    meta.update(_channel_meta(args), stacks=n, planes=planes)
    if planes == 3:
        meta["z_scale"] = volume["z_scale"] or volume_settings(model)["z_scale"]
    elif scale != model_scale(model) or scale != 1:  # as for a movie: a zoom not the default
        meta["scale"] = scale
    kwargs = dict(outputs=outputs, tile=args.tile, halo=args.halo, batch_size=args.batch_size)
    kwargs.update(device=pick_device(args.device), tta=args.tta, scale=scale, planes=planes)
    kwargs["z_scale"] = volume["z_scale"]
    zarr_out = paths[outputs[0]].suffix.lower() == ".zarr"
    with ExitStack() as stack:
        bar = stack.enter_context(Progress(disabled=args.no_progress))
        if zarr_out:
            import zarr

            tmp = stack.enter_context(atomic_path(paths[outputs[0]], overwrite=args.overwrite))
            group = zarr.open_group(str(tmp), mode="w")
            group.attrs.update(meta)
            arrays = {}
        else:
            writers = _TiffWriters(stack, paths, outputs, args.overwrite, n)
        for t in range(n):
            maps = run_workflow(
                predict_workflow(np.asarray(image[t]), model, **kwargs),
                lambda stage, d, total, t=t: bar(f"stack {t + 1}/{n}: {stage}", d, total),
            )
            for name, arr in maps.items():
                if zarr_out:
                    if name not in arrays:
                        arrays[name] = group.create_array(
                            name, shape=(n, *arr.shape), chunks=(1, 1, *arr.shape[1:]),
                            dtype=arr.dtype,
                        )  # fmt: skip
                    arrays[name][t] = arr
                    continue
                # the series' shape and axes (and the run) on its first page, as tifffile writes
                first = {"shape": [n, *arr.shape], "axes": "TZYX", **meta, "output": name}
                for z, page in enumerate(arr):
                    writers.get(name, arr).write(
                        page,
                        compression="zlib",
                        description=json.dumps(first) if t == z == 0 else None,
                        metadata=None,
                        photometric="minisblack",
                    )
    for path in dict.fromkeys(paths.values()):
        print(f"wrote {path}")
    return 0


def _run_chunked(args, model, image, outputs, ranges, meta, out) -> int:
    """A .zarr OUT: :func:`napari_hemd.models.predict_stream`, in process or on Dask."""
    from napari_hemd.cli._progress import Progress
    from napari_hemd.distributed import dask_client
    from napari_hemd.models import pick_device, predict_stream

    on_dask = args.workers is not None or args.scheduler is not None
    if not on_dask:
        model.network.to(pick_device(args.device))
    elif args.device not in ("auto", "cpu"):
        logger.warning("--device %s is ignored on Dask workers (they use their CPU)", args.device)
    with Progress(disabled=args.no_progress, unit="chunk") as progress:
        with dask_client(workers=args.workers, scheduler=args.scheduler) as client:
            predict_stream(
                # workers load a named model or a file themselves (once each)
                args.model if on_dask else model,
                image,
                out,
                outputs=outputs,
                chunk=args.chunk,
                tile=args.tile,
                halo=args.halo,
                batch_size=args.batch_size,
                tta=args.tta,
                scale=args.scale,
                ranges=ranges,
                neighbourhood=args.neighbourhood,
                min_size=args.min_size,
                threads=args.threads,
                client=client,
                overwrite=args.overwrite,
                resume=not args.no_resume,
                progress=progress,
                metadata=meta,
            )
    print(f"wrote {out}")
    return 0
