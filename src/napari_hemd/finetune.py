"""Fine-tune a model on a user's corrected frames: the human-in-the-loop step, Qt-free.

A biologist proofreads a few frames of a movie (or slices of a stack, or single images) and marks
them *checked*; those frames and their corrected labels become training data, nothing else does.
:func:`finetune_workflow` starts from a shipped model or a model file, trains for a time budget
with the :data:`RECIPE` (chosen on ``benchmarks/finetune.py``, see docs/models.md), keeps the best
model so far when cancelled, scores one held-out checked frame before and after (when there are
three or more), and writes the new model file with its provenance (base model, frames, steps,
scores). It never touches the labels: re-segmenting with the new model is a separate, undoable
step (:func:`napari_hemd.image_segmentation.segment_image_workflow`).

The Fine-tune dock widget (:mod:`napari_hemd._widgets.finetune`) and ``napari-hemd train --init``
use this module. Imports torch only when it runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from napari_hemd.workflows import Progress, _drive

__all__ = [
    "RECIPE",
    "FineTuneRecipe",
    "FineTuneResult",
    "empty_frames",
    "finetune",
    "finetune_workflow",
    "frames_as_samples",
    "held_out_frame",
    "score_frames",
    "steps_for_budget",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneRecipe:
    """How a model is fine-tuned on a few corrected frames.

    Attributes
    ----------
    lr : float
        Adam learning rate, cosine-decayed over the steps the budget allows.
    freeze : {None, "encoder"}
        Keep the contracting path fixed (only the decoder and heads learn).
    augment : {"full", "basic"}
        Augmentation (see :class:`napari_hemd.models.TrainConfig`).
    noise_sigma : float
        Largest additive noise of the full augmentation.
    batch_size, patch_size : int
        Patches per step and their side (smaller frames are padded).
    val_every : int
        Steps between held-out losses (the best model on the held-out frame is kept).
    freeze_bn : bool
        Keep the model's batch-normalisation statistics (they were estimated on its whole
        training set; a few frames' patches would replace them).
    """

    lr: float = 2e-3
    freeze: str | None = None
    augment: str = "full"
    noise_sigma: float = 0.08
    batch_size: int = 4
    patch_size: int = 128
    val_every: int = 20
    freeze_bn: bool = True


#: The recipe the widget and ``train --init`` use (measured in ``benchmarks/finetune.py``).
RECIPE = FineTuneRecipe()


@dataclass
class FineTuneResult:
    """What a fine-tune produced.

    Attributes
    ----------
    path : Path
        The new model file.
    name : str
        The name the user gave it.
    base : str
        The model it started from.
    frames : list of int
        The checked frames it was trained on (the held-out one excluded).
    held_out : int or None
        The checked frame scored before and after (``None`` with fewer than three).
    before, after : dict or None
        ``F1``, ``AJI``, ``SEG`` of the base and the new model on the held-out frame.
    steps : int
        Optimiser steps done.
    seconds : float
        Wall time of the whole fine-tune.
    cancelled : bool
        Stopped by the user (the best model so far was kept).
    history : list of dict
        Training history (loss, held-out loss).
    scale : float
        The zoom it was trained and scored at; segment with the new model at this zoom.
    """

    path: Path
    name: str
    base: str
    frames: list[int]
    held_out: int | None
    before: dict | None
    after: dict | None
    steps: int
    seconds: float
    cancelled: bool
    history: list[dict] = field(default_factory=list)
    scale: float = 1.0


def held_out_frame(frames: Sequence[int], empty: Sequence[int] = ()) -> int | None:
    """The checked frame scored before and after: the last one, when there are three or more.

    Frames in ``empty`` (labels with no object: a checked field without cells) are not held
    out: no object, no score (F1 and AJI of nothing are undefined); the last frame with
    objects is, when another frame with objects is left for training (else none is).
    """
    frames = sorted({int(f) for f in frames})
    if len(frames) < 3:
        return None
    scored = [f for f in frames if f not in set(empty)]
    return scored[-1] if len(scored) >= 2 else None


def empty_frames(labels, frames: Sequence[int]) -> list[int]:
    """The ``frames`` of ``labels`` (a (T, Y, X) movie or one (Y, X) image) with no object."""
    return [int(t) for t in frames if not np.any(_frame(labels, int(t)))]


def _frame(arr, t: int) -> np.ndarray:
    return np.asarray(arr if np.ndim(arr) == 2 else arr[t])


def frames_as_samples(
    image, labels, frames: Sequence[int], normalization: dict, name: str, scale: float = 1.0
):
    """Training samples from ``frames`` of an image and its corrected labels.

    Parameters
    ----------
    image, labels : (T, Y, X) or (Y, X) arrays
        Raw intensities and instance labels of the same shape (a 3D stack's slices are frames).
    frames : sequence of int
        Frame (slice) indices; a single 2D image has the one frame ``0``.
    normalization : dict
        The model's normalisation (``metadata["normalization"]``).
    name : str
        Prefix of the sample names (``NAME/tNNN``).
    scale : float
        Zoom the samples as prediction zooms frames (``segment --scale``;
        :func:`napari_hemd.models.data.zoom_samples`).

    Raises
    ------
    ValueError
        Shapes differ, no frames, or a frame is out of range.
    """
    from napari_hemd.models.data import Sample, zoom_samples
    from napari_hemd.models.weights import normalize_percentile

    shape_i, shape_l = tuple(np.shape(image)), tuple(np.shape(labels))
    if shape_i != shape_l:
        raise ValueError(
            f"image and labels must have the same shape; got image {shape_i} and labels {shape_l}"
        )
    if len(shape_i) not in (2, 3):
        raise ValueError(f"image must be (Y, X) or (T, Y, X); got shape {shape_i}")
    n = 1 if len(shape_i) == 2 else shape_i[0]
    frames = sorted({int(f) for f in frames})
    if not frames:
        raise ValueError("frames: mark at least one corrected frame as checked; got none")
    bad = [f for f in frames if not 0 <= f < n]
    if bad:
        raise ValueError(f"frames must be in 0..{n - 1}; got {bad}")
    out = []
    for t in frames:
        img = _frame(image, t).astype(np.float32)
        lab = _frame(labels, t).astype(np.int32)
        norm = normalize_percentile(img, normalization["low"], normalization["high"])
        out.append(Sample(norm, lab, f"{name}/t{t:03d}", "corrected"))
    return zoom_samples(out, scale)


def score_frames(model, image, labels, frames: Sequence[int], scale: float = 1.0) -> dict:
    """F1, AJI and SEG of ``model`` + H-EMD (what Segment gives) on ``frames``, pooled.

    Each frame is segmented on its own (a single image), at zoom ``scale``, with the model's
    segment defaults and whole-cell growth, exactly as :func:`napari_hemd.segment_image` does.
    """
    from napari_hemd.core.metrics import aggregate_statistics, frame_statistics
    from napari_hemd.image_segmentation import segment_image

    stats = []
    for t in frames:
        img = _frame(image, t)
        seg = segment_image(img[None], model, "hemd", scale=scale)
        stats.append(frame_statistics(_frame(labels, t), seg.labels[0]))
    scores = aggregate_statistics(stats)
    return {k: round(float(scores[k]), 4) for k in ("F1", "AJI", "SEG")}


def steps_for_budget(model, recipe: FineTuneRecipe, seconds: float, device: str = "cpu") -> int:
    """How many training steps fit in ``seconds``: a few timed forward/backward passes.

    Timed on a copy: the model's weights and normalisation statistics are left as they are.
    """
    import copy

    import torch

    net = copy.deepcopy(model.network).to(device).train()
    x = torch.randn(recipe.batch_size, 1, recipe.patch_size, recipe.patch_size, device=device)
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        out = net(x)
        out = out["embedding"] if isinstance(out, dict) else out
        out.float().mean().backward()
        net.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    # the loss, targets, augmentation and optimiser add about a quarter to a bare pass
    per_step = 1.25 * float(np.median(times[1:]))
    return max(5, int(seconds / per_step))


def finetune_workflow(
    image, labels, frames: Sequence[int], base="nuclei-fluo", **kwargs
) -> Generator[Progress, None, FineTuneResult]:
    """:func:`finetune` as a workflow: yields ``(stage, done, total)``, returns the result.

    The Fine-tune widget runs it in a thread. Keyword arguments as for :func:`finetune`
    (``output`` is required). Closing the generator (the run is killed) stops training at its
    next step and writes no model; ``stop`` instead ends training early and keeps the best model
    so far.
    """
    return (yield from _drive(finetune, image, labels, frames, base, **kwargs))


def finetune(
    image,
    labels,
    frames: Sequence[int],
    base="nuclei-fluo",
    *,
    output: str | os.PathLike,
    minutes: float = 2.0,
    name: str | None = None,
    recipe: FineTuneRecipe = RECIPE,
    hold_out: bool = True,
    scale: float | None = None,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    on_eval: Callable[[dict], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> FineTuneResult:
    """Fine-tune ``base`` on the checked ``frames`` for about ``minutes``; write ``output``.

    Parameters
    ----------
    image, labels : (T, Y, X) or (Y, X) arrays
        The raw movie (or stack, or one image) and its corrected labels.
    frames : sequence of int
        The frames the user checked; only these are training data.
    base : str, path or HemdModel
        Shipped model name or model file to start from (a loaded model is copied, not changed).
    output : path-like
        The new model file (``.pt``); an existing file is never replaced.
    minutes : float
        Time budget of the whole fine-tune (scoring included).
    name : str, optional
        The model's name (stored in it); default the file's stem.
    recipe : FineTuneRecipe
    hold_out : bool
        With three or more frames, hold the last one out and score it before and after.
    scale : float
        The zoom the movie is segmented at (``segment --scale``, the labels' ``scale``
        parameter): the frames are zoomed by it for training and scoring, so the objects keep the
        size the network learned; the new model records it and is used at it. U-Nets only.
        Default (None): the base model's own zoom (the zoom ``segment_image`` uses it at).
    seed, device, threads
        Random seed, torch device (``"auto"``: CUDA, MPS, CPU) and CPU threads.
    stop : callable, optional
        Checked after every step (the widget's Cancel): training stops and the best model so far
        is written.
    on_step : callable, optional
        ``(step, loss)`` after every step (a live loss curve).
    on_eval : callable, optional
        Each training history entry (step, loss, held-out loss) as it is made.
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    FineTuneResult
    """
    import torch

    from napari_hemd.models.prediction import _check_scale, scaled_shape
    from napari_hemd.models.registry import load_model
    from napari_hemd.models.training import TrainConfig, pick_device, train_model

    t0 = time.perf_counter()
    report = progress or (lambda *a: None)
    output = Path(output)
    if output.suffix != ".pt":
        raise ValueError(f"output must be a .pt model file; got {str(output)!r}")
    if output.exists():
        raise FileExistsError(f"output {str(output)!r} already exists; choose another name")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(output.parent)!r} does not exist")
    if not float(minutes) > 0:
        raise ValueError(f"minutes must be > 0; got {minutes!r}")
    if isinstance(base, (str, os.PathLike)):
        model, base_name = load_model(base), str(base)
    else:  # a loaded model: its own name, if it was fine-tuned here
        model, base_name = base, str(base.metadata.get("name", "(a loaded model)"))
    scale = _check_scale(scale, model)
    norm = model.metadata["normalization"]
    frames = sorted({int(f) for f in frames})
    from napari_hemd.models.data import refuse_no_objects

    n = 1 if np.ndim(labels) == 2 else np.shape(labels)[0]
    empty = empty_frames(labels, [f for f in frames if 0 <= f < n])  # others: refused below
    refuse_no_objects(empty, frames, "labels")
    held = held_out_frame(frames, empty) if hold_out else None
    train_frames = [f for f in frames if f != held]
    train = frames_as_samples(image, labels, train_frames, norm, "checked", scale)
    val = (
        frames_as_samples(image, labels, [held], norm, "checked", scale) if held is not None else []
    )
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        before = None
        if held is not None:
            report("score the starting model", 0, 1)
            before = score_frames(model, image, labels, [held], scale)
            report("score the starting model", 1, 1)
        dev = str(pick_device(device))
        shape = scaled_shape(np.shape(image), scale)  # the frames as the network sees them
        patch = _patch_size(shape, recipe.patch_size, model.network.divisor)
        recipe_used = FineTuneRecipe(**{**asdict(recipe), "patch_size": patch})
        spent = time.perf_counter() - t0
        # what is left for training: the budget less what scoring took and will take again
        left = max(5.0, 60 * float(minutes) - 2 * spent - 1.0)
        steps = steps_for_budget(model, recipe_used, left, dev)
        cfg = TrainConfig(
            model=model.kind,
            init=base_name,
            steps=steps,
            max_minutes=left / 60,
            batch_size=recipe_used.batch_size,
            patch_size=patch,
            lr=recipe_used.lr,
            seed=seed,
            val_every=min(recipe_used.val_every, steps),
            checkpoint_every=0,
            augment=recipe_used.augment,
            noise_sigma=recipe_used.noise_sigma,
            freeze=recipe_used.freeze,
            freeze_bn=recipe_used.freeze_bn,
            device=dev,
        )

        def step_hook(step: int, loss: float) -> None:
            if on_step is not None:
                on_step(step, loss)
            report("fine-tune", step, steps)

        # trained outside the output folder: a project folder may be replaced (autosaved)
        # while the model trains
        tmp_dir = Path(tempfile.mkdtemp(prefix="napari-hemd-finetune-"))
        tmp = tmp_dir / "training.pt"
        try:
            tuned, _ = train_model(
                train,
                val,
                tmp,
                cfg,
                progress=False,
                stop=stop,
                on_step=step_hook,
                callback=on_eval,
                data_description=[f"checked frames {train_frames}"],
                init_model=model,
                scale=scale,
                score_at_end=False,  # scored below, before and after, on the same frame
            )
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        after = None
        if held is not None:
            report("score the new model", 0, 1)
            after = score_frames(tuned, image, labels, [held], scale)
            report("score the new model", 1, 1)
    finally:
        torch.set_num_threads(old_threads)
    info = tuned.metadata["training"]
    cancelled = info.get("stopped") == "cancelled"
    tuned.metadata["name"] = name or output.stem
    tuned.metadata["fine_tuned"] = {
        "base": base_name,
        "frames": train_frames,
        "held_out": held,
        "before": before,
        "after": after,
        "steps": int(info["steps_done"]),
        "minutes": float(minutes),
        "recipe": asdict(recipe_used),
        "cancelled": cancelled,
        "scale": scale,
    }
    from napari_hemd.models.weights import save_model_file

    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        raise FileExistsError(f"output {str(output)!r} appeared while training; not replaced")
    # atomic: a killed run leaves no half-written model; float16 as train_model wrote it
    save_model_file(tuned, output, half=True)
    seconds = time.perf_counter() - t0
    log.info("fine-tuned %s on frames %s: %s -> %s", base_name, train_frames, before, after)
    return FineTuneResult(
        output,
        tuned.metadata["name"],
        base_name,
        train_frames,
        held,
        before,
        after,
        int(info["steps_done"]),
        seconds,
        cancelled,
        list(info.get("history", [])),
        scale,
    )


def _patch_size(shape, patch: int, divisor: int) -> int:
    """The recipe's patch, no larger than the frame (rounded down to the network's divisor)."""
    side = min(int(patch), int(min(shape)))
    return max(divisor, side - side % divisor)
