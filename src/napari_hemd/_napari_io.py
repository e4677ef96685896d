"""npe2 reader and writer hooks over :mod:`napari_hemd.io` (no Qt).

Readers: TIFF stacks, ``.npy`` and HDF5 (lazily, plane by plane, when the decoded file would take more
than a quarter of the memory free), zarr and OME-Zarr (lazy; an OME-Zarr image opens with
the label images under its ``labels/``), folders of TIFF frames (CTC sequences, with their ``_GT``/``_ST``
masks as Labels layers) and CTC result folders (``maskTTT.tif``).
Writers: a Labels layer to an OME-Zarr label image, a TIFF stack or a CTC result folder
(``maskTTT.tif`` + ``res_track.txt``), atomically and never over an existing output.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LayerData = tuple  # (data, metadata, layer type)

#: HDF5 file endings: :data:`napari_hemd.io.hdf5.HDF5_SUFFIXES` (not imported here: importing
#: ``napari_hemd.io`` takes 0.4 s, and napari asks every reader about every file opened).
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")

#: A TIFF or .npy whose decoded size exceeds this fraction of the free memory opens lazily.
LAZY_FRACTION = 0.25


def _stack_frames(frames: dict[int, np.ndarray], n: int | None) -> np.ndarray:
    """Dict of frame index -> mask to a (T, ...) stack with empty frames where missing."""
    first = next(iter(frames.values()))
    n = max(frames) + 1 if n is None else n
    out = np.zeros((n, *first.shape), dtype=first.dtype)
    for t, m in frames.items():
        if t < n:
            out[t] = m
    return out


def _is_ctc_result(path: Path) -> bool:
    return path.is_dir() and any(path.glob("mask*.tif"))


def _read(path: str | os.PathLike) -> list[LayerData]:
    from napari_hemd.io import read_ctc_sequence, read_stack
    from napari_hemd.io.ome_zarr import is_ome_zarr
    from napari_hemd.io.tiff import lazy_tiff, tiff_nbytes

    path = Path(path)
    name = path.stem if path.suffix else path.name
    if is_ome_zarr(path):
        return _read_ome_zarr(path)
    if _is_ctc_result(path):
        labels = _read_ctc_result(path, name)
        return [labels, *_ctc_tracks_layer(path, labels)]
    if path.is_dir() and not path.suffix:
        from napari_hemd.io.tiff import folder_frame_numbers

        seq = read_ctc_sequence(path, lazy=True, tracking=False)  # (markers not shown)
        n = None if seq.raw is None else seq.raw.shape[0]
        layers: list[LayerData] = []
        place: dict = {}
        # the frames' numbers: man_seg053 goes on frame t053, gaps or not; t050.tif ... in a
        # row open at frame 50, as the CTC result folder of their masks (mask050.tif ...) does
        # (audit 35: 50 frames apart)
        numbers = folder_frame_numbers(path) if n is not None else None
        if numbers is None or len(numbers) != n or len(set(numbers)) != n:
            numbers = list(range(n or 0))  # (by position)
        in_a_row = bool(numbers) and numbers == list(range(numbers[0], numbers[0] + n))
        first = numbers[0] if in_a_row else 0
        if seq.raw is not None:  # at the pixel size its frames record (Fiji's image sequence)
            raw = seq.raw
            split = _unnamed_channels(raw, {"colormap": "gray"}, name, path)
            place = _calibration(path, raw.ndim - 1 if split else raw.ndim)
            if first:
                step = float((place.get("scale") or (1.0,))[0])
                ndim = raw.ndim - 1 if split else raw.ndim
                place["translate"] = (first * step,) + (0.0,) * (ndim - 1)
            layers.append(split or (raw, {"name": name, "colormap": "gray"}, "image"))
            layers[-1][1].update(place)
        at = {t: i for i, t in enumerate(numbers)}
        for key, frames in (("GT", seq.gt_seg), ("ST", seq.st_seg)):
            frames = {at[t]: m for t, m in frames.items() if t in at} if n else frames
            if frames:  # on the frames, at their pixel size (review 29b: the masks were not)
                masks = _stack_frames(frames, n)
                own = place if all(len(v) == masks.ndim for v in place.values()) else {}
                layers.append((masks, {"name": f"{name} {key}", **own}, "labels"))
        return layers
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return _hdf5_layers(path, name)
    if suffix in (".tif", ".tiff"):
        lazy = _too_big(path, tiff_nbytes(path))
        channels = _tiff_channel_layers(path, name, lazy=lazy)
        if channels:
            return channels
        data = lazy_tiff(path) if lazy else read_stack(path)
        meta = {"name": name, **_calibration(path, data.ndim), **_axis_names(path, data.ndim)}
        kind = _kind(path, data)
        split = (
            _unnamed_channels(data, {}, name, path)
            if kind == "image" and "axis_labels" not in meta
            else None
        )
        if split:
            split[1].update(_calibration(path, data.ndim - 1))
            return [split]
        return [(data, {**meta, **_first_frame(path, data, meta, kind)}, kind)]
    elif suffix == ".npy":  # too big: memory-mapped, read as shown
        data = read_stack(path, lazy=_too_big(path, np.load(path, mmap_mode="r").nbytes))
    else:
        group = _zarr_group_layers(path, name) if suffix == ".zarr" else None
        if group:
            return group
        data = read_stack(path, lazy=suffix == ".zarr")
    kind = _kind(path, data)
    split = _unnamed_channels(data, {}, name, path) if kind == "image" else None
    if split:
        split[1].update(_calibration(path, data.ndim - 1))
        return [split]
    # a group of one array: predict's affinities alone have a channel axis
    channels = int(str(getattr(data, "path", "")).rsplit("/", 1)[-1] in CHANNEL_MAPS)
    meta = {"name": name, **_calibration(path, data.ndim, channels)}  # stream's, predict's
    layer = (data, {**meta, **_first_frame(path, data, meta, kind)}, kind)
    recorded = getattr(data, "attrs", {}).get("tracks") if kind == "labels" else None
    if recorded is None:
        return [layer]
    if np.prod(data.shape, dtype=np.float64) > TRACKS_MAX_PIXELS:  # every frame read for its
        # centres (review 32: 4 s for 200 frames of 1024 x 1024, growing with the movie)
        log.warning(
            "%s: its tracks are not shown (a store this large is read whole for them; "
            "napari-hemd measure gives each cell's parent)", path,
        )  # fmt: skip
        return [layer]
    try:  # a linked store's lineage (stream --link, segment --link, link -o X.zarr)
        tracks = np.asarray(recorded, np.int64).reshape(-1, 4)
    except (TypeError, ValueError) as e:  # the labels open all the same
        log.warning("%s: tracks not shown (its tracks attribute: %s)", path, e)
        return [layer]
    return [layer, *_tracks_layer(tracks, layer)]


def _unnamed_channels(data, meta: dict, name: str, path: Path) -> LayerData | None:
    """A 4D image whose axes no file names, with at most 4 planes on axis 1: channels.

    The rule the command line and the widgets refuse such an input by
    (:func:`napari_hemd.io.channels.looks_like_channels`): opened as one layer per channel
    (napari's *Split Stack*, which the refusal pointed to, splits the first axis: time, audit
    22), one plane (``(T, 1, Y, X)``) dropped. None for anything else.
    """
    from napari_hemd.io.channels import input_axes, looks_like_channels
    from napari_hemd.io.stacks import recorded_params

    shape = tuple(data.shape)
    if len(shape) != 4 or not looks_like_channels(shape, input_axes(path)):
        return None  # (a file naming its z axis, as a TZYX TIFF does, holds stacks)
    recorded = recorded_params(path)
    if recorded.get("stacks") or recorded.get("planes"):  # maps predict made of stacks
        return None
    if shape[1] == 1:  # one plane: a (T, Y, X) movie
        if not isinstance(data, np.ndarray):  # on disk: read as shown
            import dask.array as da

            data = da.from_array(data, chunks=(1, 1, *shape[2:]))
        return (data[:, 0], {**meta, "name": name}, "image")
    names = [f"{name} channel {i}" for i in range(shape[1])]
    return (data, {**meta, "channel_axis": 1, "name": names}, "image")


def _first_frame(path: Path, data, meta: dict, kind: str) -> dict:
    """``translate`` placing labels of frames 3-6 of a movie (Export's TIFF of one) there.

    Maps where their movie opens there too (``placed``: an OME-Zarr's frames 3-6, a folder's
    ``t003.tif`` ...); maps an older ``predict`` made of a numbered folder record its first
    frame without ``placed``, and open at frame 0 (review 29).
    """
    from napari_hemd.io.stacks import placed_first_frame, recorded_first_frame

    if data.ndim < 3:
        return {}
    n = int(data.shape[0])
    first = recorded_first_frame(path, n) if kind == "labels" else placed_first_frame(path, n)
    if not first:
        return {}
    step = float((meta.get("scale") or (1.0,))[0])
    return {"translate": (first * step,) + (0.0,) * (data.ndim - 1)}


def _kind(path: Path, data) -> str:
    """``"labels"`` for an integer file that looks like labels, else ``"image"``.

    A zarr store named like neither (``movie.zarr``) nor written by napari-hemd as labels is
    judged by its values (:func:`napari_hemd.core.validation.not_instance_labels`): a raw
    uint16 movie opened as labels, which Predict and Segment then did not offer (audit 22).
    """
    if not np.issubdtype(data.dtype, np.integer) or not _looks_like_labels(path):
        return "image"
    if path.suffix.lower() == ".zarr" and not _named_or_marked(path):
        from napari_hemd.core.validation import not_instance_labels

        return "image" if not_instance_labels(data) else "labels"
    return "labels"


def _axis_names(path: Path, ndim: int, drop: str = "") -> dict:
    """``axis_labels`` (``t, z, y, x``) where an OME or ImageJ TIFF names its axes so; else empty.

    A stack opens with its first axis named z: Export and Proofread take it, and the labels
    made from it, as one stack of 3D objects. ImageJ calls the pages of any plain stack
    slices, a movie saved from an image sequence too: its z is taken only from a hyperstack
    or a stack with a voxel depth (``spacing``); frames (``T``) always.
    """
    from napari_hemd.io.channels import input_axes, names_its_z

    axes = "".join(a for a in (input_axes(path) or "") if a not in drop)
    if len(axes) != ndim or not axes.endswith("YX") or set(axes) - set("TZYX"):
        return {}
    if "Z" in axes and not names_its_z(path):
        return {}
    return {"axis_labels": tuple(axes.lower())}


#: Maps with a channel axis after the frames (``(T, N, Y, X)``, one image's ``(N, Y, X)``).
CHANNEL_MAPS = ("affinities", "embeddings")


def _calibration(path: Path, ndim: int, channels: int = 0) -> dict:
    """The layer's ``scale`` and ``units`` from the pixel size ``path`` records; empty: none.

    ``ndim``: the layer's axes (channels split off). Its last 3 axes are space where a z size
    is recorded and the file names a z axis, or names none (a zarr store ``stream`` or
    ``predict`` wrote, a CTC result folder: a z size is recorded only for an input with a z
    axis, :func:`~napari_hemd.io.calibration.read_pixel_size`); else its last 2.
    ``channels`` (1: affinities, embeddings): a channel axis after the first, at scale 1 (the
    z size took it, review 30b).
    """
    from napari_hemd.io.calibration import read_pixel_size
    from napari_hemd.io.channels import input_axes

    size = read_pixel_size(path)
    if size is None:
        return {}
    axes = (input_axes(path) or "Z").upper()  # (no names: as recorded)
    space = ndim - channels
    spatial = 3 if "z" in size.sizes and "Z" in axes and space >= 3 else 2
    return _with_channels(size.layer_kwargs(space, spatial), channels, space)


def _zarr_group_layers(path: Path, name: str) -> list[LayerData]:
    """A zarr group of several arrays and no array ``0`` as one layer per array; else empty.

    The maps ``predict`` and ``stream`` write (``foreground``, ``background`` ...), lazily,
    at the pixel size they record. Integer arrays (``instances``) open as labels, the maps as
    images.
    """
    import zarr

    node = zarr.open(str(path), mode="r")
    if not isinstance(node, zarr.Group):
        return []
    keys = sorted(k for k, _ in node.arrays())
    if len(keys) < 2 or "0" in keys:
        return []
    plain = [k for k in keys if k not in CHANNEL_MAPS]  # the maps without a channel axis
    ref = node[plain[0]].ndim if plain else node[keys[0]].ndim - 1
    place = _calibration(path, ref)
    first = _first_frame(path, node[plain[0] if plain else keys[0]], place, "image")
    layers: list[LayerData] = []
    for key in keys:
        arr = node[key]
        labels = np.issubdtype(arr.dtype, np.integer)
        meta = {"name": f"{name} {key}", **_with_channels(place, arr.ndim - ref, ref)}
        if first and ref >= 3:  # maps of an OME-Zarr's frames 3-6: at frame 3
            meta["translate"] = (first["translate"][0],) + (0.0,) * (arr.ndim - 1)
        if not labels:
            meta["colormap"] = "gray"
        layers.append((arr, meta, "labels" if labels else "image"))
    return layers


def _with_channels(place: dict, extra: int, ndim: int) -> dict:
    """``place`` (of the foreground's ``ndim`` axes) for a map with ``extra`` channel axes.

    Affinities and embeddings hold one channel axis after the frames (``(T, N, Y, X)``; one
    image's ``(N, Y, X)``): it gets scale 1. Any other shape: not placed.
    """
    if not place or extra == 0:
        return place if extra == 0 else {}
    if extra != 1:
        return {}
    at = 1 if ndim >= 3 else 0
    out = {"scale": [*place["scale"][:at], 1.0, *place["scale"][at:]]}
    if "units" in place:
        out["units"] = (*place["units"][:at], "pixel", *place["units"][at:])
    return out


def _hdf5_layers(path: Path, name: str) -> list[LayerData]:
    """An HDF5 file as one layer per dataset of 2 or more axes (``raw`` and ``label`` ...).

    Integer datasets named like labels (``label``, ``mask``, ``seg``, ``instances``) open as
    labels, the rest as images, read whole or lazily (too big: :func:`_too_big`); a channel axis
    ilastik's ``axistags`` name splits into one image layer per channel, as a TIFF's does.
    """
    from napari_hemd.io.hdf5 import _datasets, _h5py, lazy_hdf5, open_hdf5

    try:
        with _h5py().File(path, "r") as f:
            keys = [k for k in _datasets(f) if f[k].ndim >= 2]
    except OSError as e:
        raise ValueError(f"{str(path)!r} is not a readable HDF5 file ({e})") from e
    layers: list[LayerData] = []
    for key in keys:
        arr = open_hdf5(path / key)
        nbytes = int(np.prod(arr.shape)) * arr.dtype.itemsize
        data = lazy_hdf5(arr) if _too_big(path, nbytes) else arr[...]
        meta: dict = {"name": name if len(keys) == 1 else f"{name} {key}"}
        axes = arr.axes or ""
        if axes.endswith("YX") and not set(axes) - set("TZYX"):
            meta["axis_labels"] = tuple(axes.lower())
        low = key.rsplit("/", 1)[-1].lower()
        words = ("label", "mask", "seg", "instances")
        if np.issubdtype(arr.dtype, np.integer) and any(w in low for w in words):
            layers.append((data, meta, "labels"))
            continue
        if "C" in axes and arr.shape[axes.index("C")] > 1:  # ilastik's classes, one per layer
            c = axes.index("C")
            names = [f"{meta['name']} channel {i}" for i in range(arr.shape[c])]
            rest = axes.replace("C", "")
            extra = {"axis_labels": tuple(rest.lower())} if rest.endswith("YX") else {}
            meta = {"name": names, "channel_axis": c, "colormap": "gray", **extra}
        layers.append((data, {"colormap": "gray", **meta}, "image"))
    if not layers:
        raise ValueError(f"{str(path)!r} holds no dataset of 2 or more axes (an image)")
    return layers


def _too_big(path: Path, nbytes: int | None) -> bool:
    """Whether ``nbytes`` (a file, decoded) exceed :data:`LAZY_FRACTION` of the free memory.

    Such a file opens lazily (a TIFF as a dask array read plane by plane as napari shows it, a
    ``.npy`` memory-mapped) and says so: reading it whole could take the viewer down with it;
    the Large data widget streams it.
    """
    import warnings

    from napari_hemd._memory import available_memory

    free = available_memory()
    if nbytes is None or nbytes <= LAZY_FRACTION * free:
        return False
    warnings.warn(
        f"{path.name}: {nbytes / 2**30:.1f} GiB once decoded, {free / 2**30:.1f} GiB of memory "
        "available: opened lazily (each plane read from disk as it is shown). Segment it with "
        "the Large data widget (input from this layer) or `napari-hemd stream`, which keep a "
        "few frames in memory at a time",
        stacklevel=2,
    )
    return True


def _tiff_channel_layers(path: Path, name: str, *, lazy: bool = False) -> list[LayerData]:
    """A multi-channel TIFF (a ``C`` axis, or colour samples) as one image layer per channel.

    Each channel is then a (T, Y, X) movie the Predict and Segment widgets take (the command line
    picks one with ``--channel``); colour samples get red, green and blue. Empty: not such a file.
    ``lazy``: read plane by plane as shown (:func:`napari_hemd.io.tiff.lazy_tiff`).
    """
    from napari_hemd.io.channels import channel_names, input_axes
    from napari_hemd.io.tiff import lazy_tiff, read_tiff

    axes = input_axes(path) or ""
    colour = axes.endswith("S")
    if not colour and "C" not in axes:
        return []
    data = lazy_tiff(path) if lazy else read_tiff(path, grey=False)
    axis = len(axes) - 1 if colour else axes.index("C")
    n = data.shape[axis]
    if n < 2:
        return []
    meta: dict = {"channel_axis": axis, **_calibration(path, data.ndim - 1)}
    meta.update(_axis_names(path, data.ndim - 1, drop="CS"))
    if colour:
        n = min(n, 3)  # RGBA: the alpha sample is not a stain
        data = data[..., :n]
        meta["colormap"] = ["red", "green", "blue"][:n]
    meta["name"] = _channel_layer_names(name, n, channel_names(path, n))
    return [(data, meta, "image")]


def _channel_layer_names(name: str, n: int, names: list[str] | None) -> list[str]:
    """``movie channel 1`` ..., with the name the file gives it (``... (H2B-mCherry)``).

    The names were dropped (audit 22).
    """
    return [f"{name} channel {i}" + (f" ({names[i]})" if names else "") for i in range(n)]


def _read_ctc_result(path: Path, name: str) -> LayerData:
    """A CTC result folder's masks at their frames.

    ``mask036``-``mask043`` lie at frames 36-43 (the layer placed there, as a frame range's
    labels are; Export numbers them so again); a missing mask is an empty frame (the later ones
    are not moved up).
    """
    from napari_hemd.io import read_ctc_labels

    frames = read_ctc_labels(path)
    first = min(frames)
    data = _stack_frames({t - first: m for t, m in frames.items()}, max(frames) - first + 1)
    # at the pixel size its masks record (napari-hemd writes it into them, as Fiji does)
    meta: dict = {"name": f"{name} labels", **_calibration(path, data.ndim)}
    if first:
        meta["translate"] = (first,) + (0,) * (data.ndim - 1)
    return (data, meta, "labels")


def _ctc_tracks_layer(path: Path, labels: LayerData) -> list[LayerData]:
    """The tracks of a CTC result folder's ``res_track.txt``, on its masks (none without it)."""
    from napari_hemd.io import read_ctc_tracks

    table = path / "res_track.txt"
    if not table.is_file():
        return []
    try:
        tracks = read_ctc_tracks(table)
    except (OSError, ValueError) as e:  # the masks open all the same
        log.warning("%s: tracks not shown (%s)", table, e)
        return []
    return _tracks_layer(tracks, labels)


#: A linked zarr store of more pixels than this opens without its Tracks layer (its centres
#: take every frame: the 92 HeLa frames, 71 million pixels, open in 0.9-1.3 s).
TRACKS_MAX_PIXELS = 200_000_000


def _tracks_layer(tracks: np.ndarray, labels: LayerData) -> list[LayerData]:
    """A Tracks layer of a movie's lineage ``tracks`` (``L B E P``) on its ``labels`` layer.

    Each cell's centre in each frame under its track id, divisions drawn from the mother to her
    daughters (:func:`napari_hemd.core.linking.track_points`); none for one frame.
    """
    from napari_hemd.core.linking import track_points

    data, meta, _ = labels
    if data.ndim < 3 or data.shape[0] < 2:
        return []
    points, graph = track_points(data, tracks)
    if not len(points):
        return []
    place = {k: meta[k] for k in ("translate", "scale", "units") if k in meta}
    name = meta["name"].removesuffix(" labels") + " tracks"
    return [(points, {"name": name, "graph": graph, "tail_length": 10, **place}, "tracks")]


def _read_ome_zarr(path: Path) -> list[LayerData]:
    """Layers of an OME-Zarr group, lazily: every resolution level stays on disk."""
    from napari_hemd.io.calibration import KNOWN_UNITS, node_pixel_size
    from napari_hemd.io.channels import channel_names
    from napari_hemd.io.ome_zarr import ome_zarr_first_frame, read_ome_zarr

    layers: list[LayerData] = []
    for node in read_ome_zarr(path):
        data = node.levels if len(node.levels) > 1 else node.levels[0]
        meta: dict = {"name": node.name, "scale": node.scale}
        first = ome_zarr_first_frame(path, node)
        if first:  # frames 3-6 of a movie: at frame 3 again. Only whole frames on t, as
            # segment and link place their labels (review 32: an image at y 100 over labels at
            # 0; review 32b: half a frame)
            shift = [0.0] * len(node.axes)
            shift[node.axes.index("t")] = first * node.scale[node.axes.index("t")]
            meta["translate"] = shift
        axes, scale = node.axes, node.scale
        c = axes.find("c") if node.kind == "image" else -1
        if c >= 0 and node.levels[0].shape[c] > 1:  # one layer per channel, as for TIFFs
            meta["channel_axis"] = c
            n = node.levels[0].shape[c]
            meta["name"] = _channel_layer_names(
                node.name, n, channel_names(path, n, attrs=dict(node.attrs))
            )
            axes, meta["scale"] = axes.replace("c", ""), [v for i, v in enumerate(scale) if i != c]
            if "translate" in meta:
                meta["translate"] = [v for i, v in enumerate(meta["translate"]) if i != c]
        if axes:
            meta["axis_labels"] = tuple(axes)
        size = node_pixel_size(node)
        if axes and size is not None and size.unit in KNOWN_UNITS:  # the scale bar in its unit
            meta["units"] = tuple(size.unit if a in "zyx" else "pixel" for a in axes)
        if node.kind == "image" and "channel_axis" not in meta:
            meta["colormap"] = "gray"
        if "napari_hemd" in node.attrs:
            meta["metadata"] = {"hemd_params": dict(node.attrs["napari_hemd"])}
        layers.append((data, meta, node.kind))
    return layers


def _looks_like_labels(path: Path) -> bool:
    """An integer file opens as labels by its name, or when napari-hemd wrote it as labels.

    Any zarr store may be labels (:func:`_kind` then judges a plain one by its values).
    """
    return path.suffix.lower() == ".zarr" or _named_or_marked(path)


def _named_or_marked(path: Path) -> bool:
    """A file named as labels (label, mask, seg) or that napari-hemd wrote as labels."""
    low = path.name.lower()
    if any(w in low for w in ("label", "mask", "seg")):
        return True
    from napari_hemd.io.stacks import LABELS_TIFF_KEY, recorded_params

    recorded = recorded_params(path)  # Export's (and segment's) TIFFs, named as a user likes
    return bool(recorded.get(LABELS_TIFF_KEY) or "napari_hemd" in recorded)


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader: a function reading ``path`` into layer data, or ``None`` if not ours."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".tif", ".tiff", ".zarr", ".npy", *HDF5_SUFFIXES):
        return lambda q: _read(q[0] if isinstance(q, list) else q)
    if p.is_dir() and (_is_ctc_result(p) or any(p.glob("*.tif"))):
        return lambda q: _read(q[0] if isinstance(q, list) else q)
    if not p.exists() and (p.parent / f"{p.name}_GT").is_dir():
        return lambda q: _read(q[0] if isinstance(q, list) else q)
    return None


def _write(path: str, data, meta: dict, suffix: str) -> list[str]:
    from napari_hemd.io import write_labels, write_ome_zarr_labels

    p = Path(path)
    if suffix == "":
        p = p.with_suffix("") if p.suffix.lower() in (".ctc", ".tif", ".zarr") else p
    elif p.suffix.lower() != suffix:
        p = p.with_name(p.name + suffix)
    arr = np.asarray(data)
    if suffix == "" and arr.ndim == 2:
        arr = arr[None]
    params = meta.get("metadata", {}).get("hemd_params") or {}
    keep = {k: v for k, v in params.items() if isinstance(v, str | int | float | bool | type(None))}
    extra = {"napari_hemd": keep} if keep else None
    from napari_hemd.io.calibration import PixelSize
    from napari_hemd.io.ome_zarr import axes_from_names

    scale = meta.get("scale")
    size = None if scale is None else PixelSize.from_layer(scale, meta.get("units"))
    axes = axes_from_names(meta.get("axis_labels"), arr.ndim)
    if suffix == ".zarr":
        shift = meta.get("translate")
        write_ome_zarr_labels(
            arr, p, axes=axes, name=meta.get("name"), metadata=extra, pixel_size=size,
            scale=None if scale is None or len(scale) != arr.ndim else list(scale),
            translation=None if shift is None or len(shift) != arr.ndim else list(shift),
        )  # fmt: skip
    else:  # a stack (its first axis named z) is written as one: a ZYX TIFF, one 3D CTC mask
        axes = "zyx" if axes == "zyx" else None
        write_labels(arr, p, overwrite=False, metadata=extra, pixel_size=size, axes=axes)
    return [str(p)]


def write_ome_zarr(path: str, data, meta: dict) -> list[str]:
    """npe2 writer: Labels layer -> OME-Zarr (NGFF 0.4) label image (``*.zarr``/``*.ome.zarr``)."""
    return _write(path, data, meta, ".zarr")


def write_tiff(path: str, data, meta: dict) -> list[str]:
    """npe2 writer: Labels layer -> multi-page TIFF."""
    return _write(path, data, meta, ".tif")


def write_ctc(path: str, data, meta: dict) -> list[str]:
    """npe2 writer: Labels layer -> CTC result folder (``maskTTT.tif`` + ``res_track.txt``)."""
    return _write(path, data, meta, "")
