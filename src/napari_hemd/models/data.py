"""Training data: Cell Tracking Challenge sequences or image/label folders, with a held-out split.

Frames are normalised once at load (the same per-frame percentile normalisation the model wrapper
applies at prediction time) and kept in memory; datasets here are a few hundred MB at most.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_hemd._log import NOTE
from napari_hemd.models.weights import DEFAULT_NORMALIZATION, normalize_percentile

__all__ = [
    "Sample",
    "load_samples",
    "median_diameter",
    "object_diameters",
    "project_scale",
    "split_samples",
    "zoom_samples",
]

logger = logging.getLogger(__name__)

_TIF = (".tif", ".tiff")


@dataclass
class Sample:
    """One training image.

    Attributes
    ----------
    image : (Y, X) float32 ndarray
        Normalised intensities.
    labels : (Y, X) int32 ndarray
        Instance labels, 0 = background.
    name : str
        ``DATASET/FRAME`` for provenance and held-out reports.
    source : str
        ``"GT"``, ``"ST"`` or ``"labels"``: where the masks come from.
    """

    image: np.ndarray
    labels: np.ndarray
    name: str
    source: str

    @property
    def dataset(self) -> str:
        """The data folder the sample comes from (``name`` without its frame)."""
        return self.name.rsplit("/", 1)[0] if "/" in self.name else self.name


def _frame_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    if not digits:
        raise ValueError(f"cannot read a frame number from {path.name!r}")
    return int(digits[-1])


def _ctc_mask_dir(seq: Path, masks: str) -> tuple[Path, str]:
    candidates = {
        "st": seq.parent / f"{seq.name}_ST" / "SEG",
        "gt": seq.parent / f"{seq.name}_GT" / "SEG",
    }
    order = ["st", "gt"] if masks == "auto" else [masks]
    for key in order:
        if candidates[key].is_dir():
            return candidates[key], key.upper()
    raise FileNotFoundError(
        f"data {str(seq)!r}: no mask folder {' or '.join(str(candidates[k]) for k in order)}"
    )


def load_samples(
    path: str | os.PathLike,
    *,
    masks: str = "auto",
    normalization: dict | None = None,
) -> list[Sample]:
    """Load image/label pairs from a CTC sequence folder or an ``images/`` + ``labels/`` folder.

    Parameters
    ----------
    path : path-like
        A CTC sequence (``.../01`` with ``01_ST/SEG`` or ``01_GT/SEG`` next to it; frames without a
        mask are skipped), a folder with ``images/`` and ``labels/`` holding TIFFs of the same
        names, an ``.h5`` volume with ``raw`` and ``label`` (one sample per z-slice), or a
        napari-hemd project folder (``*.zarr`` saved by the Project widget): the frames the user
        marked as checked, with their corrected labels.
    masks : {"auto", "st", "gt"}
        For CTC: silver truth (full frames) or gold truth; ``"auto"`` prefers ST and falls back to
        GT.
    normalization : dict, optional
        ``{"method": "percentile", "low": ..., "high": ...}``.

    Returns
    -------
    list of Sample
        Sorted by frame number / file name.
    """
    if masks not in ("auto", "st", "gt"):
        raise ValueError(f"masks must be 'auto', 'st' or 'gt'; got {masks!r}")
    norm = normalization or DEFAULT_NORMALIZATION
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5") and path.is_file():
        return _volume_samples(path, norm)
    if _is_project(path):
        return _project_samples(path, norm)
    if not path.is_dir():
        raise FileNotFoundError(f"data {str(path)!r} is not a folder (or an .h5 volume)")
    pairs: list[tuple[Path, Path, str, str]] = []
    # samples are named by the folder itself, however it was given ("." or ../01: a resume
    # compares the names, review 33c)
    named = path.resolve()
    if (path / "images").is_dir() and (path / "labels").is_dir():
        unlabelled = []
        from napari_hemd.io.tiff import natural_key

        listed = [p for p in (path / "images").iterdir() if p.suffix.lower() in _TIF]
        for img in sorted(listed, key=lambda p: natural_key(p.name)):  # img2 before img10
            lab = path / "labels" / img.name
            if lab.exists():
                pairs.append((img, lab, f"{named.name}/{img.stem}", "labels"))
            else:
                unlabelled.append(img.name)
        if unlabelled:  # said: a misnamed label file would otherwise just shrink the data
            shown = ", ".join(unlabelled[:5]) + (" ..." if len(unlabelled) > 5 else "")
            logger.log(
                NOTE,
                "data %s: %d of %d images have no label file of the same name in labels/ (%s): "
                "not used",
                path,
                len(unlabelled),
                len(unlabelled) + len(pairs),
                shown,
            )
    elif (path / "images").is_dir() or (path / "labels").is_dir():  # half of the layout
        have, missing = ("images", "labels") if (path / "images").is_dir() else ("labels", "images")
        raise FileNotFoundError(
            f"data {str(path)!r} has {have}/ but no {missing}/: an images/ + labels/ folder "
            "holds each image's instance labels under the same file name (TIFF) in labels/"
        )
    else:
        try:
            mask_dir, source = _ctc_mask_dir(named, masks)  # (its _ST beside it: "." too)
        except FileNotFoundError:
            if any(p.suffix.lower() in _TIF for p in path.iterdir()):
                raise  # frames without their masks: a CTC sequence missing its ST/GT folder
            raise ValueError(_no_pairs(path)) from None
        by_frame = _by_frame_number(p for p in mask_dir.iterdir() if p.suffix.lower() in _TIF)
        images = _by_frame_number(p for p in path.iterdir() if p.suffix.lower() in _TIF)
        for t, img in sorted(images.items()):
            if t in by_frame:
                pairs.append(
                    (img, by_frame[t], f"{named.parent.name}/{named.name}/t{t:03d}", source)
                )
    if not pairs:
        raise ValueError(_no_pairs(path))
    from napari_hemd.core.validation import binary_mask

    samples: list[Sample] = []
    colour = []
    for img_path, lab_path, name, source in pairs:
        img, lab = _read_tiff(img_path), _read_tiff(lab_path)
        if lab.size and (lab.min() < 0 or not np.array_equal(lab, np.round(lab))):
            raise ValueError(
                f"data {str(lab_path)!r}: expected instance labels (whole numbers >= 0); got "
                f"{lab.dtype} values from {lab.min()} to {lab.max()}"
            )
        # every mask: one real mask first let binary ones after it through (audit 37)
        why = binary_mask(lab) if lab.dtype.kind in "iub" else None
        if why:  # trained as one cell of a hundred nuclei (audit 17)
            raise ValueError(f"data {str(lab_path)!r}: {why}")
        while img.ndim > 2 and img.shape[0] == 1:  # a (1, Y, X) image (and mask): one plane
            img = img[0]
        while lab.ndim > 2 and lab.shape[0] == 1:
            lab = lab[0]
        if img.ndim == 3 and img.shape[-1] in (3, 4) and lab.ndim == 2:
            img = img[..., :3].mean(-1)
            colour.append(img_path.name)
        if img.shape != lab.shape:
            raise ValueError(
                f"{img_path.name}: image shape {img.shape} differs from mask shape {lab.shape}"
            )
        if img.ndim == 3:  # a (Z, Y, X) stack and its 3D mask: a sample per slice, as a volume
            samples.extend(
                Sample(
                    normalize_percentile(img[z], norm["low"], norm["high"]),
                    lab[z].astype(np.int32),
                    f"{name}/z{z:03d}",
                    source,
                )
                for z in range(img.shape[0])
            )
            continue
        if img.ndim != 2:  # (it failed later: "too many values to unpack", audit 37)
            raise ValueError(
                f"data {str(img_path)!r}: expected a 2D image (Y, X) or a 3D stack (Z, Y, X) "
                f"with a mask of its shape; got shape {img.shape}"
            )
        image = normalize_percentile(img, norm["low"], norm["high"])
        samples.append(Sample(image, lab.astype(np.int32), name, source))
    if colour:
        logger.log(
            NOTE,
            "data %s: %d colour image(s) (%s) trained on as grey, the mean of their red, green "
            "and blue (the model takes one channel)",
            path,
            len(colour),
            ", ".join(colour[:3]) + (" ..." if len(colour) > 3 else ""),
        )
    logger.info("loaded %d samples from %s", len(samples), path)
    return samples


def _by_frame_number(files) -> dict[int, Path]:
    """CTC frames (``t003.tif``, ``man_seg003.tif``) by the last number in their names.

    Names whose last number is not the frame (``pos1_t003_c1.tif``: the channel) repeat it:
    every image was paired with one mask, and trained on without a word (audit 37).
    """
    found: dict[int, Path] = {}
    for f in sorted(files):
        t = _frame_number(f)
        if t in found:
            raise ValueError(
                f"data {str(f.parent)!r}: {found[t].name} and {f.name} both end in the number "
                f"{t}, which is taken as the frame: a CTC sequence names its frames tTTT.tif "
                "(masks man_segTTT.tif in 01_GT/SEG or 01_ST/SEG); rename them, or use an "
                "images/ + labels/ folder (masks under the images' names)"
            )
        found[t] = f
    return found


def _no_pairs(path: Path) -> str:
    """What a training data folder holding no image/mask pairs was expected to be."""
    import itertools

    files = itertools.islice(path.rglob("*"), 5000)  # a look, not a walk of a whole drive
    others = sorted({q.suffix.lower() for q in files if q.suffix} - set(_TIF))[:4]
    kinds = f" (found {', '.join(others)} files: only TIFFs are read)" if others else ""
    return (
        f"data {str(path)!r}: expected a CTC sequence folder with ST/GT masks, images/ + "
        "labels/ folders of TIFFs, an .h5 volume or a napari-hemd project; found no "
        f"image/mask pairs{kinds}"
    )


def _read_tiff(path: Path) -> np.ndarray:
    """A training image or mask; a file that is no readable TIFF is named."""
    import tifffile

    try:
        return tifffile.imread(path)
    except Exception as e:
        raise ValueError(f"data {str(path)!r} is not a readable TIFF ({e})") from e


def _is_project(path: Path) -> bool:
    attrs = path / "zarr.json"
    if not (path.is_dir() and attrs.is_file()):
        return False
    try:
        return "napari-hemd project" in attrs.read_text()[:200_000]
    except OSError:
        return False


def project_scale(path, default: float = 1.0) -> float:
    """The zoom a project folder's labels were segmented at (``scale`` parameter, else 1).

    ``default`` for a folder that is not a project. Fine-tuning on the project trains at it
    (``train --init``, like the Fine-tune widget).
    """
    path = Path(path)
    if not _is_project(path):
        return float(default)
    import zarr

    from napari_hemd.models.prediction import recorded_scale

    return recorded_scale(zarr.open_group(str(path), mode="r").attrs.get("params"))


def refuse_no_objects(empty: Sequence[int], frames: Sequence[int], where: str) -> None:
    """Refuse corrected frames that all hold no object: the model would learn to find none.

    Such a fine-tune trained happily on background alone and then wiped every frame it
    re-segmented. Some empty checked frames (fields without cells) among others are fine.
    """
    frames = sorted({int(f) for f in frames})
    if frames and len(set(empty)) >= len(frames):
        shown = ", ".join(str(f) for f in frames[:8]) + (" ..." if len(frames) > 8 else "")
        raise ValueError(
            f"{where}: the checked frame(s) {shown} hold no objects (every label 0): "
            "fine-tuning on them would teach the model to find no cells. Check frames whose "
            "cells you corrected"
        )


def _project_samples(path: Path, norm: dict) -> list[Sample]:
    """The checked frames of a project folder (see :func:`napari_hemd.workflows.save_project`)."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    checked = sorted(int(t) for t in root.attrs.get("checked", []))
    if not checked:
        raise ValueError(
            f"data {str(path)!r}: the project has no checked frames; mark the frames you "
            "corrected as checked in the Proofread widget"
        )
    if "image" not in root:
        raise ValueError(
            f"data {str(path)!r}: the project holds no raw image (saved from a probability map "
            "alone); it cannot be training data"
        )
    image, labels = root["image"], root["labels"]
    if labels.ndim not in (2, 3):  # a time-lapse of stacks: its frames are 3D
        raise ValueError(
            f"data {str(path)!r}: the project's labels have shape {tuple(labels.shape)}; "
            "fine-tuning takes the frames of a movie (T, Y, X), the slices of one stack "
            "(Z, Y, X) or one image (Y, X), not a time-lapse of 3D stacks. Save one stack of "
            "it as a project (or a frame range of a movie) and fine-tune on that"
        )
    if image.ndim == 2:
        checked = [t for t in checked if t == 0]
    empty = [t for t in checked if not np.any(labels if labels.ndim == 2 else labels[t])]
    refuse_no_objects(empty, checked, f"data {str(path)!r}")
    out = []
    for t in checked:
        img = np.asarray(image if image.ndim == 2 else image[t])
        lab = np.asarray(labels if labels.ndim == 2 else labels[t])
        if img.ndim == 3 and img.shape[-1] in (3, 4):
            img = img[..., :3].mean(-1)
        out.append(
            Sample(
                normalize_percentile(img, norm["low"], norm["high"]),
                lab.astype(np.int32),
                f"{path.name.removesuffix('.zarr')}/t{t:03d}",
                "corrected",
            )
        )
    logger.info("loaded %d checked frames from project %s", len(out), path)
    return out


def _volume_samples(path: Path, norm: dict) -> list[Sample]:
    """An HDF5 volume (datasets ``raw`` and ``label``, (Z, Y, X)) as one sample per z-slice.

    A 2D network trained on slices + H-EMD across slices is how the H-EMD paper handles 3D
    stacks; slices are named ``VOLUME/zNNN`` so that a held-out block is a contiguous slab.
    """
    import h5py

    with h5py.File(path, "r") as f:
        missing = [k for k in ("raw", "label") if k not in f]
        if missing:
            raise ValueError(f"data {str(path)!r}: an .h5 volume needs datasets raw and label")
        raw, lab = np.asarray(f["raw"]), np.asarray(f["label"])
    if raw.shape != lab.shape or raw.ndim != 3:
        raise ValueError(
            f"data {str(path)!r}: raw {raw.shape} and label {lab.shape} must be one (Z, Y, X) shape"
        )
    return [
        Sample(
            normalize_percentile(raw[z], norm["low"], norm["high"]),
            lab[z].astype(np.int32),
            f"{path.stem}/z{z:03d}",
            "labels",
        )
        for z in range(raw.shape[0])
    ]


def split_samples(
    samples: list[Sample], val: str | float = 0.2
) -> tuple[list[Sample], list[Sample]]:
    """Hold out a contiguous block of samples (time-lapse frames are correlated).

    Parameters
    ----------
    samples : list of Sample
        Ordered as loaded.
    val : float or str
        A fraction in ``[0, 1)`` (the last ``ceil(val * n)`` samples), ``"START:STOP"`` (a slice
        of sample positions: among the frames that have masks, not frame numbers), or ``"auto"`` (fine-tuning on a few corrected frames: the last one
        with objects when there are three or more and another one with objects is left to
        train on, else none; a frame without objects cannot be scored).

    Returns
    -------
    train, held_out : list of Sample
    """
    n = len(samples)
    if val == "auto":
        # the last with objects, when another with objects is left to train on
        scored = [i for i, s in enumerate(samples) if np.any(s.labels)]
        val = f"{scored[-1]}:{scored[-1] + 1}" if n >= 3 and len(scored) >= 2 else 0.0
    if isinstance(val, str) and ":" in val:
        try:
            start, stop = (int(v) if v else None for v in val.split(":"))
        except ValueError:
            raise ValueError(f"val must be a fraction or 'START:STOP'; got {val!r}") from None
        idx = set(range(n)[slice(start, stop)])
    else:
        try:
            frac = float(val)
        except ValueError:
            raise ValueError(
                f"val must be a fraction in [0, 1), 'START:STOP' or 'auto'; got {val!r}"
            ) from None
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"val fraction must be in [0, 1); got {val!r}")
        k = int(np.ceil(frac * n))
        idx = set(range(n - k, n))
    if isinstance(val, str) and ":" in val and not idx:
        raise ValueError(
            f"val {val!r} holds out none of the {n} frames with masks: START:STOP counts "
            f"positions among them (0-{n - 1}), not frame numbers"
        )
    train = [s for i, s in enumerate(samples) if i not in idx]
    held = [s for i, s in enumerate(samples) if i in idx]
    if not train:
        raise ValueError(f"val={val!r} leaves no training samples out of {n}")
    return train, held


def zoom_samples(samples: Sequence[Sample], scale: float) -> list[Sample]:
    """``samples`` as a network sees frames zoomed by ``scale`` (``predict(..., scale=scale)``).

    Images are resized exactly as prediction resizes a frame (linear, averaged when shrinking;
    same size rounding), labels by nearest neighbour at the same pixel centres, so ids and
    touching borders are kept. Training on them makes a model for that zoom: fine-tuning on a
    user's corrections at the zoom the movie was segmented at keeps the objects at the size the
    network learned (:func:`napari_hemd.finetune.finetune`, ``train --scale``).
    """
    if float(scale) == 1.0:
        return list(samples)
    from napari_hemd.models.prediction import _resize, scaled_shape

    out = []
    for s in samples:
        size = scaled_shape(s.image.shape, scale)
        out.append(
            Sample(
                _resize(s.image.astype(np.float32, copy=False), size),
                _nearest(s.labels, size),
                s.name,
                s.source,
            )
        )
    return out


def _nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``labels`` resampled to ``size`` by nearest neighbour (pixel centres aligned)."""
    idx = [
        np.minimum(((np.arange(n) + 0.5) * (m / n)).astype(np.intp), m - 1)
        for n, m in zip(size, labels.shape[-2:], strict=True)
    ]
    return labels[np.ix_(*idx)]


def object_diameters(samples: Sequence[Sample]) -> dict[str, float]:
    """Median object diameter (pixels) of each data set among ``samples``, for the model file.

    Objects are the labels' instances that do not touch the image border (cut ones would pull
    the median down); the diameter of one is that of the disc of its area. Data sets are the
    samples' names up to the last ``/`` (``"Fluo-N2DL-HeLa/01"``). What ``napari-hemd models``
    shows a user, who zooms frames with other sizes (``--scale``) to match.
    """
    frames: dict[str, list[np.ndarray]] = {}
    for s in samples:
        frames.setdefault(s.name.rsplit("/", 1)[0], []).append(s.labels)
    out = {}
    for name, labels in frames.items():
        diameter, _ = median_diameter(labels)
        if diameter is not None:
            out[name] = round(diameter, 1)
    return out


def median_diameter(frames) -> tuple[float | None, int]:
    """Median diameter (pixels) of the objects in 2D label ``frames``, and how many there are.

    Objects touching a frame's border are left out; an object's diameter is that of the disc of
    its area. ``(None, 0)`` without objects.
    """
    parts = []
    for lab in frames:
        lab = np.asarray(lab)
        counts = np.bincount(lab.ravel())
        counts[np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))] = 0
        counts[0] = 0
        parts.append(counts[counts > 0])
    areas = np.concatenate(parts) if parts else np.zeros(0)
    if not areas.size:
        return None, 0
    return float(np.median(2.0 * np.sqrt(areas / np.pi))), int(areas.size)
