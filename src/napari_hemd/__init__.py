"""napari-hemd: H-EMD instance segmentation of cells in time-lapses and 3D stacks.

The public headless API. Importing this package loads neither Qt, napari nor torch, and the
names below are imported on first use (so ``napari-hemd --help`` and small runs start fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: public name -> module that defines it
_LAZY = {
    "CandidateForest": "napari_hemd.core.forest",
    "build_candidate_forest": "napari_hemd.core.forest",
    "link_labels": "napari_hemd.core.linking",
    "evaluate_sequence": "napari_hemd.core.metrics",
    "METHODS": "napari_hemd.core.segment",
    "HEMDResult": "napari_hemd.core.segment",
    "hemd": "napari_hemd.core.segment",
    "segment": "napari_hemd.core.segment",
    "FrameSelection": "napari_hemd.core.selection",
    "select_instances": "napari_hemd.core.selection",
    "ImageSegmentation": "napari_hemd.image_segmentation",
    "segment_image": "napari_hemd.image_segmentation",
}

__all__ = [
    "METHODS",
    "CandidateForest",
    "FrameSelection",
    "HEMDResult",
    "ImageSegmentation",
    "__version__",
    "build_candidate_forest",
    "evaluate_sequence",
    "hemd",
    "link_labels",
    "segment",
    "segment_image",
    "select_instances",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from napari_hemd.core.forest import CandidateForest, build_candidate_forest
    from napari_hemd.core.linking import link_labels
    from napari_hemd.core.metrics import evaluate_sequence
    from napari_hemd.core.segment import METHODS, HEMDResult, hemd, segment
    from napari_hemd.core.selection import FrameSelection, select_instances
    from napari_hemd.image_segmentation import ImageSegmentation, segment_image


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_hemd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
