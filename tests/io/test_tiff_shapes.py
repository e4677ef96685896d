"""TIFF stacks keep their shape; colour, big-endian and broken files are handled in one line."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_hemd.cli import main
from napari_hemd.io import read_stack, write_labels
from napari_hemd.io.stacks import recorded_params


def test_4d_labels_round_trip_with_their_shape(tmp_path):
    labels = np.arange(2 * 3 * 8 * 8, dtype=np.uint32).reshape(2, 3, 8, 8) % 7
    out = write_labels(labels, tmp_path / "l.tif", metadata={"method": "hemd", "tau": 0.5})
    back = read_stack(out)
    assert back.shape == (2, 3, 8, 8) and (back == labels).all()
    with tifffile.TiffFile(out) as tif:  # a hyperstack Fiji opens with its frames and slices
        assert tif.is_imagej and tif.series[0].axes == "TZYX"
    assert recorded_params(out)["method"] == "hemd"


def test_rgb_tiff_becomes_grey_with_a_warning(tmp_path):
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = 30, 90
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)
    with pytest.warns(UserWarning, match="colour image .3 samples per pixel. read as grey"):
        grey = read_stack(tmp_path / "rgb.tif")
    assert grey.shape == (64, 64) and np.allclose(grey, 40)


def test_small_planar_stack_stays_frames(tmp_path):
    stack = np.random.default_rng(0).integers(0, 200, (3, 32, 32), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", stack)  # tifffile stores this as planar "RGB"
    assert (read_stack(tmp_path / "s.tif") == stack).all()


def test_big_endian_npy_is_converted(tmp_path):
    np.save(tmp_path / "be.npy", np.full((2, 4, 4), 0.25, dtype=">f4"))
    arr = read_stack(tmp_path / "be.npy")
    assert arr.dtype == np.float32 and arr.dtype.byteorder in ("=", "<") and (arr == 0.25).all()


def test_truncated_tiff_names_the_file(tmp_path, capsys):
    good = write_labels(np.ones((3, 64, 64), np.uint32), tmp_path / "g.tif")
    (tmp_path / "bad.tif").write_bytes(good.read_bytes()[:300])
    rc = main(["segment", str(tmp_path / "bad.tif"), "-o", str(tmp_path / "o.tif")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.tif" in err and "not a readable TIFF" in err and err.count("\n") == 1


def test_predict_refuses_non_finite_frames(tmp_path):
    pytest.importorskip("torch")
    from napari_hemd.models import predict

    image = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32)
    image[2, 5, 7] = np.nan
    with pytest.raises(ValueError, match=r"frame 2 has 1 non-finite value.*y=5, x=7"):
        predict("nuclei-fluo", image)


def test_big_endian_zarr_probabilities_segment(tmp_path):
    import zarr

    from napari_hemd.data.synthetic import nuclei_video

    prob = nuclei_video(n_frames=3, shape=(64, 64), n_cells=4)["prob"]
    z = zarr.create_array(
        str(tmp_path / "be.zarr"), shape=prob.shape, chunks=(1, 64, 64), dtype=">f4", zarr_format=2
    )
    z[:] = prob
    out = tmp_path / "o.tif"
    assert main(["segment", str(tmp_path / "be.zarr"), "-o", str(out), "--no-progress"]) == 0
    expected = tmp_path / "native.tif"
    np.save(tmp_path / "native.npy", prob)
    assert (
        main(["segment", str(tmp_path / "native.npy"), "-o", str(expected), "--no-progress"]) == 0
    )
    assert (read_stack(out) == read_stack(expected)).all()
