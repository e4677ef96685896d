"""The shipped models' catalogue: names, kinds, weight files, what each was trained on.

Imports no torch (``napari_hemd.models`` does): the widgets list the models, and choose among
them, before any model is used; :mod:`napari_hemd.models.registry` loads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

__all__ = ["SHIPPED_MODELS", "ShippedModel", "list_models", "model_path", "torch_installed"]

_WEIGHTS = Path(__file__).parent / "models" / "weights"


@dataclass(frozen=True)
class ShippedModel:
    """A model that comes with the package.

    Attributes
    ----------
    name : str
    kind : {"unet", "affinity"}
    filename : str
        File in ``napari_hemd/models/weights/``.
    trained_on : str
        Data and masks it was trained on.
    description : str
    """

    name: str
    kind: str
    filename: str
    trained_on: str
    description: str


SHIPPED_MODELS: dict[str, ShippedModel] = {
    m.name: m
    for m in (
        ShippedModel(
            "nuclei-fluo",
            "unet",
            "nuclei-fluo.pt",
            "Fluo-N2DH-SIM+ 02 (GT, frames 0-39) + Fluo-N2DL-HeLa 01 (ST, frames 0-72); started "
            "from a model that also saw BBBC039 (24 of 30 images)",
            "fluorescent nuclei in time-lapses: whole-cell foreground / contact / background U-Net",
        ),
        ShippedModel(
            "cells-phc",
            "unet",
            "cells-phc.pt",
            "PhC-C2DL-PSC 01 (ST, frames 0-79 of 0-100)",
            "phase-contrast cells: whole-cell foreground / contact / background U-Net",
        ),
        ShippedModel(
            "cells-dic",
            "unet",
            "cells-dic.pt",
            "DIC-C2DH-HeLa 01 (ST, frames 0-29 and 42-83)",
            "DIC cells: whole-cell foreground / contact / background U-Net",
        ),
        ShippedModel(
            "nuclei-3d",
            "unet",
            "nuclei-3d.pt",
            "nuclei3d_1135 volume (plant ovule nuclei, z-slices 0-69 of 0-99)",
            "3D nuclei stacks: a whole-cell / contact / background U-Net on the z-, y- and "
            "x-slices (averaged), H-EMD links the slices",
        ),
        ShippedModel(
            "nuclei-affinity",
            "affinity",
            "nuclei-affinity.pt",
            "BBBC039 (24 of 30 images, fully annotated; fine-tuned with the full augmentation)",
            "fluorescent nuclei: pixel-embedded affinity network (Mutex watershed instances)",
        ),
    )
}


def model_path(name: str) -> Path:
    """Path of a shipped model's weight file."""
    if name not in SHIPPED_MODELS:
        raise KeyError(f"model must be one of {sorted(SHIPPED_MODELS)} or a file; got {name!r}")
    return _WEIGHTS / SHIPPED_MODELS[name].filename


def list_models() -> list[ShippedModel]:
    """Return the shipped models whose weight files are installed."""
    return [m for m in SHIPPED_MODELS.values() if (_WEIGHTS / m.filename).exists()]


def torch_installed() -> bool:
    """Whether torch can be imported (the ``torch`` extra), without importing it."""
    try:
        return find_spec("torch") is not None
    except (ImportError, ValueError):
        return False
