"""Label files: ids a uint32 label file cannot hold are refused, not wrapped."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hemd.io import read_stack


@pytest.mark.parametrize("name", ["l.tif", "l.zarr", "l.ome.zarr"])
def test_ids_a_label_file_cannot_hold_are_refused(tmp_path, name):
    """Ids of 2**32 and more were wrapped (5 and 2**32 + 5 both became 5), -1 became 65535."""
    from napari_hemd.io.stacks import write_labels

    lab = np.zeros((2, 8, 8), np.int64)
    lab[0, :2, :2], lab[1, :2, :2] = 5, 2**32 + 5
    with pytest.raises(ValueError, match=r"ids up to 2\*\*32 - 1 = 4294967295; got 4294967301"):
        write_labels(lab, tmp_path / name)
    lab[1, :2, :2] = -1
    with pytest.raises(ValueError, match="expected ids >= 0; got -1"):
        write_labels(lab, tmp_path / name)
    assert not (tmp_path / name).exists()
    lab[1, :2, :2] = 2**32 - 1  # the largest that fits is written as it is
    np.testing.assert_array_equal(read_stack(write_labels(lab, tmp_path / name)), lab)


@pytest.mark.parametrize("name", ["l.tif", "l.zarr", "ctc"])
def test_float_labels_are_written_only_when_they_hold_whole_ids(tmp_path, name):
    """Float labels skipped the id check: -1.0 came back as 65535 (TIFF, CTC) or 4294967295
    (zarr), 2.6 as 2, NaN failed naming nothing (audit 24). Whole numbers are written as ids."""
    from napari_hemd.io.stacks import write_labels

    lab = np.zeros((2, 12, 12), np.float32)
    lab[:, 2:6, 2:6], lab[1, 8:11, 8:11] = 1, 2.6
    with pytest.raises(ValueError, match=r"whole-number instance ids; got float32 value 2.6"):
        write_labels(lab, tmp_path / name)
    lab[1, 8:11, 8:11] = np.nan
    with pytest.raises(ValueError, match=r"whole-number instance ids; got float32 value nan"):
        write_labels(lab, tmp_path / name)
    lab[1, 8:11, 8:11] = -1
    with pytest.raises(ValueError, match="expected ids >= 0; got -1"):
        write_labels(lab, tmp_path / name)
    assert not (tmp_path / name).exists()
    lab[1, 8:11, 8:11] = 7
    back = read_stack(write_labels(lab, tmp_path / name))
    np.testing.assert_array_equal(np.asarray(back), lab.astype(np.uint32))
