"""``napari-hemd train``: train a U-Net or an affinity network on CTC or image/label folders."""

from __future__ import annotations

import argparse
import logging
import math

from napari_hemd._log import NOTE

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def _is_zero(val: str) -> bool:
    """Whether ``--val`` asked for no held-out frames (``0``, ``0.0``)."""
    try:
        return float(val) == 0.0
    except ValueError:
        return False


def register(subparsers) -> None:
    """Add the ``train`` subcommand."""
    from napari_hemd.cli._segment import positive_int

    p = subparsers.add_parser(
        "train",
        help="train a U-Net (foreground/boundary/background) or a pixel-embedded affinity network",
        description=(
            "Train on Cell Tracking Challenge sequences (raw frames + SEQ_ST/SEG or SEQ_GT/SEG), "
            "folders with images/ and labels/, .h5 volumes, or the checked frames of a "
            "napari-hemd project (.zarr). A contiguous block of frames of every --data is held "
            "out; the model with the best held-out loss is written to -o. With --init it "
            "fine-tunes: the fine-tuning recipe's learning rate and noise, one held-out frame "
            "when there are three or more, and as many steps as --max-minutes allows."
        ),
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR",
        help="training data: CTC sequence, images/ + labels/ folder, .h5 volume or project "
        ".zarr (its checked frames); repeat for several",
    )
    p.add_argument(
        "--model",
        choices=("unet", "affinity"),
        default=None,
        help="network kind (default unet; with --init: the init model's)",
    )
    p.add_argument(
        "--init",
        metavar="MODEL_OR_FILE",
        default=None,
        help="fine-tune: start from a shipped model or a model file (its architecture, "
        "normalisation and targets)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="MODEL", help="model file to write (.pt)"
    )
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        metavar="S",
        help="zoom the images and masks by S as `segment --scale S` zooms frames: a model to use "
        "at that zoom (e.g. --init on cells of another size than the model's); the model file "
        "records it, and segment, predict and stream use it at S unless given --scale; U-Nets "
        "only. Default: a project's own zoom (the one its labels were segmented at), else the "
        "--init model's own, else 1",
    )
    p.add_argument(
        "--masks",
        choices=("auto", "st", "gt"),
        default="auto",
        help="CTC masks: silver truth, gold truth, or auto (ST, else GT)",
    )
    p.add_argument(
        "--val",
        default=None,
        help="held out per --data: a fraction (last frames), START:STOP (positions among its "
        "frames with masks, from 0) or auto (the last of three or more); default 0.2, with "
        "--init auto",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimiser steps (default 2000; with --init and --max-minutes: what fits in them)",
    )
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time")
    p.add_argument("--batch-size", type=int, default=4, help="patches per optimiser step (4)")
    p.add_argument(
        "--patch-size",
        type=int,
        default=128,
        help="training patch side in pixels (128; a multiple of 2**depth)",
    )
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (default 2e-3, also with --init)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (patches, augmentation, init)")
    p.add_argument("--base-channels", type=int, default=16, help="channels of the first level (16)")
    p.add_argument("--depth", type=int, default=None, help="down-samplings (unet 3, affinity 4)")
    p.add_argument(
        "--embedding-dim", type=int, default=16, help="affinity: embedding dimension D (16)"
    )
    p.add_argument("--ranges", default="1,3,5,9,27", help="affinity: ranges, comma separated")
    p.add_argument(
        "--neighbourhood",
        type=int,
        choices=(4, 8),
        default=4,
        help="affinity: offsets along the axes (4) or also the diagonals (8)",
    )
    p.add_argument(
        "--targets",
        choices=("cell", "interior"),
        default="cell",
        help="U-Net targets: cell (whole cell, dips where cells touch; default) or interior "
        "(every cell's outer ring is boundary: the old models)",
    )
    p.add_argument(
        "--augment",
        choices=("full", "basic"),
        default="full",
        help="full: rotation, flip, zoom, elastic, contrast, gamma, blur, noise (default); "
        "basic: 90-degree rotations, flips, gain and weak noise",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=None,
        help="largest additive noise of the full augmentation (normalised units; default 0.25, "
        "with --init 0.08)",
    )
    p.add_argument(
        "--dim-objects",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a training patch has some of its objects dimmed towards the "
        "background (faint, bleached nuclei late in a sequence; default 0: off)",
    )
    p.add_argument(
        "--dim-parts",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a training patch has parts of some of its objects faded to the "
        "background, their masks kept whole (nuclei of which only part shines; default 0: off)",
    )
    p.add_argument(
        "--update-bn",
        action="store_true",
        help="fine-tuning: re-estimate batch-norm statistics from the new data (default with "
        "--init: keep the model's)",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="keep an exponential moving average of the weights with this decay (e.g. 0.999) and "
        "score, choose and write the averaged network (default 0: off)",
    )
    p.add_argument(
        "--class-weights",
        type=_class_weights_option,
        default=None,
        metavar="FG,BOUNDARY,BG",
        help="U-Net: cross-entropy weights of foreground, boundary (contact) and background "
        "(default 1,3,1 for cell targets, 1,2,1 for interior targets)",
    )
    p.add_argument(
        "--dice-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="U-Net: add W x a soft-Dice loss on the whole cell to the cross-entropy (default 0: "
        "cross-entropy alone)",
    )
    p.add_argument(
        "--contact-weight",
        type=float,
        default=1.0,
        metavar="W",
        help="affinity model: weight of the pixel pairs that join two different objects (the "
        "edges across touching nuclei) in the correlation losses (default 1: as in the paper)",
    )
    p.add_argument(
        "--foreground-oversample",
        action="append",
        default=None,
        metavar="[NAME=]F",
        help="fraction of the training patches centred on a labelled pixel (e.g. 0.5 for frames "
        "that are mostly background; default 0: patches anywhere); NAME=F sets it for the "
        "--data folders whose name contains NAME (e.g. SIM+=0.5; repeat for several), a plain "
        "F then sets it for the others",
    )
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="do not calibrate at the end (default: choose a U-Net's test-time flips and "
        "whole-cell growth threshold or an affinity network's Mutex-watershed bias on training "
        "frames; stored in the model)",
    )
    p.add_argument(
        "--freeze",
        choices=("encoder",),
        default=None,
        help="fine-tuning: keep the contracting path's weights (train decoder and heads only)",
    )
    p.add_argument(
        "--no-balance",
        action="store_true",
        help="draw frames by area over all --data (default: every --data equally often)",
    )
    p.add_argument(
        "--score-every",
        type=int,
        default=0,
        help="steps between instance scores (F1, AJI) on whole held-out frames; the best-scoring "
        "model is kept (default 0: the model with the best held-out loss)",
    )
    p.add_argument(
        "--score-frames", type=int, default=8, help="held-out frames scored per --data (default 8)"
    )
    p.add_argument("--val-every", type=int, default=100, help="steps between held-out losses (100)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=250,
        help="steps between checkpoints (MODEL.pt.ckpt) that --resume continues from (250)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from MODEL.pt.ckpt (same options)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1 ...")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument(
        "--half",
        action="store_true",
        help="store weights as float16, as the shipped models are (the default; kept for older "
        "scripts)",
    )
    precision.add_argument(
        "--float32",
        action="store_true",
        help="store weights as float32 (twice the file; default: float16 like the shipped models)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and write the model; returns 0."""
    from pathlib import Path

    try:
        import torch
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "napari-hemd train needs torch: pip install 'napari-hemd[torch]'"
        ) from None
    from napari_hemd.models import TrainConfig, load_samples, split_samples, train_model

    out = Path(args.output)
    if out.suffix.lower() != ".pt":  # a TIFF or a folder given by mistake is never replaced
        raise ValueError(f"-o/--output must be a model file ending in .pt; got {str(out)!r}")
    if out.exists() and not (args.overwrite or args.resume):
        raise FileExistsError(f"output {str(out)!r} already exists; pass --overwrite")
    ckpt = out.with_name(out.name + ".ckpt")
    if ckpt.exists() and not (args.overwrite or args.resume):  # (it was replaced, then
        raise FileExistsError(  # removed: an interrupted run's steps lost, audit 37)
            f"{str(ckpt)!r} holds an interrupted run of {str(out)!r}: --resume continues it; "
            "--overwrite starts anew and discards it"
        )
    # --overwrite: the old run's checkpoint goes once this run has trained (it outlived a new
    # run that wrote none of its own, which then offered it to --resume: review 33b; not
    # before: a run refused at its start lost it for nothing, review 33c)
    old_ckpt = _file_id(ckpt) if ckpt.exists() and not args.resume else None
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(out.parent)!r} does not exist")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        ranges = tuple(int(r) for r in args.ranges.split(","))
    except ValueError:
        raise ValueError(
            f"--ranges must be comma-separated integers; got {args.ranges!r}"
        ) from None
    arch = {"base_channels": args.base_channels}
    if args.depth is not None:
        arch["depth"] = args.depth
    if args.model == "affinity":
        arch["embedding_dim"] = args.embedding_dim
    from napari_hemd.finetune import RECIPE

    fine_tune = args.init is not None
    val_spec = args.val if args.val is not None else ("auto" if fine_tune else "0.2")
    kind = args.model
    if fine_tune:
        from napari_hemd.models import load_model

        base = load_model(args.init, name="--init")
        kind = kind or base.kind
    from napari_hemd.models.data import project_scale, zoom_samples

    if args.scale is not None:
        _check_train_scale(args.scale, kind)
    from napari_hemd.models.prediction import model_scale

    # data that are not a project: a fine-tune continues at the zoom the model is used at
    base_zoom = model_scale(base) if fine_tune else 1.0
    train, val, described, zooms = [], [], [], set()
    for d in args.data:
        samples = load_samples(d, masks=args.masks)
        tr, va = split_samples(samples, val_spec)
        # --scale, else the zoom a project's labels were segmented at (the Fine-tune widget's),
        # else the --init model's own
        zoom = args.scale if args.scale is not None else project_scale(d, base_zoom)
        if args.scale is None and zoom != base_zoom:  # (an affinity model's zoom is 1)
            _check_train_scale(zoom, kind, f"project {str(d)!r} was segmented at zoom {zoom:g}")
        tr, va = zoom_samples(tr, zoom), zoom_samples(va, zoom)
        zooms.add(zoom)
        train += tr
        val += va
        described.append(str(d) + ("" if zoom == 1.0 else f" (zoom {zoom:g})"))
        at = "" if zoom == 1.0 else f", at zoom {zoom:g}"
        logger.log(NOTE, "%s: %d training, %d held-out samples%s", d, len(tr), len(va), at)
    steps = args.steps
    if steps is None and args.resume:  # the interrupted run's plan (re-estimated, it moved the
        steps = _planned_steps(out)  # schedule: 292 steps became 277, audit 27)
    if fine_tune and steps is None and args.max_minutes is not None:
        from dataclasses import replace

        from napari_hemd.finetune import steps_for_budget

        recipe = replace(RECIPE, batch_size=args.batch_size, patch_size=args.patch_size)
        steps = steps_for_budget(base, recipe, 60 * args.max_minutes)
        logger.log(NOTE, "--max-minutes %g: about %d steps", args.max_minutes, steps)
    cfg = TrainConfig(
        model=kind or "unet",
        init=args.init,
        architecture=arch,
        steps=2000 if steps is None else steps,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr if args.lr is not None else (RECIPE.lr if fine_tune else 2e-3),
        freeze=args.freeze,
        freeze_bn=fine_tune and RECIPE.freeze_bn and not args.update_bn,
        calibrate=not args.no_calibrate,
        ema=args.ema,
        contact_weight=args.contact_weight,
        dice_weight=args.dice_weight,
        class_weights=args.class_weights,
        seed=args.seed,
        val_every=args.val_every,
        targets=args.targets,
        augment=args.augment,
        balance=not args.no_balance,
        foreground_oversample=_oversample_option(args.foreground_oversample),
        score_every=args.score_every,
        score_frames=args.score_frames,
        noise_sigma=args.noise
        if args.noise is not None
        else (RECIPE.noise_sigma if fine_tune else None),
        dim_objects=args.dim_objects,
        dim_parts=args.dim_parts,
        checkpoint_every=args.checkpoint_every,
        ranges=ranges,
        neighbourhood=args.neighbourhood,
        device=args.device,
        amp=not args.no_amp,
    )
    model, history = train_model(
        train,
        val,
        out,
        cfg,
        resume=args.resume,
        progress=not args.no_progress,
        data_description=described,
        # the zoom segment uses it at by default: one zoom for all --data, else none (1)
        scale=zooms.pop() if len(zooms) == 1 else 1.0,
        half=not args.float32,
    )
    if old_ckpt is not None and ckpt.exists() and _file_id(ckpt) == old_ckpt:
        ckpt.unlink()  # (not this run's own, which its first checkpoint replaced)
    last = history[-1] if history else {}
    val_loss = last.get("val_loss")
    held = (
        f"held-out loss {val_loss:.4f}"
        if val_loss is not None and math.isfinite(val_loss)
        else "no held-out frames: --val 0 holds none out"
        if args.val is not None and _is_zero(args.val)
        else "no held-out frames: too few in --data to hold a block out"
    )
    print(
        f"wrote {out} (steps {last.get('step')}, loss {last.get('loss', float('nan')):.4f}, {held})"
    )
    ckpt = out.with_name(out.name + ".ckpt")
    if ckpt.exists():  # stopped before --steps (--max-minutes): kept for --resume, said
        print(
            f"kept the checkpoint {ckpt} ({ckpt.stat().st_size / 1e6:.1f} MB) to continue with "
            "--resume (the same command); delete it when the model is final"
        )
    scored = [h for h in history if "val_score" in h]
    if scored:  # --score-every: the network written is the best-scoring one
        best = max(scored, key=lambda h: h["val_score"])
        print(
            f"kept the best held-out score, {best['val_score']:.3f} at step {best['step']} (of "
            f"{len(scored)} scores); napari-hemd models {out} describes it"
        )
    elif model.metadata["training"].get("final_score"):  # chosen by the held-out loss
        final = model.metadata["training"]["final_score"]
        per = "; ".join(
            f"{k} F1 {v['F1']:.3f} AJI {v['AJI']:.3f}" for k, v in final["val_scores"].items()
        )
        print(
            f"held-out score of the network written (step {final['step']}, {final['frames']} "
            f"frame(s)): {per}; napari-hemd models {out} describes it"
        )
    return 0


def _check_train_scale(scale: float, kind: str | None, why: str | None = None) -> None:
    """Refuse a training zoom out of range or for an affinity network.

    ``why``: where the zoom came from, when not from ``--scale``.
    """
    from napari_hemd.models.prediction import SCALE_RANGE

    lo, hi = SCALE_RANGE
    if not lo <= scale <= hi:
        raise ValueError(f"--scale must be between {lo:g} and {hi:g}; got {scale:g}")
    if scale != 1.0 and (kind or "unet") != "unet":
        raise ValueError(
            f"{why or f'--scale {scale:g}'}: a zoom needs a U-Net (an affinity model predicts "
            f"without one); got a model of kind {kind!r}" + ("; pass --scale 1" if why else "")
        )


def _class_weights_option(text: str) -> tuple[float, float, float]:
    try:
        weights = tuple(float(v) for v in text.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 3 or not all(w > 0 and w < float("inf") for w in weights):
        raise argparse.ArgumentTypeError(
            f"expected three positive numbers FG,BOUNDARY,BG (e.g. 1,3,1); got {text!r}"
        )
    return weights


def _oversample_option(values: list[str] | None) -> float | dict:
    """``--foreground-oversample`` values (``F`` or ``NAME=F``) as TrainConfig takes them."""
    if not values:
        return 0.0
    per_folder: dict[str, float] = {}
    for v in values:
        name, sep, frac = v.rpartition("=")
        try:
            f = float(frac)
        except ValueError:
            raise ValueError(
                f"--foreground-oversample takes F or NAME=F with F a fraction in [0, 1]; got {v!r}"
            ) from None
        if sep and not name:
            raise ValueError(f"--foreground-oversample NAME=F needs a NAME; got {v!r}")
        per_folder[name if sep else "*"] = f
    if list(per_folder) == ["*"]:
        return per_folder["*"]
    return per_folder


def _planned_steps(out) -> int | None:
    """The steps the run that wrote ``OUT.ckpt`` planned (None: none recorded, or no file)."""
    import torch

    ckpt = out.with_name(out.name + ".ckpt")
    try:
        planned = torch.load(ckpt, map_location="cpu", weights_only=True).get("steps")
    except Exception:  # no checkpoint, or an unreadable one: training says so itself
        return None
    return int(planned) if planned else None


def _file_id(path) -> tuple[int, int, int]:
    """``path``'s inode, size and modification time: whether a file is still the same one."""
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns
