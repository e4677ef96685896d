"""Tiled, batched prediction of probability maps, affinities, embeddings and instances.

Every frame is normalised as a whole (percentiles inside the model wrapper, never per tile), padded
by reflection with a context margin, cut into equal tiles whose cores tile the frame and whose
halos overlap their neighbours; only the cores are kept, so tiles agree with the untiled
prediction up to what the network sees beyond the halo. Tiles of several frames go through the
network together (batched over time) under ``torch.inference_mode()``. Frames are read one at a
time, so zarr / dask inputs stay lazy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from napari_hemd.models._allocator import heap_allocation
from napari_hemd.models.affinity import make_offsets, self_correlation
from napari_hemd.models.weights import HemdModel

__all__ = [
    "OUTPUTS",
    "SCALE_RANGE",
    "TTA_VIEWS",
    "VOLUME_OUTPUTS",
    "check_scale_planes",
    "iter_predict",
    "model_offsets",
    "model_scale",
    "predict",
    "predict_volume",
    "predict_volume_workflow",
    "resolve_planes",
    "resolve_tiling",
    "scaled_shape",
    "volume_settings",
]

logger = logging.getLogger(__name__)

#: Outputs ``predict`` can produce. Per frame: foreground/boundary/background ``(Y, X)`` float32,
#: affinities ``(N, Y, X)`` float32, embeddings ``(D, Y, X)`` float32, instances ``(Y, X)`` int32.
OUTPUTS = ("foreground", "boundary", "background", "affinities", "embeddings", "instances")
_AFFINITY_ONLY = ("affinities", "embeddings", "instances")

#: ``tile=None``: frames up to this many pixels run as one tile (the network's activations for a
#: 4-megapixel frame, depth-4 U-Net with 16 base channels, take ~1.5 GB in float32).
AUTO_TILE_PIXELS = 4_194_304
#: ``tile=None`` on larger frames: tile cores of this side, with ``halo=None`` -> 64 px of context.
AUTO_TILE = 1024
#: ``halo=None`` on a frame that runs as one tile: reflection margin around the frame (pixels,
#: rounded up to the network's divisor). Enough that the border pixels see mirrored context, as
#: training patches near an image border did; the 64 px tile halo would cost 20-50 % more pixels.
AUTO_EDGE = 16


#: ``tta``: the views of a tile whose class probabilities are averaged, as (flipped axes, transpose):
#: 1 the tile itself, 2 with its left-right mirror, 4 every mirror, 8 every mirror of the tile and
#: of its transpose (the 8 symmetries of a square). The U-Net is not exactly equivariant to them,
#: so the views disagree most where the network is unsure (dim nuclei, contacts); averaging
#: smooths those parts of the maps (models.md, "Test-time flips").
TTA_VIEWS = {
    1: (((), False),),
    2: (((), False), ((-1,), False)),
    4: (((), False), ((-1,), False), ((-2,), False), ((-2, -1), False)),
    8: tuple((f, t) for t in (False, True) for f in ((), (-1,), (-2,), (-2, -1))),
}


def model_tta(model: HemdModel) -> int:
    """The test-time flips ``model`` is used with unless told otherwise (``tta=None``).

    A U-Net's calibration records ``metadata["tta"]``: 4 views when they raised its masks'
    score on its own training frames by at least ``evaluation.TTA_MARGIN``
    (``calibrate_tta``), else 1. Every other model (affinity networks, files calibrated before
    this existed): 1.
    """
    value = model.metadata.get("tta", 1)
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if model.kind != "unet" or not ok or int(value) not in TTA_VIEWS:
        return 1
    return int(value)


def tta_recorded(tta: int, model: HemdModel) -> bool:
    """Whether a run with ``tta`` flips records them (not one view, or not the model's own).

    Repeating a run from its record (:func:`model_tta` fills in what it leaves out) then
    repeats its flips.
    """
    return tta != 1 or tta != model_tta(model)


def _check_tta(tta, model: HemdModel) -> int:
    """``tta`` as an int of :data:`TTA_VIEWS`, or a ValueError naming it; ``None``: the model's."""
    if tta is None:
        return model_tta(model)
    if isinstance(tta, bool) or not isinstance(tta, (int, np.integer)) or int(tta) not in TTA_VIEWS:
        raise ValueError(f"tta must be one of {sorted(TTA_VIEWS)} (views averaged); got {tta!r}")
    if int(tta) > 1 and model.kind != "unet":
        raise ValueError(
            f"tta={tta} needs a U-Net model (the affinity network's embeddings of flipped views "
            f"cannot be averaged); got a model of kind {model.kind!r}"
        )
    return int(tta)


#: ``scale``: the smallest and largest zoom of the frames before the network.
SCALE_RANGE = (0.1, 10.0)


def model_scale(model: HemdModel) -> float:
    """The zoom ``model`` sees frames at unless told otherwise (``scale=None``).

    A model trained or fine-tuned on frames zoomed by S (``train --scale S``, the Fine-tune
    widget on labels segmented at zoom S) records ``metadata["scale"] = S``: its object sizes,
    whole-cell growth and minimum size are those of the zoomed frames, so that is the zoom it is
    used at. Files fine-tuned in the plugin before ``scale`` was recorded give their
    ``metadata["fine_tuned"]["scale"]``; every other model 1.
    """
    meta = model.metadata
    value = meta["scale"] if "scale" in meta else (meta.get("fine_tuned") or {}).get("scale", 1.0)
    return recorded_scale({"scale": value})


def _check_scale(scale, model: HemdModel) -> float:
    """``scale`` as a float, or a ValueError naming it (U-Nets only when it is not 1).

    ``None``: the model's own zoom (:func:`model_scale`).
    """
    if scale is None:
        return model_scale(model)
    lo, hi = SCALE_RANGE
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise ValueError(f"scale must be a number between {lo:g} and {hi:g}; got {scale!r}")
    value = float(scale)
    if not (lo <= value <= hi):  # NaN fails too
        raise ValueError(f"scale must be a number between {lo:g} and {hi:g}; got {scale!r}")
    if value != 1.0 and model.kind != "unet":
        raise ValueError(
            f"scale={scale} needs a U-Net model (the affinity network's offsets are in its "
            f"training pixels); got a model of kind {model.kind!r}"
        )
    return value


def recorded_scale(params) -> float:
    """The zoom recorded in a run's parameters (``params["scale"]``), else 1.

    1 also when the value is not a zoom (``"auto"``, a bool, <= 0).
    """
    value = (params or {}).get("scale", 1.0)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return float(value) if ok else 1.0


def check_scale_planes(scale, planes: int) -> None:
    """Refuse a zoom (a number other than 1, or ``"auto"``) for a stack predicted on 3 planes."""
    if planes == 3 and scale != 1:
        raise ValueError(
            f"scale={scale} applies to frames or z-slices (planes=1); a stack predicted on 3 "
            "planes takes its voxel shape from z_scale"
        )


def scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """``(Y, X)`` of a frame of ``shape[-2:]`` zoomed by ``scale`` (at least one pixel)."""
    return tuple(max(1, round(int(v) * scale)) for v in shape[-2:])


def _resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(Y, X)`` or ``(C, Y, X)`` float32 resized to ``size`` (linear; averaging when shrinking)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    x = x[None, None] if x.ndim == 2 else x[None]
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    with torch.inference_mode():
        y = torch.nn.functional.interpolate(
            x, size=size, mode="bilinear", align_corners=False, antialias=shrink
        )
    return y[0, 0].numpy() if maps.ndim == 2 else y[0].numpy()


#: ``batch_size=None``: tiles per forward pass so that a batch holds about this many input pixels
#: (on a CPU batching gains little; small batches keep memory flat and Cancel quick).
AUTO_BATCH_PIXELS = 1_048_576


def resolve_tiling(
    shape: tuple[int, ...], tile: int | None, halo: int | None, divisor: int
) -> tuple[int, int]:
    """``(tile, halo)`` for frames of ``shape[-2:]``: ``None`` picks sizes from the frame.

    A frame of at most :data:`AUTO_TILE_PIXELS` runs as one tile with a thin reflected margin
    (:data:`AUTO_EDGE`); a larger one as :data:`AUTO_TILE` tiles with a 64 px halo.
    """
    if tile is not None and int(tile) < 0:
        raise ValueError(
            f"tile must be 0 (untiled) or a positive multiple of {divisor}; got {tile}"
        )
    h, w = (int(v) for v in shape[-2:])
    one = tile == 0 or (tile is None and h * w <= AUTO_TILE_PIXELS)
    if tile is None:
        tile = 0 if one else AUTO_TILE
    if halo is None:
        halo = -(-AUTO_EDGE // divisor) * divisor if one else 64
    tile, halo = int(tile), int(halo)
    if 0 < tile < halo:  # the context would dwarf the tile: 16 px tiles ran 9-43x slower
        raise ValueError(
            f"tile {tile} is smaller than its halo ({halo} px of context on each side): each "
            f"tile would predict {(tile + 2 * halo) ** 2 / tile**2:.0f}x its own pixels; give a "
            f"tile of at least {halo} px, or 0 (untiled; the default sizes tiles to the frame)"
        )
    return tile, halo


def _check_outputs(model: HemdModel, outputs: Sequence[str]) -> tuple[str, ...]:
    outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)  # one name: itself
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad or not outputs:
        raise ValueError(f"outputs must be a non-empty subset of {OUTPUTS}; got {list(outputs)}")
    if model.kind == "unet":
        wrong = [o for o in outputs if o in _AFFINITY_ONLY]
        if wrong:
            raise ValueError(
                f"outputs {wrong} need an affinity model; this model is a U-Net (it gives "
                "foreground, boundary, background)"
            )
    return outputs


def _pad(frame: np.ndarray, before: tuple[int, int], after: tuple[int, int]) -> np.ndarray:
    pads = ((before[0], after[0]), (before[1], after[1]))
    if all(b < s and a < s for (b, a), s in zip(pads, frame.shape, strict=True)):
        return np.pad(frame, pads, mode="reflect")
    return np.pad(frame, pads, mode="symmetric" if min(frame.shape) > 1 else "edge")


def _tiles(shape: tuple[int, int], core: int, halo: int, divisor: int):
    """Padded-frame geometry: (padded frame pads, tile input size, list of core origins)."""
    h, w = shape
    if core <= 0 or max(h, w) <= core:
        # One tile: the frame itself with the context margin, rounded up to the divisor.
        th = -(-(h + 2 * halo) // divisor) * divisor
        tw = -(-(w + 2 * halo) // divisor) * divisor
        return (
            (halo, halo),
            (th - h - halo, tw - w - halo),
            (th, tw),
            (th - 2 * halo, tw - 2 * halo),
            [(0, 0)],
        )
    ny, nx = -(-h // core), -(-w // core)
    after = (halo + ny * core - h, halo + nx * core - w)
    origins = [(i * core, j * core) for i in range(ny) for j in range(nx)]
    return (halo, halo), after, (core + 2 * halo, core + 2 * halo), (core, core), origins


@torch.inference_mode()
def _run_tiles(
    model: HemdModel, batch: list[np.ndarray], device: torch.device, tta: int = 1
) -> np.ndarray:
    x = torch.from_numpy(np.stack(batch)[:, None]).to(device)
    if model.kind == "unet":
        out = None
        for dims, transpose in TTA_VIEWS[tta]:
            v = x.flip(dims) if dims else x
            if transpose:
                v = v.transpose(-2, -1)
            p = torch.softmax(model.network(v).float(), dim=1)
            if transpose:
                p = p.transpose(-2, -1)
            if dims:
                p = p.flip(dims)
            out = p if out is None else out.add_(p)
        if tta > 1:
            out /= tta
    else:
        res = model.network(x)
        emb = torch.nn.functional.normalize(res["embedding"].float(), dim=1, eps=1e-6)
        out = torch.cat([torch.sigmoid(res["foreground"].float()), emb], dim=1)
    return out.cpu().numpy()


def _check_finite(frame: np.ndarray, t: int) -> None:
    """Refuse NaN / inf (one of them would turn the whole normalised frame into NaN)."""
    frame = np.asarray(frame)
    if frame.dtype.kind in "fc" and not np.isfinite(frame).all():
        y, x = (int(v) for v in np.argwhere(~np.isfinite(frame))[0][-2:])
        n = int((~np.isfinite(frame)).sum())
        raise ValueError(
            f"image frame {t} has {n} non-finite value(s) ({frame[y, x]} at pixel y={y}, x={x}); "
            "replace them (e.g. numpy.nan_to_num) before predicting"
        )


def _check_grey_array(image) -> None:
    """Refuse what is not an array of grey values: a path, None, a colour image (Y, X, 3)."""
    if not hasattr(image, "shape"):
        hint = " (read it first: tifffile.imread)" if isinstance(image, str | os.PathLike) else ""
        raise TypeError(
            f"image must be an array (numpy, zarr or dask) of grey values; got "
            f"{type(image).__name__}{hint}"
        )
    shape = tuple(image.shape)
    if len(shape) >= 3 and shape[-1] in (3, 4):  # else its rows would be frames 3 px wide
        raise ValueError(
            f"image of shape {shape} has {shape[-1]} values on its last axis, as an RGB(A) colour "
            "image has; the models take one grey value per pixel: pass one channel "
            "(image[..., c]) or a grey image (image.mean(axis=-1))"
        )


def _frames(image) -> tuple[int, Callable[[int], np.ndarray], bool]:
    shape = tuple(image.shape)
    if len(shape) >= 2 and 0 in shape[-2:]:  # nothing to normalise or predict
        raise ValueError(f"image is empty: frames of {shape[-2]} x {shape[-1]} pixels")

    def real(frame) -> np.ndarray:  # complex: the imaginary part would be dropped (warned)
        frame = np.asarray(frame)
        if frame.dtype.kind in "cOSUV":
            raise ValueError(f"image must hold real grey values; got dtype {frame.dtype}")
        return frame

    if len(shape) == 2:
        return 1, lambda t: real(image), True
    if len(shape) == 3:
        return shape[0], lambda t: real(image[t]), False
    raise ValueError(f"image must be (Y, X) or (T, Y, X); got shape {shape}")


class FrameStacks:
    """Per-output ``(n, ...)`` arrays filled frame by frame as prediction yields them.

    Written in place, so a movie's maps exist once (a list of frames stacked at the end holds them
    twice at its peak). Maps are float32, ``instances`` keep their integer dtype.
    """

    def __init__(self, n_frames: int) -> None:
        self.n_frames = int(n_frames)
        self.arrays: dict[str, np.ndarray] = {}
        self.done = 0

    def put(self, t: int, maps: dict[str, np.ndarray]) -> None:
        for k, v in maps.items():
            v = np.asarray(v)
            if k not in self.arrays:
                dtype = v.dtype if k == "instances" else np.float32
                self.arrays[k] = np.empty((self.n_frames, *v.shape), dtype=dtype)
            self.arrays[k][t] = v
        self.done = t + 1


def _resolve_model(model) -> HemdModel:
    if isinstance(model, HemdModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        from napari_hemd.models.registry import load_model

        return load_model(model)
    raise TypeError(
        f"model must be a HemdModel, a shipped model name or a model file path; "
        f"got {type(model).__name__}"
    )


def iter_predict(
    model: HemdModel | str | os.PathLike,
    image,
    *,
    outputs: Sequence[str] = ("foreground",),
    tile: int | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    ranges: Sequence[int] | None = None,
    neighbourhood: int | None = None,
    min_size: int = 30,
    threshold: float = 0.5,
    tta: int | None = None,
    scale: float | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(t, {output: array})`` frame by frame (see :func:`predict` for the parameters).

    ``cancel``: called between batches of tiles; when it returns True the iteration stops early
    (the caller decides what a partial run means).
    """
    model = _resolve_model(model)
    outputs = _check_outputs(model, outputs)
    tta = _check_tta(tta, model)
    scale = _check_scale(scale, model)
    n_frames, read, _ = _frames(image)
    divisor = model.network.divisor
    seen = scaled_shape(tuple(image.shape), scale)  # what the network sees of each frame
    tile, halo = resolve_tiling(seen, tile, halo, divisor)
    if tile > 0 and tile % divisor:
        raise ValueError(f"tile must be a multiple of {divisor} (or 0: untiled); got {tile}")
    if halo < 0 or halo % divisor:
        raise ValueError(f"halo must be a non-negative multiple of {divisor}; got {halo}")
    if batch_size is None:
        th = tile + 2 * halo if tile else seen[0] + 2 * halo
        tw = tile + 2 * halo if tile else seen[1] + 2 * halo
        batch_size = int(min(8, max(1, AUTO_BATCH_PIXELS // max(1, th * tw))))
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1 tile; got {batch_size}")
    if n_frames == 0:
        raise ValueError(f"image has no frames (shape {tuple(image.shape)})")
    if device is None:
        dev = next(model.network.parameters()).device
    else:
        from napari_hemd.models.training import pick_device

        dev = pick_device(device)
    model.network.to(dev).eval()
    offsets = model_offsets(model, ranges, neighbourhood) if model.kind == "affinity" else None
    # No inference_mode() around the loop: a generator would hold that thread-local mode
    # across its yields (into the caller's code, or into another thread when it is closed
    # from there); the forward passes below enter it themselves.
    # On a CPU, freed activations stay on the heap for the next batch (models/_allocator.py).
    with heap_allocation(dev):
        queue: list[tuple[int, int, int, np.ndarray]] = []  # (frame, y, x, tile input)
        maps: dict[int, np.ndarray] = {}  # stitched network outputs per frame
        todo: dict[int, int] = {}  # tiles still missing per frame
        geometry: dict[int, tuple] = {}
        next_out = 0
        for t in range(n_frames):
            raw = read(t)
            _check_finite(raw, t)
            frame = model.normalize(raw.astype(np.float32, copy=False))
            if frame.ndim != 2:
                raise ValueError(f"frame {t} must be 2D (Y, X); got shape {frame.shape}")
            size = frame.shape
            if scale != 1.0:  # the network sees the frame zoomed; its maps come back at size
                frame = _resize(frame, scaled_shape(size, scale))
            before, after, tshape, cshape, origins = _tiles(frame.shape, tile, halo, divisor)
            padded = _pad(frame, before, after)
            geometry[t] = (frame.shape, cshape, size)
            todo[t] = len(origins)
            for y, x in origins:
                queue.append((t, y, x, padded[y : y + tshape[0], x : x + tshape[1]]))
            # Run full batches (the last frame flushes the rest), then emit finished frames.
            while len(queue) >= batch_size or (t == n_frames - 1 and queue):
                if cancel is not None and cancel():
                    return  # checked between batches of tiles: a Cancel takes effect quickly
                chunk, queue = queue[:batch_size], queue[batch_size:]
                out = _run_tiles(model, [c[3] for c in chunk], dev, tta)
                for (ti, y, x, _), o in zip(chunk, out, strict=True):
                    shape, (ch, cw), _ = geometry[ti]
                    if ti not in maps:
                        maps[ti] = np.zeros((o.shape[0], *shape), dtype=np.float32)
                    yy, xx = min(ch, shape[0] - y), min(cw, shape[1] - x)
                    maps[ti][:, y : y + yy, x : x + xx] = o[:, halo : halo + yy, halo : halo + xx]
                    todo[ti] -= 1
            while next_out <= t and todo.get(next_out) == 0:
                size = geometry.pop(next_out)[2]
                del todo[next_out]
                stitched = _resize(maps.pop(next_out), size)
                yield (
                    next_out,
                    _outputs_from_maps(model, stitched, outputs, offsets, min_size, threshold),
                )
                next_out += 1


def model_offsets(
    model: HemdModel, ranges: Sequence[int] | None = None, neighbourhood: int | None = None
) -> list[tuple[int, ...]]:
    """The ``(dy, dx)`` offsets of an affinity model's channels.

    The ones it was trained with, or those of ``ranges`` / ``neighbourhood`` given at inference
    (:func:`~napari_hemd.models.affinity.make_offsets`).
    """
    return make_offsets(
        ranges or model.metadata.get("ranges", (1, 3, 5, 9, 27)),
        neighbourhood or model.metadata.get("neighbourhood", 4),
    )


def _outputs_from_maps(
    model: HemdModel,
    maps: np.ndarray,
    outputs: Sequence[str],
    offsets,
    min_size: int,
    threshold: float,
) -> dict[str, np.ndarray]:
    res: dict[str, np.ndarray] = {}
    if model.kind == "unet":
        for i, name in enumerate(("foreground", "boundary", "background")):
            if name in outputs:
                res[name] = maps[i]
        return res
    fg, emb = maps[0], maps[1:]
    if "foreground" in outputs:
        res["foreground"] = fg
    if "background" in outputs:
        res["background"] = 1.0 - fg
    if "embeddings" in outputs:
        res["embeddings"] = emb
    need_affs = {"affinities", "instances"} & set(outputs)
    if need_affs or "boundary" in outputs:
        with torch.inference_mode():
            e = torch.from_numpy(emb)[None]
            if need_affs:
                affs = self_correlation(e, offsets)[0][0].clamp_(0, 1).numpy()
            if "boundary" in outputs:
                res["boundary"] = _boundary_from_embeddings(e)
        if "affinities" in outputs:
            res["affinities"] = affs
        if "instances" in outputs:
            from napari_hemd.models.mutex import mutex_watershed_labels

            res["instances"] = mutex_watershed_labels(
                affs,
                offsets,
                foreground=fg,
                threshold=threshold,
                min_size=min_size,
                bias=float(model.metadata.get("mutex_bias", 0.0)),
            )
    return res


def _boundary_from_embeddings(emb: torch.Tensor) -> np.ndarray:
    """1 - min cosine affinity to the 4 direct neighbours (both sides of each axis), in [0, 1]."""
    offs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    aff, valid = self_correlation(emb, offs)
    aff = torch.where(valid[None], aff.clamp(0, 1), torch.ones_like(aff))
    return (1.0 - aff.min(dim=1).values[0]).numpy().astype(np.float32)


def predict(
    model: HemdModel | str | os.PathLike,
    image,
    *,
    outputs: Sequence[str] = ("foreground",),
    tile: int | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    ranges: Sequence[int] | None = None,
    neighbourhood: int | None = None,
    min_size: int = 30,
    threshold: float = 0.5,
    tta: int | None = None,
    scale: float | None = None,
) -> dict[str, np.ndarray]:
    """Predict maps (and, for the affinity model, instances) for a frame or a time-lapse.

    Parameters
    ----------
    model : HemdModel, str or path
        A model (:func:`napari_hemd.models.load_model`, :func:`train_model`), the name of a shipped
        model or a model file.
    image : (Y, X) or (T, Y, X) array-like
        Raw intensities (any dtype; normalised per frame inside). numpy, zarr or dask: frames are
        read one at a time.
    outputs : sequence of str
        Subset of :data:`OUTPUTS`. U-Nets give foreground, boundary, background (softmax);
        affinity models all of them (foreground from the foreground head, boundary = 1 - min of the
        unit-range affinities, instances from the Mutex watershed).
    tile : int, optional
        Core tile side (multiple of the network divisor); 0 or a frame smaller than ``tile``:
        untiled. Default (None): one tile when the frame has at most
        :data:`AUTO_TILE_PIXELS` pixels, else :data:`AUTO_TILE` (:func:`resolve_tiling`).
    halo : int, optional
        Context added on each side of a tile (overlap of neighbouring tiles is ``2 * halo``).
        Default (None): :data:`AUTO_EDGE` for one tile, else 64.
    batch_size : int, optional
        Tiles per forward pass (tiles of consecutive frames are batched together). Default:
        about :data:`AUTO_BATCH_PIXELS` input pixels per batch (1 to 8 tiles).
    device : str or torch.device, optional
        Default: where the model is.
    ranges, neighbourhood : optional
        Affinity offsets at inference (default: those the model was trained with).
    min_size : int
        Instances smaller than this are merged (affinity model, ``instances``).
    threshold : float
        Foreground threshold for ``instances``.
    tta : {1, 2, 4, 8}
        Test-time flips (U-Nets): average the class probabilities of this many mirrored views of
        every tile (:data:`TTA_VIEWS`); costs ``tta`` times the forward passes; 1: off.
        Default (None): the model's own (:func:`model_tta`: 4 for the shipped models whose
        calibration found them worth their time, docs/models.md, "Test-time flips").
    scale : float
        U-Nets: zoom each frame by this factor (linear; averaged when shrinking) before the
        network, and its maps back to the frame's size. For objects of another size than the
        model's training objects (``napari-hemd models`` lists them): 0.5 when yours are twice
        as large; 1: as it is. Default (None): the model's own zoom, 1 but for a model trained
        or fine-tuned at another (:func:`model_scale`).

    Returns
    -------
    dict
        ``output -> array`` with a leading T axis when ``image`` is 3D: ``(T, Y, X)`` maps,
        ``(T, N, Y, X)`` affinities, ``(T, D, Y, X)`` embeddings, ``(T, Y, X)`` int32 instances.

    Examples
    --------
    >>> from napari_hemd.models import predict  # doctest: +SKIP
    >>> fg = predict("nuclei-fluo", frames)["foreground"]  # doctest: +SKIP
    """
    _check_grey_array(image)
    n_frames, _, single = _frames(image)
    stacks = FrameStacks(n_frames)
    for t, res in iter_predict(
        model,
        image,
        outputs=outputs,
        tile=tile,
        halo=halo,
        batch_size=batch_size,
        device=device,
        ranges=ranges,
        neighbourhood=neighbourhood,
        min_size=min_size,
        threshold=threshold,
        tta=tta,
        scale=scale,
    ):
        stacks.put(t, res)
    if single:
        return {k: v[0] for k, v in stacks.arrays.items()}
    return stacks.arrays


# ------------------------------------------------------------------------ tri-planar volumes
#: Outputs a tri-planar prediction can average (a U-Net's class probabilities).
VOLUME_OUTPUTS = ("foreground", "boundary", "background")


def volume_settings(model: HemdModel) -> dict:
    """A model's tri-planar defaults: ``{"planes": 1 or 3, "z_scale": float, "z_weight": float}``.

    ``metadata["volume"]`` of the model file (the 3D model: 3 planes, the z step of its training
    volume over its pixel width, weight 0.5 for the slices' own plane); other models: 1 plane.
    """
    stored = dict(model.metadata.get("volume", {}))
    return {
        "planes": int(stored.get("planes", 1)),
        "z_scale": float(stored.get("z_scale", 1.0)),
        "z_weight": float(stored.get("z_weight", 0.5)),
    }


def resolve_planes(model, planes: int | None, shape: tuple) -> int:
    """1 or 3 prediction planes for ``shape``: ``planes`` or the model's default.

    Tri-planar prediction needs a ``(Z, Y, X)`` stack of two or more slices and a U-Net; a
    model's default of 3 gives way to 1 on a single 2D frame.
    """
    if planes is None:
        planes = volume_settings(model)["planes"]
        if len(shape) != 3 or shape[0] < 2 or model.kind != "unet":
            return 1
    if planes not in (1, 3):
        raise ValueError(f"planes must be 1 (z-slices) or 3 (z, y and x-slices); got {planes!r}")
    if planes == 3 and (len(shape) != 3 or shape[0] < 2):
        raise ValueError(f"planes=3 needs a (Z, Y, X) stack of 2 or more slices; got shape {shape}")
    return planes


class _Resliced:
    """Slices of a volume across ``axis`` (1: Y, 2: X), its z axis stretched by ``z_scale``.

    Read one slice at a time (an array-like for :func:`iter_predict`): slice ``i`` is
    ``volume[:, i, :]`` or ``volume[:, :, i]``, ``(Z, B)`` resized to ``(round(Z * z_scale), B)``
    with linear interpolation, so that its pixels have the shape of the slices the 2D network was
    trained on.
    """

    def __init__(self, volume: np.ndarray, axis: int, z_scale: float):
        self.volume, self.axis = volume, axis
        z = volume.shape[0]
        self.other = volume.shape[3 - axis]
        self.height = max(1, round(z * z_scale))
        self.shape = (volume.shape[axis], self.height, self.other)

    def __getitem__(self, i: int) -> np.ndarray:
        from skimage.transform import resize

        plane = self.volume[:, i, :] if self.axis == 1 else self.volume[:, :, i]
        return resize(
            plane.astype(np.float32, copy=False),
            (self.height, self.other),
            order=1,
            preserve_range=True,
            anti_aliasing=False,
        ).astype(np.float32, copy=False)


def predict_volume_workflow(
    model: HemdModel | str | os.PathLike,
    volume,
    *,
    outputs: Sequence[str] = ("foreground",),
    z_scale: float | None = None,
    z_weight: float | None = None,
    tile: int | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    tta: int | None = None,
    cancel: Callable[[], bool] | None = None,
):
    """Tri-planar prediction of a ``(Z, Y, X)`` stack with a 2D U-Net (a generator).

    The network runs on the stack's z-slices and on its y- and x-slices (each a ``(Z, B)`` plane
    whose z axis is stretched by ``z_scale`` to the network's pixel size, then shrunk back); the
    class probabilities are averaged, the z-slices with weight ``z_weight`` and the two other
    planes sharing the rest. A network trained on 2D slices sees each nucleus from three sides,
    so a nucleus cut at its cap in one plane is whole in the others.

    Parameters
    ----------
    model : HemdModel, str or path
        A U-Net (affinities depend on direction and are not averaged).
    volume : (Z, Y, X) array-like
        Raw intensities; read into memory (the three passes need the whole stack).
    outputs : sequence of str
        Subset of :data:`VOLUME_OUTPUTS`.
    z_scale : float, optional
        Voxel depth over pixel width of ``volume`` (``> 0``); default: the model's
        (:func:`volume_settings`, the training volume's).
    z_weight : float, optional
        Weight in ``[0, 1]`` of the z-slices' prediction; default: the model's (0.5).
    tile, halo, batch_size, device, tta, cancel
        As for :func:`iter_predict` (``cancel`` is checked between batches of tiles).

    Yields
    ------
    ("predict", done, total)
        2D slices predicted, of ``Z + Y + X``.

    Returns
    -------
    dict or None
        ``output -> (Z, Y, X) float32``; None when cancelled.
    """
    model = _resolve_model(model)
    if model.kind != "unet":
        raise ValueError(
            f"model must be a U-Net for tri-planar prediction; got model kind {model.kind!r}"
        )
    outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)  # one name: itself
    bad = [o for o in outputs if o not in VOLUME_OUTPUTS]
    if bad or not outputs:
        raise ValueError(f"outputs must be a subset of {VOLUME_OUTPUTS}; got {outputs}")
    shape = tuple(getattr(volume, "shape", ()))
    if len(shape) != 3:
        raise ValueError(f"volume must be a (Z, Y, X) stack; got shape {shape}")
    settings = volume_settings(model)
    z_scale = settings["z_scale"] if z_scale is None else float(z_scale)
    z_weight = settings["z_weight"] if z_weight is None else float(z_weight)
    if not np.isfinite(z_scale) or z_scale <= 0:
        raise ValueError(f"z_scale must be a voxel depth / pixel width > 0; got {z_scale}")
    if not 0.0 <= z_weight <= 1.0:
        raise ValueError(f"z_weight must be in [0, 1]; got {z_weight}")
    from skimage.transform import resize

    vol = np.asarray(volume)
    total = sum(shape)
    done = 0
    # no zoom on three planes (z_scale sets the voxel shape), also for a model used at one
    kw = dict(outputs=outputs, tile=tile, halo=halo, batch_size=batch_size, device=device, tta=tta,
              scale=1.0)  # fmt: skip
    acc = {k: np.zeros(shape, np.float32) for k in outputs}
    yield ("predict", 0, total)
    for t, res in iter_predict(model, vol, cancel=cancel, **kw):
        for k in outputs:
            acc[k][t] = z_weight * res[k]
        done += 1
        yield ("predict", done, total)
    if done < shape[0]:
        return None
    other = (1.0 - z_weight) / 2.0
    for axis in (1, 2):
        planes = _Resliced(vol, axis, z_scale)
        n = 0
        for i, res in iter_predict(model, planes, cancel=cancel, **kw):
            for k in outputs:
                back = resize(
                    res[k], (shape[0], planes.other), order=1, preserve_range=True
                ).astype(np.float32, copy=False)
                if axis == 1:
                    acc[k][:, i, :] += other * back
                else:
                    acc[k][:, :, i] += other * back
            n += 1
            done += 1
            yield ("predict", done, total)
        if n < shape[axis]:
            return None
    return acc


def predict_volume(
    model: HemdModel | str | os.PathLike, volume, *, outputs=("foreground",), **kwargs
) -> dict[str, np.ndarray]:
    """Tri-planar prediction of a ``(Z, Y, X)`` stack (see :func:`predict_volume_workflow`).

    Examples
    --------
    >>> from napari_hemd.models import predict_volume  # doctest: +SKIP
    >>> fg = predict_volume("nuclei-3d", stack, z_scale=2.2)["foreground"]  # doctest: +SKIP
    """
    gen = predict_volume_workflow(model, volume, outputs=outputs, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
