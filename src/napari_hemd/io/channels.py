"""One channel of a multi-channel movie: the axis a file names, chosen without loading the rest.

Microscopes and Fiji save time-lapses with several channels (a nuclear stain beside a membrane or
a reporter): ImageJ hyperstacks (``TZCYX``), OME-TIFF and OME-Zarr name the channel axis, and a
colour TIFF holds its channels as samples (``YXS``). A model segments one channel, so the commands
take ``--channel N`` (:func:`select_channel`), refuse a multi-channel input without it (naming
the channels), and read only that channel, lazily where the input was lazy (:class:`ChannelView`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_hemd.core.validation import channels_last

__all__ = [
    "ChannelView",
    "InvertedView",
    "channels_last",
    "input_axes",
    "looks_like_channels",
    "select_channel",
]


def input_axes(path: str | os.PathLike) -> str | None:
    """The axis names a file gives its data (upper case: ``"TCYX"``), or None where it names none.

    TIFF: the first series' axes as tifffile reads them (ImageJ and OME metadata; a plain stack
    is ``"QQYX"``-like, its ``Q`` unnamed; ``S``: colour samples). OME-Zarr: the multiscales'
    axes. HDF5: ilastik's ``axistags`` (a single channel dropped, as the reader drops it).
    Other inputs (``.npy``, plain zarr arrays, folders of frames): None.
    """
    from napari_hemd.io.hdf5 import open_hdf5, split_hdf5

    if split_hdf5(path) is not None:
        try:
            return open_hdf5(path).axes
        except (OSError, ValueError, ImportError):  # the reader names the problem
            return None
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff") and path.is_file():
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                return str(tif.series[0].axes).upper()
        except Exception:  # a broken file: the reader names the problem
            return None
    from napari_hemd.io.ome_zarr import is_ome_zarr, read_ome_zarr

    if path.is_dir() and is_ome_zarr(path):
        return read_ome_zarr(path)[0].axes.upper() or None
    return None


def names_its_z(path: str | os.PathLike) -> bool:
    """Whether a file's ``Z`` axis is surely one.

    OME's, an ImageJ hyperstack's or a stack's with a voxel depth (``spacing``), an OME-Zarr's,
    an ilastik HDF5 export's (``axistags``). ImageJ calls the pages of any plain stack slices, a
    movie saved from an image sequence too: such a ``Z`` may be time.
    """
    from napari_hemd.io.hdf5 import split_hdf5

    if split_hdf5(path) is not None:
        return "Z" in (input_axes(path) or "")  # ilastik's axistags name it
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return path.is_dir()  # an OME-Zarr names its axes
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome:
                return True
            md = tif.imagej_metadata or {}
    except Exception:  # tifffile and imagecodecs raise many kinds on a broken file
        return False
    return bool(md.get("hyperstack")) or float(md.get("spacing") or 1.0) != 1.0


def looks_like_channels(shape: tuple[int, ...], axes: str | None = None) -> bool:
    """Whether a 4D input is more likely (T, C, Y, X) than a (T, Z, Y, X) time-lapse of stacks.

    Stacks have a named ``Z`` axis (ImageJ ``TZYX``) or more than 4 slices; a 4D input with at
    most 4 planes on axis 1 and no named ``Z`` is taken for channels (refused with a pointer to
    ``--channel`` rather than segmented as stacks of 2-4 slices).
    """
    return len(shape) == 4 and not (axes and "Z" in axes.upper()) and shape[1] <= 4


class ChannelView:
    """A lazy array without one axis: ``data`` at ``index`` on ``axis``, read per request.

    Indexing reads only the requested part of that channel from ``data`` (a zarr array, a
    :class:`napari_hemd.io.tiff.TiffFrames` ...); it pickles with ``data`` (Dask workers).
    ``path`` names the source and the channel, so a resumable run tells channels apart.
    """

    def __init__(self, data, axis: int, index: int, source: str = "") -> None:
        self.data, self.axis, self.index = data, int(axis), int(index)
        shape = tuple(data.shape)
        self.shape = shape[: self.axis] + shape[self.axis + 1 :]
        self.dtype = data.dtype
        self.ndim = len(self.shape)
        self.path = f"{source}[channel {self.index} of axis {self.axis}]"
        self.file = getattr(data, "file", None) or source  # whose changes a resumed run notices

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - (len(key) - 1))
            key = key[:i] + fill + key[i + 1 :]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for an array of {self.ndim} dimensions")
        key = key + (slice(None),) * (self.ndim - len(key))
        return np.asarray(self.data[(*key[: self.axis], self.index, *key[self.axis :])])

    def __array__(self, dtype=None, copy=None):
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype, copy=False)


class InvertedView:
    """``1 - data`` of a boundary (membrane) probability map, read per request.

    Cells are then high and their borders low: the foreground map H-EMD and the baselines take.
    uint8 / uint16 maps are rescaled to [0, 1] first (as every map is); lazy as ``data`` is, and
    it pickles with it (Dask workers). ``path`` names the source, inverted, so a resumable run
    never takes the map for its complement.
    """

    def __init__(self, data, source: str = "") -> None:
        self.data = data
        self.shape = tuple(data.shape)
        self.ndim = len(self.shape)
        kind = np.dtype(data.dtype)
        self.dtype = kind if kind.kind == "f" and kind.itemsize >= 4 else np.dtype(np.float32)
        inner = getattr(data, "path", None)
        self.path = f"{inner if isinstance(inner, str) else source}[1 - map]"
        self.file = getattr(data, "file", None) or (inner if isinstance(inner, str) else source)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        from napari_hemd.core.validation import to_probability

        part = to_probability(np.asarray(self.data[key]), name="the boundary map")
        return (1 - part).astype(self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None):
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype, copy=False)


def select_channel(
    data,
    path: str | os.PathLike,
    channel: int | None,
    channel_axis: int | None = None,
    *,
    argument: str = "INPUT",
    maps: bool = False,
    frame_axis: int = 0,
):
    """``data`` (read from ``path``) reduced to one channel, or refused where one must be chosen.

    Parameters
    ----------
    data : array-like
        The input as a reader returned it (:func:`napari_hemd.io.read_stack`,
        :func:`napari_hemd.pipeline.open_input`): lazy or not.
    path : path-like
        Where it was read from (its axis names: :func:`input_axes`).
    channel : int or None
        The channel to keep (``--channel``); None: the input must have one channel.
    channel_axis : int or None
        The axis holding the channels (``--channel-axis``); default: the one the file names ``C``
        (or ``S``, a colour TIFF's samples). Needed for inputs that do not name their axes.
    argument : str
        The input's name in messages.
    maps : bool
        ``data`` is a probability map: a colour TIFF's samples (a multi-class export's
        channels) are refused rather than averaged to grey.
    frame_axis : int
        The axis frames run along (``--axis``): a last axis of frames is no channel axis.

    Raises
    ------
    ValueError
        A multi-channel input without ``channel`` (channels a file names, a colour TIFF's
        samples for a map, a last axis of at most 4 that looks like channels:
        :func:`channels_last`); ``channel`` out of range; ``channel`` on an input whose channel
        axis is unknown; ``channel_axis`` without ``channel``.
    """
    axes = input_axes(path)
    shown = (  # the file's shape (a colour TIFF read as grey has lost its samples)
        f" (axes {axes}, shape {_file_shape(path, data)})"
        if axes
        else f" (shape {tuple(data.shape)})"
    )
    what = "the foreground probability" if maps else "the nuclear stain"
    if channel is None:
        if channel_axis is not None:
            raise ValueError("--channel-axis needs --channel (the channel to segment)")
        if axes and "C" in axes:
            n = _file_shape(path, data)[axes.index("C")]
            if n > 1:
                names = channel_names(path, n)  # the ones an OME file gives
                named = ": " + ", ".join(f"{i} {c}" for i, c in enumerate(names)) if names else ""
                raise ValueError(
                    f"{argument} {str(path)!r} has {n} channels{shown}{named}: choose one with "
                    f"--channel 0..{n - 1} (e.g. {what})"
                )
        if maps and axes and axes.endswith("S"):
            n = _file_shape(path, data)[-1]
            raise ValueError(
                f"{argument} {str(path)!r} holds {n} colour samples per pixel{shown}: the "
                f"channels of a probability map are not averaged; choose {what} with "
                f"--channel 0..{n - 1}"
            )
        shape = tuple(data.shape)
        frames_last = frame_axis % len(shape) == len(shape) - 1
        if not (axes and axes.endswith("S")) and channels_last(shape) and not frames_last:
            raise ValueError(
                f"{argument} {str(path)!r} has shape {shape}: its last axis ({shape[-1]}) looks "
                f"like channels (e.g. an ilastik or multi-class export); choose {what} with "
                f"--channel 0..{shape[-1] - 1} --channel-axis {len(shape) - 1}"
            )
        return data
    channel = int(channel)
    if channel_axis is not None and channel_axis < 0 and axes:
        channel_axis += len(axes)  # counted on the file's axes (a colour TIFF's samples too)
    if channel_axis is None:
        if axes and "C" in axes:
            channel_axis = axes.index("C")
        elif axes and axes.endswith("S"):
            channel_axis = len(axes) - 1
        else:
            raise ValueError(
                f"--channel: {argument} {str(path)!r} does not name a channel axis{shown}. If "
                "it holds one channel, drop --channel; if one of its axes holds channels, give "
                "that axis with --channel-axis (0 = the first)"
            )
    if axes and 0 <= channel_axis < len(axes) and axes[channel_axis] in "YX":
        raise ValueError(
            f"--channel-axis {channel_axis} is the {axes[channel_axis]} axis of {argument}"
            f"{shown}, not its channels"
        )
    if axes and axes.endswith("S") and channel_axis == len(axes) - 1 and data.ndim < len(axes):
        from napari_hemd.io.tiff import read_tiff

        data = read_tiff(path, grey=False)  # the colour samples, not their grey mean
    shape = tuple(data.shape)
    if not -len(shape) <= channel_axis < len(shape):
        raise ValueError(
            f"--channel-axis must be an axis of {argument}{shown}: 0..{len(shape) - 1}; got "
            f"{channel_axis}"
        )
    channel_axis %= len(shape)
    n = shape[channel_axis]
    if not 0 <= channel < n:
        raise ValueError(
            f"--channel must be one of {argument}'s {n} channels{shown}: 0..{n - 1}; got {channel}"
        )
    if isinstance(data, np.ndarray) or type(data).__module__.startswith("dask"):
        return data[(slice(None),) * channel_axis + (channel,)]  # a view / a lazy graph
    return ChannelView(data, channel_axis, channel, str(Path(path).resolve()))


def _file_shape(path, data) -> tuple[int, ...]:
    """The file's own shape (a colour TIFF read as grey has lost its samples axis)."""
    if Path(path).suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tuple(tif.series[0].shape)
    return tuple(data.shape)


def channel_names(path, n: int, attrs: dict | None = None) -> list[str] | None:
    """The names a file gives its ``n`` channels, else None.

    OME-TIFF ``Channel Name``, OME-Zarr's ``omero.channels[].label`` (``attrs``: the image's
    attributes). Never raises: a file naming fewer or none gives None.
    """
    names: list[str] = []
    try:
        if attrs is not None:
            names = [
                str(c.get("label") or "") for c in (attrs.get("omero") or {}).get("channels", [])
            ]
        elif str(path).lower().endswith((".tif", ".tiff")):
            import xml.etree.ElementTree as ET

            import tifffile

            with tifffile.TiffFile(path) as tif:
                xml = tif.ome_metadata if tif.is_ome else None
            if xml:
                root = ET.fromstring(xml)
                pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
                if pixels is not None:
                    names = [str(c.get("Name") or "") for c in pixels if c.tag.endswith("Channel")]
    except Exception:  # metadata we cannot read: no names
        return None
    if len(names) != n or not all(names):
        return None
    return names
