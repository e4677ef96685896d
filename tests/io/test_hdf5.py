"""HDF5 inputs: ilastik's exports (axistags, channels), volumes of several datasets, lazily."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile

h5py = pytest.importorskip("h5py")

from napari_hemd.io import read_stack  # noqa: E402
from napari_hemd.io.channels import input_axes, names_its_z  # noqa: E402
from napari_hemd.io.hdf5 import Hdf5Array, split_hdf5  # noqa: E402

VOLUME = Path(__file__).parents[2].parent / "shared" / "data" / "volumes" / "nuclei3d_1135.h5"


def _maps() -> np.ndarray:
    """(T, Y, X, 3) float32: background, foreground, boundary, as ilastik exports them."""
    fg = np.zeros((3, 48, 64), np.float32)
    fg[:, 8:24, 8:24] = 0.9
    fg[:, 30:44, 30:56] = 0.8
    fg[2, 30:44, 30:56] = 0  # the second object leaves in the last frame
    return np.stack([1 - fg, fg, np.zeros_like(fg)], -1)


def _ilastik(path: Path, data: np.ndarray, axes: str) -> Path:
    """An HDF5 file as ilastik's *Export* writes it: ``exported_data`` with its axistags."""
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("exported_data", data=data, compression="gzip")
        tags = [{"key": k, "typeFlags": 2, "resolution": 0, "description": ""} for k in axes]
        ds.attrs["axistags"] = json.dumps({"axes": tags})
    return path


def test_an_ilastik_export_is_segmented_with_its_channel_named(tmp_path, capsys):
    """ilastik's default export (HDF5, (T, Y, X, C)) was refused as an unknown suffix; now its
    axistags name the channels: refused without --channel (naming them), --channel 1 alone
    picks the cells' class, and a one-class export runs as it is."""
    from napari_hemd import segment
    from napari_hemd.cli import main

    maps = _maps()
    expected = segment(maps[..., 1])
    assert expected.max() == 2
    three = _ilastik(tmp_path / "probs.h5", maps, "tyxc")
    one = _ilastik(tmp_path / "cells.h5", maps[..., 1:2], "tyxc")
    assert input_axes(three) == "TYXC" and input_axes(one) == "TYX"
    out = tmp_path / "labels.tif"
    assert main(["segment", str(three), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "has 3 channels (axes TYXC, shape (3, 48, 64, 3)): choose one with --channel 0..2" in err
    assert not out.exists()
    for args in (
        [str(three), "--channel", "1"],
        [str(three / "exported_data"), "--channel", "1"],
        [str(one)],
    ):
        assert main(["segment", *args, "-o", str(out), "--overwrite", "--no-progress"]) == 0
        np.testing.assert_array_equal(tifffile.imread(out), expected)


def test_datasets_are_named_and_read_lazily(tmp_path):
    """A file of several datasets is refused naming them; ``FILE.h5/NAME`` reads one, lazily
    (only what is asked leaves the disk), and the reader pickles by path (Dask workers)."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 60000, (6, 20, 30), dtype=np.uint16)
    label = (raw > 30000).astype(np.uint16)
    path = tmp_path / "volume.h5"
    with h5py.File(path, "w") as f:
        f["raw"], f["group/label"] = raw, label
    with pytest.raises(ValueError, match=r"several datasets \(group/label, raw\).*volume.h5/group"):
        read_stack(path)
    np.testing.assert_array_equal(read_stack(path, array="raw"), raw)  # a caller's choice
    np.testing.assert_array_equal(read_stack(path / "group/label"), label)
    with pytest.raises(ValueError, match=r"no dataset 'nope'; its datasets: group/label, raw"):
        read_stack(path / "nope")
    with pytest.raises(FileNotFoundError, match=r"missing\.h5' does not exist"):
        read_stack(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not HDF5")
    with pytest.raises(ValueError, match=r"text\.h5' is not a readable HDF5 file"):
        read_stack(tmp_path / "text.h5")

    lazy = read_stack(path / "raw", lazy=True)
    assert isinstance(lazy, Hdf5Array) and lazy.shape == raw.shape and lazy.dtype == raw.dtype
    for key in (
        2,
        -1,
        (slice(1, 4), 5),
        (Ellipsis, slice(None, None, 3)),
        [0, 2],
        (slice(None, None, -1),),
    ):
        np.testing.assert_array_equal(lazy[key], raw[key])
    np.testing.assert_array_equal(np.asarray(pickle.loads(pickle.dumps(lazy))), raw)
    np.testing.assert_array_equal(lazy[None, 1], raw[None, 1])  # new axes (review)
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f["x"] = raw.astype(">u2")  # big-endian: read in native order, as .npy is
    got = read_stack(tmp_path / "big.h5")
    assert got.dtype.isnative and np.array_equal(got, raw)
    assert read_stack(tmp_path / "big.h5", lazy=True).dtype == np.uint16  # said as it reads
    assert split_hdf5(path / "group/label") == (path, "group/label")
    assert split_hdf5(tmp_path / "frames") is None
    assert not names_its_z(path / "raw")  # a plain volume does not name its axes


def test_evaluate_takes_a_dataset_of_an_hdf5_file(tmp_path, capsys):
    """``evaluate --gt volume.h5/label`` was refused as a path that does not exist."""
    from napari_hemd.cli import main

    label = np.zeros((2, 30, 30), np.uint16)
    label[:, 5:15, 5:15], label[:, 18:28, 18:28] = 1, 2
    path = tmp_path / "volume.h5"
    with h5py.File(path, "w") as f:
        f["raw"], f["label"] = label * 100, label
    tifffile.imwrite(tmp_path / "pred.tif", np.where(label == 2, 0, label))  # one of two found
    assert main(["evaluate", "--gt", str(path / "label"), "--pred", str(tmp_path / "pred.tif"),
                 "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["F1"] == pytest.approx(2 / 3)


def test_a_map_in_hdf5_streams_and_resumes_like_a_zarr(tmp_path):
    """``stream`` takes an HDF5 map (frames read one window at a time) and writes the labels
    ``segment`` gives; the run's identity is the file's, so a rewritten file is not resumed."""
    import zarr

    from napari_hemd import segment
    from napari_hemd.cli import main
    from napari_hemd.core.streaming import _source_id

    maps = _maps()
    path = _ilastik(tmp_path / "probs.h5", maps, "tyxc")
    out = tmp_path / "labels.zarr"
    assert main(["stream", str(path), "--channel", "1", "-o", str(out), "--no-progress"]) == 0
    np.testing.assert_array_equal(zarr.open(str(out), mode="r")[...], segment(maps[..., 1]))
    from napari_hemd.io.channels import select_channel

    view = select_channel(read_stack(path, lazy=True), path, 1)
    before = _source_id(view)
    assert before == _source_id(select_channel(read_stack(path, lazy=True), path, 1))
    _ilastik(path, maps * np.float32(0.5), "tyxc")  # rewritten in place, same shape
    assert _source_id(select_channel(read_stack(path, lazy=True), path, 1)) != before


def test_napari_opens_each_dataset_as_a_layer(tmp_path):
    """The napari reader: one layer per dataset (integer ``label`` as Labels), an ilastik
    export's classes as one image layer per channel, its axes named."""
    from napari_hemd._napari_io import HDF5_SUFFIXES, get_reader
    from napari_hemd.io.hdf5 import HDF5_SUFFIXES as IO_SUFFIXES

    assert HDF5_SUFFIXES == IO_SUFFIXES
    maps = _maps()
    path = _ilastik(tmp_path / "probs.h5", maps, "tyxc")
    [(data, meta, kind)] = get_reader(str(path))(str(path))
    assert kind == "image" and meta["channel_axis"] == 3 and len(meta["name"]) == 3
    assert meta["axis_labels"] == ("t", "y", "x")
    np.testing.assert_array_equal(data, maps)
    vol = tmp_path / "vol.h5"
    with h5py.File(vol, "w") as f:
        f["raw"], f["label"] = maps[..., 1], (maps[..., 1] > 0.5).astype(np.uint16)
    layers = get_reader(str(vol))(str(vol))
    assert [(m["name"], k) for _, m, k in layers] == [("vol label", "labels"), ("vol raw", "image")]


def test_a_big_hdf5_file_opens_lazily_in_napari(tmp_path, monkeypatch, make_napari_viewer):
    """Too big to read whole: a dask array read plane by plane, which napari shows and the
    Large data widget streams."""
    import dask.array as da

    import napari_hemd._napari_io as napari_io

    maps = _maps()
    path = _ilastik(tmp_path / "probs.h5", maps[..., 1:2], "tyxc")
    monkeypatch.setattr(napari_io, "_too_big", lambda path, nbytes: True)
    [(data, meta, kind)] = napari_io.get_reader(str(path))(str(path))
    assert kind == "image"
    assert isinstance(data, da.Array) and data.chunksize == (1, 48, 64)
    np.testing.assert_array_equal(data[2].compute(), maps[2, ..., 1])
    viewer = make_napari_viewer()
    layer = viewer.add_image(data, **meta)
    viewer.dims.set_point(0, 2)  # napari reads that plane (an error here: not an array)
    assert layer.data is data and viewer.dims.point[0] == 2


@pytest.mark.skipif(not VOLUME.is_file(), reason="needs ../shared/data")
def test_the_shared_volume_reads_as_h5py_does():
    """The real nuclei volume (``raw`` and ``label``): each dataset by its name, whole and lazily."""
    with h5py.File(VOLUME, "r") as f:
        raw, label = f["raw"][...], f["label"][...]
    np.testing.assert_array_equal(read_stack(VOLUME / "raw"), raw)
    lazy = read_stack(f"{VOLUME}/label", lazy=True)
    np.testing.assert_array_equal(lazy[40:60], label[40:60])
    assert len(np.unique(lazy[...])) - 1 == 54  # the README's 54 nuclei
