"""HDF5 inputs (ilastik's default export, volumes): one dataset, read lazily, picklable by path.

A path names an HDF5 file (``maps.h5``: its only dataset, or the one the caller wants) or a
dataset inside one (``maps.h5/exported_data``, ``volume.h5/raw``), as ``maps.zarr/foreground``
names a zarr group's array. ilastik records each dataset's axes (``axistags``: ``t, z, y, x,
c``): :attr:`Hdf5Array.axes` gives them (a single channel dropped), so ``--channel N`` finds
the channel axis of an ilastik export by itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["HDF5_SUFFIXES", "Hdf5Array", "lazy_hdf5", "on_disk", "open_hdf5", "split_hdf5"]

#: File name endings read as HDF5.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")


def split_hdf5(path: str | os.PathLike) -> tuple[Path, str] | None:
    """``(file, dataset)`` where ``path`` names an HDF5 file or a dataset in one, else None.

    ``dataset`` is ``""`` for the file itself. A name ending in ``.h5`` that does not exist is
    still a file (the reader says it does not exist).
    """
    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES and not path.is_dir():
        return path, ""
    for parent in path.parents:
        if parent.suffix.lower() in HDF5_SUFFIXES and parent.is_file():
            return parent, path.relative_to(parent).as_posix()
    return None


def on_disk(path: str | os.PathLike) -> Path:
    """The file or folder ``path`` is on disk: ``volume.h5/raw`` is ``volume.h5``."""
    split = split_hdf5(path)
    return Path(path) if split is None else split[0]


def _h5py():
    try:
        import h5py
    except ImportError as e:  # h5py comes with the torch and test extras
        raise ImportError(
            "reading HDF5 (.h5) files needs h5py: pip install h5py (or export TIFF instead)"
        ) from e
    return h5py


def _datasets(f) -> list[str]:
    """The names of every dataset in an open HDF5 file, sorted."""
    h5py = _h5py()
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


def _choose(f, file: Path, dataset: str, array: str | None) -> str:
    """The dataset to read: the one named in the path, ``array``, or the only one."""
    names = _datasets(f)
    if dataset:
        if dataset.strip("/") not in names:
            raise ValueError(
                f"input {str(file)!r} holds no dataset {dataset!r}; its datasets: "
                f"{', '.join(names) or 'none'}"
            )
        return dataset.strip("/")
    from napari_hemd.io.stacks import pick_named

    return pick_named(names, f"input {str(file)!r}", file, array, first=None, kind="datasets")


def _axistags(attrs, ndim: int) -> str | None:
    """The axes ilastik's ``axistags`` attribute names (``"TYXC"``), or None."""
    raw = attrs.get("axistags")
    if raw is None:
        return None
    try:
        keys = [a["key"] for a in json.loads(raw if isinstance(raw, str) else raw.decode())["axes"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    axes = "".join(keys).upper()
    return axes if len(axes) == ndim and len(set(axes)) == ndim else None


class Hdf5Array:
    """One dataset of an HDF5 file, read per request (the file opened for each); pickles by path.

    A single-channel axis that ilastik's ``axistags`` name (``(T, Y, X, 1)``) is dropped.

    Attributes
    ----------
    path : str
        ``FILE/DATASET``: names the source (a resumable run tells inputs apart by it).
    axes : str or None
        The axis names (upper case, ``"TYXC"``) where the file records them, else None.
    """

    def __init__(self, file: str | os.PathLike, dataset: str) -> None:
        self.file, self.dataset = str(Path(file).resolve()), dataset
        self.path = f"{self.file}/{dataset}"
        with _h5py().File(self.file, "r") as f:
            ds = f[dataset]
            shape, dtype, axes = tuple(ds.shape), ds.dtype, _axistags(ds.attrs, ds.ndim)
        self._drop = None
        if axes and "C" in axes and shape[axes.index("C")] == 1 and len(shape) > 2:
            self._drop = axes.index("C")
            shape = shape[: self._drop] + shape[self._drop + 1 :]
            axes = axes.replace("C", "")
        dtype = dtype if dtype.isnative else dtype.newbyteorder("=")  # as it is read
        self.shape, self.dtype, self.ndim, self.axes = shape, dtype, len(shape), axes

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is None for k in key):  # new axes: numpy's indexing of the whole
            return np.asarray(self[...])[key]
        if any(k is Ellipsis for k in key):
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for an array of {self.ndim} dimensions")
        key = key + (slice(None),) * (self.ndim - len(key))
        if self._drop is not None:
            key = (*key[: self._drop], 0, *key[self._drop :])
        basic = all(
            isinstance(k, (int, np.integer)) or (isinstance(k, slice) and (k.step or 1) > 0)
            for k in key
        )
        # Opened per read, not held: an open HDF5 file is locked against the program that
        # wrote it (ilastik exporting again) for as long as napari shows the layer.
        with _h5py().File(self.file, "r") as f:
            if basic:  # what h5py reads itself: only the part asked for leaves the disk
                out = np.asarray(f[self.dataset][key])
            else:  # lists, masks, negative steps
                out = np.asarray(f[self.dataset][...])[key]
        return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))

    def __array__(self, dtype=None, copy=None):
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype, copy=False)


def lazy_hdf5(arr: Hdf5Array):
    """``arr`` as a dask array read plane by plane (napari shows a big file this way).

    Named by the file and its version, as :func:`napari_hemd.io.tiff.lazy_tiff` names a TIFF.
    """
    import hashlib

    import dask.array as da

    stat = Path(arr.file).stat()
    key = f"{arr.path}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    chunks = (1,) * max(arr.ndim - 2, 0) + tuple(arr.shape[-2:])
    name = f"hdf5-{Path(arr.file).name}-{hashlib.sha1(key).hexdigest()[:16]}"
    out = da.from_array(arr, chunks=chunks, name=name, asarray=True)
    return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))


def open_hdf5(path: str | os.PathLike, array: str | None = None) -> Hdf5Array:
    """The dataset ``path`` names (see :func:`split_hdf5`) as an :class:`Hdf5Array`.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Not an HDF5 file; the dataset named is not there; several datasets and none chosen.
    """
    split = split_hdf5(path)
    if split is None:
        raise ValueError(f"input {str(path)!r}: expected an HDF5 file ({', '.join(HDF5_SUFFIXES)})")
    file, dataset = split
    if not file.is_file():
        raise FileNotFoundError(f"input {str(file)!r} does not exist")
    h5py = _h5py()
    try:
        with h5py.File(file, "r") as f:
            dataset = _choose(f, file, dataset, array)
    except OSError as e:  # not HDF5, truncated
        raise ValueError(f"input {str(file)!r} is not a readable HDF5 file ({e})") from e
    return Hdf5Array(file, dataset)
