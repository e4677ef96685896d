"""napari dock widgets (magicgui / Qt): thin layers over :mod:`napari_hemd.workflows`."""

from __future__ import annotations

from napari_hemd._widgets.export import ExportWidget
from napari_hemd._widgets.finetune import FineTuneWidget
from napari_hemd._widgets.inspector import InspectorWidget
from napari_hemd._widgets.predict import PredictWidget
from napari_hemd._widgets.project import ProjectWidget
from napari_hemd._widgets.proofread import ProofreadWidget
from napari_hemd._widgets.segment import SegmentWidget
from napari_hemd._widgets.stream import StreamWidget

__all__ = [
    "ExportWidget",
    "FineTuneWidget",
    "InspectorWidget",
    "PredictWidget",
    "ProjectWidget",
    "ProofreadWidget",
    "SegmentWidget",
    "StreamWidget",
]
