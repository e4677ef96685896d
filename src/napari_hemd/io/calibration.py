"""Pixel sizes recorded in image and label files: read, normalised, written back.

Fiji, the microscope's OME-TIFF export and OME-Zarr store how large a pixel is; napari-hemd
opens files with that scale, writes it with the masks it makes (a TIFF as an ImageJ hyperstack,
an OME-Zarr in its axes) and ``measure`` uses it for the physical columns.

What counts as recorded (a choice: a plain TIFF's resolution tags are mostly a scanner's or a
screen's 72 dpi, no microscope's pixel):

- ImageJ TIFF: the X/Y resolution tags with the description's ``unit`` (a unit of ``pixel`` or
  none means uncalibrated, as in Fiji); z from ``spacing``.
- OME-TIFF: the first image's ``PhysicalSizeX/Y/Z`` (unit: ``PhysicalSizeXUnit``, default um).
- OME-Zarr: the level-0 ``scale`` of the space axes, their ``unit`` if given.
- A TIFF napari-hemd wrote without the ImageJ layout (labels over 65535, ``predict``'s maps):
  its JSON description; a zarr store ``predict`` or ``stream`` wrote: its attributes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KNOWN_UNITS",
    "PixelSize",
    "convert",
    "imagej_calibration",
    "normalise_unit",
    "read_pixel_size",
    "read_time_step",
    "unit_name",
]

#: Spellings of the common length units, to the short name napari and pint read.
_UNITS = {
    "um": "um", "µm": "um", "μm": "um", "\\u00b5m": "um", "micron": "um", "microns": "um",
    "micrometer": "um", "micrometre": "um", "micrometers": "um", "micrometres": "um",
    "nm": "nm", "nanometer": "nm", "nanometre": "nm", "nanometers": "nm", "nanometres": "nm",
    "mm": "mm", "millimeter": "mm", "millimetre": "mm", "cm": "cm", "m": "m", "meter": "m",
    "metre": "m", "å": "angstrom", "angstrom": "angstrom", "inch": "inch", "in": "inch",
}  # fmt: skip
#: The normalised names (napari and pint read them all).
KNOWN_UNITS = frozenset(_UNITS.values())
#: Units that mean "not calibrated".
_NO_UNIT = {"", "pixel", "pixels", "px", "none"}


def normalise_unit(unit) -> str | None:
    """``"micron"``, ``"µm"``, ImageJ's escaped mu ... -> ``"um"``; None for none or ``"pixel"``.

    A unit not in the table is kept as given (lower case, stripped).
    """
    if unit is None:
        return None
    u = str(unit).strip()
    low = u.lower()
    if low in _NO_UNIT:
        return None
    return _UNITS.get(low, u)


@dataclass(frozen=True)
class PixelSize:
    """Physical pixel sizes along the space axes a file records.

    Attributes
    ----------
    sizes : dict
        ``{"y": 0.5, "x": 0.5}`` and ``"z"`` for stacks: positive, finite.
    unit : str or None
        Normalised (:func:`normalise_unit`); None: the file gives sizes without a unit.
    """

    sizes: dict
    unit: str | None = None

    def __post_init__(self) -> None:
        for axis, v in self.sizes.items():
            if axis not in ("z", "y", "x"):
                raise ValueError(f"pixel sizes: expected axes z, y, x; got {axis!r}")
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"pixel size along {axis}: expected a positive number; got {v!r}")

    def spacing(self, n: int) -> list[float] | None:
        """The sizes of the last ``n`` space axes (``[y, x]`` or ``[z, y, x]``); None if missing."""
        axes = "zyx"[3 - n :]
        if any(a not in self.sizes for a in axes):
            return None
        return [float(self.sizes[a]) for a in axes]

    def scale(self, ndim: int, spatial: int | None = None) -> list[float]:
        """A layer's ``scale`` of ``ndim`` axes.

        Its last ``spatial`` axes (default 2, or 3 where a z size is known and ``ndim`` allows)
        are space; 1 elsewhere and where not recorded.
        """
        spatial = min(self._spatial(ndim, spatial), ndim)
        out = [1.0] * ndim
        for i, a in enumerate("zyx"[3 - spatial :]):
            out[ndim - spatial + i] = float(self.sizes.get(a, 1.0))
        return out

    def _spatial(self, ndim: int, spatial: int | None) -> int:
        """``spatial``, or by default 3 where a z size is known and ``ndim`` allows, else 2."""
        if spatial is not None:
            return spatial
        return 3 if "z" in self.sizes and ndim >= 3 else 2

    def layer_kwargs(self, ndim: int, spatial: int | None = None) -> dict:
        """Layer arguments for napari: ``scale`` and (a unit napari reads) ``units``.

        ``scale`` as :meth:`scale` gives it; ``units`` ``pixel`` on the axes that are not space.
        """
        spatial = self._spatial(ndim, spatial)
        out: dict = {"scale": self.scale(ndim, spatial)}
        if self.unit in KNOWN_UNITS:
            out["units"] = ("pixel",) * (ndim - spatial) + (self.unit,) * spatial
        return out

    def describe(self) -> str:
        """``"z 2, y 0.5, x 0.5 um"``: for messages."""
        parts = ", ".join(f"{a} {self.sizes[a]:g}" for a in "zyx" if a in self.sizes)
        return f"{parts} {self.unit}" if self.unit else f"{parts} (no unit)"

    def to_json(self) -> dict:
        """``{"sizes": {...}, "unit": ...}``, as recorded in files' attributes."""
        return {"sizes": {a: float(v) for a, v in self.sizes.items()}, "unit": self.unit}

    @classmethod
    def from_json(cls, d) -> PixelSize | None:
        """The inverse of :meth:`to_json`; None for anything else."""
        try:
            return cls({str(a): float(v) for a, v in d["sizes"].items()}, d.get("unit"))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    @classmethod
    def from_layer(cls, scale, units=None, spatial: int | None = None) -> PixelSize | None:
        """From a napari layer's ``scale`` and ``units``.

        None when the layer is uncalibrated (scale 1 and no length unit).

        ``spatial``: how many of the last axes are space; default those with the last axis's
        length unit (a (T, Y, X) layer of a calibrated movie: 2; of a stack: 3), else 3 for
        four axes and 2 otherwise.
        """
        scale = [float(v) for v in scale]
        names = [] if units is None else [unit_name(u) for u in units]
        unit = normalise_unit(names[-1]) if names else None
        if spatial is None:
            if unit is not None:
                spatial = 0
                while spatial < min(3, len(names)) and names[-1 - spatial] == names[-1]:
                    spatial += 1
                spatial = max(spatial, 2)
            else:
                spatial = 3 if len(scale) == 4 else 2
        # a flipped layer's negative scale is still its pixel size
        sizes = dict(zip("zyx"[3 - spatial :], (abs(v) for v in scale[-spatial:]), strict=True))
        if unit is not None:  # an axis in pixels beside microns (a movie's time, a stack
            axis_units = names[-spatial:]  # whose file gives no z step) records no size
            sizes = {
                a: v for (a, v), n in zip(sizes.items(), axis_units, strict=True) if n == names[-1]
            }
        if unit is None and all(v == 1.0 for v in sizes.values()):
            return None
        if 0.0 in sizes.values() or "x" not in sizes or "y" not in sizes:
            return None
        return cls(sizes, unit)


#: Metres per unit, for converting between the length units of :data:`KNOWN_UNITS`.
_METRES = {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "nm": 1e-9, "angstrom": 1e-10,
           "inch": 0.0254}  # fmt: skip


def convert(value: float, unit: str | None, to: str | None) -> float | None:
    """``value`` in ``unit`` expressed in ``to`` (both normalised).

    None where either is not a length unit of the table.
    """
    if unit == to:
        return value
    if unit not in _METRES or to not in _METRES:
        return None
    return value * _METRES[unit] / _METRES[to]


def unit_name(u) -> str:
    """A pint unit (napari's ``layer.units``) or a string, as a short name (``µm``)."""
    return f"{u:~}" if hasattr(u, "dimensionality") else str(u)


def imagej_calibration(pixel_size: PixelSize | None, axes: str) -> tuple[dict, dict]:
    """``(tifffile arguments, ImageJ metadata)`` recording ``pixel_size`` as Fiji reads it.

    The X/Y resolution tags (pixels per unit), the description's ``unit`` and, where ``axes``
    (``"YX"``, ``"ZYX"``, ``"TZYX"`` ...) has a ``Z``, its ``spacing``: what
    :func:`read_pixel_size` reads back. Both empty for None.
    """
    if pixel_size is None:
        return {}, {}
    kw = {"resolution": (1.0 / pixel_size.sizes["x"], 1.0 / pixel_size.sizes["y"])}
    unit = pixel_size.unit or "pixel"  # ImageJ's description is ASCII: µ as \u00B5
    ij: dict = {"unit": "".join(c if c.isascii() else f"\\u{ord(c):04X}" for c in unit)}
    if "Z" in axes.upper() and "z" in pixel_size.sizes:
        ij["spacing"] = pixel_size.sizes["z"]
    return kw, ij


#: The key under which a non-ImageJ TIFF napari-hemd wrote records its pixel size (JSON).
PIXEL_SIZE_KEY = "napari_hemd_pixel_size"


def read_pixel_size(path: str | os.PathLike) -> PixelSize | None:
    """The pixel size a TIFF, OME-Zarr or folder of TIFF frames records; None: none recorded.

    A folder's is its frames' (the first and last agreeing); see the module notes.

    Never raises: an unreadable file or odd metadata records nothing.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
            return _tiff_pixel_size(path)
        from napari_hemd.io.ome_zarr import is_ome_zarr

        if is_ome_zarr(path):
            return _ome_zarr_pixel_size(path)
        if path.suffix.lower() == ".zarr" and path.is_dir():
            import zarr

            recorded = zarr.open(str(path), mode="r").attrs.get(PIXEL_SIZE_KEY)
            return None if recorded is None else PixelSize.from_json(recorded)
        if path.is_dir():  # a folder of frames (Fiji's image sequence): theirs, if they agree
            from napari_hemd.io.tiff import _folder_frames

            frames = _folder_frames(path)
            if frames:
                first, last = _tiff_pixel_size(frames[0]), _tiff_pixel_size(frames[-1])
                return first if first == last else None
    except Exception:  # metadata we cannot read: nothing recorded
        return None
    return None


def _tiff_pixel_size(path: Path) -> PixelSize | None:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if tif.is_ome:
            size = _ome_xml_pixel_size(tif.ome_metadata)
            if size is not None and "z" in size.sizes and "Z" not in tif.series[0].axes:
                # a 2D movie's PhysicalSizeZ (microscopes write one): no z axis to size; kept,
                # the outputs' time axis took it in napari (review 30b)
                size = PixelSize({a: v for a, v in size.sizes.items() if a != "z"}, size.unit)
            return size
        if tif.is_imagej:
            md = tif.imagej_metadata or {}
            unit = normalise_unit(md.get("unit"))
            if unit is None:
                return None
            page = tif.pages[0]
            sizes = {}
            for axis, tag in (("y", "YResolution"), ("x", "XResolution")):
                res = page.tags.get(tag)
                if res is None:
                    return None
                num, den = res.value
                if not num or not den:
                    return None
                sizes[axis] = den / num  # resolution: pixels per unit
            axes = tif.series[0].axes
            if "Z" in axes and md.get("spacing"):
                sizes["z"] = float(md["spacing"])
            return PixelSize(sizes, unit)
        shaped = tif.shaped_metadata
        if shaped and PIXEL_SIZE_KEY in shaped[0]:
            return PixelSize.from_json(shaped[0][PIXEL_SIZE_KEY])
        described = _json_description(tif.pages[0].description)  # predict's maps
        if PIXEL_SIZE_KEY in described:
            return PixelSize.from_json(described[PIXEL_SIZE_KEY])
    return None


#: Spellings of time units (ImageJ's ``tunit``, OME-XML's ``TimeIncrementUnit``) -> NGFF's.
_TIME_UNITS = {
    "s": "second", "sec": "second", "secs": "second", "second": "second", "seconds": "second",
    "ms": "millisecond", "msec": "millisecond", "milliseconds": "millisecond",
    "us": "microsecond", "\u00b5s": "microsecond", "\u03bcs": "microsecond",
    "\\u00b5s": "microsecond", "microseconds": "microsecond", "ns": "nanosecond",
    "nanoseconds": "nanosecond", "min": "minute",
    "mins": "minute", "minute": "minute", "minutes": "minute", "h": "hour", "hr": "hour",
    "hrs": "hour", "hour": "hour", "hours": "hour", "d": "day", "day": "day", "days": "day",
    # NGFF's own names (UDUNITS-2), each itself (review 32b: "decisecond" lost the interval)
    **{f"{p}second": f"{p}second" for p in (
        "atto", "centi", "deci", "exa", "femto", "giga", "hecto", "kilo", "mega", "micro",
        "milli", "nano", "peta", "pico", "tera", "yocto", "yotta", "zepto", "zetta",
    )},
}  # fmt: skip
#: NGFF's time units -> ImageJ's ``tunit`` (what Fiji's Image > Properties shows).
IMAGEJ_TIME_UNITS = {
    "second": "sec", "millisecond": "ms", "microsecond": "us", "nanosecond": "ns",
    "minute": "min", "hour": "hour", "day": "day",
}  # fmt: skip


def read_time_step(path: str | os.PathLike) -> tuple[float, str | None] | None:
    """The frame interval a movie records, as ``(step, unit)``, e.g. ``(60.0, "second")``.

    An ImageJ hyperstack's ``finterval`` and ``tunit`` (Fiji's *Frame interval*; ImageJ's unit
    is seconds unless it says otherwise), an OME-TIFF's ``TimeIncrement`` and its unit, an
    OME-Zarr's ``t`` scale (:func:`napari_hemd.io.ome_zarr.ome_zarr_time_step`). Units are
    NGFF's names (``"second"``, ``"minute"`` ...). None where nothing (or a step of 0) is
    recorded, or a unit that is no time (``"frame"``): a step in it means nothing to carry
    (review 32). Never raises.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
            return _tiff_time_step(path)
        from napari_hemd.io.ome_zarr import is_ome_zarr, ome_zarr_time_step

        if is_ome_zarr(path):
            found = ome_zarr_time_step(path)
            return None if found is None else _time_step(*found, None)
    except Exception:  # odd metadata: nothing recorded
        return None
    return None


def time_unit_name(unit) -> str | None:
    """NGFF's name of a time unit (``"s"``, ``"min"``, ImageJ's ``"sec"`` -> ``"second"`` ...).

    None for none or a unit that is no time (``"frame"``).
    """
    u = str(unit).strip().lower() if unit else ""
    return _TIME_UNITS.get(u)


def _time_step(step, unit, default: str | None) -> tuple[float, str | None] | None:
    step = float(step)
    if not (math.isfinite(step) and step > 0):
        return None
    if not (str(unit).strip() if unit else ""):
        return step, default
    name = time_unit_name(unit)
    return None if name is None else (step, name)


def _tiff_time_step(path: Path) -> tuple[float, str | None] | None:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tif.ome_metadata)
            pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
            if pixels is None or pixels.get("TimeIncrement") is None:
                return None
            return _time_step(
                pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s"), "second"
            )
        if tif.is_imagej:
            md = tif.imagej_metadata or {}
            if md.get("finterval") is None:
                return None
            return _time_step(md["finterval"], md.get("tunit"), "second")
    return None


def _json_description(text: str) -> dict:
    """A TIFF description that is a JSON object (what ``predict`` writes), else empty."""
    import json

    if not text or not text.lstrip().startswith("{"):
        return {}
    try:
        got = json.loads(text)
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def _ome_xml_pixel_size(xml: str | None) -> PixelSize | None:
    import xml.etree.ElementTree as ET

    if not xml:
        return None
    root = ET.fromstring(xml)
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes, units = {}, {}
    for axis in "ZYX":
        v = pixels.get(f"PhysicalSize{axis}")
        if v is not None:
            sizes[axis.lower()] = float(v)
            units[axis.lower()] = normalise_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
    if "x" not in sizes or "y" not in sizes:
        return None
    unit = units["x"]  # one unit for all axes, as napari's layers hold it: x's
    for axis, u in units.items():
        if u != unit:  # a z step in nm beside um pixels (Bio-Formats converts it alike)
            factor = convert(1.0, u, unit)
            if factor is None:
                return None
            sizes[axis] *= factor
    return PixelSize(sizes, unit)


def _ome_zarr_pixel_size(path: Path) -> PixelSize | None:
    from napari_hemd.io.ome_zarr import read_ome_zarr

    return node_pixel_size(read_ome_zarr(path)[0])


def node_pixel_size(node) -> PixelSize | None:
    """The pixel size of one image or label image of an OME-Zarr (an ``OmeZarrNode``)."""
    from napari_hemd.io.ome_zarr import _ngff_attrs

    axes_meta = _ngff_attrs(node.attrs)["multiscales"][0].get("axes", [])
    per_axis = {  # each space axis's unit (None: none named)
        str(a.get("name")): normalise_unit(a.get("unit"))
        for a in axes_meta
        if isinstance(a, dict) and a.get("type") == "space"
    }
    sizes = {a: abs(float(s)) for a, s in zip(node.axes, node.scale, strict=False) if a in "zyx"}
    unit = per_axis.get("x")
    if unit is not None:  # the axes in x's unit, others converted; an axis without one dropped
        for a in list(sizes):
            factor = convert(1.0, per_axis.get(a), unit)
            if factor is None:
                del sizes[a]
            else:
                sizes[a] *= factor
    elif all(v == 1.0 for v in sizes.values()):
        return None
    if "x" not in sizes or "y" not in sizes:
        return None
    return PixelSize(sizes, unit)
