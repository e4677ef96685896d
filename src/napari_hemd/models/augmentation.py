"""Training-patch augmentation for generalisation to another sequence of the same microscope.

Pure numpy / scipy (no torch): one geometric warp per patch (random rotation by any angle, flip,
isotropic scale and a smooth elastic displacement, all folded into one ``map_coordinates`` call so
the labels are resampled exactly once, nearest-neighbour) followed by intensity changes on the
normalised image (contrast, gamma, offset, blur, Gaussian and signal-dependent noise), optionally
after dimming some of the patch's objects (:func:`dim_objects`: nuclei that bleach, or that are
stained less, than their neighbours).

The ranges were chosen to cover what differs between the two CTC sequences of one dataset: cell
density and size (scale 0.7-1.4), staining brightness and contrast (log-normal gain, gamma), focus
(blur) and camera noise (up to a contrast-to-noise ratio near 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Augmentation", "augment_intensity", "dim_objects", "dim_parts", "warp_patch"]


@dataclass(frozen=True)
class Augmentation:
    """Augmentation strengths (stored with the training config in the model file).

    Attributes
    ----------
    scale : tuple of float
        Range of the isotropic zoom (output / source pixel size), sampled log-uniformly.
    rotate : bool
        Random rotation by any angle (else multiples of 90 degrees).
    elastic : float
        Standard deviation (pixels) of the elastic displacement at the control points; 0: off.
    elastic_grid : int
        Control points per side of the patch (smooth, cubic-interpolated field).
    gain_sigma, offset_sigma : float
        Log-normal contrast gain and additive offset of the normalised intensities.
    gamma : float
        Gamma sampled log-uniformly in ``[1 / (1 + gamma), 1 + gamma]``; 0: off.
    blur_prob, blur_sigma : float
        Probability of a Gaussian blur and its largest sigma (pixels).
    noise_sigma : float
        Largest standard deviation of additive Gaussian noise (uniform up to it). Large because
        late frames of a sequence can have a contrast-to-noise ratio near 1 (Fluo-N2DH-SIM+ 02:
        nuclei 4 grey levels above a background of noise 3.5) where training frames had 3-7.
    shot_noise : float
        Largest signal-dependent (Poisson-like) noise factor.
    dim_prob : float
        Probability that a patch has some of its objects dimmed (:func:`dim_objects`); 0: off.
    dim_min : float
        Dimmed objects keep a contrast above the background drawn log-uniformly in
        ``[dim_min, 1]`` of their own.
    part_prob : float
        Probability that a patch has parts of some of its objects faded to the background
        (:func:`dim_parts`); 0: off.
    """

    scale: tuple = (0.7, 1.4)
    rotate: bool = True
    elastic: float = 2.0
    elastic_grid: int = 4
    gain_sigma: float = 0.3
    offset_sigma: float = 0.1
    gamma: float = 0.5
    blur_prob: float = 0.3
    blur_sigma: float = 1.5
    noise_sigma: float = 0.25
    shot_noise: float = 0.05
    dim_prob: float = 0.0
    dim_min: float = 0.1
    part_prob: float = 0.0

    def to_dict(self) -> dict:
        """JSON-safe dict (for model metadata)."""
        d = asdict(self)
        d["scale"] = list(d["scale"])
        return d

    @classmethod
    def off(cls) -> Augmentation:
        """Only rotations by multiples of 90 degrees and flips (the pre-2026-12 recipe)."""
        return cls(
            scale=(1.0, 1.0),
            rotate=False,
            elastic=0.0,
            gain_sigma=0.2,
            offset_sigma=0.1,
            gamma=0.0,
            blur_prob=0.0,
            noise_sigma=0.02,
            shot_noise=0.0,
        )


def warp_patch(
    image: np.ndarray,
    labels: np.ndarray,
    size: int,
    rng: np.random.Generator,
    aug: Augmentation,
    centre: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a ``(size, size)`` patch through a random rotation, flip, zoom and elastic warp.

    Parameters
    ----------
    image : (Y, X) float ndarray
        Normalised image.
    labels : (Y, X) int ndarray
        Instance labels (resampled nearest-neighbour, so ids are preserved).
    size : int
        Patch side.
    rng : numpy Generator
    aug : Augmentation
    centre : (float, float), optional
        Source coordinates of the patch centre; default uniform over the image.

    Returns
    -------
    image : (size, size) float32 ndarray
    labels : (size, size) ndarray of ``labels.dtype``
        Outside the image the frame is mirrored (as prediction pads by reflection).
    """
    h, w = image.shape
    lo, hi = aug.scale
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    theta = rng.uniform(0, 2 * np.pi) if aug.rotate else 0.5 * np.pi * int(rng.integers(4))
    cos, sin = np.cos(theta) / s, np.sin(theta) / s  # output pixel -> source pixels
    if centre is None:
        centre = (rng.uniform(0, h - 1), rng.uniform(0, w - 1))
    g = np.arange(size, dtype=np.float32) - (size - 1) / 2
    yy, xx = np.meshgrid(g, g, indexing="ij")
    if rng.random() < 0.5:
        xx = xx[:, ::-1]
    src_y = centre[0] + cos * yy - sin * xx
    src_x = centre[1] + sin * yy + cos * xx
    if aug.elastic > 0:
        n = max(2, int(aug.elastic_grid))
        for arr in (src_y, src_x):
            coarse = rng.normal(0.0, aug.elastic, (n, n)).astype(np.float32)
            arr += ndi.zoom(coarse, size / n, order=3, mode="nearest")[:size, :size]
    coords = np.stack([src_y, src_x])
    img = ndi.map_coordinates(image, coords, order=1, mode="mirror", prefilter=False)
    lab = ndi.map_coordinates(labels, coords, order=0, mode="mirror")
    return img.astype(np.float32, copy=False), lab.astype(labels.dtype, copy=False)


def augment_intensity(img: np.ndarray, rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    """Contrast, gamma, offset, blur and noise on one normalised ``(Y, X)`` patch (float32)."""
    img = img.astype(np.float32, copy=True)
    if aug.gamma > 0:
        g = float(np.exp(rng.uniform(-np.log1p(aug.gamma), np.log1p(aug.gamma))))
        pos = np.clip(img, 0, None)
        img = np.where(img > 0, pos**g, img)
    img *= float(np.exp(rng.normal(0, aug.gain_sigma)))
    img += float(rng.normal(0, aug.offset_sigma))
    if aug.blur_prob > 0 and rng.random() < aug.blur_prob:
        img = ndi.gaussian_filter(img, rng.uniform(0.3, aug.blur_sigma))
    if aug.shot_noise > 0:
        k = rng.uniform(0, aug.shot_noise)
        img += k * np.sqrt(np.clip(img, 0, None)) * rng.standard_normal(img.shape, np.float32)
    if aug.noise_sigma > 0:
        img += rng.uniform(0, aug.noise_sigma) * rng.standard_normal(img.shape, np.float32)
    return img


def dim_objects(
    img: np.ndarray, labels: np.ndarray, rng: np.random.Generator, aug: Augmentation
) -> np.ndarray:
    """Lower the contrast of some objects of a normalised ``(Y, X)`` patch against its background.

    With probability ``aug.dim_prob`` each object of the patch is dimmed with probability 1/2:
    its intensity above the background level (the median of the patch's unlabelled pixels) is
    multiplied by a factor drawn log-uniformly in ``[aug.dim_min, 1]``. The factor map is
    spread 3 px beyond each object (its blurred rim dims with it) and smoothed (sigma 1.5 px),
    so no edge is drawn where the labels end. Noise added afterwards (:func:`augment_intensity`)
    then puts such objects near the noise level, as a bleached nucleus late in a sequence is,
    while their labels stay: the network learns to find a faint nucleus as a whole.

    Returns a new float32 array; ``img`` is unchanged, and so is a patch the draw leaves alone.
    """
    img = img.astype(np.float32, copy=True)
    if aug.dim_prob <= 0 or rng.random() >= aug.dim_prob:
        return img
    ids = np.unique(labels)
    ids = ids[ids != 0]
    background = labels == 0
    if ids.size == 0 or not background.any():
        return img
    dimmed = ids[rng.random(ids.size) < 0.5]
    if dimmed.size == 0:
        return img
    lo = float(np.log(min(max(aug.dim_min, 1e-3), 1.0)))
    factors = np.ones(int(labels.max()) + 1, np.float32)
    factors[dimmed] = np.exp(rng.uniform(lo, 0.0, dimmed.size))
    from skimage.segmentation import expand_labels

    grown = expand_labels(labels, 3)
    fmap = ndi.gaussian_filter(factors[grown], 1.5)
    level = float(np.median(img[background]))
    return level + (img - level) * fmap


def dim_parts(
    img: np.ndarray, labels: np.ndarray, rng: np.random.Generator, aug: Augmentation
) -> np.ndarray:
    """Fade parts of some objects of a normalised ``(Y, X)`` patch to its background.

    With probability ``aug.part_prob`` each object of the patch is faded with probability 1/2:
    its intensity above the background level (the median of the patch's unlabelled pixels) is
    multiplied by a smooth random field, 0 on about a fifth of the object, 1 on about a third,
    in between elsewhere. The field's blobs are a fifth of the patch's typical object across
    (Gaussian noise smoothed by sigma = diameter / 5, at least 2 px), so whole sectors of a
    nucleus sink to the background while its label stays whole: the network learns to draw a
    nucleus of which only part shines (the textured chromatin of Fluo-N2DH-SIM+, whose truth
    is the whole simulated nucleus), from its outline and the part it sees. Spread 3 px beyond
    each object and smoothed (sigma 1.5 px) like :func:`dim_objects`: no edge where labels end.

    Returns a new float32 array; ``img`` is unchanged, and so is a patch the draw leaves alone.
    """
    img = img.astype(np.float32, copy=True)
    if aug.part_prob <= 0 or rng.random() >= aug.part_prob:
        return img
    ids, areas = np.unique(labels, return_counts=True)
    keep = ids != 0
    ids, areas = ids[keep], areas[keep]
    background = labels == 0
    if ids.size == 0 or not background.any():
        return img
    faded = np.zeros(int(labels.max()) + 1, bool)
    faded[ids[rng.random(ids.size) < 0.5]] = True
    if not faded.any():
        return img
    from skimage.segmentation import expand_labels

    diameter = 2.0 * float(np.sqrt(np.median(areas) / np.pi))
    field = ndi.gaussian_filter(
        rng.standard_normal(img.shape).astype(np.float32), max(2.0, diameter / 5)
    )
    field /= max(float(field.std()), 1e-6)
    grown = expand_labels(labels, 3)
    fmap = np.where(faded[grown], np.clip(0.7 + 0.8 * field, 0.0, 1.0), 1.0).astype(np.float32)
    fmap = ndi.gaussian_filter(fmap, 1.5)
    level = float(np.median(img[background]))
    return level + (img - level) * fmap
