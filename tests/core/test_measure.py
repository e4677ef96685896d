"""Per-object measurements (``measure_objects``, ``napari-hemd measure``): known shapes, real masks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from napari_hemd.cli import main
from napari_hemd.core.measure import measure_objects, write_table


@pytest.fixture
def movie():
    """Two frames: a 4x6 box touching the top edge and a 3x3 box; frame 1 adds a third."""
    lab = np.zeros((3, 20, 30), np.uint16)
    lab[0, 0:4, 5:11] = 1
    lab[0, 10:13, 20:23] = 2
    lab[2, 0:4, 6:12] = 1
    lab[2, 10:13, 20:23] = 2
    lab[2, 15:18, 2:5] = 3
    img = np.zeros(lab.shape, np.float32)
    img[lab == 1] = 10.0
    img[0, 10, 20] = 50.0  # one bright pixel in object 2 of frame 0
    img[(lab == 2) & (img == 0)] = 5.0
    img[lab == 3] = 7.0
    return lab, img


def test_known_boxes(movie):
    lab, img = movie
    t = measure_objects(
        lab, img, spacing=(0.5, 0.25), tracks=np.array([[1, 0, 2, 0], [3, 2, 2, 1]])
    )
    assert t["frame"].tolist() == [0, 0, 2, 2, 2]  # frame 1 is empty: no row
    assert t["label"].tolist() == [1, 2, 1, 2, 3]
    assert t["area"].tolist() == [24, 9, 24, 9, 9]
    np.testing.assert_allclose(t["area_um2"], np.array([24, 9, 24, 9, 9]) * 0.125)
    np.testing.assert_allclose(t["centroid_y"][:2], [1.5, 11.0])
    np.testing.assert_allclose(t["centroid_x"][:2], [7.5, 21.0])
    np.testing.assert_allclose(t["centroid_y_um"][:2], [0.75, 5.5])  # y pixels of 0.5
    np.testing.assert_allclose(t["centroid_x_um"][:2], [1.875, 5.25])  # x pixels of 0.25
    # the disk of the physical area: 9 pixels of 0.125 um2
    np.testing.assert_allclose(t["equivalent_diameter_um"][1], 2 * np.sqrt(9 * 0.125 / np.pi))
    assert (t["bbox_y_min"][0], t["bbox_y_max"][0], t["bbox_x_min"][0], t["bbox_x_max"][0]) == (
        0, 4, 5, 11,
    )  # fmt: skip
    assert t["touches_border"].tolist() == [True, False, True, False, False]
    np.testing.assert_allclose(t["equivalent_diameter"][1], 2 * np.sqrt(9 / np.pi))
    assert t["max_intensity"][1] == 50.0 and t["min_intensity"][1] == 5.0
    np.testing.assert_allclose(t["mean_intensity"][1], (50 + 8 * 5) / 9)
    np.testing.assert_allclose(t["integrated_intensity"][1], 90.0)
    assert t["parent"].tolist() == [0, 0, 0, 0, 1]
    assert len({len(v) for v in t.values()}) == 1


def test_a_volume_and_its_errors():
    vol = np.zeros((5, 8, 8), np.int32)
    vol[1:4, 2:5, 2:6] = 4
    t = measure_objects(vol, frames=False, spacing=(2.0, 0.5, 0.5), unit="nm")
    assert t["label"].tolist() == [4] and t["area"].tolist() == [36]
    assert t["volume_nm3"].tolist() == [18.0] and t["centroid_z"].tolist() == [2.0]
    assert t["centroid_z_nm"].tolist() == [4.0] and t["centroid_x_nm"].tolist() == [1.75]
    np.testing.assert_allclose(t["equivalent_diameter_nm"], np.cbrt(6 * 18.0 / np.pi))
    assert "eccentricity" not in t and not t["touches_border"][0]
    with pytest.raises(ValueError, match="spacing must be 3 positive pixel sizes"):
        measure_objects(vol, frames=False, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="labels must be integers"):
        measure_objects(vol.astype(np.float32), frames=False)
    with pytest.raises(ValueError, match="image must have the labels' shape"):
        measure_objects(vol, np.zeros((5, 8, 9)), frames=False)
    empty = measure_objects(np.zeros((2, 8, 8), np.uint8))
    assert "label" in empty and len(empty["label"]) == 0


@pytest.mark.shared
def test_real_masks_of_hela(shared_data):
    """The silver-truth masks of three Fluo-N2DL-HeLa frames with their raw frames."""
    from napari_hemd.models import load_samples

    samples = load_samples(shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01", masks="st")[40:43]
    lab = np.stack([s.labels for s in samples])
    raw = np.stack(
        [
            tifffile.imread(shared_data / "ctc/Fluo-N2DL-HeLa/01" / f"{s.name.split('/')[-1]}.tif")
            for s in samples
        ]
    )
    t = measure_objects(lab, raw)
    for f in range(3):
        rows = t["frame"] == f
        ids = np.unique(lab[f])
        assert sorted(t["label"][rows].tolist()) == ids[ids > 0].tolist()
        assert t["area"][rows].sum() == np.count_nonzero(lab[f])
    i = len(t["label"]) // 2  # one object, checked by hand
    f, k = t["frame"][i], t["label"][i]
    inside = raw[f][lab[f] == k].astype(np.float64)
    np.testing.assert_allclose(t["mean_intensity"][i], inside.mean())
    np.testing.assert_allclose(t["integrated_intensity"][i], inside.sum())
    assert t["max_intensity"][i] == inside.max()


def test_cli_measures_a_linked_result_with_its_lineage(tmp_path, capsys):
    """segment --link writes a CTC folder; measure reads its tracks: daughters name a parent."""
    from napari_hemd.data.synthetic import nuclei_video

    v = nuclei_video(n_frames=12, shape=(96, 96), n_cells=6, seed=1)
    tifffile.imwrite(tmp_path / "prob.tif", v["prob"])
    tifffile.imwrite(tmp_path / "raw.tif", v["image"], photometric="minisblack")
    res = tmp_path / "res"
    assert (
        main(["segment", str(tmp_path / "prob.tif"), "-o", str(res), "--link", "--no-progress"])
        == 0
    )
    out = tmp_path / "table.csv"
    args = ["measure", str(res), "--image", str(tmp_path / "raw.tif"), "-o", str(out)]
    assert main([*args, "--spacing", "0.3,0.3"]) == 0
    assert "objects in 12 frame(s)" in capsys.readouterr().err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    tracks = np.loadtxt(res / "res_track.txt", dtype=int, ndmin=2)
    daughters = {int(r[0]): int(r[3]) for r in tracks if r[3]}
    assert daughters, "the synthetic video has divisions"
    for r in rows:
        assert int(r["parent"]) == daughters.get(int(r["label"]), 0)
        assert float(r["area_um2"]) == pytest.approx(int(r["area"]) * 0.09, rel=1e-5)
    assert main(args) == 2  # never overwritten silently
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["measure", str(res), "-o", str(tmp_path / "t.csv"), "--channel", "1"]) == 2
    assert "--channel needs --image" in capsys.readouterr().err
    assert main(["measure", str(tmp_path / "prob.tif"), "-o", str(tmp_path / "t.csv")]) == 2
    assert "must hold integer instance ids" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"must be a \.csv file"):
        write_table({"a": np.zeros(1)}, tmp_path / "t.txt")


@pytest.mark.parametrize("name", ["stack.tif", "stack.zarr", "stack.ome.zarr", "stack"])
def test_cli_measures_one_stack_as_a_volume_when_its_labels_say_so(tmp_path, capsys, name):
    """Labels written with ``planes: 3`` (segment --model nuclei-3d on one stack) are measured as
    one volume in every format; the same labels without that record as a movie of slices."""
    from napari_hemd.io.stacks import recorded_params, write_labels

    vol = np.zeros((6, 16, 16), np.uint16)
    vol[1:5, 2:8, 2:8] = 1  # one object across four slices
    vol[2:4, 10:14, 10:14] = 2
    path = write_labels(vol, tmp_path / name, metadata={"planes": 3}, axes="ZYX")
    assert recorded_params(path)["planes"] == 3
    assert main(["measure", str(path), "-o", str(tmp_path / "v.csv")]) == 0
    err = capsys.readouterr().err
    # a CTC folder holds the stack as its one 3D frame (mask000.tif): 3D objects as they are
    assert "measured as one volume" in err if name != "stack" else "in 1 frame(s)" in err
    with open(tmp_path / "v.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["area"]) for r in rows] == [4 * 36, 2 * 16]
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, vol, photometric="minisblack")
    assert "planes" not in recorded_params(plain) and recorded_params(tmp_path / "no.tif") == {}
    assert main(["measure", str(plain), "-o", str(tmp_path / "m.csv")]) == 0
    assert "objects in 4 frame(s)" in capsys.readouterr().err  # slices as frames
    assert main(["measure", str(path), "-o", str(tmp_path / "s.csv"), "--spacing", "1,1"]) == 2
    assert "--spacing must give 3 pixel sizes (z,y,x) for LABELS of shape" in (
        capsys.readouterr().err
    )


def test_cli_refuses_a_raw_image_as_labels(tmp_path, capsys):
    """``measure RAW.tif`` reported every speck of grey value as an object."""
    from napari_hemd.data.synthetic import nuclei_video

    raw = nuclei_video(n_frames=3, shape=(96, 96), n_cells=5)["image"]
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    assert main(["measure", str(tmp_path / "raw.tif"), "-o", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert "LABELS: " in err and "looks like a raw image, not instance labels" in err
    assert err.count("\n") == 1 and not (tmp_path / "t.csv").exists()


def test_negative_and_huge_ids(tmp_path, capsys):
    """measure dropped negative ids (an empty table, exit 0) and failed on ids like 2**40 + k
    (an empty error line; link_labels asked for 4 TiB). Negative ids are refused; huge ones are
    measured (and linked) under the ids given."""
    from napari_hemd.core.linking import link_labels

    lab = np.zeros((2, 24, 24), np.int64)
    lab[:, 2:8, 2:8], lab[:, 12:20, 12:20] = 2**40 + 3, 2**40 + 9
    table = measure_objects(lab)
    assert table["label"].tolist() == [2**40 + 3, 2**40 + 9] * 2
    assert table["area"].tolist() == [36, 64] * 2
    linked, tracks = link_labels(lab)
    assert len(tracks) == 2 and len(np.unique(linked)) == 3
    with pytest.raises(
        ValueError, match=r"labels: expected ids >= 0; got minimum -\d+ \(frame 0\)"
    ):
        measure_objects(-lab)
    tifffile.imwrite(tmp_path / "neg.tif", -np.where(lab > 0, lab - 2**40, 0).astype(np.int32))
    assert main(["measure", str(tmp_path / "neg.tif"), "-o", str(tmp_path / "t.csv")]) == 2
    assert "expected ids >= 0" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


def test_a_named_z_axis_and_the_exports_record_make_one_volume(tmp_path, capsys):
    """A ZYX TIFF (Fiji's, write_labels(axes="zyx")) and labels the Export widget wrote (its
    record under "napari_hemd") were measured slice by slice: 759 "objects" for 54 nuclei."""
    from napari_hemd.io.stacks import write_labels

    vol = np.zeros((6, 16, 16), np.uint16)
    vol[1:5, 2:8, 2:8] = 1
    vol[2:4, 10:14, 10:14] = 2
    tifffile.imwrite(tmp_path / "fiji.tif", vol, imagej=True, metadata={"axes": "ZYX"})
    write_labels(vol, tmp_path / "w.tif", axes="zyx")
    write_labels(vol, tmp_path / "e.zarr", metadata={"napari_hemd": {"planes": 3}})
    for name in ("fiji.tif", "w.tif", "e.zarr"):
        assert main(["measure", str(tmp_path / name), "-o", str(tmp_path / f"{name}.csv")]) == 0
        assert "measure: 2 objects in 1 frame(s)" in capsys.readouterr().err, name
    tifffile.imwrite(tmp_path / "movie.tif", vol, imagej=True, metadata={"axes": "TYX"})
    assert main(["measure", str(tmp_path / "movie.tif"), "-o", str(tmp_path / "m.csv")]) == 0
    assert "in 4 frame(s)" in capsys.readouterr().err  # a movie stays a movie
    # a plain ImageJ stack (no hyperstack, no voxel depth): Fiji calls a movie's pages slices too
    tifffile.imwrite(
        tmp_path / "plain.tif", vol, imagej=True, metadata={"axes": "ZYX", "hyperstack": False}
    )
    assert main(["measure", str(tmp_path / "plain.tif"), "-o", str(tmp_path / "p.csv")]) == 0
    assert "in 4 frame(s)" in capsys.readouterr().err  # --volume measures it as one


def test_large_ids_in_a_frame_without_background():
    """Ids far beyond the objects are made consecutive to be measured: with no background
    pixel the smallest became 0, background, and its cell was dropped (linking alike)."""
    from napari_hemd.core.linking import link_labels

    lab = np.full((2, 32, 32), 5_000_000, np.int64)
    lab[:, :, 16:] = 7_000_000
    table = measure_objects(lab)
    assert table["label"].tolist() == [5_000_000, 7_000_000] * 2
    assert table["area"].tolist() == [512, 512] * 2
    linked, tracks = link_labels(lab)
    assert len(tracks) == 2 and (linked > 0).all()


def test_the_table_keeps_every_digit(tmp_path):
    """Numbers were written with 6 significant digits: an integrated intensity of 36111811 as
    3.61118e+07, a centroid x of 19964.04 as 19964. Then with every digit of their repr, unit
    conversions' rounding noise too (56124999.999999985 nm2 for 56.125 um2, audit 17): 12
    significant digits of a float64."""
    from napari_hemd.core.measure import write_table

    out = write_table(
        {"label": np.array([1]), "x": np.array([19964.03888888889]), "s": np.array([36111811.0])},
        tmp_path / "t.csv",
    )
    with open(out, newline="") as f:
        row = next(csv.DictReader(f))
    assert float(row["x"]) == pytest.approx(19964.03888888889, rel=1e-11)
    assert row["s"] == "36111811"
    noisy = 0.65**2 * 1e6  # 422500.00000000006: a 0.65 um pixel's area in nm2
    out = write_table({"a": np.array([noisy])}, tmp_path / "n.csv")
    assert out.read_text().splitlines()[1] == "422500"


def test_a_ctc_folder_of_one_stack_is_measured_with_its_image(tmp_path, capsys):
    """measure on a CTC folder of one stack (its one (1, Z, Y, X) frame) refused the stack's
    own (Z, Y, X) image: "--image must have the shape of LABELS (1, 40, 64, 64)"."""
    from napari_hemd.io.stacks import write_labels

    vol = np.zeros((6, 16, 16), np.uint16)
    vol[1:5, 2:8, 2:8] = 1
    raw = (vol * 100 + 10).astype(np.uint16)
    res = write_labels(vol, tmp_path / "res", axes="zyx")
    tifffile.imwrite(tmp_path / "raw.tif", raw)
    args = [
        "measure",
        str(res),
        "--image",
        str(tmp_path / "raw.tif"),
        "-o",
        str(tmp_path / "t.csv"),
    ]
    assert main(args) == 0
    with open(tmp_path / "t.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert int(row["area"]) == 4 * 36 and float(row["mean_intensity"]) == 110.0


def test_a_ctc_folder_is_measured_under_its_frame_numbers(tmp_path):
    """measure on a CTC folder of masks 005-007 wrote frames 0-2 (its res_track.txt counts
    from 5); a folder missing a mask shifted the later frames by one."""
    from napari_hemd.io.stacks import write_labels

    lab = np.zeros((3, 16, 16), np.uint16)
    lab[:, 2:8, 2:8] = 1
    res = write_labels(lab, tmp_path / "res", first_frame=5)
    assert main(["measure", str(res), "-o", str(tmp_path / "a.csv")]) == 0
    (res / "mask006.tif").unlink()
    assert main(["measure", str(res), "-o", str(tmp_path / "b.csv")]) == 0
    for name, want in (("a.csv", [5, 6, 7]), ("b.csv", [5, 7])):
        with open(tmp_path / name, newline="") as f:
            assert [int(r["frame"]) for r in csv.DictReader(f)] == want


def test_uint64_ids_keep_their_value():
    """uint64 ids of 2**63 and more came out negative (cast to int64), and large ids next to
    the background were rounded through float64."""
    lab = np.zeros((1, 8, 8), np.uint64)
    lab[0, :2, :2], lab[0, 4:, 4:] = 2**63 + 7, 2**64 - 1
    table = measure_objects(lab)
    assert table["label"].dtype == np.uint64
    assert table["label"].tolist() == [2**63 + 7, 2**64 - 1]
    lab = np.zeros((1, 8, 8), np.int64)
    lab[0, :2, :2] = 2**62 + 1  # beyond float64's 53 bits
    assert measure_objects(lab)["label"].tolist() == [2**62 + 1]


def test_several_channels_are_measured_in_one_table(tmp_path, capsys):
    """The table measured one image: a second stain meant a second table joined by hand (session
    29's note). A mapping of images (the API), ``--channel 0,1`` / ``all`` (the command line)
    give a set of intensity columns each, named after the channel, equal to one at a time."""
    rng = np.random.default_rng(3)
    lab = np.zeros((3, 40, 40), np.uint16)
    lab[:, 4:12, 4:12], lab[:, 20:32, 18:30], lab[1:, 34:38, 2:9] = 1, 2, 3
    movie = rng.integers(0, 4000, (3, 2, 40, 40)).astype(np.uint16)  # (T, C, Y, X)
    both = measure_objects(lab, {"GFP": movie[:, 0], "H2B mCherry": movie[:, 1]})
    for c, name in enumerate(("GFP", "H2B_mCherry")):
        alone = measure_objects(lab, movie[:, c])
        for stat in ("mean", "min", "max", "integrated"):
            np.testing.assert_array_equal(
                both[f"{stat}_intensity_{name}"], alone[f"{stat}_intensity"]
            )
    assert "mean_intensity" not in both
    other = measure_objects(lab, {"核": movie[:, 0], "Ядро": movie[:, 1]})  # any script's letters
    assert "mean_intensity_核" in other and "mean_intensity_Ядро" in other
    with pytest.raises(ValueError, match="give the same column name 'a_b' twice"):
        measure_objects(lab, {"a b": movie[:, 0], "a-b": movie[:, 0], "a/b": movie[:, 1]})
    with pytest.raises(ValueError, match="image 'GFP' must have the labels' shape"):
        measure_objects(lab, {"GFP": movie[:2, 0]})
    tifffile.imwrite(tmp_path / "labels.tif", lab)
    ome = tmp_path / "movie.ome.tif"
    tifffile.imwrite(ome, movie, metadata={"axes": "TCYX", "Channel": {"Name": ["GFP", "RFP"]}})
    np.save(tmp_path / "movie.npy", movie)
    base = ["measure", str(tmp_path / "labels.tif"), "--image"]
    assert main([*base, str(ome), "--channel", "all", "-o", str(tmp_path / "a.csv")]) == 0
    assert "mean_intensity_c1_RFP" in capsys.readouterr().err
    npy = [*base, str(tmp_path / "movie.npy"), "--channel-axis", "1"]
    assert main([*npy, "--channel", "1,0", "-o", str(tmp_path / "b.csv")]) == 0
    assert main([*npy, "--channel", "1", "-o", str(tmp_path / "c.csv")]) == 0
    with open(tmp_path / "a.csv", newline="") as f:
        a = list(csv.DictReader(f))
    with open(tmp_path / "b.csv", newline="") as f:
        b = list(csv.DictReader(f))
    with open(tmp_path / "c.csv", newline="") as f:
        c = list(csv.DictReader(f))
    assert [r["mean_intensity_c1_RFP"] for r in a] == [r["mean_intensity_c1"] for r in b]
    assert [r["mean_intensity_c1"] for r in b] == [r["mean_intensity"] for r in c]
    assert [float(r["max_intensity_c0_GFP"]) for r in a] == both["max_intensity_GFP"].tolist()
    capsys.readouterr()
    assert main([*base, str(tmp_path / "movie.npy"), "--channel", "all", "-o", "x.csv"]) == 2
    assert "does not name a channel axis" in capsys.readouterr().err
    assert main([*base, str(ome), "--channel", "0,2", "-o", str(tmp_path / "x.csv")]) == 2
    assert "2 channels" in capsys.readouterr().err
