"""Readers and writers: TIFF, ``.npy``, zarr / OME-Zarr, Cell Tracking Challenge folders."""

from napari_hemd.io.ctc import (
    CTCSequence,
    read_ctc_labels,
    read_ctc_sequence,
    read_ctc_tracks,
    write_ctc_result,
)
from napari_hemd.io.stacks import read_stack, write_labels

__all__ = [
    "CTCSequence",
    "read_ctc_labels",
    "read_ctc_sequence",
    "read_ctc_tracks",
    "read_stack",
    "write_ctc_result",
    "write_labels",
]
