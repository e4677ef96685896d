"""One channel of a multi-channel movie: chosen by --channel, read lazily, refused when ambiguous."""

from __future__ import annotations

import pickle

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
