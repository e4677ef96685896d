"""``napari-hemd train``: train a U-Net or an affinity network on CTC or image/label folders."""

from __future__ import annotations

import argparse
import logging

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser(
        "train",
        help="train a U-Net (foreground/boundary/background) or a pixel-embedded affinity network",
        description=(
            "Train on Cell Tracking Challenge sequences (raw frames + SEQ_ST/SEG or SEQ_GT/SEG) or "
            "folders with images/ and labels/. A contiguous block of frames of every --data is "
            "held out; the model with the best held-out loss is written to -o."
        ),
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR",
        help="training data folder (repeat for several)",
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
        "--masks",
        choices=("auto", "st", "gt"),
        default="auto",
        help="CTC masks: silver truth, gold truth, or auto (ST, else GT)",
    )
    p.add_argument(
        "--val",
        default="0.2",
        help="held out per --data: a fraction (last frames) or START:STOP (default 0.2)",
    )
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--depth", type=int, default=None, help="down-samplings (unet 3, affinity 4)")
    p.add_argument("--embedding-dim", type=int, default=16, help="affinity: embedding dimension D")
    p.add_argument("--ranges", default="1,3,5,9,27", help="affinity: ranges, comma separated")
    p.add_argument("--neighbourhood", type=int, choices=(4, 8), default=4)
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
        help="largest additive noise of the full augmentation (normalised units; default 0.25)",
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
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--resume", action="store_true", help="continue from MODEL.ckpt")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1 ...")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument("--no-progress", action="store_true")
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
    if out.exists() and not (args.overwrite or args.resume):
        raise FileExistsError(f"output {str(out)!r} already exists; pass --overwrite")
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
    train, val = [], []
    for d in args.data:
        samples = load_samples(d, masks=args.masks)
        tr, va = split_samples(samples, args.val)
        train += tr
        val += va
        logger.warning("%s: %d training, %d held-out samples", d, len(tr), len(va))
    kind = args.model
    if args.init is not None and kind is None:
        from napari_hemd.models import load_model

        kind = load_model(args.init).kind
    cfg = TrainConfig(
        model=kind or "unet",
        init=args.init,
        architecture=arch,
        steps=args.steps,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        seed=args.seed,
        val_every=args.val_every,
        targets=args.targets,
        augment=args.augment,
        balance=not args.no_balance,
        score_every=args.score_every,
        score_frames=args.score_frames,
        noise_sigma=args.noise,
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
        data_description=[str(d) for d in args.data],
    )
    if args.half:
        from napari_hemd.models import save_model_file

        save_model_file(model, out, half=True)
    last = history[-1] if history else {}
    print(
        f"wrote {out} (steps {last.get('step')}, loss {last.get('loss', float('nan')):.4f}, "
        f"held-out loss {last.get('val_loss', float('nan')):.4f})"
    )
    return 0
