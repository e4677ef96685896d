"""Training loops for the 3-class U-Net and the pixel-embedded affinity network.

``train_model`` is a plain function: samples in, a :class:`HemdModel` out, with a held-out loss
reported along the way. It seeds everything, samples random patches with flips / 90-degree
rotations / intensity jitter, checkpoints and resumes, shows a tqdm bar, picks CUDA / MPS / CPU and
uses mixed precision on CUDA.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from numbers import Real
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_hemd._log import NOTE
from napari_hemd.models._allocator import heap_allocation
from napari_hemd.models.affinity import (
    affinity_targets,
    instance_pairs,
    make_offsets,
    pyramid_ranges,
    self_correlation,
)
from napari_hemd.models.augmentation import (
    Augmentation,
    augment_intensity,
    dim_objects,
    dim_parts,
    warp_patch,
)
from napari_hemd.models.data import Sample, object_diameters
from napari_hemd.models.weights import (
    HemdModel,
    load_model_file,
    round_to_half,
    save_model_file,
)

__all__ = ["TrainConfig", "pick_device", "semantic_targets", "train_model"]

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training hyper-parameters (all stored in the model file's metadata).

    Attributes
    ----------
    model : {"unet", "affinity"}
    architecture : dict
        Constructor kwargs of the network (``base_channels``, ``depth``, ...).
    steps : int
        Optimiser steps.
    max_minutes : float or None
        Stop early after this wall time (the best model so far is kept).
    batch_size, patch_size : int
        Random patches per step and their side (a multiple of the network's divisor).
    lr : float
        Adam learning rate, cosine-decayed to 5 % of it over ``steps`` or, when ``max_minutes``
        ends training sooner, over that wall time (a resumed run follows the steps again).
    seed : int
    val_every : int
        Steps between evaluations of the held-out loss (the model with the best one is kept).
    checkpoint_every : int
        Steps between checkpoints (``OUTPUT.ckpt``); 0 disables them.
    class_weights : tuple of float or None
        Cross-entropy weights of foreground / boundary / background (U-Net); None: 1 / 2 / 1 for
        ``"interior"`` targets, 1 / 3 / 1 for ``"cell"`` targets (contacts are rare pixels).
    dice_weight : float
        U-Net: weight of a soft-Dice loss on the whole cell (1 - background probability against
        the union of the foreground and boundary targets, over the batch) added to the
        cross-entropy. Cross-entropy counts pixels, so a network may leave a dim part of a large
        cell to the background at little cost; Dice counts the cell's missing share. 0 (default):
        cross-entropy alone.
    targets : {"cell", "interior"}
        U-Net targets (see :func:`semantic_targets`). ``"cell"``: foreground is the whole cell
        except the pixels where it touches another cell, so each cell is one flat-topped hill of
        the foreground probability and touching cells are separated by a dip (what H-EMD's
        threshold forest needs). ``"interior"``: the pre-2026-12 targets (every cell's outermost
        pixels are boundary).
    augment : {"full", "basic"}
        ``"full"``: :class:`~napari_hemd.models.augmentation.Augmentation` defaults (any-angle
        rotation, flip, zoom 0.7-1.4, elastic, contrast, gamma, blur, noise); ``"basic"``: 90-degree
        rotations, flips, gain/offset and weak noise (the old recipe).
    balance : bool
        Draw each ``--data`` folder equally often (frames within one by area), so a small dataset
        is not drowned by a large one; else every frame by its area.
    foreground_oversample : float or dict of str to float
        Fraction of the training patches centred on a labelled pixel (drawn uniformly among the
        frame's object pixels) instead of a uniform position. 0 (default): uniform positions.
        Sparse frames need it: nuclei cover 3 % of a Fluo-N2DH-SIM+ frame, so most uniform
        128-pixel patches hold no nucleus, or a sliver of one. A dict sets it per data folder:
        ``{"SIM+": 0.5}`` oversamples the folders whose name (``DATASET/SEQ``) contains
        ``SIM+``; the key ``"*"`` sets the fraction of the folders no other key names (default 0).
        Every other key must name at least one folder.
    score_every : int
        Steps between instance scores on whole held-out frames (threshold instances grown to whole
        cells, mean of F1 and AJI over the data folders); the model with the best score is kept.
        0: choose by the held-out loss instead; the network written is then scored once at the
        end (``metadata["training"]["final_score"]``), so every run with held-out frames says
        how it scored.
    score_frames : int
        At most this many held-out frames per data folder are scored (evenly spaced in the block).
    noise_sigma : float or None
        Largest additive noise of the ``"full"`` augmentation (default: the
        :class:`~napari_hemd.models.augmentation.Augmentation` default).
    dim_objects : float
        Probability that a training patch has some of its objects dimmed towards the background
        (:func:`~napari_hemd.models.augmentation.dim_objects`: faint, bleached nuclei); 0: off.
        Only with the ``"full"`` augmentation.
    dim_parts : float
        Probability that a training patch has parts of some of its objects faded to the
        background, their labels kept whole (:func:`~napari_hemd.models.augmentation.dim_parts`:
        nuclei of which only part shines); 0: off. Only with the ``"full"`` augmentation.
    init : str or None
        Fine-tune: start from this shipped model or model file (its architecture, normalisation,
        targets and offsets are used; the file records where it came from).
    freeze : {None, "encoder"}
        ``"encoder"``: the contracting path (``stem``, ``down``, ``bottom``) keeps its weights;
        only the decoder and heads are trained (a fine-tuning option; see docs/models.md for what
        it measured).
    calibrate : bool
        At the end, calibrate on up to 4 training frames per data folder and store the choice in
        the model (:func:`napari_hemd.models.calibrate_model`: a U-Net's test-time flips and
        whole-cell growth threshold, an affinity network's Mutex-watershed bias).
    freeze_bn : bool
        Batch normalisation keeps the model's running statistics (layers in eval mode) instead
        of re-estimating them from the training patches (fine-tuning on a few frames).
    ema : float
        Decay of an exponential moving average of the weights (and batch-norm statistics), e.g.
        0.999; 0 turns it off. When on, the held-out loss and scores are measured on the
        averaged network and the averaged network is what is kept and written: it follows the
        same trajectory with the step-to-step noise of the last ~``1 / (1 - ema)`` steps averaged
        out. The decay warms up as ``min(ema, (1 + n) / (10 + n))`` after ``n`` updates, so a
        short run is not dominated by its first weights.
    ranges, neighbourhood : affinity offsets (affinity model).
    alpha, beta, gamma : float
        Weights of the self-, cross-correlation and pyramid losses (paper: 1, 1, 1).
    foreground_weight : float
        Weight of the foreground BCE loss (affinity model).
    contact_weight : float
        Affinity model: weight, in the self- and cross-correlation losses, of the pixel pairs
        that join two *different* objects (both foreground, labels differ: the long-range edges
        across touching nuclei, which the Mutex watershed needs repulsive). 1 (default): every
        pair counts alike, as in the paper.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU) or a torch device string.
    amp : bool
        Mixed precision (only used on CUDA).
    """

    model: str = "unet"
    architecture: dict = field(default_factory=dict)
    steps: int = 2000
    max_minutes: float | None = None
    batch_size: int = 4
    patch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    val_every: int = 100
    checkpoint_every: int = 500
    class_weights: tuple | None = None
    dice_weight: float = 0.0
    targets: str = "cell"
    augment: str = "full"
    balance: bool = True
    foreground_oversample: float | dict = 0.0
    score_every: int = 0
    score_frames: int = 8
    noise_sigma: float | None = None
    dim_objects: float = 0.0
    dim_parts: float = 0.0
    init: str | None = None
    freeze: str | None = None
    freeze_bn: bool = False
    calibrate: bool = True
    ema: float = 0.0
    ranges: tuple = (1, 3, 5, 9, 27)
    neighbourhood: int = 4
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    foreground_weight: float = 1.0
    contact_weight: float = 1.0
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        if self.model not in ("unet", "affinity"):
            raise ValueError(f"model must be 'unet' or 'affinity'; got {self.model!r}")
        for name in ("steps", "batch_size", "patch_size", "val_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)!r}")
        if self.targets not in ("cell", "interior"):
            raise ValueError(f"targets must be 'cell' or 'interior'; got {self.targets!r}")
        if self.augment not in ("full", "basic"):
            raise ValueError(f"augment must be 'full' or 'basic'; got {self.augment!r}")
        if self.freeze not in (None, "encoder"):
            raise ValueError(f"freeze must be None or 'encoder'; got {self.freeze!r}")
        if not float(self.lr) > 0:
            raise ValueError(f"lr (--lr) must be > 0; got {self.lr!r}")
        if self.noise_sigma is not None and not float(self.noise_sigma) >= 0:
            raise ValueError(f"noise_sigma (--noise) must be >= 0; got {self.noise_sigma!r}")
        if not 0.0 <= float(self.ema) < 1.0:
            raise ValueError(f"ema must be in [0, 1) (0: off); got {self.ema!r}")
        if not float(self.contact_weight) > 0:
            raise ValueError(f"contact_weight must be > 0; got {self.contact_weight!r}")
        if isinstance(self.dice_weight, bool) or not float(self.dice_weight) >= 0:
            raise ValueError(f"dice_weight must be >= 0 (0: off); got {self.dice_weight!r}")
        if self.model != "unet" and float(self.dice_weight) != 0.0:
            raise ValueError(
                f"dice_weight weighs a U-Net's whole-cell Dice loss: it needs model='unet'; got "
                f"dice_weight={self.dice_weight!r} with model={self.model!r}"
            )
        if self.model == "unet" and float(self.contact_weight) != 1.0:
            raise ValueError(
                f"contact_weight weighs affinity pairs: it needs model='affinity'; got "
                f"contact_weight={self.contact_weight!r} with model='unet'"
            )
        fractions = (
            self.foreground_oversample
            if isinstance(self.foreground_oversample, dict)
            else {"*": self.foreground_oversample}
        )
        for key, f in fractions.items():
            if not isinstance(key, str) or not key:
                raise ValueError(
                    f"foreground_oversample: folder keys must be non-empty strings; got {key!r}"
                )
            if isinstance(f, bool) or not isinstance(f, Real) or not 0.0 <= float(f) <= 1.0:
                raise ValueError(
                    f"foreground_oversample must be a fraction in [0, 1]; got {f!r}"
                    + (f" for {key!r}" if isinstance(self.foreground_oversample, dict) else "")
                )
        if int(self.score_every) < 0:
            raise ValueError(f"score_every must be >= 0; got {self.score_every!r}")
        for name in ("dim_objects", "dim_parts"):
            d = getattr(self, name)
            if isinstance(d, bool) or not isinstance(d, Real) or not 0.0 <= float(d) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1] (0: off); got {d!r}")
            if float(d) > 0 and self.augment != "full":
                raise ValueError(
                    f"{name} is part of the full augmentation; got {name}={d!r} with "
                    f"augment={self.augment!r}"
                )
        if self.class_weights is None:
            self.class_weights = default_class_weights(self.targets)
        weights = tuple(self.class_weights)
        if len(weights) != 3 or not all(
            isinstance(w, Real) and math.isfinite(w) and w > 0 for w in weights
        ):
            raise ValueError(
                "class_weights must be three positive numbers (foreground, boundary, background); "
                f"got {self.class_weights!r}"
            )
        self.class_weights = tuple(float(w) for w in weights)

    @property
    def augmentation(self) -> Augmentation:
        """The :class:`Augmentation` that ``augment`` names."""
        if self.augment == "basic":
            return Augmentation.off()
        changes = {}
        if self.noise_sigma is not None:
            changes["noise_sigma"] = float(self.noise_sigma)
        if self.dim_objects:
            changes["dim_prob"] = float(self.dim_objects)
        if self.dim_parts:
            changes["part_prob"] = float(self.dim_parts)
        return Augmentation(**changes)


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a usable device: ``"auto"`` picks CUDA, then Apple MPS, then CPU.

    Raises
    ------
    ValueError
        ``device`` is not a torch device name, or names CUDA / MPS on a machine without it.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r}: CUDA is not available here (torch {torch.__version__}, "
            f"{torch.cuda.device_count()} GPU); use 'cpu' or 'auto'"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device {device!r}: Apple MPS is not available here; use 'cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps'; got {device!r}")
    return dev


def contact_pixels(labels: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels of a cell within ``radius`` pixels (square window) of another cell, ``(Y, X)`` bool.

    Two touching cells give a band ``2 * radius`` pixels wide; cells that an annotator separated
    by a one-pixel gap of background (as the CTC masks mostly are) still get a band of
    ``radius - 1`` pixels on each side, so the foreground dips between them, not only a one-pixel
    crack that a network blurs over.
    """
    from scipy import ndimage as ndi

    lab = np.asarray(labels).astype(np.int64, copy=False)
    fg = lab > 0
    size = 2 * int(radius) + 1
    higher = ndi.maximum_filter(lab, size=size, mode="nearest") != lab
    # background counts as +inf for the minimum (int64 max overflows inside scipy's filter)
    lower = ndi.minimum_filter(np.where(fg, lab, lab.max() + 1), size=size, mode="nearest")
    return fg & (higher | (lower != lab))


def default_class_weights(targets: str) -> tuple[float, float, float]:
    """U-Net cross-entropy weights of foreground / boundary / background for ``targets``."""
    return (1.0, 3.0, 1.0) if targets == "cell" else (1.0, 2.0, 1.0)


def semantic_targets(labels: np.ndarray, targets: str = "interior") -> np.ndarray:
    """Class map for the U-Net: 0 foreground, 1 boundary, 2 background.

    Parameters
    ----------
    labels : (Y, X) int ndarray
        Instance labels.
    targets : {"interior", "cell"}
        ``"interior"``: boundary = every instance's own outermost pixels
        (``find_boundaries(mode="inner")``), foreground = the rest of the cell (its interior).
        ``"cell"``: boundary = only the pixels where a cell touches another one
        (:func:`contact_pixels`); foreground = the rest of the cell (the whole cell where it borders
        background).

    Returns
    -------
    (Y, X) int64 ndarray
    """
    cls = np.full(labels.shape, 2, dtype=np.int64)
    cls[labels > 0] = 0
    if targets == "cell":
        cls[contact_pixels(labels)] = 1
        return cls
    if targets != "interior":
        raise ValueError(f"targets must be 'interior' or 'cell'; got {targets!r}")
    from skimage.segmentation import find_boundaries

    cls[find_boundaries(labels, mode="inner") & (labels > 0)] = 1
    return cls


class _PatchSampler:
    """Random training patches: geometric warp of image and labels, then intensity changes.

    Data folders (the ``DATASET/SEQ`` part of a sample's name) are drawn equally often when
    ``balance``; frames within one in proportion to their area. A fraction ``foreground`` of
    the patches is centred on a labelled pixel of the frame (uniform among them), the rest
    anywhere; a dict gives it per data folder (see ``TrainConfig.foreground_oversample``).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        patch: int,
        rng: np.random.Generator,
        aug: Augmentation | None = None,
        balance: bool = True,
        foreground: float | dict = 0.0,
    ) -> None:
        self.samples = list(samples)
        self.foreground = _oversample_fractions(foreground, [s.dataset for s in self.samples])
        self._object_pixels: dict[int, np.ndarray] = {}  # flat indices, computed on first use
        self.patch = patch
        self.rng = rng
        self.aug = aug or Augmentation.off()
        areas = np.array([s.image.size for s in self.samples], dtype=float)
        if balance:
            groups = [s.dataset for s in self.samples]
            totals: dict[str, float] = {}
            for g, a in zip(groups, areas, strict=True):
                totals[g] = totals.get(g, 0.0) + a
            areas = np.array([a / totals[g] for g, a in zip(groups, areas, strict=True)])
        self.p = areas / areas.sum()

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        imgs, labs = [], []
        for _ in range(n):
            i = int(self.rng.choice(len(self.samples), p=self.p))
            s = self.samples[i]
            centre = self._centre(i) if self.foreground[i] else None
            img, lab = warp_patch(s.image, s.labels, self.patch, self.rng, self.aug, centre)
            if self.aug.dim_prob > 0:
                img = dim_objects(img, lab, self.rng, self.aug)
            if self.aug.part_prob > 0:
                img = dim_parts(img, lab, self.rng, self.aug)
            imgs.append(augment_intensity(img, self.rng, self.aug))
            labs.append(lab)
        return np.stack(imgs)[:, None], np.stack(labs)

    def _centre(self, i: int) -> tuple[float, float] | None:
        """A labelled pixel of sample ``i`` with its folder's probability, else None."""
        if self.rng.random() >= self.foreground[i]:
            return None
        labels = self.samples[i].labels
        if i not in self._object_pixels:
            self._object_pixels[i] = np.flatnonzero(labels > 0)
        pixels = self._object_pixels[i]
        if pixels.size == 0:  # a frame without objects: anywhere
            return None
        y, x = divmod(int(pixels[self.rng.integers(pixels.size)]), labels.shape[1])
        return float(y), float(x)


def _oversample_fractions(foreground: float | dict, folders: Sequence[str]) -> list[float]:
    """Each sample's foreground fraction; a dict key matches folders whose name contains it."""
    if not isinstance(foreground, dict):
        return [float(foreground)] * len(folders)
    default = float(foreground.get("*", 0.0))
    keys = [k for k in foreground if k != "*"]
    unmatched = [k for k in keys if not any(k in f for f in folders)]
    if unmatched:
        raise ValueError(
            f"foreground_oversample: {unmatched!r} names no data folder; the folders are "
            f"{sorted(set(folders))!r}"
        )
    out = []
    for f in folders:
        hits = {foreground[k] for k in keys if k in f}
        if len(hits) > 1:
            raise ValueError(
                f"foreground_oversample: folder {f!r} is named by keys with different fractions "
                f"{[k for k in keys if k in f]!r}"
            )
        out.append(float(hits.pop()) if hits else default)
    return out


def _pad_to(arr: np.ndarray, size: int) -> np.ndarray:
    py, px = max(0, size - arr.shape[0]), max(0, size - arr.shape[1])
    if py or px:
        return np.pad(
            arr, ((0, py), (0, px)), mode="reflect" if arr.dtype.kind == "f" else "constant"
        )
    return arr


def _val_patches(samples: Sequence[Sample], patch: int, per_sample: int = 4) -> tuple:
    """Cut fixed held-out patches (deterministic grid): comparable validation losses."""
    imgs, labs = [], []
    for s in samples:
        img, lab = _pad_to(s.image, patch), _pad_to(s.labels, patch)
        ys = np.linspace(0, img.shape[0] - patch, 2).astype(int)
        xs = np.linspace(0, img.shape[1] - patch, max(1, per_sample // 2)).astype(int)
        for y in ys:
            for x in xs:
                imgs.append(img[y : y + patch, x : x + patch])
                labs.append(lab[y : y + patch, x : x + patch])
    return np.stack(imgs)[:, None].astype(np.float32), np.stack(labs)


def _unet_loss(
    model: HemdModel, img: torch.Tensor, lab: np.ndarray, cfg: TrainConfig
) -> torch.Tensor:
    target = torch.from_numpy(np.stack([semantic_targets(x, cfg.targets) for x in lab]))
    target = target.to(img.device)
    logits = model.network(img).float()
    weight = torch.tensor(cfg.class_weights, dtype=torch.float32, device=img.device)
    loss = F.cross_entropy(logits, target, weight=weight)
    if cfg.dice_weight:
        loss = loss + cfg.dice_weight * whole_cell_dice_loss(logits, target)
    return loss


def whole_cell_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of the whole cell: ``1 - P(background)`` against ``target != background``.

    ``logits``: ``(B, 3, H, W)`` (foreground, boundary, background); ``target``: ``(B, H, W)``
    class indices. Summed over the whole batch (a patch without cells does not divide by zero);
    +1 in numerator and denominator keeps an all-background batch at 0.
    """
    cell = 1.0 - torch.softmax(logits, dim=1)[:, 2]
    truth = (target != 2).to(cell.dtype)
    inter = (cell * truth).sum()
    return 1.0 - (2.0 * inter + 1.0) / (cell.sum() + truth.sum() + 1.0)


def _masked_mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error over the valid pairs; ``weight`` (like ``pred``) weighs each pair."""
    w = valid.to(pred.dtype).expand_as(pred)
    if weight is not None:
        w = w * weight
    return ((pred - target) ** 2 * w).sum() / w.sum().clamp_min(1.0)


def _random_view(img: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, int, bool]:
    """Make the transformed view of the cross-correlation module: rot90/flip, intensity, cutout."""
    k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
    view = torch.rot90(img, k, dims=(-2, -1))
    if flip:
        view = torch.flip(view, dims=(-1,))
    view = view * float(np.exp(rng.normal(0, 0.3))) + float(rng.normal(0, 0.2))
    h, w = view.shape[-2:]
    view = view.clone()
    for _ in range(int(rng.integers(1, 4))):
        ch, cw = int(rng.integers(h // 16, h // 4 + 1)), int(rng.integers(w // 16, w // 4 + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        view[..., y : y + ch, x : x + cw] = 0.0
    return view, k, flip


def _map_back(emb: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if flip:
        emb = torch.flip(emb, dims=(-1,))
    return torch.rot90(emb, -k, dims=(-2, -1))


def _affinity_loss(
    model: HemdModel,
    img: torch.Tensor,
    lab: np.ndarray,
    cfg: TrainConfig,
    rng: np.random.Generator | None,
) -> torch.Tensor:
    """Alpha * L_s + beta * L_c + gamma * L_p + foreground BCE (Eqs. 3, 5, 6, 7)."""
    labels = torch.from_numpy(lab.astype(np.int64)).to(img.device)
    offsets = make_offsets(cfg.ranges, cfg.neighbourhood)
    out = model.network(img, with_pyramid=cfg.gamma > 0)
    emb = out["embedding"].float()
    target, valid = affinity_targets(labels, offsets)
    pair_weight = None
    if cfg.contact_weight != 1.0:
        pair_weight = 1.0 + (cfg.contact_weight - 1.0) * instance_pairs(labels, offsets).float()
    aff, _ = self_correlation(emb, offsets)
    loss = cfg.alpha * _masked_mse(aff, target, valid, pair_weight)
    fg = (labels > 0).float()[:, None]
    loss = loss + cfg.foreground_weight * F.binary_cross_entropy_with_logits(
        out["foreground"].float(), fg
    )
    if cfg.gamma > 0:
        lp = 0.0
        for level, pemb in enumerate(out["pyramid"], start=1):
            s = 2**level
            poffs = make_offsets(pyramid_ranges(cfg.ranges, s), cfg.neighbourhood)
            plab = labels[:, s // 2 :: s, s // 2 :: s]  # nearest down-sampling of the labels
            pt, pv = affinity_targets(plab, poffs)
            pa, _ = self_correlation(pemb.float(), poffs)
            lp = lp + _masked_mse(pa, pt, pv)
        loss = loss + cfg.gamma * lp
    if cfg.beta > 0 and rng is not None:
        view, k, flip = _random_view(img, rng)
        emb_view = _map_back(model.network(view)["embedding"].float(), k, flip)
        ac, _ = self_correlation(emb, offsets, other=emb_view)
        loss = loss + cfg.beta * _masked_mse(ac, target, valid, pair_weight)
    return loss


#: Top-level modules of the networks' contracting paths (``TrainConfig.freeze="encoder"``).
_ENCODER = ("stem", "down", "bottom")


def _architecture(model: HemdModel) -> dict:
    """The network's kind and sizes (``name``, ``depth``, ``base_channels`` ...), JSON-plain."""
    return json.loads(json.dumps(model.metadata.get("architecture", {}), default=str))


def _save_checkpoint(state: dict, ckpt: Path) -> None:
    """Write a checkpoint through a temporary file: a run killed while writing keeps the last one."""
    from napari_hemd.models.weights import save_atomically

    save_atomically(state, ckpt)


def _load_resumed_network(ckpt: Path, state: dict, model: HemdModel) -> None:
    """Load a checkpoint's weights; one of another network is refused in one line.

    Checkpoints name their network's architecture; an older one without it is tried on the
    network, and torch's size mismatch (dozens of lines) is said in one.
    """
    saved, now = state.get("architecture"), _architecture(model)
    if saved is not None and saved != now:
        diff = ", ".join(
            f"{k} {saved.get(k)!r} (now {now.get(k)!r})"
            for k in sorted(set(saved) | set(now))
            if saved.get(k) != now.get(k)
        )
        raise ValueError(
            f"resume: {str(ckpt)!r} was written by another network: {diff}; resume with the "
            "options of the run that wrote it (--model, --depth, --base-channels ...)"
        )
    try:
        model.network.load_state_dict(state["network"])
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise ValueError(
            f"resume: {str(ckpt)!r} does not fit this network ({first}); resume with the "
            "options of the run that wrote it (--model, --depth, --base-channels ...)"
        ) from None


def _checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".ckpt")


def train_model(
    train: Sequence[Sample],
    val: Sequence[Sample],
    output: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    data_description: Sequence[str] = (),
    stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    init_model: HemdModel | None = None,
    scale: float = 1.0,
    score_at_end: bool = True,
    half: bool = True,
) -> tuple[HemdModel, list[dict]]:
    """Train a model and write it (best held-out loss) to ``output``.

    Parameters
    ----------
    train, val : sequence of Sample
        Training samples and held-out samples (``val`` may be empty: then the last model is kept).
    output : path-like
        Model file to write; checkpoints go to ``OUTPUT.ckpt`` (removed at the end).
    config : TrainConfig
    resume : bool
        Continue from ``OUTPUT.ckpt`` (same config).
    progress : bool
        Show a tqdm progress bar.
    callback : callable, optional
        Called with ``{"step", "loss", "val_loss"?, "seconds"}`` at each evaluation.
    data_description : sequence of str
        Stored in the metadata (what the model was trained on).
    stop : callable, optional
        Checked after every step; when it returns True training stops as at ``max_minutes``: the
        best model so far is written (the metadata says ``"stopped": "cancelled"``).
    on_step : callable, optional
        Called with ``(step, loss)`` after every optimiser step (live loss curves, progress).
    init_model : HemdModel, optional
        Fine-tune this (already loaded) model instead of loading ``config.init``; a copy is
        trained, ``init_model`` is left as it is.
    scale : float
        The zoom the samples were zoomed by (:func:`napari_hemd.models.data.zoom_samples`):
        recorded as ``metadata["scale"]``, the zoom ``segment``, ``predict`` and ``stream`` use
        the model at unless told otherwise (:func:`napari_hemd.models.prediction.model_scale`).
    score_at_end : bool
        Without ``score_every`` (the network chosen by the held-out loss), score the network
        written on its held-out frames once at the end (``metadata["training"]["final_score"]``:
        ``val_score``, ``val_scores`` per data folder, ``step``, ``frames``). False: a caller
        that scores it itself (the Fine-tune widget's before/after).
    half : bool
        Store the weights as float16, as the shipped models are (half the file; tensors float16
        cannot hold stay float32). The network is rounded to them before its calibration and
        final score, so those hold for the file; checkpoints stay float32. False: float32.

    Returns
    -------
    model : HemdModel
    history : list of dict
        One entry per evaluation: step, mean training loss since the last entry, held-out loss.
    """
    from tqdm.auto import tqdm

    cfg = config or TrainConfig()
    output = Path(output)
    if not train:
        raise ValueError("train must hold at least one sample; got none")
    if val and not any(s.labels.any() for s in val):  # its scores were "nan", unexplained
        logger.log(
            NOTE,
            "the %d held-out sample(s) (%s ...) hold no objects: their scores are undefined "
            "(nan). Hold out annotated frames (--val START:STOP) or none (--val 0)",
            len(val),
            val[0].name,
        )
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    if cfg.init is not None or init_model is not None:
        model = _init_model(cfg, init_model)
    else:
        model = HemdModel.create(cfg.model, **cfg.architecture)
        if cfg.model == "affinity":
            model.metadata["ranges"] = list(cfg.ranges)
            model.metadata["neighbourhood"] = cfg.neighbourhood
        else:
            model.metadata["targets"] = cfg.targets
    divisor = model.network.divisor
    if cfg.patch_size % divisor:
        raise ValueError(f"patch_size must be a multiple of {divisor}; got {cfg.patch_size}")
    if not cfg.freeze_bn:  # statistics that overflowed never recover by a running average
        _reset_nonfinite_batch_norm(model.network)
    model.network.to(device)
    if cfg.freeze == "encoder":
        for name, par in model.network.named_parameters():
            par.requires_grad_(name.split(".", 1)[0] not in _ENCODER)
    trainable = [p for p in model.network.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=cfg.lr)
    # A cosine over the training budget: the steps, or the wall time when max_minutes ends the run
    # sooner (else a time-limited run stops at a high rate, its last checkpoints noisy).
    clock = {"elapsed": 0.0}

    def lr_factor(s: int) -> float:
        progress = min(s, cfg.steps) / cfg.steps
        if cfg.max_minutes:
            progress = max(progress, clock["elapsed"] / (60 * cfg.max_minutes))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    use_amp = bool(cfg.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = _unet_loss if cfg.model == "unet" else _affinity_loss

    step, history, best, cancelled = 0, [], (math.inf, None), False
    ema = _ema_network(model.network, cfg.ema) if cfg.ema else None
    # what is evaluated, kept and written: the averaged network when there is one
    judged = HemdModel(ema.module, model.metadata) if ema is not None else model
    ckpt = _checkpoint_path(output)
    if resume:
        if not ckpt.exists():
            raise FileNotFoundError(f"resume: no checkpoint {str(ckpt)!r}")
        try:
            state = torch.load(ckpt, map_location=device, weights_only=True)
        except Exception as exc:  # a damaged file (a disk that filled, a copy cut short)
            raise ValueError(
                f"resume: the checkpoint {str(ckpt)!r} cannot be read ({type(exc).__name__}); "
                "it is damaged: remove it and train without --resume"
            ) from None
        _load_resumed_network(ckpt, state, model)
        trained_on = state.get("train_samples")
        # the frames and their folder (01/t003, images/im1, volume/z012), not the whole path:
        # the same data in a moved parent folder resumes (review 33b), the sequence 02 of the
        # same frames' names does not (review 33c)
        frame = lambda name: "/".join(str(name).split("/")[-2:])  # noqa: E731
        if trained_on is not None and [frame(n) for n in trained_on] != [
            frame(s.name) for s in train
        ]:
            # other data under the same steps: the file then named these alone (audit 37)
            raise ValueError(
                f"resume: {str(ckpt)!r} was trained on other samples ({len(trained_on)}, e.g. "
                f"{trained_on[0] if trained_on else 'none'}) than these ({len(train)}, e.g. "
                f"{train[0].name if train else 'none'}); resume with the same --data and --val, "
                "or train anew without --resume"
            )
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if ema is not None:
            if "ema" not in state:
                raise ValueError(
                    f"resume: {str(ckpt)!r} was written without ema; got ema={cfg.ema}"
                )
            ema.load_state_dict(state["ema"])
        step, history = int(state["step"]), list(state["history"])
        best = (float(state["best_loss"]), state.get("best_state"))
        if state.get("selection", "loss") != ("score" if cfg.score_every else "loss"):
            best = (math.inf, None)  # the criterion changed: the stored best is not comparable
        rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(cfg.seed + step)
        logger.info("resumed from %s at step %d", ckpt, step)
        if step >= cfg.steps:  # nothing left to train: said, not a silent no-op
            logger.log(
                NOTE,
                "resume: %s is at step %d, not before steps=%d: no step trained; the model is "
                "written as it stands (more steps: a larger --steps)",
                ckpt,
                step,
                cfg.steps,
            )

    sampler = _PatchSampler(
        train, cfg.patch_size, rng, cfg.augmentation, cfg.balance, cfg.foreground_oversample
    )
    val_img, val_lab = _val_patches(val, cfg.patch_size) if val else (None, None)
    score_samples = _score_subset(val, cfg.score_frames) if cfg.score_every else []
    # an affinity network is scored with the Mutex-watershed bias chosen for it on training
    # frames (the ones the final calibration uses), as it would be shipped: a network whose
    # embeddings pull touching nuclei further apart needs less bias, and a fixed one would
    # judge it by a setting it will not be used with
    calibration_frames = _score_subset(train, min(cfg.score_frames, 4))
    calibration = (
        calibration_frames if score_samples and cfg.calibrate and cfg.model == "affinity" else []
    )
    t0, running = time.perf_counter(), []
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"train {cfg.model}")
    # on a CPU, freed activations stay on the heap for the next step (models/_allocator.py)
    with heap_allocation(device):
        while step < cfg.steps:
            model.network.train()
            if cfg.freeze_bn:
                for mod in model.network.modules():
                    if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                        mod.eval()
            img, lab = sampler(cfg.batch_size)
            img_t = torch.from_numpy(img).to(device)
            with torch.autocast(device.type, enabled=use_amp):
                loss = (
                    loss_fn(model, img_t, lab, cfg, rng)
                    if cfg.model == "affinity"
                    else loss_fn(model, img_t, lab, cfg)
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            clock["elapsed"] = time.perf_counter() - t0
            sched.step()
            if ema is not None:
                ema.update_parameters(model.network)
            step += 1
            running.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(running[-20:]):.4f}")
            if on_step is not None:
                on_step(step, running[-1])
            cancelled = stop is not None and bool(stop())
            out_of_time = cancelled or (
                cfg.max_minutes is not None and (time.perf_counter() - t0) > 60 * cfg.max_minutes
            )
            if step % cfg.val_every == 0 or step == cfg.steps or out_of_time:
                entry = {
                    "step": step,
                    "loss": float(np.mean(running)),
                    "seconds": time.perf_counter() - t0,
                    "lr": float(opt.param_groups[0]["lr"]),
                }
                running = []
                if val_img is not None:
                    entry["val_loss"] = _evaluate(judged, val_img, val_lab, cfg, loss_fn, device)
                    if not score_samples and entry["val_loss"] < best[0]:
                        best = (entry["val_loss"], _cpu_state(judged))
                if score_samples and (
                    step % cfg.score_every == 0 or step == cfg.steps or out_of_time
                ):
                    entry.update(_score(judged, score_samples, calibration))
                    if ema is not None:  # the network as trained, for comparison (same bias)
                        raw = _score(model, score_samples, bias=entry.get("mutex_bias"))
                        entry["raw_score"] = raw["val_score"]
                    if -entry["val_score"] < best[0]:
                        best = (-entry["val_score"], _cpu_state(judged))
                history.append(entry)
                logger.info("step %d: %s", step, entry)
                if callback is not None:
                    callback(entry)
            if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or out_of_time):
                _save_checkpoint(
                    {
                        "network": model.network.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "step": step,
                        "steps": cfg.steps,  # the plan: a --resume without --steps keeps it
                        "history": history,
                        "best_loss": best[0],
                        "best_state": best[1],
                        "selection": "score" if score_samples else "loss",
                        "architecture": _architecture(model),
                        "train_samples": [s.name for s in train],  # a resume on the same
                        **({"ema": ema.state_dict()} if ema is not None else {}),
                    },
                    ckpt,
                )
            if cancelled:
                logger.log(NOTE, "cancelled at step %d; keeping the best model so far", step)
                break
            if out_of_time:
                logger.log(
                    NOTE, "max_minutes=%s reached at step %d; stopping", cfg.max_minutes, step
                )
                break
    bar.close()
    for par in model.network.parameters():
        par.requires_grad_(True)
    if best[1] is not None:
        model.network.load_state_dict(best[1])
    elif ema is not None:  # no held-out data: the last averaged network
        model.network.load_state_dict(ema.module.state_dict())
    model.network.cpu().eval()
    if half:  # what the file will hold, before it is calibrated and scored
        round_to_half(model)
    cfg_dict = asdict(cfg)
    model.metadata["training"] = {
        "config": cfg_dict,
        "steps_done": step,
        "stopped": "cancelled" if cancelled else ("finished" if step >= cfg.steps else "time"),
        "data": list(data_description),
        "train_samples": [s.name for s in train],
        "held_out_samples": [s.name for s in val],
        "mask_sources": sorted({s.source for s in train}),
        "history": history,
        "best_val_loss": None if math.isinf(best[0]) or score_samples else best[0],
        "best_val_score": -best[0] if score_samples and not math.isinf(best[0]) else None,
        "augmentation": cfg.augmentation.to_dict(),
        "device": str(device),
        "torch": torch.__version__,
    }
    # the zoom it is used at (a fine-tuned model's own, not its base's)
    model.metadata["scale"] = float(scale)
    if train:  # the sizes it learned (napari-hemd models; users zoom other sizes to them)
        model.metadata["object_diameters"] = object_diameters(train)
    if cfg.calibrate and train and not cancelled:
        from napari_hemd.models.evaluation import calibrate_model

        calibrate_model(model, calibration_frames)
    if score_at_end and val and not score_samples and not cancelled:
        # chosen by the held-out loss (no --score-every, or a run too short to reach it): the
        # network written is still scored on its held-out frames, once, as it is written
        frames = _score_subset(val, cfg.score_frames)
        kept = [h for h in history if h.get("val_loss") == best[0]]
        model.metadata["training"]["final_score"] = {
            **_score(model, frames),
            "step": kept[-1]["step"] if kept else step,
            "frames": len(frames),
        }
    save_model_file(model, output, half=half)
    if ckpt.exists() and step >= cfg.steps:
        ckpt.unlink()
    return load_model_file(output), history


def _init_model(cfg: TrainConfig, base: HemdModel | None = None) -> HemdModel:
    """Start from a trained model (fine-tuning): its network, normalisation, targets, offsets.

    ``base`` (a loaded model, copied) or ``cfg.init`` (loaded). ``cfg`` is aligned with the model
    (kind, architecture, targets, affinity ranges) so that the losses train what the network
    already predicts.
    """
    import copy

    from napari_hemd.models.registry import load_model

    if base is None:
        base = load_model(cfg.init)
    else:
        base = HemdModel(copy.deepcopy(base.network), dict(base.metadata))
    if base.kind != cfg.model:
        raise ValueError(
            f"init {cfg.init!r} is {'an' if base.kind == 'affinity' else 'a'} {base.kind} "
            f"model; got model={cfg.model!r} (use "
            f"--model {base.kind})"
        )
    cfg.architecture = {k: v for k, v in base.metadata["architecture"].items() if k != "name"}
    if base.kind == "unet":
        targets = base.metadata.get("targets", "interior")
        # the default class weights go with the model's targets; chosen ones are kept
        if targets != cfg.targets and cfg.class_weights == default_class_weights(cfg.targets):
            cfg.class_weights = default_class_weights(targets)
        cfg.targets = targets
    else:
        cfg.ranges = tuple(base.metadata.get("ranges", cfg.ranges))
        cfg.neighbourhood = int(base.metadata.get("neighbourhood", cfg.neighbourhood))
    previous = base.metadata.get("training", {})
    # the base's training, held-out scores and calibration records describe the base, not the
    # new network: dropped. Its calibrated settings (segment_defaults, tta) stay as a start; a
    # finished run calibrates its own at the end, a stopped one keeps them, said so by
    # ``fine_tuned_from["calibration"]`` (napari-hemd models)
    records = ("training", "validation", "calibration", "tta_calibration")
    meta = {k: v for k, v in base.metadata.items() if k not in records}
    meta["fine_tuned_from"] = {
        "model": str(cfg.init) if cfg.init is not None else None,
        "data": previous.get("data"),
        "steps": previous.get("steps_done"),
        "calibration": _calibrated_settings(base.metadata),
    }
    return HemdModel(base.network, meta)


def _calibrated_settings(meta: dict) -> dict:
    """A model's calibrated settings: ``{parameter: value}`` (growth threshold or Mutex bias, flips)."""
    out = {}
    cal = meta.get("calibration") or {}
    if "parameter" in cal:
        out[cal["parameter"]] = cal.get("value")
    if "tta_calibration" in meta:
        out["tta"] = meta["tta_calibration"].get("value")
    return out


def _score_subset(val: Sequence[Sample], per_dataset: int) -> list[Sample]:
    """At most ``per_dataset`` held-out frames of every data folder, evenly spaced."""
    groups: dict[str, list[Sample]] = {}
    for s in val:
        groups.setdefault(s.dataset, []).append(s)
    out = []
    for g in groups.values():
        idx = np.unique(np.linspace(0, len(g) - 1, min(per_dataset, len(g))).round().astype(int))
        out += [g[i] for i in idx]
    return out


def _score(
    model: HemdModel,
    samples: Sequence[Sample],
    calibration: Sequence[Sample] = (),
    bias: float | None = None,
) -> dict:
    """Held-out instance score: mean of F1 and AJI per data folder.

    Threshold instances grown to whole cells; the Mutex-watershed instances for affinity models,
    with the bias chosen on ``calibration`` (training frames) when given, else ``bias``, else the
    model's. Returns ``{"val_score": mean over folders, "val_scores": {folder: {"F1", "AJI"}}}``
    and, with ``calibration`` or ``bias``, ``"mutex_bias"``.
    """
    from napari_hemd.models.evaluation import calibrate_mutex_bias, evaluate_model

    model.network.eval()
    if model.kind == "affinity" and (calibration or bias is not None):
        if calibration:
            bias, _ = calibrate_mutex_bias(model, calibration)
        meta = model.metadata
        saved = meta.get("mutex_bias")
        meta["mutex_bias"] = bias
        try:
            return {**_score(model, samples), "mutex_bias": bias}
        finally:
            if saved is None:
                meta.pop("mutex_bias", None)
            else:
                meta["mutex_bias"] = saved
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.dataset, []).append(s)
    per = {}
    # the affinity network's own instances (Mutex watershed), so a checkpoint is chosen for
    # separating touching nuclei, not only for its foreground head
    method = "mutex" if model.kind == "affinity" else "threshold"
    # the model's own minimum size (a fine-tuned nuclei-fluo: 100 px), as segment --model uses
    min_size = int(model.metadata.get("segment_defaults", {}).get("min_size", 20))
    for name, g in groups.items():
        r = evaluate_model(model, g, methods=(method,), min_size=min_size, tta=1)[method]
        per[name] = {"F1": r["F1"], "AJI": r["AJI"]}
    score = float(np.mean([(v["F1"] + v["AJI"]) / 2 for v in per.values()]))
    logger.info("held-out score %.4f %s", score, per)
    return {"val_score": round(score, 4), "val_scores": per}


def _nonfinite_batch_norm(net: torch.nn.Module):
    """Batch norms with non-finite running statistics: ``(name, layer, channel mask)``.

    In module order, each found when the caller reaches it (a repaired layer is seen repaired).
    """
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
            bad = ~(torch.isfinite(m.running_var) & torch.isfinite(m.running_mean))
            if bool(bad.any()):
                yield name, m, bad


def _reset_nonfinite_batch_norm(net: torch.nn.Module) -> None:
    """Give non-finite running statistics a fresh start (0, 1) for training to re-estimate."""
    for name, m, bad in _nonfinite_batch_norm(net):
        with torch.no_grad():
            m.running_mean[bad], m.running_var[bad] = 0.0, 1.0
        logger.warning("%s: %d non-finite running statistics reset", name, int(bad.sum()))


def repair_batch_norm(model: HemdModel, images: Sequence[np.ndarray]) -> list[str]:
    """Re-estimate non-finite batch-norm statistics from ``images``; return what was repaired.

    A channel whose running variance overflowed (e.g. above float16's 65504 when a model file
    was stored at half precision) makes the network output that channel's bias alone in eval
    mode, and any weight average of it NaN. Each such channel gets the mean and variance of
    its input over ``images`` (normalised frames, the network in eval mode, layers in order,
    so a repaired layer feeds the next). Finite statistics are left as they are.
    """
    net = model.network
    repaired = []
    for name, bn, bad in _nonfinite_batch_norm(net):
        if not len(images):
            raise ValueError(f"images: need frames to re-estimate {name}; got none")
        acc = {"n": 0, "s": 0.0, "ss": 0.0}

        def hook(_mod, inputs, acc=acc):
            x = inputs[0].detach().double()
            acc["n"] += x.shape[0] * x.shape[2] * x.shape[3]
            acc["s"] = acc["s"] + x.sum(dim=(0, 2, 3))
            acc["ss"] = acc["ss"] + (x * x).sum(dim=(0, 2, 3))

        handle = bn.register_forward_pre_hook(hook)
        net.eval()
        try:
            with torch.inference_mode():
                for img in images:
                    img = np.asarray(img, np.float32)
                    pad = [(0, (-n) % net.divisor) for n in img.shape]
                    x = torch.from_numpy(np.pad(img, pad, mode="reflect"))[None, None]
                    net(x.to(next(net.parameters()).device))
        finally:
            handle.remove()
        mean = acc["s"] / acc["n"]
        var = acc["ss"] / acc["n"] - mean * mean
        with torch.no_grad():
            bn.running_mean[bad] = mean[bad].to(bn.running_mean)
            bn.running_var[bad] = var[bad].clamp_min(0).to(bn.running_var)
        repaired += [f"{name}[{int(c)}]" for c in torch.nonzero(bad).ravel()]
    if repaired:
        logger.warning("re-estimated batch-norm statistics of %s", ", ".join(repaired))
    return repaired


def _ema_network(network: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``network``'s weights and buffers (with a warm-up)."""

    def average(ema_params, params, n_averaged) -> None:
        d = min(decay, (1.0 + float(n_averaged)) / (10.0 + float(n_averaged)))
        floats = [(e, p) for e, p in zip(ema_params, params, strict=True) if e.is_floating_point()]
        if floats:
            # d * e + (1 - d) * p rather than a lerp, e + (1 - d) * (p - e): an inf statistic (a
            # silent channel of an overflowed model file) stays inf instead of inf - inf = NaN
            ema_f = [e for e, _ in floats]
            torch._foreach_mul_(ema_f, d)
            torch._foreach_add_(ema_f, [p for _, p in floats], alpha=1.0 - d)
        for e, p in zip(
            ema_params, params, strict=True
        ):  # integer buffers (batches seen): the network's
            if not e.is_floating_point():
                e.copy_(p)

    ema = torch.optim.swa_utils.AveragedModel(network, multi_avg_fn=average, use_buffers=True)
    ema.module.eval()
    ema.update_parameters(network)  # starts as a copy
    return ema


def _cpu_state(model: HemdModel) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.network.state_dict().items()}


def _evaluate(model, val_img, val_lab, cfg, loss_fn, device, batch: int = 8) -> float:
    model.network.eval()
    losses = []
    with torch.inference_mode():
        for i in range(0, len(val_img), batch):
            img = torch.from_numpy(val_img[i : i + batch]).to(device)
            lab = val_lab[i : i + batch]
            if cfg.model == "affinity":
                losses.append(float(loss_fn(model, img, lab, cfg, None)) * len(img))
            else:
                losses.append(float(loss_fn(model, img, lab, cfg)) * len(img))
    return sum(losses) / len(val_img)
