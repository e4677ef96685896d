"""Model files: a state dict plus a metadata dict, loadable with ``torch.load(weights_only=True)``.

A model file never needs pickle of arbitrary objects: it holds tensors, strings, numbers, lists and
dicts only. Loading goes through ``torch.load(..., weights_only=True)``, which refuses pickles that
would import or call anything else (a malicious file raises :class:`ValueError` here).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_hemd.models.affinity import AffinityNet
from napari_hemd.models.unet import UNet2d

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "HemdModel",
    "build_network",
    "load_model_file",
    "normalize_percentile",
    "rewrite_model_file",
    "round_to_half",
    "save_model_file",
]

logger = logging.getLogger(__name__)

FORMAT = "napari-hemd-model"
FORMAT_VERSION = 1

_NETWORKS = {"unet": UNet2d, "affinity": AffinityNet}

#: Default intensity normalisation: per frame, percentiles 1 and 99.8 map to 0 and 1.
DEFAULT_NORMALIZATION = {"method": "percentile", "low": 1.0, "high": 99.8}


def build_network(architecture: dict) -> nn.Module:
    """Instantiate a network from ``{"name": "unet" | "affinity", **constructor kwargs}``."""
    arch = dict(architecture)
    name = arch.pop("name", None)
    if name not in _NETWORKS:
        raise ValueError(f"architecture['name'] must be one of {sorted(_NETWORKS)}; got {name!r}")
    return _NETWORKS[name](**arch)


def normalize_percentile(
    image: np.ndarray, low: float = 1.0, high: float = 99.8, eps: float = 1e-6
) -> np.ndarray:
    """Map percentile ``low`` to 0 and ``high`` to 1 (no clipping); float32, same shape.

    Parameters
    ----------
    image : (..., Y, X) ndarray
        One frame or a stack; percentiles are taken per frame (over the last two axes).
    """
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [low, high], axis=(-2, -1), keepdims=True)
    return ((img - lo) / np.maximum(hi - lo, eps)).astype(np.float32)


@dataclass
class HemdModel:
    """A network together with everything needed to use it.

    Attributes
    ----------
    network : torch.nn.Module
        A :class:`~napari_hemd.models.unet.UNet2d` or an
        :class:`~napari_hemd.models.affinity.AffinityNet`.
    metadata : dict
        ``architecture`` (name + constructor kwargs), ``normalization``, ``offsets`` (affinity
        model), ``training`` (data, steps, seed, validation ...), ``version`` and free text.
    """

    network: nn.Module
    metadata: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"unet"`` or ``"affinity"``."""
        return self.metadata["architecture"]["name"]

    @property
    def normalization(self) -> dict:
        """Intensity normalisation applied per frame before the network."""
        return self.metadata.get("normalization", DEFAULT_NORMALIZATION)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Normalise frames ``(..., Y, X)`` as the network was trained."""
        norm = self.normalization
        if norm.get("method") != "percentile":
            raise ValueError(f"normalization method must be 'percentile'; got {norm!r}")
        return normalize_percentile(image, norm["low"], norm["high"])

    @classmethod
    def create(cls, kind: str, **architecture) -> HemdModel:
        """Create a freshly initialised model of ``kind`` (``"unet"`` or ``"affinity"``)."""
        arch = {"name": kind, **architecture}
        meta = {
            "architecture": arch,
            "normalization": dict(DEFAULT_NORMALIZATION),
            "version": _package_version(),
        }
        if kind == "affinity":
            from napari_hemd.models.affinity import DEFAULT_RANGES

            meta["ranges"] = list(DEFAULT_RANGES)
            meta["neighbourhood"] = 4
        return cls(build_network(arch), meta)


def _package_version() -> str:
    from napari_hemd import __version__

    return __version__


def save_model_file(model: HemdModel, path: str | os.PathLike, *, half: bool = False) -> Path:
    """Write ``model`` to ``path`` (state dict + metadata), atomically.

    Parameters
    ----------
    half : bool
        Store floating-point tensors as float16 (halves the size; loaded back as float32),
        except those with values float16 cannot hold (beyond +-65504, e.g. the running variance
        of a batch norm over large activations): they stay float32.
    """
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.network.state_dict().items()}
    if half:
        state = {k: _half(v) for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        # A JSON round trip keeps only plain types (str, numbers, lists, dicts), which is what
        # ``weights_only=True`` accepts and what can be shown to a user.
        "metadata": json.loads(json.dumps(model.metadata, default=_plain)),
        "state_dict": state,
        "sha256": weights_sha256(state),
    }
    save_atomically(payload, path)
    return path


def save_atomically(obj, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` through a hidden temporary, removed if it fails.

    Serialised in memory first (model files and checkpoints are a few MB): torch's own writer
    reported a full disk as ``RuntimeError: ... unexpected pos`` (a traceback, and its
    temporary left behind, audit 28); a plain file write raises ``OSError`` (ENOSPC), which
    the command line says in one line.
    """
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def round_to_half(model: HemdModel) -> HemdModel:
    """Round ``model``'s weights, in place, to what a ``half=True`` file stores and loads back.

    Each floating-point tensor goes through float16 and back (those float16 cannot hold stay
    as they are, see :func:`save_model_file`): the network then computes exactly what the file
    written from it will, so scores and calibration taken on it hold for the file.
    """
    net = model.network
    state = {k: _half(v).to(v.dtype) for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    return model


def _half(v: torch.Tensor) -> torch.Tensor:
    if not v.is_floating_point():
        return v
    h = v.half()
    overflow = torch.isfinite(v) & ~torch.isfinite(h)
    return v if bool(overflow.any()) else h


def rewrite_model_file(model: HemdModel, path: str | os.PathLike) -> Path:
    """Replace the model file at ``path`` with ``model`` in the precision the file has.

    For metadata updates (held-out scores, calibration): a float16 file stays float16.
    """
    stored = torch.load(path, weights_only=True)["state_dict"].values()
    half = any(v.dtype == torch.float16 for v in stored)
    return save_model_file(model, path, half=half)


def weights_sha256(state: dict) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes (in name order)."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"model metadata must hold plain values; got {type(obj).__name__}")


#: What a model is, for messages about a file that is not one.
_MODEL_HINT = (
    "a model is a shipped name (napari-hemd models) or a .pt file written by napari-hemd train "
    "or the plugin's fine-tuning"
)

#: Leading bytes of files people pass by mistake, and what to call them.
_MAGIC = (
    ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "a TIFF image"),
    ((b"\x89PNG",), "a PNG image"),
    ((b"\xff\xd8\xff",), "a JPEG image"),
    ((b"\x93NUMPY",), "a NumPy array (.npy)"),
    ((b"\x89HDF",), "an HDF5 file"),
)


def _file_kind(path: Path) -> str | None:
    """What ``path`` is, from its first bytes ("a TIFF image" ...); None: a pickle/PyTorch file."""
    if path.is_dir():
        return "a folder"
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "an empty file"
    for magics, what in _MAGIC:
        if head.startswith(magics):
            return what
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip, or another zip (.npz, .zip)
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (OSError, zipfile.BadZipFile):
            return "a damaged zip archive"
        if any(n.endswith("data.pkl") for n in names):
            return None
        if names and all(n.endswith(".npy") for n in names):
            return "a NumPy archive (.npz)"
        return "a zip archive"
    if head[:1] == b"\x80":  # pickle protocol 2+ (torch's legacy format too)
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "a file in no format napari-hemd knows"
    return "a text file"


def _not_a_model(label: str, exc: Exception, source: Path | None) -> ValueError:
    """The error for a file ``torch.load(weights_only=True)`` refused, in the user's terms.

    Never passes on PyTorch's own advice (to load with ``weights_only=False``, which would run
    whatever code the file holds).
    """
    what = None
    if source is not None:
        try:
            what = _file_kind(source)
        except OSError as err:
            what = f"unreadable ({err.strerror or type(err).__name__})"
    if what is None:
        if isinstance(exc, pickle.UnpicklingError):
            what = (
                "a PyTorch or pickle file holding Python objects other than tensors and plain "
                "values, which cannot be loaded safely (loading them could run code)"
            )
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            detail = f" ({type(exc).__name__}: {first})" if first and len(first) < 200 else ""
            what = f"a damaged or unreadable PyTorch file{detail}"
    return ValueError(f"{label} is not a napari-hemd model file: it is {what}; {_MODEL_HINT}")


def load_model_file(
    path: str | os.PathLike | io.BytesIO, *, device: str = "cpu", name: str | None = None
) -> HemdModel:
    """Load a model file written by :func:`save_model_file` without unpickling code.

    Parameters
    ----------
    name : str, optional
        The argument the file was given as (``"--model"``), to name it in messages.

    Raises
    ------
    ValueError
        If the file is not a napari-hemd model (including pickles that ``weights_only=True``
        refuses: they could run code); the message says what the file is instead.
    FileNotFoundError
        If ``path`` does not exist.
    """
    source = None if isinstance(path, io.BytesIO) else Path(path)
    shown = "the model buffer" if source is None else repr(str(source))
    label = f"{name}: {shown}" if name else f"model file {shown}"
    if source is not None and not source.exists():
        raise FileNotFoundError(f"{label} does not exist")
    try:
        with warnings.catch_warnings():  # torch's note on a pickle protocol it may not support
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, zip errors, KeyError ...
        raise _not_a_model(label, exc, source) from None
    if isinstance(payload, dict) and {"network", "optimizer", "step"} <= set(payload):
        raise ValueError(
            f"{label} is not a napari-hemd model file: it is a training checkpoint (napari-hemd "
            "train writes MODEL.pt.ckpt while it trains); give the model file MODEL.pt, or "
            "continue the training with train --resume"
        )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{label} is not a napari-hemd model file: it is a PyTorch file holding a "
            f"{type(payload).__name__} without format={FORMAT!r}; {_MODEL_HINT}"
        )
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(
            f"{label} is not a napari-hemd model file this version can read: its format_version "
            f"is {version!r} (expected an integer up to {FORMAT_VERSION})"
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{label} has format_version {version}, written by a newer napari-hemd; this one "
            f"reads up to {FORMAT_VERSION}: update napari-hemd (pip install -U napari-hemd)"
        )
    missing = [k for k in ("metadata", "state_dict", "sha256") if k not in payload]
    if missing:
        raise ValueError(
            f"{label} is incomplete: it has no {' and no '.join(missing)} (every model file "
            "napari-hemd writes has metadata, state_dict and sha256); train or download it again"
        )
    meta, state = payload["metadata"], payload["state_dict"]
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("architecture"), dict)
        or not isinstance(state, dict)
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise ValueError(
            f"{label} is damaged: its metadata (a dict with an architecture) or its state_dict "
            "(tensors) is not what a napari-hemd model file holds; train or download it again"
        )
    if weights_sha256(state) != payload["sha256"]:
        raise ValueError(
            f"{label} is damaged: its weights do not match the SHA-256 stored "
            "in it (a changed or corrupted file); download or train it again"
        )
    arch = meta["architecture"]
    try:
        network = build_network(arch)
    except (TypeError, ValueError, KeyError) as exc:  # an argument this version lacks ...
        raise ValueError(
            f"{label} describes a network this napari-hemd cannot build ({exc}); it may come "
            "from a newer version: update napari-hemd"
        ) from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:  # missing / unexpected keys, other shapes
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise ValueError(
            f"{label} is damaged: its weights do not fit the {arch.get('name')} network its "
            f"metadata describes ({first[0].strip()[:200]}); train or download it again"
        ) from None
    network.to(device).eval()
    logger.debug("loaded %s model from %s", meta["architecture"]["name"], shown)
    return HemdModel(network, meta)
