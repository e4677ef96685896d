"""One channel of a multi-channel movie: chosen by --channel, read lazily, refused when ambiguous."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import tifffile

from napari_hemd.core.streaming import _source_id
from napari_hemd.io import read_stack
from napari_hemd.io.channels import ChannelView, input_axes, select_channel
from napari_hemd.pipeline import open_input


@pytest.fixture
def movie() -> np.ndarray:
    """(T, C, Y, X) uint16: 5 frames, 3 channels, each channel its own values."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, (5, 3, 24, 32), dtype=np.uint16)


@pytest.fixture
def hyperstack(tmp_path, movie):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TCYX"})
    return path


def test_a_multi_channel_movie_needs_a_channel(hyperstack, movie):
    assert input_axes(hyperstack) == "TCYX"
    data = read_stack(hyperstack)
    with pytest.raises(ValueError, match=r"has 3 channels \(axes TCYX, .*--channel 0\.\.2"):
        select_channel(data, hyperstack, None)
    np.testing.assert_array_equal(select_channel(data, hyperstack, 1), movie[:, 1])
    with pytest.raises(ValueError, match=r"--channel must be one of INPUT's 3 channels.*got 3"):
        select_channel(data, hyperstack, 3)
    with pytest.raises(ValueError, match="--channel-axis needs --channel"):
        select_channel(data, hyperstack, None, 1)


def test_a_lazy_input_stays_lazy_and_reads_only_its_channel(hyperstack, movie):
    frames = open_input(hyperstack)  # TIFF pages, read on request
    view = select_channel(frames, hyperstack, 2)
    assert isinstance(view, ChannelView)
    assert view.shape == (5, 24, 32) and view.ndim == 3 and len(view) == 5
    assert view.dtype == movie.dtype
    np.testing.assert_array_equal(view[3], movie[3, 2])
    np.testing.assert_array_equal(view[1:4], movie[1:4, 2])
    np.testing.assert_array_equal(view[..., 5:9], movie[:, 2, :, 5:9])
    np.testing.assert_array_equal(view[-1, 3], movie[-1, 2, 3])
    np.testing.assert_array_equal(np.asarray(view), movie[:, 2])
    again = pickle.loads(pickle.dumps(view))  # Dask workers
    np.testing.assert_array_equal(again[0], movie[0, 2])
    # a resumable run tells the channels of one file apart
    assert _source_id(view) != _source_id(select_channel(frames, hyperstack, 1))


def test_unnamed_axes_need_the_channel_axis(tmp_path, movie):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, movie, photometric="minisblack")  # tifffile's own: axes not named
    data = read_stack(path)
    assert select_channel(data, path, None) is data  # nothing says it has channels
    with pytest.raises(ValueError, match=r"does not name a channel axis.*--channel-axis"):
        select_channel(data, path, 0)
    np.testing.assert_array_equal(select_channel(data, path, 0, 1), movie[:, 0])
    with pytest.raises(ValueError, match=r"--channel-axis must be an axis of INPUT.*0\.\.3; got 4"):
        select_channel(data, path, 0, 4)
    npy = tmp_path / "movie.npy"
    np.save(npy, movie)
    lazy = read_stack(npy, lazy=True)
    np.testing.assert_array_equal(select_channel(lazy, npy, 2, 1), movie[:, 2])


def test_a_colour_tiff_gives_its_samples_not_their_grey(tmp_path):
    rgb = np.zeros((2, 16, 16, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 200
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    with pytest.warns(UserWarning, match="read as grey"):
        grey = read_stack(path)
    blue = select_channel(grey, path, 2)
    assert blue.shape == (2, 16, 16) and (blue == 200).all()
    # a channel past the last names the file's colour shape, not the grey one it was read as
    with pytest.raises(ValueError, match=r"3 channels \(axes QYXS, shape \(2, 16, 16, 3\)\)"):
        select_channel(grey, path, 5)


def test_ome_zarr_channel_axis(tmp_path, movie, ome_zarr_image):
    path = ome_zarr_image(tmp_path / "movie.ome.zarr", movie, "tcyx")
    data = read_stack(path, lazy=True)
    with pytest.raises(ValueError, match="has 3 channels"):
        select_channel(data, path, None)
    view = select_channel(data, path, 0)
    assert isinstance(view, ChannelView)
    np.testing.assert_array_equal(view[2:4], movie[2:4, 0])


def _exported_maps() -> np.ndarray:
    """(T, Y, X, 3) float32: background, foreground, boundary, as ilastik exports them."""
    fg = np.zeros((2, 48, 64), np.float32)
    fg[:, 8:24, 8:24] = 0.9
    fg[:, 30:44, 30:56] = 0.8
    return np.stack([1 - fg, fg, np.zeros_like(fg)], -1)


def test_maps_with_channels_last_are_refused_not_segmented_as_volumes(tmp_path, capsys):
    """An ilastik-style (T, Y, X, C) export ran as a (T, Z, Y, X) volume with 3-pixel-wide
    slices, a colour TIFF's channels were averaged to grey (one flat 1/3: no object, exit 0);
    now both name the channels, and --channel / --channel-axis (negative too) pick one."""
    from napari_hemd import segment
    from napari_hemd.cli import main

    maps = _exported_maps()
    np.save(tmp_path / "maps.npy", maps)
    tifffile.imwrite(tmp_path / "maps.tif", maps, photometric="rgb")
    out = tmp_path / "out.tif"
    npy = r"shape \(2, 48, 64, 3\): its last axis \(3\) looks like channels.*--channel-axis 3"
    tif = r"3 colour samples per pixel \(axes QYXS, shape \(2, 48, 64, 3\)\).*not averaged"
    for name, pattern in (("maps.npy", npy), ("maps.tif", tif)):
        assert main(["segment", str(tmp_path / name), "-o", str(out), "--no-progress"]) == 2
        assert re.search(pattern, capsys.readouterr().err), name
        assert not out.exists()
    with pytest.raises(ValueError, match=r"looks like channels.*prob\[\.\.\., 1\]"):
        segment(maps)
    with pytest.raises(ValueError, match="looks like channels"):
        segment(maps[0])
    expected = segment(maps[..., 1])
    for name, axis in (
        ("maps.npy", "3"),
        ("maps.npy", "-1"),
        ("maps.tif", "-1"),
        ("maps.tif", "3"),
    ):
        args = [str(tmp_path / name), "-o", str(out), "--overwrite", "--no-progress"]
        assert main(["segment", *args, "--channel", "1", "--channel-axis", axis]) == 0
        np.testing.assert_array_equal(tifffile.imread(out), expected)
        assert expected.max() == 2
    assert main(["segment", str(tmp_path / "maps.tif"), "-o", str(out), "--overwrite",
                 "--channel", "1", "--channel-axis", "2"]) == 2  # fmt: skip
    assert "--channel-axis 2 is the X axis" in capsys.readouterr().err


def test_a_colour_raw_image_is_still_read_as_grey_for_a_model(tmp_path):
    """Only maps refuse colour samples: a raw RGB image for a model is averaged (a warning)."""
    rgb = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.warns(UserWarning, match="read as grey"):
        data = read_stack(tmp_path / "rgb.tif")
    assert select_channel(data, tmp_path / "rgb.tif", None).shape == (40, 50)


def test_frames_on_the_last_axis_are_not_taken_for_channels(tmp_path):
    """A (Y, X, T) map of 3 frames with axis=2 / --axis 2 segmented before the channels check;
    it is not refused as channels (the review of the change)."""
    from napari_hemd import segment
    from napari_hemd.cli import main

    maps = _exported_maps()[0][..., [1, 1, 1]]  # (48, 64, 3): three frames, last
    expected = segment(np.moveaxis(maps, 2, 0))
    np.testing.assert_array_equal(np.moveaxis(segment(maps, axis=2), 2, 0), expected)
    np.save(tmp_path / "yxt.npy", maps)
    out = tmp_path / "o.tif"
    assert main(["segment", str(tmp_path / "yxt.npy"), "--axis", "2", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.moveaxis(tifffile.imread(out), 2, 0), expected)


def test_measure_refuses_a_colour_image_without_its_stain(tmp_path, capsys):
    """``measure --image rgb.tif`` measured the mean of R, G and B, no one stain's (audit 22):
    refused without --channel; with it, the stain's own intensities."""
    import tifffile

    from napari_hemd.cli import main

    labels = np.zeros((32, 32), np.uint16)
    labels[4:12, 4:12] = 1
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 1] = 200  # the green stain
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    args = ["measure", str(tmp_path / "labels.tif"), "--image", str(tmp_path / "rgb.tif")]
    assert main([*args, "-o", str(tmp_path / "a.csv")]) == 2
    assert "is a colour image" in capsys.readouterr().err
    assert main([*args, "--channel", "1", "-o", str(tmp_path / "b.csv")]) == 0
    import csv

    with open(tmp_path / "b.csv", newline="") as f:
        assert float(next(csv.DictReader(f))["mean_intensity"]) == 200.0
