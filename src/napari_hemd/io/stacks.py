"""Read image/probability stacks and write label stacks: TIFF, ``.npy``, zarr, HDF5, CTC folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_hemd._atomic import LABELS_KEY, atomic_path
from napari_hemd.io.calibration import PIXEL_SIZE_KEY, PixelSize, imagej_calibration
from napari_hemd.io.tiff import read_tiff, read_tiff_folder

__all__ = ["read_stack", "recorded_params", "write_labels"]


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or (path / ".zarray").exists() or (path / "zarr.json").exists()


def read_stack(path: str | os.PathLike, *, lazy: bool = False, array: str | None = None):
    """Read an array from a TIFF file, ``.npy`` file, zarr array or a folder of TIFF frames.

    Parameters
    ----------
    path : path-like
        ``*.tif``/``*.tiff``, ``*.npy``, ``*.zarr`` (an array, or a group: see ``array``), an
        HDF5 file ``*.h5`` (its dataset as for a zarr group; ``maps.h5/exported_data`` names
        one: :mod:`napari_hemd.io.hdf5`), or a folder of ``*.tif`` frames sorted by name (a CTC
        sequence).
    lazy : bool
        Return zarr arrays (HDF5 datasets, TIFF frame folders) without loading them.
    array : str, optional
        Of a zarr group (an HDF5 file) with several arrays, the one the caller wants when it is there
        (``"foreground"`` of a maps group for H-EMD, ``"instances"`` for labels). A group's array
        ``0`` (OME-Zarr) or its only array are taken as they are; any other group is refused
        with its arrays named (give one in the path: ``maps.zarr/foreground``).

    Returns
    -------
    ndarray or zarr.Array or dask.array.Array
    """
    from napari_hemd.io.hdf5 import open_hdf5, split_hdf5

    if split_hdf5(path) is not None:
        data = open_hdf5(path, array)
        return data if lazy else data[...]
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {str(path)!r} does not exist")
    if _is_zarr(path):
        import zarr

        node = zarr.open(str(path), mode="r")
        if isinstance(node, zarr.Group):
            node = node[group_array(node, path, array)]
        return node if lazy else node[...]
    if path.is_dir():
        return read_tiff_folder(path, lazy=lazy)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return read_tiff(path)
    if suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:  # truncated, or no .npy at all
            raise ValueError(f"input {str(path)!r} is not a readable .npy file ({e})") from e
        if arr.dtype.byteorder == ">":  # big-endian data is legitimate: convert to native
            arr = np.asarray(arr).astype(arr.dtype.newbyteorder("="))
        return arr
    raise ValueError(
        f"input {str(path)!r}: expected a .tif/.tiff/.npy/.h5 file, a .zarr array or a folder "
        f"of .tif frames; got suffix {suffix!r}"
    )


def group_array(group, path, array: str | None = None) -> str:
    """The name of the array :func:`read_stack` reads from a zarr ``group`` (see there)."""
    keys = sorted(k for k, _ in group.arrays())
    return pick_named(keys, f"zarr group {str(path)!r}", path, array, first="0", kind="arrays")


def pick_named(
    names: list[str], what: str, path, array: str | None, *, first: str | None, kind: str
) -> str:
    """Of a container's ``names`` (a zarr group's arrays, an HDF5 file's datasets), the one to read.

    ``first`` (an OME-Zarr's ``0``), else ``array`` (the one the caller wants), else the only
    one; several others are refused, naming them and how to choose one in the path.
    """
    if not names:
        raise ValueError(f"{what} holds no {kind.rstrip('s')}")
    for key in (first, array):
        if key is not None and key in names:
            return key
    if len(names) == 1:
        return names[0]
    want = f" and none named {array!r}" if array else ""
    raise ValueError(
        f"{what} holds several {kind} ({', '.join(names)}){want}: name the one to read in the "
        f"path, e.g. {str(Path(path) / names[0])!r}"
    )


def maps_group(arr):
    """The zarr group of a maps array whose attributes name its model, else None.

    ``predict`` and ``stream --model`` write such groups (``model``, ``scale``, ``planes``).
    """
    import zarr

    if not isinstance(arr, zarr.Array) or not arr.path:
        return None
    parent = arr.path.rsplit("/", 1)[0] if "/" in arr.path else ""
    try:
        group = zarr.open_group(arr.store, path=parent, mode="r")
    except Exception:  # an array of no group: plain maps
        return None
    return group if group.attrs.get("model") else None


#: Label TIFFs from this size (decoded) on are BigTIFFs (not ImageJ's classic TIFF).
IMAGEJ_MAX_BYTES = 2**31

#: Key of the JSON description of the label TIFFs :func:`write_labels` writes (and the attribute
#: of its, and ``stream``'s, zarr labels).
LABELS_TIFF_KEY = LABELS_KEY


def recorded_first_frame(path: str | os.PathLike, n: int) -> int:
    """The movie's number of the first of ``n`` frames a file records (``first_frame``), else 0.

    Labels of a frame range (frames 3-6 of a movie, Export's or ``segment``'s) and the maps
    ``predict`` made of a numbered folder record it, with their number of ``frames``: a CTC
    folder written from them is numbered from it, napari places them at their frames.
    """
    path = Path(path)
    from napari_hemd.io.ome_zarr import is_ome_zarr, ome_zarr_first_frame

    if is_ome_zarr(path):  # its t axis's translation, in steps (labels of frames 3-6)
        return ome_zarr_first_frame(path)
    recorded = recorded_params(path)
    if "first_frame" not in recorded and _is_zarr(path.parent):  # maps.zarr/foreground
        recorded = recorded_params(path.parent)
    first, frames = recorded.get("first_frame"), recorded.get("frames")
    if isinstance(first, int) and first >= 0 and (frames is None or frames == n):
        return first
    return 0


def placed_first_frame(path: str | os.PathLike, n: int) -> int:
    """The frame napari opens the movie ``path`` at (its first of ``n`` frames), else 0.

    An OME-Zarr's ``t`` translation (a frame range of a longer movie), a folder's first frame
    number (``t050.tif`` ... in a row: 50, as the CTC result folder of its masks,
    ``mask050.tif`` ..., opens there too), and the maps ``predict`` made of either, which record
    it as ``first_frame`` with ``placed``. Labels made of any of them are placed there too, in
    every format.
    """
    from napari_hemd.io.ome_zarr import is_ome_zarr, ome_zarr_first_frame
    from napari_hemd.io.tiff import first_frame_number

    path = Path(path)
    if is_ome_zarr(path):
        return ome_zarr_first_frame(path)
    if path.is_dir() and not _is_zarr(path):
        return first_frame_number(path, n)[0]
    recorded = recorded_params(path)
    if "placed" not in recorded and _is_zarr(path.parent):  # maps.zarr/foreground
        recorded = recorded_params(path.parent)
    return recorded_first_frame(path, n) if recorded.get("placed") is True else 0


def recorded_params(path: str | os.PathLike) -> dict:
    """The run parameters :func:`write_labels` stored with a label file (empty: none).

    TIFF: the JSON description tifffile reads back (``shaped_metadata``; an ImageJ hyperstack's
    ``Info``; the maps ``predict`` writes: their first page's JSON description); zarr and OME-Zarr:
    the attributes; a CTC result folder: its ``hemd-params.json``. Anything unreadable: empty.
    """
    import json

    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
            import tifffile

            from napari_hemd.io.calibration import _json_description

            with tifffile.TiffFile(path) as tif:
                shaped = tif.shaped_metadata
                info = (tif.imagej_metadata or {}).get("Info") if tif.is_imagej else None
                described = _json_description(tif.pages[0].description)  # predict's maps
            if info:  # an ImageJ hyperstack keeps them as its Info (Fiji: Image > Show Info)
                recorded = json.loads(info)
                return dict(recorded) if isinstance(recorded, dict) else {}
            return dict(shaped[0]) if shaped else described
        if _is_zarr(path):
            import zarr

            return dict(zarr.open(str(path), mode="r").attrs)
        if path.is_dir() and (path / "hemd-params.json").is_file():
            return dict(json.loads((path / "hemd-params.json").read_text()))
    except Exception:  # a file we did not write, or a broken one: nothing recorded
        return {}
    return {}


def check_labels_path(path: str | os.PathLike) -> str:
    """The format :func:`write_labels` writes ``path`` in; a name it cannot write is refused.

    Returns ``"tif"``, ``"ome.zarr"``, ``"zarr"`` or ``"ctc"`` (a folder without suffix). Commands
    call it before the work, so a mistyped output fails at once, not after a long run.

    Raises
    ------
    ValueError
        The name ends in another suffix (``.png``, ``.npy`` ...).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.name.lower().endswith(".ome.zarr"):
        return "ome.zarr"
    if suffix in (".tif", ".tiff"):
        return "tif"
    if suffix == ".zarr":
        return "zarr"
    if suffix == "":
        return "ctc"
    raise ValueError(
        f"output {str(path)!r}: expected a .tif/.tiff file, a .zarr store or a folder "
        f"(CTC result); got suffix {suffix!r}"
    )


def write_labels(
    labels,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    tracks: np.ndarray | None = None,
    metadata: dict | None = None,
    axes: str | None = None,
    first_frame: int = 0,
    pixel_size: PixelSize | None = None,
    time_step: tuple[float, str | None] | None = None,
) -> Path:
    """Write a label stack, chosen by extension, atomically.

    Parameters
    ----------
    labels : (T, ...) or (Y, X) integer array
        Instance labels, frames along the first axis; one 2D image is written as such (a CTC
        folder: as its one frame, ``mask000.tif``).
    path : path-like
        ``*.tif``/``*.tiff`` (one multi-page TIFF), ``*.ome.zarr`` (an OME-Zarr 0.4 label image, see
        :func:`napari_hemd.io.ome_zarr.write_ome_zarr_labels`), ``*.zarr`` (a plain zarr array,
        chunked per frame) or a folder without suffix (Cell Tracking Challenge result: ``maskTTT.tif`` per frame, plus
        ``res_track.txt``; one stack, ``axes="zyx"``: one 3D ``mask000.tif``).
    tracks : (K, 4) int array, optional
        CTC track table ``L B E P`` (label, begin, end, parent) of a movie: a CTC folder's
        ``res_track.txt``, a plain zarr's ``tracks`` attribute (both open with a Tracks layer
        in napari); not kept by TIFFs and OME-Zarr, not used for one stack.
    metadata : dict, optional
        Stored as zarr attributes / TIFF description (JSON) / ``hemd-params.json`` in CTC folders.
    axes : str, optional
        The axes' names (``"zyx"`` for one 3D stack), written into TIFFs and OME-Zarr; default
        ``"yx"``, ``"tyx"`` or ``"tzyx"`` by the number of dimensions.
    first_frame : int
        The movie's number of the first frame: a CTC folder's masks are numbered from it (see
        :func:`napari_hemd.io.ctc.write_ctc_result`); a TIFF or zarr records it
        (:func:`recorded_first_frame`), an OME-Zarr as its ``t`` axis's translation: napari
        places the frames there again.
    pixel_size : PixelSize, optional
        The pixels' physical size (:mod:`napari_hemd.io.calibration`), written into TIFFs and
        a CTC folder's masks (as Fiji reads it), OME-Zarr (its axes) and plain zarr arrays (the
        ``napari_hemd_pixel_size`` attribute ``stream`` and ``predict`` write).
    time_step : (float, str or None), optional
        The frames' interval and its unit (what the movie records:
        :func:`napari_hemd.io.calibration.read_time_step`), written into an OME-Zarr's ``t``
        axis and an ImageJ hyperstack TIFF's ``finterval`` / ``tunit``; other formats do not
        keep it.

    TIFFs of ids up to 65535 are ImageJ hyperstacks, LZW-compressed (Fiji opens them with their
    frames, slices and pixel size; ``metadata`` is their *Info*). Larger ids (32 bits), stacks
    with an axis of length 1 (ImageJ drops it) and files from 2 GiB (a BigTIFF) are tifffile's
    shaped TIFFs (axes and metadata in a JSON description).

    Returns
    -------
    Path
        ``path``.
    """
    import json

    path = Path(path)
    kind = check_labels_path(path)
    if kind == "ome.zarr":
        from napari_hemd.io.ome_zarr import write_ome_zarr_labels

        return write_ome_zarr_labels(
            labels, path, overwrite=overwrite, metadata=metadata, axes=axes and axes.lower(),
            pixel_size=pixel_size, time_step=time_step,
            first_frame=first_frame if len(labels.shape) >= 3 else 0,
        )  # fmt: skip
    labels_arr = labels
    shape = tuple(labels_arr.shape)
    if (
        first_frame
        and kind in ("tif", "zarr")
        and len(shape) >= 3
        and (axes or "").lower() != "zyx"
    ):
        # frames 3-6 of a movie: placed there again when opened (recorded_first_frame)
        metadata = {**(metadata or {}), "first_frame": int(first_frame), "frames": shape[0]}
    with atomic_path(path, overwrite=overwrite) as tmp:
        if kind == "tif":
            arr = np.asarray(labels_arr)
            if axes is None or len(axes) != arr.ndim:
                axes = {2: "YX", 3: "TYX", 4: "TZYX"}.get(arr.ndim)
            axes = axes and axes.upper()
            meta = json.loads(json.dumps(metadata or {}, default=str))
            meta[LABELS_TIFF_KEY] = True  # opened as labels again, whatever the file's name
            _write_label_tiff(tmp, arr.astype(_label_dtype(arr)), axes, meta, pixel_size, time_step)
        elif kind == "zarr":
            import zarr

            arr_shape = tuple(labels_arr.shape)
            chunks = arr_shape if len(arr_shape) == 2 else (1, *arr_shape[1:])
            z = zarr.open_array(str(tmp), mode="w", shape=arr_shape, chunks=chunks, dtype=np.uint32)
            if len(arr_shape) == 2:  # one image
                z[:] = _checked(labels_arr)
            else:  # frame by frame: a lazy stack is never all in memory
                for t in range(arr_shape[0]):
                    z[t] = _checked(labels_arr[t], t)
            # opened as labels again, whatever the store's name (napari's reader), at the pixel
            # size recorded as stream's labels record it (read_pixel_size)
            attrs = {**(metadata or {}), LABELS_TIFF_KEY: True}
            if tracks is not None and len(arr_shape) >= 3 and (axes or "").lower() != "zyx":
                # the lineage, as stream's linked stores keep it (measure and napari read it;
                # audit 31: segment --link -o X.zarr dropped it)
                attrs["tracks"] = np.asarray(tracks, np.int64).reshape(-1, 4).tolist()
            if pixel_size is not None:
                attrs[PIXEL_SIZE_KEY] = pixel_size.to_json()
            z.attrs.update(attrs)
        else:  # "ctc"
            from napari_hemd.io.ctc import write_ctc_result

            if len(labels_arr.shape) == 2:  # one image: one frame
                labels_arr = np.asarray(labels_arr)[None]
            elif axes is not None and axes.lower() == "zyx":  # one stack: one 3D frame, whose
                labels_arr = np.asarray(labels_arr)[None]  # slices' links are no lineage
                tracks = None
            write_ctc_result(
                labels_arr, tmp, tracks=tracks, first_frame=first_frame, pixel_size=pixel_size
            )
            if metadata:
                (tmp / "hemd-params.json").write_text(json.dumps(metadata, indent=2))
    return path


def _write_label_tiff(
    path: Path,
    arr: np.ndarray,
    axes: str | None,
    meta: dict,
    pixel_size: PixelSize | None,
    time_step: tuple[float, str | None] | None = None,
) -> None:
    """One label TIFF: an ImageJ hyperstack where ImageJ can hold it, else tifffile's shaped.

    A movie's frame interval ``time_step`` is the hyperstack's ``finterval`` / ``tunit``.
    """
    import json

    import tifffile

    kw: dict = {"photometric": "minisblack"}
    # ImageJ drops axes of length 1 ((1, Y, X) reads back (Y, X)) and holds 16 bits and one
    # classic TIFF (4 GiB): other stacks are tifffile's shaped TIFFs, which keep them
    imagej = arr.dtype in (np.uint8, np.uint16) and axes in ("YX", "TYX", "ZYX", "TZYX")
    imagej = imagej and 1 not in arr.shape[:-2] and arr.nbytes < IMAGEJ_MAX_BYTES
    if imagej:
        calibration, ij = imagej_calibration(pixel_size, axes)
        kw.update(calibration)
        ij.update({"axes": axes, "Info": json.dumps(meta)})
        if time_step is not None and "T" in axes:  # Fiji's Frame interval (and TrackMate's)
            from napari_hemd.io.calibration import IMAGEJ_TIME_UNITS, time_unit_name

            # (an API caller's "s" or "min" too: review 32b); a unit ImageJ has no name for:
            # no interval rather than a wrong one
            unit = IMAGEJ_TIME_UNITS.get(time_unit_name(time_step[1] or "second") or "")
            if unit is not None:
                ij.update(finterval=float(time_step[0]), tunit=unit)
        # LZW, as the Cell Tracking Challenge's TIFFs: ImageJ's own opener reads it (Fiji's
        # File > Open; its zlib needs Bio-Formats, tifffile says)
        tifffile.imwrite(path, arr, imagej=True, metadata=ij, compression="lzw", **kw)
        return
    if axes:  # tifffile's shaped description keeps the axes (a (T, Z, Y, X) stack reads back
        meta = {**meta, "axes": axes}  # as such, not as T*Z pages) and the metadata as JSON
    if pixel_size is not None:
        meta[PIXEL_SIZE_KEY] = pixel_size.to_json()
    big = arr.nbytes >= IMAGEJ_MAX_BYTES
    tifffile.imwrite(path, arr, metadata=meta, compression="zlib", bigtiff=big, **kw)


def _label_dtype(arr: np.ndarray) -> type:
    from napari_hemd.core.validation import check_label_ids

    check_label_ids(arr)
    m = int(arr.max()) if arr.size else 0
    return np.uint16 if m < 2**16 else np.uint32


def _checked(frame, t: int | None = None) -> np.ndarray:
    from napari_hemd.core.validation import check_label_ids

    arr = np.asarray(frame)
    check_label_ids(arr, t)
    return arr
