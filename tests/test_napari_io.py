"""npe2 reader/writer hooks: round trips through TIFF, zarr and CTC folders (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hemd._napari_io import get_reader, write_ctc, write_tiff, write_zarr


@pytest.fixture
def labels() -> np.ndarray:
    lab = np.zeros((3, 16, 16), np.uint32)
    lab[:, 2:6, 2:6] = 1
    lab[1:, 8:12, 8:12] = 2
    return lab


@pytest.mark.parametrize(
    ("writer", "name", "written"),
    [(write_tiff, "seg_masks.tif", "seg_masks.tif"), (write_zarr, "x", "x.zarr"),
     (write_ctc, "res.ctc", "res")],
)  # fmt: skip
def test_write_then_read(tmp_path, labels, writer, name, written):
    out = writer(str(tmp_path / name), labels, {"metadata": {"hemd_params": {"tau": 0.5}}})
    assert out == [str(tmp_path / written)]
    reader = get_reader(out[0])
    assert reader is not None
    (data, _meta, kind), *_ = reader(out[0])
    assert kind == "labels"
    np.testing.assert_array_equal(np.asarray(data), labels)
    with pytest.raises(FileExistsError):
        writer(str(tmp_path / name), labels, {})


def test_reader_ctc_sequence_with_gt(tmp_path, labels):
    import tifffile

    raw = tmp_path / "01"
    (tmp_path / "01_GT" / "SEG").mkdir(parents=True)
    raw.mkdir()
    for t in range(3):
        tifffile.imwrite(raw / f"t{t:03d}.tif", (labels[t] * 100).astype(np.uint16))
    tifffile.imwrite(tmp_path / "01_GT" / "SEG" / "man_seg001.tif", labels[1].astype(np.uint16))
    layers = get_reader(str(raw))(str(raw))
    assert [k for _, _, k in layers] == ["image", "labels"]
    gt = layers[1][0]
    assert gt.shape == (3, 16, 16) and gt[0].max() == 0 and gt[1].max() == 2


def test_reader_declines_other_files(tmp_path):
    assert get_reader(str(tmp_path / "a.png")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None
