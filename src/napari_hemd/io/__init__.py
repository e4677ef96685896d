"""Readers and writers: TIFF, ``.npy``, zarr / OME-Zarr, Cell Tracking Challenge folders."""

from napari_hemd.io.ctc import write_ctc_result
from napari_hemd.io.stacks import read_stack, write_labels

__all__ = ["read_stack", "write_ctc_result", "write_labels"]
