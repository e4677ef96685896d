"""Readers and writers: TIFF, ``.npy``, zarr / OME-Zarr, HDF5 (read), Cell Tracking Challenge folders."""

from napari_hemd.io.ctc import (
    CTCSequence,
    read_ctc_labels,
    read_ctc_sequence,
    read_ctc_tracks,
    write_ctc_result,
)
from napari_hemd.io.ome_zarr import (
    add_ome_zarr_labels,
    is_ome_zarr,
    read_ome_zarr,
    write_ome_zarr_labels,
)
from napari_hemd.io.stacks import read_stack, write_labels

__all__ = [
    "CTCSequence",
    "add_ome_zarr_labels",
    "is_ome_zarr",
    "read_ctc_labels",
    "read_ctc_sequence",
    "read_ctc_tracks",
    "read_ome_zarr",
    "read_stack",
    "write_ctc_result",
    "write_labels",
    "write_ome_zarr_labels",
]
