"""napari-hemd: H-EMD instance segmentation of cells in time-lapses and 3D stacks.

The public headless API. Importing this package loads neither Qt, napari nor torch.
"""

from __future__ import annotations

from napari_hemd.core.forest import CandidateForest, build_candidate_forest

__version__ = "0.1.0"

__all__ = ["CandidateForest", "__version__", "build_candidate_forest"]
