"""TIFF reading: one stack (with its axes), a folder of frames, a lazily read stack.

The io layer's lowest module: :mod:`napari_hemd.io.stacks` and :mod:`napari_hemd.io.ctc` both read
TIFFs through it (so neither imports the other to read), and :mod:`napari_hemd.pipeline` takes
:class:`TiffFrames` from here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["TiffFrames", "read_tiff", "read_tiff_folder", "tiff_frames"]


def read_tiff(path: str | os.PathLike, *, grey: bool = True) -> np.ndarray:
    """Read a TIFF with its shape (hyperstacks keep their axes); colour images become grey.

    ImageJ / OME / tifffile hyperstacks come back with their axes (a (T, Z, Y, X) stack is not
    flattened into T*Z pages); interleaved colour (RGB/RGBA) images are averaged to grey with a
    warning (``grey=False``: kept, samples last, for choosing one:
    :func:`napari_hemd.io.channels.select_channel`); big-endian data are converted to native
    byte order.

    Raises
    ------
    ValueError
        The file is not a readable TIFF (truncated, corrupt), naming it.
    """
    import warnings

    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            arr = series.asarray()
            axes = series.axes
    except Exception as exc:  # tifffile and imagecodecs raise many kinds on a broken file
        raise ValueError(f"input {str(path)!r} is not a readable TIFF ({exc})") from None
    # Interleaved samples (RGB/RGBA, "...YXS"): a colour image -> one grey channel. Planar samples
    # ("SYX") are what tifffile makes of a 3- or 4-frame stack written without photometric=:
    # kept as frames.
    if axes.endswith("S") and grey:
        i = axes.index("S")
        n = arr.shape[i]
        arr = np.take(arr, range(min(n, 3)), axis=i).mean(axis=i).astype(np.float32)
        warnings.warn(
            f"{path.name}: colour image ({n} samples per pixel) read as grey (mean of the colour "
            "channels)",
            stacklevel=2,
        )
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def read_tiff_folder(path: str | os.PathLike, *, lazy: bool = False):
    """A folder of ``*.tif`` frames sorted by name as one (T, ...) stack (dask when ``lazy``)."""
    path = Path(path)
    frames = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    if not frames:
        raise ValueError(f"folder {str(path)!r} holds no .tif frames")
    import tifffile

    if lazy:
        import dask.array as da
        from dask import delayed

        first = tifffile.imread(frames[0])
        parts = [
            da.from_delayed(delayed(tifffile.imread)(f), first.shape, first.dtype) for f in frames
        ]
        return da.stack(parts)
    return np.stack([tifffile.imread(f) for f in frames])


def tiff_frames(path: str | os.PathLike) -> TiffFrames | None:
    """A grey TIFF stack read frame by frame, or None where it must be read whole.

    None for interleaved colour (:func:`read_tiff` makes it grey), big-endian data (converted
    there) and a file tifffile cannot open (:func:`read_tiff` names the problem).
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            plain = not series.axes.endswith("S") and series.dtype.isnative
    except Exception:  # tifffile and imagecodecs raise many kinds on a broken file
        return None
    return TiffFrames(str(path)) if plain else None


class TiffFrames:
    """A TIFF stack read frame by frame through tifffile's zarr interface; pickles by path.

    Parameters
    ----------
    path : str
        Multi-page TIFF, frames along axis 0.
    """

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._arr = None
        z = self._array()
        self.shape, self.dtype, self.ndim = tuple(z.shape), z.dtype, z.ndim

    def _array(self):
        if self._arr is None:
            import tifffile
            import zarr

            self._arr = zarr.open(tifffile.imread(self.path, aszarr=True), mode="r")
        return self._arr

    def __getitem__(self, key):
        return self._array()[key]

    def __getstate__(self) -> dict:
        # The open file handle stays behind; a worker reopens the file.
        return {**self.__dict__, "_arr": None}
