"""Export widget: OME-Zarr label images (standalone or under an image's labels/), read back."""

from __future__ import annotations

import json

import numpy as np
import zarr

from napari_hemd._napari_io import get_reader
from napari_hemd._widgets import ExportWidget


def test_export_ome_zarr_standalone(viewer, tmp_path, errors):
    gt = viewer.layers["nuclei video ground truth"]
    gt.metadata["hemd_params"] = {"tau": 0.45, "hemd_model": "nuclei-fluo"}
    exp = ExportWidget(viewer)
    exp.labels.value = gt
    exp.format.value = "OME-Zarr"
    out = exp.export(tmp_path / "masks")
    assert out == tmp_path / "masks.ome.zarr"
    attrs = json.loads((out / ".zattrs").read_text())
    assert attrs["image-label"]["version"] == "0.4"
    assert attrs["napari_hemd"]["tau"] == 0.45 and attrs["napari_hemd"]["model"] == "nuclei-fluo"
    ((data, meta, kind),) = get_reader(str(out))(str(out))
    assert kind == "labels" and meta["name"] == "masks"
    np.testing.assert_array_equal(data[...], gt.data)
    assert not errors


def test_export_ome_zarr_into_image(viewer, tmp_path, errors):
    gt = viewer.layers["nuclei video ground truth"]
    img = tmp_path / "movie.ome.zarr"
    root = zarr.open_group(str(img), mode="w", zarr_format=2)
    root.create_array("0", data=np.asarray(viewer.layers["nuclei video image"].data))
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "time" if a == "t" else "space"} for a in "tyx"],
            "datasets": [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}],
        }
    ]  # fmt: skip
    exp = ExportWidget(viewer)
    exp.labels.value = gt
    exp.format.value = "OME-Zarr"
    out = exp.export(img)
    assert out == img / "labels" / "nuclei_video_ground_truth"
    layers = get_reader(str(img))(str(img))
    assert [k for _, _, k in layers] == ["image", "labels"]
    np.testing.assert_array_equal(layers[1][0][...], gt.data)
    exp.confirm_overwrite = lambda p: False  # the same label name again: asked, refused
    assert exp.export(img) is None
    assert json.loads((img / "labels" / ".zattrs").read_text()) == {
        "labels": ["nuclei_video_ground_truth"]
    }
    assert not errors
