"""Sample data made by the package itself (no download): moving, touching and dividing nuclei.

Each sample comes with its image, a foreground probability map of the kind a U-Net produces (high
in cell interiors, dipping — but not always below 0.5 — where two cells touch, with spatially
correlated noise) and the exact instance labels, so every tool can be tried and tested in seconds.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["SAMPLE_ZOOM", "nuclei_video", "nuclei_volume", "probability_from_labels"]

#: The package's sample video (:func:`nuclei_video` at this zoom): nuclei drawn 21-33 px across,
#: the size the shipped ``nuclei-fluo`` learned (26 px on Fluo-N2DL-HeLa), so the main job on
#: the bundled sample runs at the model's own zoom (at zoom 1 it would suggest ``--scale 1.5``).
SAMPLE_ZOOM = 1.5


def probability_from_labels(
    labels: np.ndarray,
    *,
    rng: np.random.Generator | int | None = 0,
    sigma: float = 1.5,
    noise: float = 0.06,
    noise_scale: float = 3.0,
    contact_dip: float = 0.35,
    ramp: float = 4.0,
) -> np.ndarray:
    """A U-Net-like foreground probability map for an instance label image.

    Parameters
    ----------
    labels : (Y, X) or (Z, Y, X) int ndarray
        Instance labels, 0 = background.
    rng : Generator or int, optional
        Random source or seed.
    sigma : float
        Blur of the map (pixels).
    noise : float
        Standard deviation of the spatially correlated noise.
    noise_scale : float
        Correlation length of the noise (pixels).
    contact_dip : float
        How far the probability drops where two cells touch (0 = no drop; above ~0.4 the contact
        falls below 0.5 and thresholding separates the cells).
    ramp : float
        Distance (pixels) over which the map rises from an object's edge to its plateau.

    Returns
    -------
    prob : float32 ndarray, same shape, values in [0, 1]
    """
    rng = np.random.default_rng(rng)
    fg = labels > 0
    # Distance to the boundary of each object (not to the background only), so contacts dip.
    edges = np.zeros_like(fg)
    for ax in range(labels.ndim):
        a = np.swapaxes(labels, 0, ax)
        e = np.swapaxes(edges, 0, ax)
        diff = a[1:] != a[:-1]
        e[1:] |= diff
        e[:-1] |= diff
    dist_inner = ndi.distance_transform_edt(~edges)
    dist_bg = ndi.distance_transform_edt(fg)
    core = np.clip(dist_bg / ramp, 0, 1)
    contact = np.clip(dist_inner / ramp, 0, 1)
    p = np.where(fg, 0.55 + 0.45 * core, 0.0)
    p = p * (1 - contact_dip * (1 - contact) * fg)
    p = ndi.gaussian_filter(p, sigma)
    n = ndi.gaussian_filter(rng.normal(size=labels.shape), noise_scale)
    n *= noise / max(float(n.std()), 1e-9)
    return np.clip(p + n, 0.0, 1.0).astype(np.float32)


def _nuclei_frame(
    lab: np.ndarray,
    gain: float,
    brightness: dict[int, float],
    rng: np.random.Generator,
    *,
    rim: float = 0.7,
    texture: float = 0.12,
    blur: float = 1.0,
    grain: float = 1.5,
) -> np.ndarray:
    """A stained-nuclei frame or stack (about 0-1) for labels ``lab``, as a microscope shows it.

    Each nucleus has its own brightness (``brightness[id]``, drawn on first sight and kept while
    the cell lives), is brightest in its middle and dimmer toward its rim (``rim``: the fraction
    lost at the edge), so nuclei that touch meet at a darker seam; chromatin texture (correlated
    noise, ``texture``, of correlation length ``grain`` pixels) and the optics' blur (``blur``
    pixels) on top.
    """
    img = np.zeros(lab.shape, np.float32)
    for cid, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        if cid not in brightness:
            brightness[cid] = float(rng.uniform(0.45, 1.0))
        inside = lab[box] == cid
        depth = ndi.distance_transform_edt(np.pad(inside, 1))[(slice(1, -1),) * lab.ndim]
        depth /= max(float(depth.max()), 1.0)
        img[box][inside] = brightness[cid] * ((1 - rim) + rim * np.sqrt(depth[inside]))
    grains = ndi.gaussian_filter(rng.normal(size=lab.shape), grain)
    img *= 1 + texture * grains / max(float(grains.std()), 1e-9)
    return ndi.gaussian_filter(img * gain, blur)


def _disk_labels(shape, centres, radii, axes=None) -> np.ndarray:
    """Paint ellipses/ellipsoids (later ones win) -> labels 1..K."""
    lab = np.zeros(shape, np.uint16)
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    for i, (c, r) in enumerate(zip(centres, radii, strict=True)):
        ax = np.ones(len(shape)) if axes is None else np.asarray(axes[i])
        d2 = sum(((g - ci) / (r * a)) ** 2 for g, ci, a in zip(grids, c, ax, strict=True))
        lab[(d2 <= 1.0) & (lab == 0)] = i + 1
    return lab


def nuclei_video(
    n_frames: int = 12,
    shape: tuple[int, int] = (192, 192),
    n_cells: int = 14,
    *,
    seed: int = 0,
    zoom: float = 1.0,
) -> dict[str, np.ndarray]:
    """A 2D+time video of moving, touching and dividing nuclei.

    Nuclei look like stained ones (:func:`_nuclei_frame`: each its own brightness, dimmer toward
    the rim, textured, blurred); pairs are pulled together so that they touch, two mothers divide.
    At ``zoom`` 1 the nuclei are drawn 14-22 px across (some partly hidden by a neighbour);
    ``zoom`` makes the scene that many times larger, as a higher magnification would (the frame
    ``shape``, the nuclei, their motion, the texture and the blur; the pixel noise stays), from
    the same random draws. :data:`SAMPLE_ZOOM` is the package's sample (napari's *Open Sample*,
    ``napari-hemd demo``).

    Returns
    -------
    dict
        ``image`` (T, Y, X) uint16 fluorescence-like frames, ``prob`` (T, Y, X) float32 foreground
        probability, ``labels`` (T, Y, X) uint16 ground truth (consistent ids; daughters get new
        ids), ``tracks`` (K, 4) CTC ``L B E P`` table.
    """
    rng = np.random.default_rng(seed)
    look = np.random.default_rng([seed, 1])  # the nuclei's appearance: the labels stay as they were
    brightness: dict[int, float] = {}
    if not 0.25 <= zoom <= 8:
        raise ValueError(f"zoom must be between 0.25 and 8; got {zoom!r}")
    shape = (round(shape[0] * zoom), round(shape[1] * zoom))
    h, w = shape
    m = 16 * zoom
    pos = rng.uniform([m, m], [h - m, w - m], size=(n_cells, 2))
    vel = zoom * rng.normal(0, 1.2, size=(n_cells, 2))
    rad = zoom * rng.uniform(7, 11, size=n_cells)
    ecc = rng.uniform(0.8, 1.25, size=(n_cells, 1)) ** np.array([[1, -1]])
    ids = np.arange(1, n_cells + 1)
    begin = {int(i): 0 for i in ids}
    parent = {int(i): 0 for i in ids}
    # Pull some pairs together so that they touch.
    for a in range(0, min(n_cells - 1, 6), 2):  # an odd count leaves the last one alone
        pos[a + 1] = (
            pos[a] + rng.normal(0, 1, 2) * 2 * zoom + np.array([0, rad[a] + rad[a + 1] - zoom])
        )
    divide_at = {0: n_frames // 3, 2: 2 * n_frames // 3}
    next_id = n_cells + 1
    frames, labs = [], []
    last_seen = {}
    for t in range(n_frames):
        for k, tdiv in list(divide_at.items()):
            if t == tdiv and k < len(ids):
                # Mother k splits into two daughters along a random direction.
                ang = rng.uniform(0, np.pi)
                off = np.array([np.sin(ang), np.cos(ang)]) * rad[k] * 0.55
                mother = int(ids[k])
                for sgn in (1, -1):
                    pos = np.vstack([pos, pos[k] + sgn * off])
                    vel = np.vstack([vel, vel[k] + sgn * off / 4])
                    rad = np.append(rad, rad[k] * 0.72)
                    ecc = np.vstack([ecc, ecc[k]])
                    ids = np.append(ids, next_id)
                    begin[next_id] = t
                    parent[next_id] = mother
                    next_id += 1
                keep = np.arange(len(ids)) != k
                pos, vel, rad, ecc, ids = pos[keep], vel[keep], rad[keep], ecc[keep], ids[keep]
                divide_at = {(kk - (kk > k)): v for kk, v in divide_at.items() if kk != k}
        pos = np.clip(pos + vel, 10 * zoom, np.array([h, w]) - 10 * zoom)
        vel = 0.85 * vel + zoom * rng.normal(0, 0.4, size=vel.shape)
        lab0 = _disk_labels(shape, pos, rad, ecc)
        lab = np.zeros_like(lab0)
        for i, cid in enumerate(ids):
            lab[lab0 == i + 1] = cid
        for cid in np.unique(lab):
            if cid:
                last_seen[int(cid)] = t
        labs.append(lab)
        gain = rng.uniform(0.7, 1.0)
        img = 200 + 1800 * _nuclei_frame(lab, gain, brightness, look, blur=zoom, grain=1.5 * zoom)
        img = img + rng.normal(0, 60, shape)  # float64, as the noise
        frames.append(np.clip(img, 0, 65535).astype(np.uint16))
    labels = np.stack(labs)
    prob = np.stack(
        [
            probability_from_labels(
                lab,
                rng=rng,
                contact_dip=rng.uniform(0.2, 0.45),
                sigma=1.5 * zoom,
                noise_scale=3.0 * zoom,
                ramp=4.0 * zoom,
            )
            for lab in labs
        ]
    )
    tracks = np.array(
        [[i, begin[i], last_seen[i], parent[i]] for i in sorted(last_seen)], dtype=np.int64
    )
    return {"image": np.stack(frames), "prob": prob, "labels": labels, "tracks": tracks}


def nuclei_volume(
    shape: tuple[int, int, int] = (48, 128, 128), n_cells: int = 18, *, seed: int = 1
) -> dict[str, np.ndarray]:
    """A 3D stack of touching nuclei (ellipsoids, anisotropic along Z).

    Stained as in :func:`nuclei_video` (:func:`_nuclei_frame` works on stacks alike).

    Returns
    -------
    dict
        ``image`` (Z, Y, X) uint16, ``prob`` (Z, Y, X) float32, ``labels`` (Z, Y, X) uint16.
    """
    if len(shape) != 3 or min(int(v) for v in shape) < 1:
        raise ValueError(f"shape must be (Z, Y, X), each at least 1; got {tuple(shape)}")
    rng = np.random.default_rng(seed)
    # centres a radius from the faces where the stack is deep enough; a thin one (a few
    # slices) anywhere (its nuclei cut by the faces: "high - low < 0" from numpy, audit 30)
    lo = np.minimum([8, 14, 14], np.array(shape) // 2)
    hi = np.array(shape) - lo
    centres = rng.uniform(lo, hi, size=(n_cells, 3))
    radii = rng.uniform(8, 12, size=n_cells)
    axes = np.column_stack(
        [rng.uniform(0.7, 0.9, n_cells), rng.uniform(0.9, 1.1, n_cells), np.ones(n_cells)]
    )
    labels = _disk_labels(shape, centres, radii, axes)
    prob = probability_from_labels(labels, rng=rng, sigma=1.2, contact_dip=0.3)
    img = _nuclei_frame(labels, 1.0, {}, np.random.default_rng([seed, 1]))
    img = np.clip(150 + 1500 * img + rng.normal(0, 50, size=shape), 0, 65535).astype(np.uint16)
    return {"image": img, "prob": prob, "labels": labels}
