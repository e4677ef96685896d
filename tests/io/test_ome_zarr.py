"""OME-Zarr label images: NGFF 0.4 structure on disk, lazy reading, atomic and refusing writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_hemd.io import (
    add_ome_zarr_labels,
    is_ome_zarr,
    read_ome_zarr,
    write_labels,
    write_ome_zarr_labels,
)

SPACE, TIME = {"x", "y", "z"}, {"t"}


def check_ngff_label_image(group: Path, ndim: int) -> dict:
    """Assert the NGFF 0.4 rules for a label image group; return its attributes.

    Written from the specification's text (multiscales, axes, coordinateTransformations,
    image-label), independently of the writer.
    """
    assert json.loads((group / ".zgroup").read_text()) == {"zarr_format": 2}
    attrs = json.loads((group / ".zattrs").read_text())
    (ms,) = attrs["multiscales"]
    assert ms["version"] == "0.4"
    axes = ms["axes"]
    assert 2 <= len(axes) <= 5 and len(axes) == ndim
    types = [a["type"] for a in axes]
    assert set(types) <= {"space", "time", "channel"}
    assert types.count("time") <= 1 and 2 <= types.count("space") <= 3
    order = {"time": 0, "channel": 1, "space": 2}
    assert [order[t] for t in types] == sorted(order[t] for t in types)
    for a in axes:
        assert a["name"] in (SPACE if a["type"] == "space" else TIME | {"c"})
    assert ms["datasets"]
    for d in ms["datasets"]:
        transforms = d["coordinateTransformations"]
        assert transforms[0]["type"] == "scale" and len(transforms[0]["scale"]) == ndim
        zarray = json.loads((group / d["path"] / ".zarray").read_text())
        assert zarray["dimension_separator"] == "/" and len(zarray["shape"]) == ndim
        assert np.issubdtype(np.dtype(zarray["dtype"]), np.integer)
    assert attrs["image-label"]["version"] == "0.4"
    return attrs


@pytest.fixture
def labels() -> np.ndarray:
    lab = np.zeros((3, 20, 24), np.uint16)
    lab[:, 2:8, 3:9] = 4
    lab[1:, 10:15, 12:20] = 7
    return lab


def test_standalone_label_image(tmp_path, labels):
    out = write_ome_zarr_labels(
        labels, tmp_path / "cells.ome.zarr", metadata={"napari_hemd": {"tau": 0.5}}
    )
    attrs = check_ngff_label_image(out, 3)
    assert [a["name"] for a in attrs["multiscales"][0]["axes"]] == ["t", "y", "x"]
    assert attrs["napari_hemd"] == {"tau": 0.5}
    assert is_ome_zarr(out)
    (node,) = read_ome_zarr(out)
    assert node.kind == "labels" and node.axes == "tyx" and node.name == "cells"
    assert isinstance(node.levels[0], zarr.Array)  # lazy: not loaded
    np.testing.assert_array_equal(node.levels[0][...], labels)
    # chunks: one frame each, so a viewer reads only the frame it shows
    assert node.levels[0].chunks == (1, 20, 24)


def test_axes_and_scale(tmp_path, labels):
    out = write_ome_zarr_labels(labels, tmp_path / "v.zarr", axes="zyx", scale=[2.0, 0.5, 0.5])
    attrs = check_ngff_label_image(out, 3)
    ms = attrs["multiscales"][0]
    assert [a["type"] for a in ms["axes"]] == ["space"] * 3
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="axes: expected 3 axis names"):
        write_ome_zarr_labels(labels, tmp_path / "a.zarr", axes="yx")
    with pytest.raises(ValueError, match="axes: NGFF orders"):
        write_ome_zarr_labels(labels, tmp_path / "b.zarr", axes="yxt")
    with pytest.raises(ValueError, match="scale: expected 3 positive"):
        write_ome_zarr_labels(labels, tmp_path / "c.zarr", scale=[1, 1])
    with pytest.raises(TypeError, match="labels: expected an integer array; got dtype float32"):
        write_ome_zarr_labels(labels.astype(np.float32), tmp_path / "d.zarr")
    assert not any(p.name.startswith(("a.", "b.", "c.", "d.")) for p in tmp_path.iterdir())


def test_never_overwrites_and_atomic(tmp_path, labels, monkeypatch):
    out = write_ome_zarr_labels(labels, tmp_path / "x.ome.zarr")
    with pytest.raises(FileExistsError, match="already exists"):
        write_ome_zarr_labels(labels * 0, out)
    np.testing.assert_array_equal(read_ome_zarr(out)[0].levels[0][...], labels)

    from napari_hemd.io import ome_zarr

    def crash(folder, *args, **kwargs):
        (folder / "partial").mkdir(parents=True)
        raise OSError("disk full")

    monkeypatch.setattr(ome_zarr, "_write_label_group", crash)
    with pytest.raises(OSError, match="disk full"):
        write_ome_zarr_labels(labels * 0, out, overwrite=True)
    np.testing.assert_array_equal(read_ome_zarr(out)[0].levels[0][...], labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ome.zarr"]  # no temporary left


def test_write_labels_by_suffix(tmp_path, labels):
    out = write_labels(labels, tmp_path / "r.ome.zarr", metadata={"napari_hemd": {"delta": 0.3}})
    check_ngff_label_image(out, 3)
    plain = write_labels(labels, tmp_path / "r.zarr")  # the CLI's plain array stays
    assert not is_ome_zarr(plain) and zarr.open(str(plain), mode="r").shape == labels.shape


def _image(path: Path, shape, axes="tyx") -> Path:
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("0", shape=shape, dtype=np.uint16, chunks=(1, *shape[1:]))
    root["0"][...] = 5
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "time" if a == "t" else "space"} for a in axes],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [1, 0.3, 0.3]}],
                }
            ],
        }
    ]
    return path


def test_labels_of_an_image(tmp_path, labels):
    img = _image(tmp_path / "movie.ome.zarr", labels.shape)
    out = add_ome_zarr_labels(img, labels, "hemd")
    assert out == img / "labels" / "hemd"
    attrs = check_ngff_label_image(out, 3)
    assert attrs["image-label"]["source"] == {"image": "../../"}
    scale = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1, 0.3, 0.3]  # the image's pixel size
    assert json.loads((img / "labels" / ".zattrs").read_text()) == {"labels": ["hemd"]}
    add_ome_zarr_labels(img, labels // 2, "other")
    with pytest.raises(FileExistsError):
        add_ome_zarr_labels(img, labels, "hemd")
    assert json.loads((img / "labels" / ".zattrs").read_text()) == {"labels": ["hemd", "other"]}
    nodes = read_ome_zarr(img)
    assert [(n.kind, n.name) for n in nodes] == [("image", "movie"), ("labels", "hemd"),
                                                 ("labels", "other")]  # fmt: skip
    np.testing.assert_array_equal(nodes[1].levels[0][...], labels)
    assert nodes[1].scale == [1.0, 0.3, 0.3]
    with pytest.raises(ValueError, match=r"labels: expected the image's shape \(3, 20, 24\)"):
        add_ome_zarr_labels(img, labels[:2], "short")
    with pytest.raises(ValueError, match=r"image_path: .* is itself a label image"):
        add_ome_zarr_labels(out, labels, "nested")
    with pytest.raises(ValueError, match="name: expected a folder name"):
        add_ome_zarr_labels(img, labels, "a/b")


def test_not_ome_zarr(tmp_path):
    zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(2, 2), dtype="u1")
    assert not is_ome_zarr(tmp_path / "plain.zarr")
    with pytest.raises(ValueError, match="not an OME-Zarr group"):
        read_ome_zarr(tmp_path / "plain.zarr")
