"""Per-object measurements of a label movie: one row per object per frame, for a spreadsheet.

After segmenting and proofreading, a biologist measures: how large each cell is, where it is, how
bright it is in each channel, whether the image's edge cuts it, and (with linked labels) which
cell it came from. :func:`measure_objects` gives those columns from
:func:`skimage.measure.regionprops_table`, frame by frame (so a long movie is measured one frame
in memory at a time when the labels are lazy), and :func:`write_table` writes them as CSV.

Sizes are in pixels (``area``: pixels of a 2D object, voxels of a 3D one) and, with ``spacing``
(the pixel size per spatial axis), in physical units too (``area_um2`` / ``volume_um3`` for the
unit ``um``, the equivalent diameter and the centroid likewise). Coordinates are always given in
pixels of the array as well (centroid, bounding box: what napari shows), frames counted from 0.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["column_suffix", "measure_objects", "write_table"]

#: The regionprops properties measured, for 2D and 3D objects (renamed in the columns).
_SHAPE_2D = ("area", "centroid", "bbox", "equivalent_diameter_area", "eccentricity", "solidity")
_SHAPE_3D = ("area", "centroid", "bbox", "equivalent_diameter_area")
_INTENSITY = ("intensity_mean", "intensity_min", "intensity_max")


def measure_objects(
    labels,
    image=None,
    *,
    frames: bool = True,
    spacing: Sequence[float] | None = None,
    unit: str = "um",
    tracks: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Measure every object of every frame.

    Parameters
    ----------
    labels : (T, Y, X) or (T, Z, Y, X) integer array-like (``frames=True``), or (Y, X) / (Z, Y, X)
        Instance labels (0 background); read one frame at a time.
    image : array-like shaped like ``labels``, or a mapping of names to such arrays, optional
        Intensities to measure inside each object (mean, min, max and their sum, the integrated
        intensity). A mapping (``{"GFP": gfp, "mCherry": mcherry}``: the channels of a
        multi-channel movie) measures each one, in columns suffixed with its name
        (``mean_intensity_GFP``; characters other than letters, digits, ``.``, ``-`` and ``_``
        become ``_``).
    frames : bool
        Axis 0 of ``labels`` is time (each frame measured on its own); False: one image or volume.
    spacing : sequence of float, optional
        Pixel size per spatial axis (``(y, x)`` or ``(z, y, x)``): adds the physical size, the
        centroid in physical units and the equivalent diameter from the physical size (the
        diameter of the disk or ball of that area or volume: right for anisotropic voxels too).
    unit : str
        The unit of ``spacing``, for the column name (``area_um2``, ``volume_um3``).
    tracks : (K, 4) array, optional
        CTC track table (``L B E P``) of linked labels: adds ``parent`` (0: none).

    Returns
    -------
    dict of str to ndarray
        Columns of equal length, one row per object per frame, ordered by frame then label:
        ``frame``, ``label``, ``area``, [``area_<unit>2`` / ``volume_<unit>3``], ``centroid_z``
        (3D), ``centroid_y``, ``centroid_x``, [``centroid_[z_]<unit>``, ``centroid_y_<unit>``,
        ``centroid_x_<unit>``], ``bbox_*_min`` / ``bbox_*_max`` (max exclusive),
        ``equivalent_diameter`` (pixels), [``equivalent_diameter_<unit>``], ``eccentricity`` and
        ``solidity`` (2D), ``touches_border``,
        [``mean_intensity``, ``min_intensity``, ``max_intensity``, ``integrated_intensity``,
        each suffixed ``_<name>`` for a mapping's images], [``parent``].

    Raises
    ------
    ValueError
        ``labels`` of another shape than ``image`` (any of its images), not integers, a
        mapping's names empty or the same once made column names, or a ``spacing`` of the wrong
        length or not positive.
    """
    from skimage.measure import regionprops_table

    shape = tuple(labels.shape)
    spatial = len(shape) - 1 if frames else len(shape)
    if spatial not in (2, 3) or (frames and len(shape) < 3):
        what = "(T, Y, X) or (T, Z, Y, X)" if frames else "(Y, X) or (Z, Y, X)"
        raise ValueError(f"labels must be {what}; got shape {shape}")
    if not np.issubdtype(np.dtype(labels.dtype), np.integer):
        raise ValueError(f"labels must be integers (instance ids); got dtype {labels.dtype}")
    images = _named_images(image)
    for suffix, img in images:
        if tuple(img.shape) != shape:
            what = f"image {suffix[1:]!r}" if suffix else "image"
            raise ValueError(f"{what} must have the labels' shape {shape}; got {tuple(img.shape)}")
    if spacing is not None:
        spacing = [float(s) for s in spacing]
        if len(spacing) != spatial or not all(s > 0 for s in spacing):
            raise ValueError(
                f"spacing must be {spatial} positive pixel sizes ({'z, ' * (spatial == 3)}y, x); "
                f"got {spacing}"
            )
    axes = "zyx"[-spatial:]
    props = ["label", *(_SHAPE_2D if spatial == 2 else _SHAPE_3D)]
    if images:
        props += _INTENSITY
    parents = {}
    if tracks is not None and len(tracks):
        parents = {int(r[0]): int(r[3]) for r in np.asarray(tracks)}
    n_t = shape[0] if frames else 1
    if n_t == 0:
        raise ValueError(f"labels has no frames (shape {shape})")
    # uint64 ids keep their type (2**63 and more came out negative as int64)
    label_dtype = (
        np.uint64 if np.dtype(getattr(labels, "dtype", np.int64)) == np.uint64 else np.int64
    )
    parts: list[dict[str, np.ndarray]] = []
    for t in range(n_t):  # an empty frame gives empty columns: every column is always there
        lab = np.asarray(labels[t] if frames else labels)
        planes = [np.asarray(a[t] if frames else a) for _, a in images]
        # several images: one regionprops pass over them as channels (columns "intensity_mean-c")
        img = None if not planes else planes[0] if len(planes) == 1 else np.stack(planes, -1)
        ids = None
        if lab.size and int(lab.min()) < 0:
            where = f" (frame {t})" if frames else ""
            raise ValueError(f"labels: expected ids >= 0; got minimum {int(lab.min())}{where}")
        if lab.size and int(lab.max()) > max(4 * lab.size, 2**20):
            # ids far beyond the objects (2**40 + k): measured as consecutive ids, named as given
            ids, inverse = np.unique(lab, return_inverse=True)
            if ids[0] != 0:  # no background in the frame: the smallest id is an object, not 0
                ids, inverse = np.concatenate([np.zeros(1, ids.dtype), ids]), inverse + 1
            lab = inverse.reshape(lab.shape)
        table = regionprops_table(lab, intensity_image=img, properties=props)
        if ids is not None:
            table["label"] = ids[np.asarray(table["label"], dtype=np.int64)]
        n = len(table["label"])
        row: dict[str, np.ndarray] = {
            "frame": np.full(n, t, np.int64),
            "label": np.asarray(table["label"]).astype(label_dtype),
            "area": np.asarray(table["area"], np.int64),
        }
        if spacing is not None:
            size = "area" if spatial == 2 else "volume"
            row[f"{size}_{unit}{spatial}"] = row["area"] * float(np.prod(spacing))
        for i, a in enumerate(axes):
            row[f"centroid_{a}"] = np.asarray(table[f"centroid-{i}"], np.float64)
        if spacing is not None:
            for i, a in enumerate(axes):
                row[f"centroid_{a}_{unit}"] = row[f"centroid_{a}"] * spacing[i]
        for i, a in enumerate(axes):
            row[f"bbox_{a}_min"] = np.asarray(table[f"bbox-{i}"], np.int64)
            row[f"bbox_{a}_max"] = np.asarray(table[f"bbox-{i + spatial}"], np.int64)
        row["equivalent_diameter"] = np.asarray(table["equivalent_diameter_area"], np.float64)
        if spacing is not None:  # the disk's (ball's) diameter of the physical area (volume)
            physical = row[f"{size}_{unit}{spatial}"]
            row[f"equivalent_diameter_{unit}"] = (
                np.sqrt(4 * physical / np.pi) if spatial == 2 else np.cbrt(6 * physical / np.pi)
            )
        if spatial == 2:
            row["eccentricity"] = np.asarray(table["eccentricity"], np.float64)
            row["solidity"] = np.asarray(table["solidity"], np.float64)
        lo = np.stack([row[f"bbox_{a}_min"] for a in axes])
        hi = np.stack([row[f"bbox_{a}_max"] for a in axes])
        row["touches_border"] = (lo == 0).any(0) | (hi == np.array(lab.shape)[:, None]).any(0)
        for c, (suffix, _) in enumerate(images):
            key = "" if len(images) == 1 else f"-{c}"
            for stat in ("mean", "min", "max"):
                column = np.asarray(table[f"intensity_{stat}{key}"], np.float64)
                row[f"{stat}_intensity{suffix}"] = column
            row[f"integrated_intensity{suffix}"] = row[f"mean_intensity{suffix}"] * row["area"]
        if parents:
            row["parent"] = np.array([parents.get(int(k), 0) for k in row["label"]], np.int64)
        parts.append(row)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def column_suffix(name) -> str:
    """An image's name as :func:`measure_objects` suffixes its columns (``H2B mCherry``: ``H2B_mCherry``).

    Letters and digits of any script are kept (``核``: a name of Chinese characters was emptied,
    review 30), runs of anything else but ``.`` and ``-`` become ``_``.
    """
    import re

    return re.sub(r"[^\w.-]+", "_", str(name)).strip("_")


def _named_images(image) -> list[tuple[str, object]]:
    """``[(column suffix, array), ...]`` of ``image``: ``[("", image)]``, a mapping's by name."""
    from collections.abc import Mapping

    if image is None:
        return []
    if not isinstance(image, Mapping):
        return [("", image)]
    named: dict[str, object] = {}
    for name, img in image.items():
        safe = column_suffix(name)
        if not safe:
            raise ValueError(f"image: names must hold a letter or a digit; got {name!r}")
        if f"_{safe}" in named:
            raise ValueError(f"image: names {list(image)} give the same column name {safe!r} twice")
        named[f"_{safe}"] = img
    return list(named.items())


def write_table(
    columns: dict[str, np.ndarray], path: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write ``columns`` as a CSV file (header row, one row per object), atomically.

    Floats are written with the digits their type holds (12 significant for float64, 7 for
    float32: 56.125 um2 in nm2 is 56125000, not 56124999.999999985), booleans as 0/1. An
    existing file is replaced only with ``overwrite`` (never a folder).
    """
    from napari_hemd._atomic import atomic_path, check_output_path

    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ValueError(f"output must be a .csv file; got {str(path)!r}")
    check_output_path(path, overwrite=overwrite, name="output")
    names = list(columns)
    cols = [np.asarray(columns[k]) for k in names]
    lengths = {k: len(c) for k, c in zip(names, cols, strict=True)}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"columns must all have the same length (one row per object); got {lengths}"
        )
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names)
        for i in range(len(cols[0]) if cols else 0):
            w.writerow([_cell(c[i]) for c in cols])
    return path


def _cell(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        digits = 7 if np.asarray(v).dtype.itemsize <= 4 else 12  # what the type holds
        return f"{float(v):.{digits}g}"  # 36111811, not 3.61118e+07; no rounding noise
    return str(v)
