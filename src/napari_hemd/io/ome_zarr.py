"""OME-Zarr (OME-NGFF 0.4) label images: write them, read them (and OME-Zarr images) lazily.

The metadata is written by hand after the NGFF 0.4 specification
(https://ngff.openmicroscopy.org/0.4/), on zarr format 2 with ``/`` chunk keys, as the spec
requires. The ``ome-zarr`` package was not used: its current release needs Python > 3.11 and pins
its own pydantic, which the rest of the package depends on.

Two layouts are written:

- a **standalone label image** (:func:`write_ome_zarr_labels`): the group at ``path`` carries both
  ``multiscales`` and ``image-label``; its array is ``path/0``;
- **labels of an image** (:func:`add_ome_zarr_labels`): ``image.zarr/labels/<name>`` is such a label
  image, listed in ``image.zarr/labels/.zattrs`` (``{"labels": [...]}``) and pointing back to the
  image (``"source": {"image": "../../"}``).

Both keep one resolution level (``0``). The parameters given as ``metadata`` are stored as extra
attributes of the label group, which NGFF allows.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_hemd._atomic import atomic_path

__all__ = [
    "NGFF_VERSION",
    "OmeZarrNode",
    "add_ome_zarr_labels",
    "axes_from_names",
    "default_axes",
    "is_ome_zarr",
    "ome_zarr_time_step",
    "read_ome_zarr",
    "write_ome_zarr_labels",
]

log = logging.getLogger(__name__)

NGFF_VERSION = "0.4"
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_ORDER = "tczyx"
#: Largest chunk edge along the two last (in-plane) axes.
_CHUNK_EDGE = 1024


def default_axes(ndim: int) -> str:
    """Axis names for a label stack of ``ndim`` dimensions: ``yx``, ``tyx`` or ``tzyx``."""
    axes = {2: "yx", 3: "tyx", 4: "tzyx"}.get(ndim)
    if axes is None:
        raise ValueError(f"labels: expected 2 to 4 dimensions (yx, tyx, tzyx); got {ndim}")
    return axes


def axes_from_names(names, ndim: int) -> str | None:
    """NGFF axes from layer axis labels such as ``("t", "y", "x")``; ``None`` if they are not.

    napari's default labels (``"-3"``, ``"axis -2"``, ...) give ``None``: use :func:`default_axes`.
    """
    axes = "".join(str(a).lower() for a in names or ())
    try:
        return _check_axes(axes, ndim)
    except ValueError:
        return None


def _check_axes(axes: str, ndim: int) -> str:
    axes = "".join(axes).lower()
    if len(axes) != ndim:
        raise ValueError(
            f"axes: expected {ndim} axis names for labels of {ndim} dimensions; got {axes!r}"
        )
    if set(axes) - set(_ORDER) or len(set(axes)) != len(axes):
        raise ValueError(f"axes: expected distinct names from {_ORDER!r}; got {axes!r}")
    if "c" in axes:
        raise ValueError(f"axes: a label image has no channel axis; got {axes!r}")
    if [_ORDER.index(a) for a in axes] != sorted(_ORDER.index(a) for a in axes):
        raise ValueError(f"axes: NGFF orders axes as time, then z, y, x; got {axes!r}")
    if sum(_AXIS_TYPES[a] == "space" for a in axes) < 2:
        raise ValueError(f"axes: expected 2 or 3 space axes (z, y, x); got {axes!r}")
    return axes


#: NGFF's names of the length units napari-hemd's short names stand for.
_NGFF_UNITS = {"um": "micrometer", "nm": "nanometer", "mm": "millimeter", "cm": "centimeter",
               "m": "meter", "angstrom": "angstrom", "inch": "inch"}  # fmt: skip


def _axes_meta(axes: str, units: dict | None) -> list[dict]:
    """NGFF axes; those ``units`` names with their unit (NGFF's name for it)."""
    out = []
    for a in axes:
        entry = {"name": a, "type": _AXIS_TYPES[a]}
        unit = (units or {}).get(a)
        if unit:
            entry["unit"] = _NGFF_UNITS.get(unit, unit)
        out.append(entry)
    return out


def _multiscales(
    axes: str,
    scale: list[float],
    name: str,
    units: dict | None = None,
    translation: list[float] | None = None,
) -> list[dict]:
    transforms: list[dict] = [{"type": "scale", "scale": scale}]
    if translation is not None and any(translation):  # (NGFF: after the scale)
        transforms.append({"type": "translation", "translation": translation})
    return [
        {
            "version": NGFF_VERSION,
            "name": name,
            "axes": _axes_meta(axes, units),
            "datasets": [{"path": "0", "coordinateTransformations": transforms}],
        }
    ]


def _write_label_group(
    folder: Path,
    labels,
    axes: str,
    scale: list[float],
    name: str,
    source: str | None,
    metadata: dict | None,
    units: dict | None = None,
    translation: list[float] | None = None,
) -> None:
    """Write one label image group (array ``0`` + attributes) into the new ``folder``."""
    import zarr

    shape = tuple(int(s) for s in labels.shape)
    lead = (1,) * (len(shape) - 2)
    chunks = (*lead, *(min(s, _CHUNK_EDGE) for s in shape[-2:]))
    root = zarr.open_group(str(folder), mode="w", zarr_format=2)
    arr = root.create_array(
        "0",
        shape=shape,
        chunks=chunks,
        dtype=np.uint32,
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )
    # one frame at a time: a dask or zarr input is never loaded whole
    from napari_hemd.core.validation import check_label_ids

    for t in range(shape[0]):
        frame = np.asarray(labels[t])
        check_label_ids(frame, t)  # uint32: larger or negative ids were wrapped silently
        arr[t] = frame
    label_meta: dict = {"version": NGFF_VERSION}
    if source is not None:
        label_meta["source"] = {"image": source}
    attrs: dict = {
        "multiscales": _multiscales(axes, scale, name, units, translation),
        "image-label": label_meta,
    }
    if metadata:
        attrs.update(metadata)
    root.attrs.update(json.loads(json.dumps(attrs)))


def _check_labels(labels) -> None:
    dtype = np.dtype(labels.dtype)
    if not (np.issubdtype(dtype, np.integer) or dtype.kind == "b"):
        raise TypeError(f"labels: expected an integer array; got dtype {dtype}")


def write_ome_zarr_labels(
    labels,
    path: str | os.PathLike,
    *,
    axes: str | None = None,
    scale: list[float] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    metadata: dict | None = None,
    pixel_size=None,
    time_step: tuple[float, str | None] | None = None,
    translation: list[float] | None = None,
    first_frame: int = 0,
) -> Path:
    """Write labels as a standalone OME-Zarr (NGFF 0.4) label image, atomically.

    Parameters
    ----------
    labels : (Y, X), (T, Y, X), (Z, Y, X) or (T, Z, Y, X) integer array-like
        Instance labels (numpy, zarr or dask; written frame by frame as uint32).
    path : path-like
        The ``*.zarr`` / ``*.ome.zarr`` group to create.
    axes : str, optional
        Axis names, e.g. ``"tyx"`` or ``"zyx"``; default :func:`default_axes`.
    scale : list of float, optional
        Pixel size per axis (``coordinateTransformations``); default all 1.
    name : str, optional
        ``multiscales`` name; default the folder name.
    overwrite : bool
        Replace an existing ``path``; without it an existing output raises
        :class:`FileExistsError`.
    metadata : dict, optional
        Extra JSON attributes of the group (e.g. ``{"napari_hemd": params}``).
    pixel_size : napari_hemd.io.calibration.PixelSize, optional
        The space axes' sizes (where ``scale`` is not given) and their unit (written into the
        axes).
    time_step : (float, str or None), optional
        The ``t`` axis's step and unit (``(60.0, "second")``: the movie's, as
        :func:`ome_zarr_time_step` reads it), where ``axes`` has a ``t``; replaces its scale.
    translation : list of float, optional
        Where the labels start, per axis, in the units of ``scale`` (a napari layer's
        ``translate``; NGFF's ``translation``): labels of frames 3-6 of a movie open there
        again (:func:`read_ome_zarr`, napari-hemd's reader). Default: at the origin.
    first_frame : int
        The movie's number of the first frame, where ``translation`` is not given: the ``t``
        axis's translation is ``first_frame`` steps.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "cells.ome.zarr"
    >>> _ = write_ome_zarr_labels(np.ones((2, 4, 4), np.uint16), out)
    >>> read_ome_zarr(out)[0].kind
    'labels'
    """
    _check_labels(labels)
    axes = _check_axes(axes or default_axes(len(labels.shape)), len(labels.shape))
    if scale is None and pixel_size is not None:
        scale = [float(pixel_size.sizes.get(a, 1.0)) for a in axes]
    scale = _check_scale(scale, len(axes))
    # the unit on the axes whose size is known (a z in pixels beside microns names none)
    units = {} if pixel_size is None else dict.fromkeys(pixel_size.sizes, pixel_size.unit)
    if time_step is not None and "t" in axes:  # the movie's frame interval (audit 26)
        from napari_hemd.io.calibration import time_unit_name

        # NGFF's name ("s" -> "second"); a step in a unit that is no time ("frame"): not
        # carried, as a TIFF's (review 32c: read back as seconds later)
        unit = time_unit_name(time_step[1])
        if unit is not None or not time_step[1]:
            scale[axes.index("t")] = _check_scale([time_step[0]], 1)[0]
            units["t"] = unit
    if translation is None and first_frame and "t" in axes:
        translation = [0.0] * len(axes)
        translation[axes.index("t")] = float(first_frame) * scale[axes.index("t")]
    if translation is not None:
        translation = [float(v) for v in translation]
        if len(translation) != len(axes) or not all(np.isfinite(translation)):
            raise ValueError(
                f"translation: expected {len(axes)} finite numbers (axes {axes!r}); got "
                f"{translation}"
            )
    path = Path(path)
    name = name or path.name.removesuffix(".zarr").removesuffix(".ome")
    with atomic_path(path, overwrite=overwrite) as tmp:
        _write_label_group(tmp, labels, axes, scale, name, None, metadata, units, translation)
    log.info("wrote OME-Zarr labels %s %s", path, tuple(labels.shape))
    return path


def _check_scale(scale, n: int) -> list[float]:
    scale = [1.0] * n if scale is None else [float(s) for s in scale]
    if len(scale) != n or not all(s > 0 for s in scale):
        raise ValueError(f"scale: expected {n} positive pixel sizes; got {scale}")
    return scale


def ome_zarr_time_step(path: str | os.PathLike) -> tuple[float, str | None] | None:
    """An OME-Zarr image's ``t`` step and unit (level 0), e.g. ``(60.0, "second")``.

    None where it has no ``t`` axis, or a step of 1 with no unit (nothing to carry), or
    ``path`` is no OME-Zarr. Never raises: odd metadata records nothing.
    """
    import math

    try:
        if not is_ome_zarr(path):
            return None
        node = read_ome_zarr(path)[0]
        if "t" not in node.axes:
            return None
        step = abs(float(node.scale[node.axes.index("t")]))
        axes = _ngff_attrs(node.attrs)["multiscales"][0].get("axes", [])
        unit = next(
            (a.get("unit") for a in axes if isinstance(a, dict) and a.get("name") == "t"), None
        )
    except Exception:  # metadata we cannot read: nothing recorded
        return None
    if not (math.isfinite(step) and step > 0) or (step == 1.0 and not unit):
        return None
    return step, (str(unit) if unit else None)


def ome_zarr_first_frame(path: str | os.PathLike, node: OmeZarrNode | None = None) -> int:
    """The movie's number of an OME-Zarr's first frame: its ``t`` translation over its ``t`` step.

    0 where it has no ``t`` axis or translation, or one that is no whole number of steps (what
    :func:`write_ome_zarr_labels` writes for ``first_frame``). ``node``: one of its images
    (default the first). Never raises.
    """
    try:
        node = node if node is not None else read_ome_zarr(path)[0]
        if node.translation is None or "t" not in node.axes:
            return 0
        i = node.axes.index("t")
        steps = node.translation[i] / node.scale[i]
        first = round(steps)  # (NaN, inf: review 32c)
    except Exception:  # metadata we cannot read: none recorded
        return 0
    return first if first >= 0 and abs(steps - first) < 1e-6 else 0


def _ngff_attrs(attrs: dict) -> dict:
    """NGFF attributes: at the top level (0.4) or under ``"ome"`` (0.5)."""
    return dict(attrs.get("ome", attrs))


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr group with OME-NGFF ``multiscales`` metadata."""
    path = Path(path)
    for meta in (path / ".zattrs", path / "zarr.json"):
        if meta.is_file():
            try:
                attrs = json.loads(meta.read_text())
            except (OSError, ValueError):
                return False
            attrs = attrs.get("attributes", attrs) if meta.name == "zarr.json" else attrs
            return "multiscales" in _ngff_attrs(attrs)
    return False


def add_ome_zarr_labels(
    image_path: str | os.PathLike,
    labels,
    name: str,
    *,
    overwrite: bool = False,
    metadata: dict | None = None,
) -> Path:
    """Add labels to an OME-Zarr 0.4 image as ``image_path/labels/<name>``, atomically.

    The label image takes the image's axes and level-0 pixel size. The ``labels`` group's list is
    updated only after the label image is complete (write to a temporary file, then rename).

    Parameters
    ----------
    image_path : path-like
        An OME-Zarr image group (NGFF 0.4, no channel axis).
    labels : integer array-like
        Labels of the image's level-0 shape.
    name : str
        Name of the label image (a folder name: no ``/``).
    overwrite : bool
        Replace an existing label image of that name.
    metadata : dict, optional
        Extra JSON attributes of the label group.

    Returns
    -------
    Path
        ``image_path/labels/<name>``.
    """
    import zarr

    image_path = Path(image_path)
    _check_labels(labels)
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name: expected a folder name for the label image; got {name!r}")
    if not is_ome_zarr(image_path):
        raise ValueError(f"image_path: {str(image_path)!r} is not an OME-Zarr image group")
    root = zarr.open_group(str(image_path), mode="r")
    attrs = _ngff_attrs(dict(root.attrs))
    if "image-label" in attrs:
        raise ValueError(f"image_path: {str(image_path)!r} is itself a label image")
    ms = attrs["multiscales"][0]
    version = ms.get("version", NGFF_VERSION)
    if version != NGFF_VERSION or root.metadata.zarr_format != 2:
        raise ValueError(
            f"image_path: expected an OME-Zarr {NGFF_VERSION} image (zarr format 2); "
            f"got version {version!r}, zarr format {root.metadata.zarr_format}"
        )
    axes = "".join(a["name"] if isinstance(a, dict) else a for a in ms["axes"])
    level0 = ms["datasets"][0]
    shape = tuple(root[level0["path"]].shape)
    if "c" in axes:
        raise ValueError(
            f"image_path: the image has a channel axis ({axes!r}); write a standalone label image"
        )
    if tuple(labels.shape) != shape:
        raise ValueError(
            f"labels: expected the image's shape {shape} (axes {axes!r}); got {tuple(labels.shape)}"
        )
    scale = next(
        (t["scale"] for t in level0.get("coordinateTransformations", []) if t["type"] == "scale"),
        None,
    )
    scale = _check_scale(scale, len(axes))
    units = {  # the image's, kept as it names them
        a["name"]: a["unit"]
        for a in ms["axes"]
        if isinstance(a, dict) and a.get("unit") and a.get("type") == "space"
    }
    group = image_path / "labels"
    if not group.exists():
        zarr.open_group(str(group), mode="w", zarr_format=2).attrs.update({"labels": []})
    out = group / name
    with atomic_path(out, overwrite=overwrite) as tmp:
        _write_label_group(tmp, labels, axes, scale, name, "../../", metadata, units)
    listed = json.loads((group / ".zattrs").read_text()) if (group / ".zattrs").exists() else {}
    names = list(listed.get("labels", []))
    if name not in names:
        listed["labels"] = [*names, name]
        _replace_text(group / ".zattrs", json.dumps(listed, indent=2))
    log.info("added OME-Zarr labels %s", out)
    return out


def _replace_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and one rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class OmeZarrNode:
    """One image or label image of an OME-Zarr group, opened lazily.

    Attributes
    ----------
    name : str
        ``multiscales`` name (or the folder name).
    kind : {"image", "labels"}
    levels : list of zarr.Array
        Resolution levels, full resolution first (not loaded).
    axes : str
        Axis names, e.g. ``"tyx"``.
    scale : list of float
        Level-0 pixel size per axis.
    attrs : dict
        The group's attributes.
    translation : list of float or None
        Level 0's origin per axis (NGFF ``translation``, in the units of ``scale``); None: at
        the origin.
    """

    name: str
    kind: str
    levels: list
    axes: str
    scale: list[float]
    attrs: dict = field(default_factory=dict)
    translation: list[float] | None = None


def _node(group, name: str) -> OmeZarrNode:
    attrs = dict(group.attrs)
    ngff = _ngff_attrs(attrs)
    ms = ngff["multiscales"][0]
    levels = [group[d["path"]] for d in ms["datasets"]]
    axes = "".join(a["name"] if isinstance(a, dict) else a for a in ms.get("axes", []))
    if len(axes) != levels[0].ndim:
        axes = default_axes(levels[0].ndim) if 2 <= levels[0].ndim <= 4 else ""
    transforms = ms["datasets"][0].get("coordinateTransformations", [])
    scale = next((t["scale"] for t in transforms if t.get("type") == "scale"), None)
    if scale is None or len(scale) != levels[0].ndim:
        scale = [1.0] * levels[0].ndim
    shift = next((t.get("translation") for t in transforms if t.get("type") == "translation"), None)
    try:  # (odd metadata: at the origin)
        shift = [float(v) for v in shift] if shift is not None else None
    except (TypeError, ValueError):
        shift = None
    if shift is not None and (len(shift) != levels[0].ndim or not any(shift)):
        shift = None
    kind = "labels" if "image-label" in ngff else "image"
    return OmeZarrNode(
        ms.get("name") or name, kind, levels, axes, [float(s) for s in scale], attrs, shift
    )


def read_ome_zarr(path: str | os.PathLike) -> list[OmeZarrNode]:
    """Open an OME-Zarr image (and the label images under its ``labels/``) without loading it.

    Parameters
    ----------
    path : path-like
        An OME-Zarr group (NGFF 0.4, or 0.5 with the attributes under ``"ome"``): an image, a
        standalone label image, or an image with ``labels/``.

    Returns
    -------
    list of OmeZarrNode
        The image first, then its label images in the order ``labels/.zattrs`` lists them.

    Raises
    ------
    ValueError
        ``path`` has no ``multiscales`` metadata.
    """
    import zarr

    path = Path(path)
    if not is_ome_zarr(path):
        raise ValueError(f"path: {str(path)!r} is not an OME-Zarr group (no multiscales metadata)")
    root = zarr.open_group(str(path), mode="r")
    base = path.name.removesuffix(".zarr").removesuffix(".ome")
    nodes = [_node(root, base)]
    if "labels" in root.group_keys():
        listed = _ngff_attrs(dict(root["labels"].attrs)).get("labels", [])
        for lab in listed:
            if lab in root["labels"].group_keys():
                nodes.append(_node(root["labels"][lab], lab))
            else:
                log.warning("OME-Zarr %s lists label image %r, which is missing", path, lab)
    return nodes
