"""napari-hemd: H-EMD instance segmentation of cells in time-lapses and 3D stacks.

The public headless API. Importing this package loads neither Qt, napari nor torch.
"""

from __future__ import annotations

from napari_hemd.core.forest import CandidateForest, build_candidate_forest
from napari_hemd.core.linking import link_labels
from napari_hemd.core.metrics import evaluate_sequence
from napari_hemd.core.segment import METHODS, HEMDResult, hemd, segment
from napari_hemd.core.selection import FrameSelection, select_instances
from napari_hemd.image_segmentation import ImageSegmentation, segment_image

__version__ = "0.1.0"

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
