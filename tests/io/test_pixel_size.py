"""Pixel sizes: read from Fiji / OME files, carried to the masks, used by measure."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from napari_hemd.cli import main
from napari_hemd.io import add_ome_zarr_labels, read_stack, write_labels
from napari_hemd.io.calibration import PixelSize, normalise_unit, read_pixel_size
from napari_hemd.io.stacks import recorded_params


def _fiji(path, arr, axes, xy=0.65, unit="micron", z=None):
    """A TIFF as Fiji saves a calibrated hyperstack."""
    meta = {"axes": axes, "unit": unit}
    if z is not None:
        meta["spacing"] = z
    tifffile.imwrite(path, arr, imagej=True, resolution=(1 / xy, 1 / xy), metadata=meta)
    return path


def _ome_tiff(path, xy: float, z: float, xy_unit: str, z_unit: str):
    """An OME-TIFF stack as a microscope's software writes it (PhysicalSize and units)."""
    meta = {"axes": "ZYX", "PhysicalSizeX": xy, "PhysicalSizeY": xy, "PhysicalSizeZ": z}
    meta.update(PhysicalSizeXUnit=xy_unit, PhysicalSizeYUnit=xy_unit, PhysicalSizeZUnit=z_unit)
    tifffile.imwrite(path, np.zeros((4, 16, 16), np.uint16), metadata=meta)
    return path


def _labels(shape=(2, 32, 32)):
    lab = np.zeros(shape, np.uint16)
    lab[..., 4:12, 4:10] = 3
    lab[..., 20:30, 15:25] = 7
    return lab


def test_fiji_and_ome_tiffs_give_their_pixel_size(tmp_path):
    movie = _fiji(tmp_path / "m.tif", np.zeros((3, 16, 16), np.uint16), "TYX")
    assert read_pixel_size(movie) == PixelSize({"y": 0.65, "x": 0.65}, "um")
    stack = _fiji(
        tmp_path / "s.tif", np.zeros((4, 16, 16), np.uint8), "ZYX", 0.2, "\\u00B5m", z=1.5
    )
    assert read_pixel_size(stack) == PixelSize({"y": 0.2, "x": 0.2, "z": 1.5}, "um")
    ome = _ome_tiff(tmp_path / "o.ome.tif", 0.1, 0.5, "nm", "nm")
    assert read_pixel_size(ome) == PixelSize({"z": 0.5, "y": 0.1, "x": 0.1}, "nm")


def test_uncalibrated_files_record_no_pixel_size(tmp_path):
    # Fiji's "pixel" unit is no calibration; a plain TIFF's 72 dpi is a screen's, not a pixel's
    assert read_pixel_size(_fiji(tmp_path / "p.tif", np.zeros((8, 8), np.uint8), "YX", 1.0, "pixel")) is None  # fmt: skip
    tifffile.imwrite(tmp_path / "dpi.tif", np.zeros((8, 8), np.uint8), resolution=(72, 72))
    assert read_pixel_size(tmp_path / "dpi.tif") is None
    assert read_pixel_size(tmp_path / "missing.tif") is None
    (tmp_path / "broken.tif").write_bytes(b"II*\0garbage")
    assert read_pixel_size(tmp_path / "broken.tif") is None


def test_units_are_normalised():
    for u in ("micron", "µm", "μm", "\\u00B5m", "um", "micrometer"):
        assert normalise_unit(u) == "um"
    assert normalise_unit("pixel") is None and normalise_unit("") is None
    assert normalise_unit("nanometre") == "nm"
    with pytest.raises(ValueError, match="pixel size along x: expected a positive number"):
        PixelSize({"y": 1.0, "x": 0.0}, "um")


def test_label_tiff_is_a_calibrated_imagej_hyperstack(tmp_path):
    size = PixelSize({"z": 2.0, "y": 0.5, "x": 0.25}, "um")
    lab = _labels((2, 3, 32, 32))
    out = write_labels(lab, tmp_path / "l.tif", metadata={"method": "hemd"}, pixel_size=size)
    with tifffile.TiffFile(out) as tif:  # what Fiji reads: hyperstack, unit, spacing
        assert tif.is_imagej and tif.series[0].axes == "TZYX"
        ij = tif.imagej_metadata
        assert ij["frames"] == 2 and ij["slices"] == 3 and ij["unit"] == "um"
        assert ij["spacing"] == 2.0
        assert tif.pages[0].get_resolution() == pytest.approx((4.0, 2.0))  # pixels per unit
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW  # ImageJ's opener reads it
    assert read_pixel_size(out) == size
    assert recorded_params(out)["method"] == "hemd"  # the run's parameters: its Info
    assert (read_stack(out) == lab).all()
    # ids beyond ImageJ's 16 bits: tifffile's shaped TIFF, the pixel size kept in its JSON
    big = write_labels(lab.astype(np.uint32) * 20000, tmp_path / "big.tif", pixel_size=size)
    with tifffile.TiffFile(big) as tif:
        assert not tif.is_imagej and tif.series[0].shape == lab.shape
    assert read_pixel_size(big) == size
    assert (read_stack(big) == lab.astype(np.uint32) * 20000).all()


def test_ome_zarr_labels_name_their_unit(tmp_path):
    size = PixelSize({"y": 0.5, "x": 0.5}, "um")
    out = write_labels(_labels(), tmp_path / "l.ome.zarr", pixel_size=size)
    assert read_pixel_size(out) == size
    import zarr

    axes = zarr.open_group(str(out), mode="r").attrs["multiscales"][0]["axes"]
    assert [a.get("unit") for a in axes] == [None, "micrometer", "micrometer"]
    # labels added into an image take the image's scale and unit
    from napari_hemd.io.ome_zarr import _write_label_group

    image = tmp_path / "image.ome.zarr"
    _write_label_group(
        image, _labels(), "tyx", [1.0, 0.3, 0.3], "image", None, None, {"y": "um", "x": "um"}
    )
    root = zarr.open_group(str(image), mode="r+")
    attrs = dict(root.attrs)
    del attrs["image-label"]
    root.attrs.clear()
    root.attrs.update(attrs)
    added = add_ome_zarr_labels(image, _labels(), "cells")
    assert read_pixel_size(added) == PixelSize({"y": 0.3, "x": 0.3}, "um")


def test_layer_pixel_sizes():
    movie = PixelSize.from_layer([1, 0.5, 0.5], ["pixel", "um", "um"])
    assert movie == PixelSize({"y": 0.5, "x": 0.5}, "um")
    stack = PixelSize.from_layer([2, 0.5, 0.5], ["um", "um", "um"])
    assert stack == PixelSize({"z": 2.0, "y": 0.5, "x": 0.5}, "um")
    assert PixelSize.from_layer([1, 1, 1], ["pixel"] * 3) is None
    assert PixelSize.from_layer([1, 2, 2, 2], None) == PixelSize({"z": 2, "y": 2, "x": 2}, None)
    assert stack.scale(4) == [1.0, 2.0, 0.5, 0.5] and movie.scale(3) == [1.0, 0.5, 0.5]


def _table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_measure_takes_the_recorded_pixel_size(tmp_path, capsys):
    lab = _labels()
    out = write_labels(lab, tmp_path / "l.tif", pixel_size=PixelSize({"y": 0.5, "x": 0.5}, "nm"))
    assert main(["measure", str(out), "-o", str(tmp_path / "t.csv")]) == 0
    assert "pixel size from l.tif: y 0.5, x 0.5 nm" in capsys.readouterr().err
    rows = _table(tmp_path / "t.csv")
    assert float(rows[0]["area_nm2"]) == pytest.approx(float(rows[0]["area"]) * 0.25)
    # --spacing replaces it; a single 2D image takes y,x (it asked for one number before)
    tifffile.imwrite(tmp_path / "one_mask.tif", lab[0])
    args = ["measure", str(tmp_path / "one_mask.tif"), "-o", str(tmp_path / "u.csv")]
    assert main([*args, "--spacing", "2,2"]) == 0
    rows = _table(tmp_path / "u.csv")
    assert float(rows[0]["area_um2"]) == pytest.approx(float(rows[0]["area"]) * 4)


def _fiji_calibrated_map(tmp_path, shape, pixel: float, seed: int):
    """``(prob.tif, prob)``: a noisy probability movie of ``_labels`` saved as Fiji does, in um."""
    rng = np.random.default_rng(seed)
    prob = np.clip(_labels(shape).astype(np.float32) / 7 + rng.normal(0, 0.02, shape), 0, 1)
    src = tmp_path / "prob.tif"
    tifffile.imwrite(
        src, prob.astype(np.float32), imagej=True, resolution=(1 / pixel, 1 / pixel),
        metadata={"axes": "TYX", "unit": "micron"},
    )  # fmt: skip
    return src, prob


def test_segment_writes_the_images_pixel_size(tmp_path):
    """A Fiji-calibrated movie's masks carry its calibration, with and without a model, in a
    TIFF, an OME-Zarr and a CTC result folder (which had none, audit 26)."""
    src, _ = _fiji_calibrated_map(tmp_path, (2, 32, 32), 0.8, seed=0)
    out = tmp_path / "masks.tif"
    assert main(["segment", str(src), "-o", str(out), "--no-progress"]) == 0
    assert read_pixel_size(out) == PixelSize({"y": 0.8, "x": 0.8}, "um")
    ome = tmp_path / "masks.ome.zarr"
    assert main(["segment", str(src), "-o", str(ome), "--no-progress"]) == 0
    assert read_pixel_size(ome) == PixelSize({"y": 0.8, "x": 0.8}, "um")
    ctc = tmp_path / "res"
    assert main(["segment", str(src), "-o", str(ctc), "--no-progress"]) == 0
    assert read_pixel_size(ctc) == PixelSize({"y": 0.8, "x": 0.8}, "um")


def test_stream_and_predict_carry_the_pixel_size(tmp_path):
    """stream's labels record the movie's pixel size; predict's maps hand it on to segment."""
    src, _ = _fiji_calibrated_map(tmp_path, (4, 32, 32), 0.4, seed=1)
    size = PixelSize({"y": 0.4, "x": 0.4}, "um")
    out = tmp_path / "labels.zarr"
    assert main(["stream", str(src), "-o", str(out), "--chunk", "2", "--no-progress"]) == 0
    assert read_pixel_size(out) == size
    from napari_hemd.data.synthetic import nuclei_video

    movie = np.asarray(nuclei_video()["image"][:2, :96, :96])
    img = tmp_path / "movie.tif"
    tifffile.imwrite(
        img, movie, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
        metadata={"axes": "TYX", "unit": "micron"},
    )  # fmt: skip
    maps = tmp_path / "maps.zarr"
    args = ["--model", "nuclei-fluo", "--tta", "1", "--threads", "1", "--no-progress"]
    assert main(["predict", str(img), "-o", str(maps), *args[:-1]]) == 0
    assert read_pixel_size(maps) == size
    masks = tmp_path / "masks.tif"
    assert main(["segment", str(maps), "-o", str(masks), "--no-progress"]) == 0
    assert read_pixel_size(masks) == size


def test_napari_reader_opens_files_at_their_pixel_size(tmp_path):
    from napari_hemd._napari_io import get_reader

    movie = _fiji(tmp_path / "movie.tif", np.zeros((3, 16, 16), np.uint16), "TYX")
    ((_, meta, kind),) = get_reader(str(movie))(str(movie))
    assert kind == "image" and meta["scale"] == [1.0, 0.65, 0.65]
    assert meta["units"] == ("pixel", "um", "um")
    stack = _fiji(tmp_path / "stack.tif", np.zeros((4, 16, 16), np.uint16), "ZYX", 0.2, z=1.0)
    ((_, meta, _),) = get_reader(str(stack))(str(stack))
    assert meta["scale"] == [1.0, 0.2, 0.2] and meta["units"] == ("um", "um", "um")
    two = tmp_path / "two.tif"  # one layer per channel, each at the pixel size
    tifffile.imwrite(
        two, np.zeros((3, 2, 16, 16), np.uint16), imagej=True, resolution=(2.0, 2.0),
        metadata={"axes": "TCYX", "unit": "micron"},
    )  # fmt: skip
    ((_, meta, _),) = get_reader(str(two))(str(two))
    assert meta["channel_axis"] == 1 and meta["scale"] == [1.0, 0.5, 0.5]
    ome = write_labels(_labels(), tmp_path / "l.ome.zarr", pixel_size=PixelSize({"y": 0.5, "x": 0.5}, "nm"))  # fmt: skip
    ((_, meta, kind),) = get_reader(str(ome))(str(ome))
    assert kind == "labels" and meta["scale"] == [1.0, 0.5, 0.5]
    assert meta["units"] == ("pixel", "nm", "nm")
    plain = tmp_path / "plain.tif"  # nothing recorded: napari's defaults
    tifffile.imwrite(plain, np.zeros((3, 16, 16), np.uint16))
    ((_, meta, _),) = get_reader(str(plain))(str(plain))
    assert "scale" not in meta and "units" not in meta


def test_napari_writers_keep_the_layers_pixel_size(tmp_path):
    from napari.layers import Labels

    from napari_hemd._napari_io import write_ome_zarr, write_tiff

    layer = Labels(_labels(), scale=(1, 0.5, 0.5), units=("pixel", "um", "um"))
    state = layer._get_state()  # what napari hands a writer
    (tif,) = write_tiff(str(tmp_path / "l.tif"), layer.data, state)
    (ome,) = write_ome_zarr(str(tmp_path / "l.ome.zarr"), layer.data, state)
    for out in (tif, ome):
        assert read_pixel_size(out) == PixelSize({"y": 0.5, "x": 0.5}, "um"), out


def test_a_stacks_voxel_size_sets_the_3d_models_z_step(tmp_path, capsys, shared_data):
    """segment --model nuclei-3d on a Fiji stack takes its voxel shape (z 0.5 / x 0.25: 2);
    --z-scale replaces it; without a recorded size the model's own (2.2) is used."""
    import h5py

    from napari_hemd.io.stacks import recorded_params

    with h5py.File(shared_data / "volumes" / "nuclei3d_1135.h5", "r") as f:
        raw = np.asarray(f["raw"][80:88, 20:84, 20:84])
    stack = _fiji(tmp_path / "stack.tif", raw.astype(np.uint16), "ZYX", 0.25, z=0.5)
    args = ["--model", "nuclei-3d", "--tta", "1", "--threads", "1", "--no-progress"]
    out = tmp_path / "a.tif"
    assert main(["segment", str(stack), "-o", str(out), *args]) == 0
    assert "z step / pixel width 2 from the stack's voxel size" in capsys.readouterr().err
    assert recorded_params(out)["z_scale"] == 2.0
    assert read_pixel_size(out) == PixelSize({"z": 0.5, "y": 0.25, "x": 0.25}, "um")
    out = tmp_path / "b.tif"
    assert main(["segment", str(stack), "-o", str(out), "--z-scale", "3", *args]) == 0
    assert recorded_params(out)["z_scale"] == 3.0
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, raw)
    out = tmp_path / "c.tif"
    assert main(["segment", str(plain), "-o", str(out), *args]) == 0
    assert recorded_params(out)["z_scale"] == 2.2


def test_a_fiji_stack_opens_as_one_stack_and_saves_as_one(tmp_path):
    """A Fiji ZYX stack opens with its axes named z, y, x (Export and Proofread take its
    labels as one stack); File > Save writes a ZYX TIFF with its z step (a movie before)."""
    from napari.layers import Labels

    from napari_hemd._napari_io import get_reader, write_tiff

    stack = _fiji(tmp_path / "s.tif", np.zeros((4, 16, 16), np.uint16), "ZYX", 0.2, z=1.0)
    ((_, meta, _),) = get_reader(str(stack))(str(stack))
    assert meta["axis_labels"] == ("z", "y", "x")
    movie = _fiji(tmp_path / "m.tif", np.zeros((3, 16, 16), np.uint16), "TYX")
    ((_, meta, _),) = get_reader(str(movie))(str(movie))
    assert meta["axis_labels"] == ("t", "y", "x")
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((3, 16, 16), np.uint16))
    ((_, meta, _),) = get_reader(str(plain))(str(plain))
    assert "axis_labels" not in meta  # a plain stack names no axes: napari's own
    lab = Labels(_labels((4, 32, 32)), scale=(1.0, 0.2, 0.2), units=("um",) * 3)
    lab.axis_labels = ("z", "y", "x")
    (out,) = write_tiff(str(tmp_path / "l.tif"), lab.data, lab._get_state())
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "ZYX" and tif.imagej_metadata["spacing"] == 1.0
    assert read_pixel_size(out) == PixelSize({"z": 1.0, "y": 0.2, "x": 0.2}, "um")


def test_maps_and_mixed_unit_ome_tiffs_give_their_pixel_size(tmp_path):
    """predict's TIFF maps (a JSON description) and an OME-TIFF whose z step is in nm beside
    um pixels (both opened uncalibrated before)."""
    import json

    from napari_hemd.io.calibration import PIXEL_SIZE_KEY

    maps = tmp_path / "maps.tif"
    size = PixelSize({"y": 0.65, "x": 0.65}, "um")
    desc = json.dumps({"model": "nuclei-fluo", PIXEL_SIZE_KEY: size.to_json()})
    tifffile.imwrite(maps, np.zeros((2, 8, 8), np.float32), description=desc, metadata=None)
    assert read_pixel_size(maps) == size
    ome = _ome_tiff(tmp_path / "o.ome.tif", 0.1, 500, "µm", "nm")
    got = read_pixel_size(ome)
    assert got.unit == "um" and got.sizes["z"] == pytest.approx(0.5)


def test_measure_converts_units_and_says_what_it_cannot_use(tmp_path, capsys):
    """--unit nm converts a size recorded in um (renamed the columns only before); a stack
    with xy but no z size says why it gets no physical columns; a CTC folder takes --image's."""
    lab = _labels((3, 32, 32))
    out = write_labels(lab, tmp_path / "l.tif", pixel_size=PixelSize({"y": 0.5, "x": 0.5}, "um"))
    args = ["measure", str(out), "-o", str(tmp_path / "t.csv")]
    assert main([*args, "--unit", "nm"]) == 0
    assert "in nm: 500, 500" in capsys.readouterr().err
    row = _table(tmp_path / "t.csv")[0]
    assert float(row["area_nm2"]) == pytest.approx(float(row["area"]) * 500**2)
    assert row["area_nm2"] == str(int(row["area"]) * 500**2)  # not 56124999.999999985
    vol = write_labels(lab, tmp_path / "v.tif", axes="zyx", pixel_size=PixelSize({"y": 0.5, "x": 0.5}, "um"))  # fmt: skip
    assert main(["measure", str(vol), "-o", str(tmp_path / "v.csv")]) == 0
    assert "not of all 3 axes: no physical columns" in capsys.readouterr().err
    ctc = write_labels(lab, tmp_path / "res")
    movie = _fiji(tmp_path / "movie.tif", np.zeros((3, 32, 32), np.uint16), "TYX", 0.5)
    csv_out = tmp_path / "c.csv"
    assert main(["measure", str(ctc), "--image", str(movie), "-o", str(csv_out)]) == 0
    assert "pixel size from movie.tif" in capsys.readouterr().err
    row = _table(csv_out)[0]
    assert float(row["area_um2"]) == pytest.approx(float(row["area"]) * 0.25)


def test_review_round_trips(tmp_path, capsys):
    """Length-1 axes survive a label TIFF (ImageJ dropped them); a z axis in pixels beside
    um pixels records no z size; a plain ImageJ stack (a movie saved from Fiji) names no z; a
    flipped layer's negative scale is its size; inch as napari spells it; --unit names a
    size recorded without one."""
    from napari_hemd._napari_io import get_reader
    from napari_hemd.io.calibration import normalise_unit

    for shape in ((1, 16, 16), (3, 1, 16, 16), (1, 4, 16, 16)):
        lab = np.ones(shape, np.uint16)
        out = write_labels(lab, tmp_path / f"l{len(shape)}{shape[0]}.tif")
        assert read_stack(out).shape == shape
    size = PixelSize.from_layer([1.0, 0.5, 0.5], ["pixel", "um", "um"], spatial=3)
    assert size == PixelSize({"y": 0.5, "x": 0.5}, "um")
    ome = write_labels(_labels((3, 32, 32)), tmp_path / "z.ome.zarr", axes="zyx", pixel_size=size)
    import zarr

    axes = zarr.open_group(str(ome), mode="r").attrs["multiscales"][0]["axes"]
    assert [a.get("unit") for a in axes] == [None, "micrometer", "micrometer"]
    assert read_pixel_size(ome) == size  # no 1 um z step made of the pixel
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(
        plain, np.zeros((5, 16, 16), np.uint16), imagej=True,
        metadata={"axes": "ZYX", "hyperstack": False},
    )  # fmt: skip
    ((_, meta, _),) = get_reader(str(plain))(str(plain))
    assert "axis_labels" not in meta
    assert PixelSize.from_layer([1, -0.5, 0.5], ["pixel", "um", "um"]).sizes == {"y": 0.5, "x": 0.5}
    assert normalise_unit("in") == "inch"
    out = write_labels(
        _labels(), tmp_path / "u.ome.zarr", pixel_size=PixelSize({"y": 2.0, "x": 2.0})
    )
    assert main(["measure", str(out), "-o", str(tmp_path / "u.csv"), "--unit", "um"]) == 0
    row = _table(tmp_path / "u.csv")[0]
    assert float(row["area_um2"]) == pytest.approx(float(row["area"]) * 4)


def test_a_folder_of_calibrated_frames_gives_their_pixel_size(tmp_path, capsys):
    """Fiji's *Save As > Image Sequence* writes one calibrated TIFF a frame: the folder's pixel
    size was dropped everywhere (segment, measure --image, napari; audit 22)."""
    from napari_hemd._napari_io import get_reader

    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(3):
        _fiji(folder / f"t{t:03d}.tif", np.full((16, 16), t, np.uint16), "YX", xy=0.645)
    size = read_pixel_size(folder)
    assert size is not None and size.sizes == {"y": 0.645, "x": 0.645} and size.unit == "um"
    layers = get_reader(str(folder))(str(folder))
    assert layers[0][1]["scale"] == [1.0, 0.645, 0.645]
    # a CTC sequence's reference masks lie on its frames, at their pixel size (review 29b)
    seg = tmp_path / "frames_GT" / "SEG"
    seg.mkdir(parents=True)
    tifffile.imwrite(seg / "man_seg001.tif", np.ones((16, 16), np.uint16))
    layers = get_reader(str(folder))(str(folder))
    assert [m.get("scale") for _, m, _ in layers] == [[1.0, 0.645, 0.645]] * 2
    _fiji(folder / "t003.tif", np.zeros((16, 16), np.uint16), "YX", xy=0.5)  # they disagree
    assert read_pixel_size(folder) is None


def test_a_ctc_folder_keeps_the_voxel_size(tmp_path):
    """A CTC result folder of a calibrated movie forgot its pixel size: napari opened it at
    scale 1, off the image, and measure wrote no um columns (audit 26). Each mask records it
    as Fiji does, and the folder stays a valid CTC result (uint16 LZW masks)."""
    from napari_hemd._napari_io import get_reader

    size = PixelSize({"z": 2.0, "y": 0.5, "x": 0.5}, "um")
    lab = np.zeros((3, 4, 32, 32), np.uint16)  # (T, Z, Y, X), one cell dividing at t2
    lab[:2, 1:3, 4:12, 4:10] = 3
    lab[2, 1:3, 4:8, 4:10], lab[2, 1:3, 9:12, 4:10] = 5, 6
    tracks = np.array([[3, 0, 1, 0], [5, 2, 2, 3], [6, 2, 2, 3]])
    out = write_labels(lab, tmp_path / "res", tracks=tracks, pixel_size=size)
    assert read_pixel_size(out) == size
    plain = write_labels(lab, tmp_path / "plain", tracks=tracks)  # uncalibrated: as before
    assert read_pixel_size(plain) is None
    assert (out / "res_track.txt").read_text() == (plain / "res_track.txt").read_text()
    for mask in sorted(out.glob("mask*.tif")):
        with tifffile.TiffFile(mask) as tif:
            assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
            assert tif.series[0].dtype == np.uint16 and tif.series[0].axes == "ZYX"
    validate = pytest.importorskip("ctc_metrics.scripts.validate")
    assert validate.validate_sequence(str(out), threads=1)["Valid"] == 1
    # napari places the masks and their tracks at the voxel size, over the image
    (data, meta, _), (_, tmeta, kind) = get_reader(str(out))(str(out))
    assert kind == "tracks" and meta["scale"] == tmeta["scale"] == [1.0, 2.0, 0.5, 0.5]
    assert meta["units"] == ("pixel", "um", "um", "um")
    np.testing.assert_array_equal(data, lab)
    assert main(["measure", str(out), "-o", str(tmp_path / "m.csv")]) == 0
    row = _table(tmp_path / "m.csv")[0]
    assert float(row["volume_um3"]) == pytest.approx(float(row["area"]) * 2 * 0.5 * 0.5)
    # 2D frames: resolution and unit; a 3D mask of one slice, which ImageJ would read 2D
    flat = write_labels(lab[:, 1], tmp_path / "flat", pixel_size=PixelSize({"y": 0.5, "x": 0.5}, "nm"))  # fmt: skip
    assert read_pixel_size(flat) == PixelSize({"y": 0.5, "x": 0.5}, "nm")
    thin = write_labels(lab[:, 1:2], tmp_path / "thin", pixel_size=size)
    assert read_pixel_size(thin) == size
    assert tifffile.imread(thin / "mask000.tif").shape == (1, 32, 32)


def test_zarr_outputs_keep_and_open_at_their_pixel_size(tmp_path):
    """predict's and stream's zarr outputs record the pixel size, yet napari opened them at
    scale 1; segment maps.zarr -o x.zarr and link -o x.tif dropped it (audit 26)."""
    import zarr

    from napari_hemd._napari_io import get_reader
    from napari_hemd.io.calibration import PIXEL_SIZE_KEY

    size = PixelSize({"y": 0.4, "x": 0.4}, "um")
    src, prob = _fiji_calibrated_map(tmp_path, (4, 32, 32), 0.4, seed=1)
    streamed = tmp_path / "s.zarr"
    assert main(["stream", str(src), "-o", str(streamed), "--chunk", "2", "--no-progress"]) == 0
    ((_, meta, kind),) = get_reader(str(streamed))(str(streamed))
    assert kind == "labels" and meta["scale"] == [1.0, 0.4, 0.4]
    assert meta["units"] == ("pixel", "um", "um")
    for out in ("linked.tif", "linked", "linked.zarr"):  # link keeps the input's
        args = ["link", str(streamed), "-o", str(tmp_path / out), "--no-progress"]
        assert main(args) == 0
        assert read_pixel_size(tmp_path / out) == size, out
    # a maps group as predict writes it (the pixel size in its attributes)
    maps = tmp_path / "maps.zarr"
    group = zarr.open_group(str(maps), mode="w")
    group.create_array("foreground", data=prob)
    group.create_array("background", data=1 - prob)
    group.create_array("affinities", data=np.stack([prob, prob], axis=1))  # (T, N, Y, X)
    group.attrs[PIXEL_SIZE_KEY] = size.to_json()
    layers = {m["name"]: m for _, m, _ in get_reader(str(maps))(str(maps))}
    assert layers["maps foreground"]["scale"] == layers["maps background"]["scale"]
    assert layers["maps foreground"]["scale"] == [1.0, 0.4, 0.4]
    assert layers["maps affinities"]["scale"] == [1.0, 1.0, 0.4, 0.4]
    seg = tmp_path / "seg.zarr"
    assert main(["segment", str(maps), "-o", str(seg), "--no-progress"]) == 0
    assert read_pixel_size(seg) == size
    # a stack's voxel depth: (T, Z, Y, X) labels open with z scaled too
    deep = PixelSize({"z": 2.0, "y": 0.5, "x": 0.5}, "um")
    out = write_labels(np.zeros((2, 3, 8, 8), np.uint16), tmp_path / "deep.zarr", pixel_size=deep)
    ((_, meta, _),) = get_reader(str(out))(str(out))
    assert meta["scale"] == [1.0, 2.0, 0.5, 0.5] and meta["units"] == ("pixel", "um", "um", "um")


def _ome_zarr_movie(path, data, scale, units):
    """An OME-Zarr 0.4 image as a converter writes a movie (axes with their units)."""
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("0", data=data, chunk_key_encoding={"name": "v2", "separator": "/"})
    types = {"t": "time", "z": "space", "y": "space", "x": "space"}
    axes = [{"name": a, "type": types[a], **({"unit": u} if u else {})} for a, u in units.items()]
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
            ],
        }
    ]
    return path


def test_an_ome_zarr_movie_s_labels_lie_over_it(tmp_path):
    """Review 32: napari's reader placed an OME-Zarr image at its translation, its labels from
    segment at the origin. Only a whole number of frames on t is taken (frames 3-6 of a movie),
    and segment's OME-Zarr labels start at the same frame; a spatial shift is left aside on
    both, as before."""
    from napari_hemd._napari_io import get_reader
    from napari_hemd.io.ome_zarr import ome_zarr_first_frame

    prob = np.zeros((3, 32, 32), np.float32)
    prob[:, 8:20, 8:20] = 0.9
    units = {"t": "second", "y": "micrometer", "x": "micrometer"}
    src = _ome_zarr_movie(tmp_path / "m.ome.zarr", prob, [60.0, 0.5, 0.5], units)
    import zarr

    root = zarr.open_group(str(src), mode="r+")
    ms = root.attrs["multiscales"]
    ms[0]["datasets"][0]["coordinateTransformations"].append(
        {"type": "translation", "translation": [180.0, 50.0, 100.0]}
    )
    root.attrs["multiscales"] = ms
    assert ome_zarr_first_frame(src) == 3
    ((_, image, _),) = get_reader(str(src))(str(src))
    assert list(image["translate"]) == [180.0, 0.0, 0.0]
    for out in ("l.ome.zarr", "ctc"):
        assert main(["segment", str(src), "-o", str(tmp_path / out), "--no-progress"]) == 0
    ((_, labels, _),) = get_reader(str(tmp_path / "l.ome.zarr"))(str(tmp_path / "l.ome.zarr"))
    assert list(labels["translate"]) == list(image["translate"])
    assert list(labels["scale"]) == list(image["scale"])
    assert sorted(p.name for p in (tmp_path / "ctc").glob("mask*.tif"))[0] == "mask003.tif"
    # link keeps the placement (review 32b: back at frame 0)
    linked = tmp_path / "linked.ome.zarr"
    assert main(["link", str(tmp_path / "l.ome.zarr"), "-o", str(linked), "--no-progress"]) == 0
    ((_, placed, _),) = get_reader(str(linked))(str(linked))
    assert list(placed["translate"]) == list(image["translate"])
    # half a frame or before the movie: no placement on either side (review 32b: the image
    # moved by 30 s, its labels not)
    for shift in (30.0, -120.0, float("nan"), float("inf")):  # (NaN: it failed to open)
        ms[0]["datasets"][0]["coordinateTransformations"][-1]["translation"] = [shift, 0.0, 0.0]
        root.attrs["multiscales"] = ms
        ((_, image, _),) = get_reader(str(src))(str(src))
        assert "translate" not in image and ome_zarr_first_frame(src) == 0


def test_labels_and_maps_of_a_placed_ome_zarr_movie_lie_over_it(tmp_path):
    """Session 33: segment placed an OME-Zarr movie's labels at its frame 3 only in an OME-Zarr
    or a CTC folder; a TIFF or zarr of them opened at frame 0, as did predict's maps (and the
    labels segment made of those maps, in every format). A numbered folder (t050.tif ...) is
    placed at its first number likewise, with all that is made of it."""
    from napari_hemd._napari_io import get_reader

    rng = np.random.default_rng(0)
    movie = rng.normal(20, 3, (3, 48, 48)).clip(0, 255).astype(np.uint8)
    movie[:, 12:30, 12:30] = 200
    src = _ome_zarr_movie(
        tmp_path / "m.ome.zarr",
        movie,
        [1.0, 0.5, 0.5],
        {"t": None, "y": "micrometer", "x": "micrometer"},
    )
    import zarr

    root = zarr.open_group(str(src), mode="r+")
    ms = root.attrs["multiscales"]
    ms[0]["datasets"][0]["coordinateTransformations"].append(
        {"type": "translation", "translation": [3.0, 0.0, 0.0]}
    )
    root.attrs["multiscales"] = ms
    ((_, image, _),) = get_reader(str(src))(str(src))
    assert image["translate"][0] == 3.0 and image["scale"][0] == 1.0

    def placed(path):
        layers = get_reader(str(path))(str(path))
        return {(m.get("translate", (0.0,))[0], m.get("scale", (1.0,))[0]) for _, m, _ in layers}

    model = ["--model", "nuclei-fluo", "--tta", "1", "--no-progress"]
    for out in ("l.tif", "l.zarr", "l.ome.zarr"):  # the movie itself, with the model
        assert main(["segment", str(src), "-o", str(tmp_path / out), *model]) == 0
        assert placed(tmp_path / out) == {(3.0, 1.0)}, out
    for out in ("k.tif", "k.zarr", "k.ome.zarr"):  # link keeps them there (review 33)
        args = ["link", str(tmp_path / "l.tif"), "-o", str(tmp_path / out), "--no-progress"]
        assert main(args) == 0
        assert placed(tmp_path / out) == {(3.0, 1.0)}, out
    assert main(["stream", str(src), "-o", str(tmp_path / "s.zarr"), *model]) == 0  # and stream
    assert placed(tmp_path / "s.zarr") == {(3.0, 1.0)}
    for maps in ("p.tif", "p.zarr"):  # predict's maps, then segment on them
        args = ["predict", str(src), "-o", str(tmp_path / maps), *model]
        assert main([*args, "--outputs", "foreground,background"]) == 0
        fg = tmp_path / ("p_foreground.tif" if maps == "p.tif" else maps)
        assert placed(fg) == {(3.0, 1.0)}, maps
        for out in ("s.tif", "s.ome.zarr", "s"):
            dest = tmp_path / f"{maps[2:]}-{out}"
            assert main(["segment", str(fg), "-o", str(dest), "--no-progress"]) == 0
            if out == "s":  # a CTC folder: numbered from the movie's frame
                assert sorted(p.name for p in dest.glob("mask*.tif"))[0] == "mask003.tif"
            else:
                assert placed(dest) == {(3.0, 1.0)}, (maps, out)
    # a numbered folder opens at its first number (audit 35: its CTC result folder opened at
    # frame 50, the folder itself at 0): its maps and labels, in every format, lie there too
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(3):
        tifffile.imwrite(folder / f"t{50 + t:03d}.tif", movie[t])
    assert placed(folder) == {(50.0, 1.0)}
    assert main(["predict", str(folder), "-o", str(tmp_path / "f.zarr"), *model]) == 0
    assert placed(tmp_path / "f.zarr") == {(50.0, 1.0)}
    for out in ("f.tif", "f.ome.zarr", "fres"):
        dest = tmp_path / out
        assert main(["segment", str(tmp_path / "f.zarr"), "-o", str(dest), "--no-progress"]) == 0
        assert placed(dest) == {(50.0, 1.0)}, out
    assert main(["segment", str(folder), "-o", str(tmp_path / "d.tif"), *model]) == 0
    assert placed(tmp_path / "d.tif") == {(50.0, 1.0)}


def test_an_ome_zarr_movies_time_step_is_kept(tmp_path):
    """segment movie.ome.zarr -o out.ome.zarr gave the labels' t axis scale 1 (the movie's 60
    s a frame lost): in napari the labels covered t 0-3, the image 0-180 (audit 26)."""
    from napari_hemd.io.ome_zarr import read_ome_zarr

    rng = np.random.default_rng(2)
    prob = np.clip(_labels((3, 32, 32)).astype(np.float32) / 7 + rng.normal(0, 0.02, (3, 32, 32)), 0, 1)  # fmt: skip
    units = {"t": "second", "y": "micrometer", "x": "micrometer"}
    src = _ome_zarr_movie(tmp_path / "movie.ome.zarr", prob, [60.0, 0.5, 0.5], units)
    out = tmp_path / "out.ome.zarr"
    assert main(["segment", str(src), "-o", str(out), "--no-progress"]) == 0
    (node,) = read_ome_zarr(out)
    assert node.axes == "tyx" and node.scale == [60.0, 0.5, 0.5]
    axes = node.attrs["multiscales"][0]["axes"]
    assert [a.get("unit") for a in axes] == ["second", "micrometer", "micrometer"]
    assert read_pixel_size(out) == PixelSize({"y": 0.5, "x": 0.5}, "um")
    linked = tmp_path / "linked.ome.zarr"  # link keeps it too (review 30b: it wrote 1)
    assert main(["link", str(out), "-o", str(linked), "--no-progress"]) == 0
    assert read_ome_zarr(linked)[0].scale == [60.0, 0.5, 0.5]
    from napari_hemd.io.ome_zarr import ome_zarr_time_step

    assert ome_zarr_time_step(src) == (60.0, "second")
    # nothing to carry: no t axis, or a step of 1 without a unit; other outputs untouched
    plain = _ome_zarr_movie(tmp_path / "p.ome.zarr", prob, [1.0, 0.5, 0.5], {**units, "t": None})
    assert ome_zarr_time_step(plain) is None
    assert ome_zarr_time_step(tmp_path / "nothing.ome.zarr") is None
    one = tmp_path / "one.ome.zarr"
    write_labels(_labels((3, 8, 8)), one, axes="zyx", time_step=(60.0, "second"))
    assert read_ome_zarr(one)[0].scale == [1.0, 1.0, 1.0]


def test_a_tiff_movie_s_frame_interval_reaches_the_labels(tmp_path):
    """Fiji's *Frame interval* (an ImageJ hyperstack's ``finterval`` / ``tunit``) and an
    OME-TIFF's ``TimeIncrement`` were dropped: a movie at 5 minutes a frame gave labels at 1
    (noticed in session 31). ``segment`` and ``link`` carry it into a TIFF's ``finterval`` and
    an OME-Zarr's ``t`` axis; nothing is made up where the movie records none."""
    from napari_hemd.io.calibration import read_time_step

    prob = np.zeros((3, 32, 32), np.float32)
    prob[:, 10:20, 12:22] = 0.9
    fiji = tmp_path / "fiji.tif"
    tifffile.imwrite(
        fiji, prob, imagej=True, resolution=(2.0, 2.0),
        metadata={"axes": "TYX", "unit": "micron", "finterval": 5.0, "tunit": "min"},
    )  # fmt: skip
    ome = tmp_path / "movie.ome.tif"
    tifffile.imwrite(
        ome, prob, ome=True,
        metadata={"axes": "TYX", "TimeIncrement": 30.0, "TimeIncrementUnit": "s"},
    )  # fmt: skip
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, prob)
    assert read_time_step(fiji) == (5.0, "minute")
    assert read_time_step(ome) == (30.0, "second")
    assert read_time_step(plain) is None and read_time_step(tmp_path / "none.tif") is None
    for src, step in ((fiji, (5.0, "minute")), (ome, (30.0, "second"))):
        out, zout = tmp_path / f"{src.stem}-l.tif", tmp_path / f"{src.stem}-l.ome.zarr"
        for o in (out, zout):
            assert main(["segment", str(src), "-o", str(o), "--no-progress"]) == 0
        with tifffile.TiffFile(out) as tif:  # what Fiji reads
            md = tif.imagej_metadata
        assert (md["finterval"], md["tunit"]) == (step[0], {"minute": "min"}.get(step[1], "sec"))
        assert read_time_step(out) == step
        # an OME-Zarr of a TIFF's labels stays at one per frame, as napari shows the TIFF
        # (review 32: the labels lay at 60 per frame over a movie at 1)
        assert read_time_step(zout) is None
        linked = tmp_path / f"{src.stem}-linked.tif"
        assert main(["link", str(out), "-o", str(linked), "--no-progress"]) == 0
        assert read_time_step(linked) == step
    assert main(["segment", str(plain), "-o", str(tmp_path / "p.tif"), "--no-progress"]) == 0
    with tifffile.TiffFile(tmp_path / "p.tif") as tif:
        assert "finterval" not in tif.imagej_metadata
    # ImageJ's spellings; a unit that is no time carries nothing (review 32: a Greek mu failed
    # the write at the end, "frame" went into OME-Zarr as a unit)
    for unit, want in (("\\u00B5s", (2.0, "microsecond")), ("ns", (2.0, "nanosecond")),
                       ("frame", None), (None, (2.0, "second")), ("\u03bcs", None)):  # fmt: skip
        if unit == "\u03bcs":  # (an ImageJ description is ASCII: an OME-TIFF's unit)
            md = {"axes": "TYX", "TimeIncrement": 2.0, "TimeIncrementUnit": unit}
            tifffile.imwrite(tmp_path / "u.tif", prob, ome=True, metadata=md)
            want = (2.0, "microsecond")
        else:
            md = {"axes": "TYX", "finterval": 2.0, **({"tunit": unit} if unit else {})}
            tifffile.imwrite(tmp_path / "u.tif", prob, imagej=True, metadata=md)
        assert read_time_step(tmp_path / "u.tif") == want, unit
        out = tmp_path / "u-l.tif"
        assert main(["segment", str(tmp_path / "u.tif"), "-o", str(out), "--no-progress",
                     "--overwrite"]) == 0  # fmt: skip
        assert read_time_step(out) == want, unit
    # an API caller's units and NGFF's own (review 32b: "s", "min" and "decisecond" were dropped)
    for unit, want in (("s", (60.0, "second")), ("min", (60.0, "minute")),
                       ("decisecond", (60.0, "decisecond"))):  # fmt: skip
        out = write_labels(_labels((3, 8, 8)), tmp_path / "w.tif", time_step=(60.0, unit),
                           overwrite=True)  # fmt: skip
        assert read_time_step(out) == (want if unit != "decisecond" else None), unit
        zout = write_labels(_labels((3, 8, 8)), tmp_path / "w.ome.zarr", time_step=(60.0, unit),
                            overwrite=True)  # fmt: skip
        assert read_time_step(zout) == want, unit
    # a step in no unit of time is carried by neither (review 32c: an OME-Zarr kept it, which a
    # TIFF then read as seconds)
    from napari_hemd.io.ome_zarr import read_ome_zarr

    zout = write_labels(_labels((3, 8, 8)), tmp_path / "f.ome.zarr", time_step=(60.0, "frame"))
    assert read_time_step(zout) is None and read_ome_zarr(zout)[0].scale[0] == 1.0


def test_outputs_line_up_with_their_image_in_napari(tmp_path):
    """Review 30b: a 2D movie's OME-TIFF that records a PhysicalSizeZ (microscopes write one)
    gave its outputs' time axis the z size in napari; a z stack's affinities alone put it on
    their channel axis. Every layer now lies over the image it came from."""
    import zarr

    from napari_hemd._napari_io import get_reader

    def placed(path):
        return [tuple(m.get("scale", ())) for _, m, _ in get_reader(str(path))(str(path))]

    prob = np.zeros((4, 32, 32), np.float32)
    prob[:, 10:20, 12:22] = 0.9
    movie = tmp_path / "prob.ome.tif"
    tifffile.imwrite(
        movie, prob, ome=True, metadata={"axes": "TYX", "PhysicalSizeX": 0.4,
                                         "PhysicalSizeY": 0.4, "PhysicalSizeZ": 2.0},
    )  # fmt: skip
    assert read_pixel_size(movie).sizes == {"y": 0.4, "x": 0.4}  # no z axis: no z size
    for out in ("x.zarr", "x.tif", "ctc"):
        assert main(["segment", str(movie), "-o", str(tmp_path / out), "--no-progress"]) == 0
        assert set(placed(tmp_path / out)) == {(1.0, 0.4, 0.4)}, out
    group = zarr.open_group(str(tmp_path / "maps.zarr"), mode="w")  # predict's, of a z stack
    group.attrs["napari_hemd_pixel_size"] = {"sizes": {"z": 2.0, "y": 0.5, "x": 0.5}, "unit": "um"}
    group.create_array("affinities", shape=(3, 10, 16, 16), dtype=np.float32)
    group.create_array("embeddings", shape=(3, 16, 16, 16), dtype=np.float32)
    assert placed(tmp_path / "maps.zarr") == [(2.0, 1.0, 0.5, 0.5)] * 2
    del group["embeddings"]  # the affinities alone
    assert placed(tmp_path / "maps.zarr") == [(2.0, 1.0, 0.5, 0.5)]
