from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tifffile = pytest.importorskip("tifffile")

from napari_hemd.cli import main  # noqa: E402


@pytest.fixture
def folder(tmp_path, blobs):
    image, labels = blobs
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "labels").mkdir()
    for i in range(3):
        tifffile.imwrite(
            tmp_path / "data" / "images" / f"im{i}.tif", np.roll(image, 9 * i, 1).astype(np.uint16)
        )
        tifffile.imwrite(tmp_path / "data" / "labels" / f"im{i}.tif", np.roll(labels, 9 * i, 1))
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([image, image[::-1]]).astype(np.uint16))
    return tmp_path


@pytest.mark.parametrize("kind", ["unet", "affinity"])
def test_train_predict_round_trip(folder, kind, capsys):
    model = folder / f"{kind}.pt"
    common = [
        "--steps",
        "3",
        "--batch-size",
        "1",
        "--patch-size",
        "32",
        "--base-channels",
        "4",
        "--depth",
        "2",
        "--no-progress",
        "--val",
        "0.34",
        "--threads",
        "1",
    ]
    extra = (
        ["--contact-weight", "3"]
        if kind == "affinity"
        else [
            "--foreground-oversample",
            "0.5",
            "--class-weights",
            "2,6,1",
            "--dice-weight",
            "0.5",
            "--dim-objects",
            "0.5",
            "--dim-parts",
            "0.25",
        ]
    )
    data = ["--data", str(folder / "data")]
    assert main(["train", *data, "--model", kind, "-o", str(model), *common, *extra]) == 0
    assert model.exists()
    from napari_hemd.models import load_model_file

    meta = load_model_file(model).metadata  # calibrated on a training image at the end
    assert meta["training"]["config"]["contact_weight"] == (3.0 if kind == "affinity" else 1.0)
    oversample = meta["training"]["config"]["foreground_oversample"]
    assert oversample == (0.0 if kind == "affinity" else 0.5)
    if kind == "unet":  # the weight is for affinity pairs: refused with a U-Net
        assert meta["training"]["config"]["class_weights"] == [2.0, 6.0, 1.0]
        assert meta["training"]["config"]["dice_weight"] == 0.5
        assert meta["training"]["config"]["dim_objects"] == 0.5
        assert meta["training"]["augmentation"]["dim_prob"] == 0.5
        assert meta["training"]["config"]["dim_parts"] == 0.25
        assert meta["training"]["augmentation"]["part_prob"] == 0.25
        other = folder / "other.pt"
        with pytest.raises(SystemExit):
            main(["train", *data, "-o", str(other), *common, "--class-weights", "1,3"])
        assert "expected three positive numbers FG,BOUNDARY,BG" in capsys.readouterr().err
        assert main(["train", *data, "-o", str(other), *common, "--contact-weight", "3"]) == 2
        assert "needs model='affinity'" in capsys.readouterr().err and not other.exists()
        # per-folder oversampling names folders; a name that matches none is refused
        bad = ["--foreground-oversample", "nosuch=0.5"]
        assert main(["train", *data, "-o", str(other), *common, *bad]) == 2
        assert "['nosuch'] names no data folder" in capsys.readouterr().err
        assert not other.exists() and not other.with_suffix(".pt.ckpt").exists()
    assert (
        meta["calibration"]["parameter"]
        == {"unet": "grow_threshold", "affinity": "mutex_bias"}[kind]
    )
    assert meta["calibration"]["frames"] == meta["training"]["train_samples"][:1]
    assert (
        main(["train", "--data", str(folder / "data"), "--model", kind, "-o", str(model), *common])
        == 2
    )
    assert "already exists" in capsys.readouterr().err

    out = folder / f"{kind}.tif"
    assert (
        main(
            [
                "predict",
                str(folder / "stack.tif"),
                "--model",
                str(model),
                "-o",
                str(out),
                "--tile",
                "64",
            ]
        )
        == 0
    )
    fg = tifffile.imread(out)
    assert fg.shape == (2, 96, 96) and fg.dtype == np.float32 and 0 <= fg.min() and fg.max() <= 1
    assert main(["predict", str(folder / "stack.tif"), "--model", str(model), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                str(folder / "stack.tif"),
                "--model",
                str(model),
                "-o",
                str(out),
                "--overwrite",
            ]
        )
        == 0
    )

    zarr = pytest.importorskip("zarr")
    outputs = "foreground,boundary" + (",affinities,instances" if kind == "affinity" else "")
    zout = folder / f"{kind}.zarr"
    assert (
        main(
            [
                "predict",
                str(folder / "data" / "images"),
                "--model",
                str(model),
                "-o",
                str(zout),
                "--outputs",
                outputs,
            ]
        )
        == 0
    )
    group = zarr.open_group(str(zout), mode="r")
    assert group["foreground"].shape == (3, 96, 96)
    if kind == "affinity":
        assert group["affinities"].shape == (3, 10, 96, 96)
        assert group["instances"].dtype == np.int32
    multi = folder / f"{kind}_multi.tif"
    assert (
        main(
            [
                "predict",
                str(folder / "stack.tif"),
                "--model",
                str(model),
                "-o",
                str(multi),
                "--outputs",
                "foreground,background",
            ]
        )
        == 0
    )
    assert (folder / f"{kind}_multi_background.tif").exists()
    assert not list(folder.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_predict_user_errors(folder, capsys):
    evil = folder / "evil.pt"
    evil.write_bytes(b"\x80\x04cos\nsystem\n(S'echo hi'\ntR.")
    assert (
        main(
            [
                "predict",
                str(folder / "stack.tif"),
                "--model",
                str(evil),
                "-o",
                str(folder / "o.tif"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot be loaded safely" in err and "--model:" in err and "weights_only" not in err
    assert err.count("\n") == 1
    assert (
        main(["predict", str(folder / "stack.tif"), "--model", "nope", "-o", str(folder / "o.tif")])
        == 2
    )
    assert "nuclei-fluo" in capsys.readouterr().err
    assert (
        main(["predict", str(folder / "stack.tif"), "--model", "nope", "-o", str(folder / "o.png")])
        == 2
    )
    assert ".zarr" in capsys.readouterr().err
    assert not list(folder.glob("o.*"))


def test_models_lists_shipped(capsys, tmp_path, monkeypatch):
    from napari_hemd._settings import CONFIG_ENV
    from napari_hemd.models import list_models, load_model

    monkeypatch.setenv(CONFIG_ENV, str(tmp_path))  # no fine-tuned models of the user's

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [m.name for m in list_models()]
    for r in rows:
        assert r["trained_on"] and r["size_kb"] < 4096
    planes = {r["name"]: r["volume"].get("planes", 1) for r in rows}
    assert planes["nuclei-3d"] == 3 and planes["nuclei-fluo"] == 1
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "stacks: z-, y- and x-slices averaged (z weight 0.5), z step / pixel 2.2" in text
    # a network trained over several runs says so, not only its last run's steps
    for r in rows:
        meta = load_model(r["name"]).metadata
        steps = meta["training"]["steps_done"]
        if "fine_tuned_from" in meta:
            before = meta["fine_tuned_from"]["steps"]
            assert f"(last run {steps} steps, from a network trained before (its last run:" in text
            assert f" {before} steps; the whole history: docs/models.md)" in text
        else:
            assert f"({steps} steps)" in text


def test_models_describes_model_files(capsys, tmp_path):
    """``napari-hemd models FILE``: what a model file from train (or anywhere) is: its data, its
    scores (held-out ones, else its best score while training), its zoom; bad files refused."""
    from napari_hemd.models import load_model, save_model_file
    from napari_hemd.models.weights import HemdModel

    base = load_model("nuclei-fluo")
    history = [
        {"step": 500, "val_score": 0.70, "val_scores": {"a/01": {"F1": 0.8, "AJI": 0.6}}},
        {"step": 1000, "val_score": 0.75, "val_scores": {"a/01": {"F1": 0.85, "AJI": 0.65}}},
        {"step": 1500, "val_score": 0.72, "val_scores": {"a/01": {"F1": 0.82, "AJI": 0.62}}},
    ]
    meta = {k: v for k, v in base.metadata.items() if k != "validation"}
    meta["training"] = {**meta["training"], "data": ["my/data (zoom 2)"], "history": history}
    meta["scale"] = 2.0
    save_model_file(HemdModel(base.network, meta), tmp_path / "mine.pt")
    assert main(["models", str(tmp_path / "mine.pt")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("mine.pt") and "U-Net, fine-tuned from" in text
    assert "trained on: my/data (zoom 2)" in text
    assert "held out while training: a/01 F1 0.850 AJI 0.650 (step 1000, the best of 3" in text
    assert "trained at zoom 2: segment, predict and stream use it at that zoom" in text
    before = base.metadata["fine_tuned_from"]["steps"]  # a user's file: not in docs/models.md
    assert f"from a network whose last run had {before} steps)" in text
    assert "the whole history: docs/models.md" not in text
    # a shipped name: as the listing describes it (its data by name, not the developer's paths)
    assert main(["models", "nuclei-fluo"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("nuclei-fluo") and "fluorescent nuclei in time-lapses" in text
    assert "trained on: Fluo-N2DH-SIM+ 02 (GT, frames 0-39)" in text and "/ctc/" not in text
    assert "the whole history: docs/models.md" in text
    main(["models"])
    listing = capsys.readouterr().out
    assert listing.startswith(text)  # nuclei-fluo leads the listing: the same lines
    assert main(["models", str(tmp_path / "mine.pt"), "nuclei-fluo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["scale"] for r in rows] == [2.0, 1.0]
    assert rows[0]["training_score"]["step"] == 1000 and rows[1]["held_out"]
    assert main(["models", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "FILE must be a model file (.pt); got" in err and "missing.pt" in err


def test_model_summary_of_the_widgets(tmp_path):
    """What the Predict, Segment and Large data widgets say of the chosen model."""
    from napari_hemd._widgets._models import model_summary
    from napari_hemd.models import load_model

    aff = model_summary("nuclei-affinity").split("\n")
    assert aff[0] == "fluorescent nuclei" and aff[1] == "learned objects about 29 px across"
    assert aff[2].startswith("held out, bbbc039 labels: F1 0.9")  # the Mutex watershed's
    fluo = model_summary("nuclei-fluo")
    assert "learned objects about 26-46 px across" in fluo
    assert "held out, Fluo-N2DL-HeLa/01 GT: SEG 0." in fluo  # sparse: SEG only
    assert "zoom" not in fluo
    (tmp_path / "bad.pt").write_text("not a model")
    assert model_summary(None) == ""
    bad = model_summary(str(tmp_path / "bad.pt"))  # why it cannot be used, before a run
    assert bad.startswith("cannot be used: model file ") and "it is a text file" in bad
    from napari_hemd.models.registry import model_origin
    from napari_hemd.models.weights import HemdModel

    assert model_origin(HemdModel.create("unet")) == "U-Net, trained from scratch"
    shipped = model_origin(load_model("nuclei-fluo"))  # a note in parentheses after the name
    assert shipped.startswith("U-Net, fine-tuned from nuclei-fluo (")
    assert (
        model_origin(load_model("nuclei-fluo"), short=True) == "U-Net, fine-tuned from nuclei-fluo"
    )


def test_foreground_oversample_option_parses_per_folder_fractions():
    from napari_hemd.cli._train import _oversample_option

    assert _oversample_option(None) == 0.0 and _oversample_option(["0.5"]) == 0.5
    assert _oversample_option(["SIM+=0.5"]) == {"SIM+": 0.5}
    assert _oversample_option(["SIM+=0.5", "0.1"]) == {"SIM+": 0.5, "*": 0.1}
    with pytest.raises(ValueError, match=r"takes F or NAME=F .* got 'half'"):
        _oversample_option(["half"])
    with pytest.raises(ValueError, match=r"NAME=F needs a NAME; got '=0\.3'"):
        _oversample_option(["=0.3"])


def test_importing_napari_hemd_does_not_import_torch():
    code = "import sys, napari_hemd, napari_hemd.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_scale_errors_name_the_option(folder, capsys):
    base = ["train", "--data", str(folder / "data"), "-o", str(folder / "m.pt"), "--steps", "1"]
    assert main([*base, "--scale", "20"]) == 2
    assert "--scale must be between 0.1 and 10; got 20" in capsys.readouterr().err
    assert main([*base, "--model", "affinity", "--scale", "2"]) == 2
    assert "--scale 2: a zoom needs a U-Net" in capsys.readouterr().err
    assert not (folder / "m.pt").exists()


def test_device_and_batch_errors_are_one_line(tmp_path, capsys):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, np.zeros((2, 32, 32), np.uint16), photometric="minisblack")
    base = ["predict", str(img), "--model", "nuclei-fluo", "-o", str(tmp_path / "o.tif")]
    for extra, message in [
        (["--device", "tpu"], "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got 'tpu'"),
        (["--batch-size", "0"], "batch_size must be >= 1 tile; got 0"),
    ]:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    if not torch.cuda.is_available():
        assert main([*base, "--device", "cuda"]) == 2
        assert "CUDA is not available here" in capsys.readouterr().err


def test_fine_tune_a_shipped_model_then_segment_with_it(folder, capsys):
    """``train --init nuclei-fluo`` (a few steps) and ``segment --model tuned.pt`` on a raw
    movie: the loop a user runs after correcting a few frames."""
    tuned = folder / "tuned.pt"
    args = ["train", "--init", "nuclei-fluo", "--data", str(folder / "data"), "-o", str(tuned)]
    args += ["--steps", "2", "--batch-size", "1", "--patch-size", "64", "--val", "0.34"]
    assert main([*args, "--threads", "1", "--no-progress"]) == 0
    from napari_hemd.models import load_model, load_model_file

    meta = load_model_file(tuned).metadata
    assert meta["fine_tuned_from"]["model"] == "nuclei-fluo"
    # stored as the shipped model is (float16): about its size, not twice it
    from napari_hemd.models.registry import model_path

    stored = torch.load(tuned, weights_only=True)["state_dict"].values()
    assert torch.float16 in {v.dtype for v in stored}
    assert tuned.stat().st_size < 1.3 * model_path("nuclei-fluo").stat().st_size
    # a short run (no --score-every) still scores the network it wrote on its held-out frame,
    # and says so: train at its end, models when asked
    final = meta["training"]["final_score"]
    assert final["frames"] == len(meta["training"]["held_out_samples"]) == 2
    assert final["step"] in (1, 2)
    assert set(final["val_scores"]) == {"data"} and 0 <= final["val_score"] <= 1
    said = capsys.readouterr().out
    assert "held-out score of the network written (step " in said and "AJI" in said
    assert main(["models", str(tuned)]) == 0
    said = capsys.readouterr().out
    assert "held out while training: data F1 " in said and "the network written" in said
    assert main(["models", str(tuned), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["training_score"]["scores"] == final["val_scores"]
    assert meta["architecture"] == load_model("nuclei-fluo").metadata["architecture"]
    out = folder / "labels.tif"
    movie = str(folder / "stack.tif")
    assert main(["segment", movie, "--model", str(tuned), "-o", str(out), "--no-progress"]) == 0
    assert tifffile.imread(out).shape == (2, 96, 96)
    # --scale: trained on images and masks zoomed as segment --scale zooms frames
    zoomed = folder / "zoomed.pt"
    args[args.index(str(tuned))] = str(zoomed)
    capsys.readouterr()
    scoring = ["--score-every", "1", "--score-frames", "1"]
    assert main([*args, "--threads", "1", "--no-progress", "--scale", "2", *scoring]) == 0
    said = capsys.readouterr().out
    assert "kept the best held-out score, " in said and f"napari-hemd models {zoomed}" in said
    meta2 = load_model_file(zoomed).metadata
    assert meta2["training"]["data"] == [f"{folder / 'data'} (zoom 2)"]
    assert meta2["scale"] == 2.0 and meta["scale"] == 1.0  # the zoom segment uses it at
    (name, size), (name2, size2) = (
        *meta["object_diameters"].items(),
        *meta2["object_diameters"].items(),
    )
    assert name == name2 and size2 == pytest.approx(2 * size, rel=0.05)
    out2, out3 = folder / "labels2.tif", folder / "labels3.tif"
    cmd = ["segment", movie, "--model", str(zoomed), "--scale", "2", "-o", str(out2)]
    assert main([*cmd, "--no-progress"]) == 0 and tifffile.imread(out2).shape == (2, 96, 96)
    capsys.readouterr()
    # without --scale: the model's own zoom, said so
    cmd = ["segment", movie, "--model", str(zoomed), "-o", str(out3), "--no-progress"]
    assert main(cmd) == 0 and "zoom 2 (the model's own)" in capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(out3), tifffile.imread(out2))


def test_models_prints_the_meaningful_score():
    from napari_hemd.cli._models import _score_lines

    validation = {
        "protocol": "held-out block",
        "scores": {
            "Fluo-N2DL-HeLa/01 ST": {"hemd": {"F1": 0.9, "AJI": 0.8, "SEG": 0.85}},
            "Fluo-N2DL-HeLa/01 GT": {"hemd": {"F1": 0.2, "AJI": 0.1, "SEG": 0.7}},
        },
    }
    lines = _score_lines(validation)
    assert lines[0] == "Fluo-N2DL-HeLa/01 ST: H-EMD F1 0.900 AJI 0.800"
    assert lines[1] == "Fluo-N2DL-HeLa/01 GT: H-EMD SEG 0.700 (sparse reference: SEG only)"
    assert lines[2] == "(held-out block)"
    # an affinity network: its own Mutex-watershed instances are what it is for
    both = {"scores": {"bbbc039 labels": {"hemd": {"F1": 0.8, "AJI": 0.7},
                                          "mutex": {"F1": 0.88, "AJI": 0.81}}}}  # fmt: skip
    assert _score_lines(both, "mutex") == ["bbbc039 labels: Mutex watershed F1 0.880 AJI 0.810"]
    assert _score_lines(validation, "mutex")[0].startswith("Fluo-N2DL-HeLa/01 ST: H-EMD F1")
    # the same block with test-time flips, beside the default's scores
    validation["tta"] = {
        "views": 4,
        "scores": {
            "Fluo-N2DL-HeLa/01 ST": {"hemd": {"F1": 0.92, "AJI": 0.87, "SEG": 0.9}},
            "Fluo-N2DL-HeLa/01 GT": {"hemd": {"F1": 0.2, "AJI": 0.1, "SEG": 0.82}},
        },
    }
    lines = _score_lines(validation)  # a model used without flips: its scores first
    assert lines[0] == (
        "Fluo-N2DL-HeLa/01 ST: H-EMD F1 0.900 AJI 0.800 (no flips, the default); --tta 4: F1 "
        "0.920 AJI 0.870"
    )
    assert lines[1] == (
        "Fluo-N2DL-HeLa/01 GT: H-EMD SEG 0.700 (no flips, the default); --tta 4: SEG 0.820 "
        "(sparse reference: SEG only)"
    )
    lines = _score_lines(validation, "hemd", 4)  # a model used with four views by default
    assert lines[0] == (
        "Fluo-N2DL-HeLa/01 ST: H-EMD F1 0.920 AJI 0.870 (--tta 4, the default); no flips: F1 "
        "0.900 AJI 0.800"
    )
    assert lines[1].startswith("Fluo-N2DL-HeLa/01 GT: H-EMD SEG 0.820 (--tta 4, the default)")
    # flips the model does not use by default, measured with other views: not its default
    assert _score_lines(validation, "hemd", 2)[0].startswith(
        "Fluo-N2DL-HeLa/01 ST: H-EMD F1 0.900 AJI 0.800 (no flips, the default)"
    )


def test_no_calibrate_then_the_calibration_script(folder):
    """``--no-calibrate`` leaves the model at 0.5; scripts/calibrate.py calibrates the file later on
    its recorded training frames (found under --data by the folder's name)."""
    from pathlib import Path

    from napari_hemd.models import load_model_file

    model = folder / "m.pt"
    args = ["train", "--data", str(folder / "data"), "-o", str(model), "--steps", "2"]
    args += ["--batch-size", "1", "--patch-size", "32", "--base-channels", "4", "--depth", "2"]
    assert main([*args, "--val", "0.34", "--threads", "1", "--no-progress", "--no-calibrate"]) == 0
    assert "calibration" not in load_model_file(model).metadata
    script = Path(__file__).parents[2] / "scripts" / "calibrate.py"
    run = subprocess.run(
        [sys.executable, str(script), str(model), "--data", str(folder), "--frames", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "chosen grow_threshold" in run.stdout
    meta = load_model_file(model).metadata
    cal = meta["calibration"]
    assert cal["frames"] == meta["training"]["train_samples"]  # (one training image here)
    assert meta["segment_defaults"]["grow_threshold"] == cal["value"]


def test_predict_to_tif_fails_midway_without_touching_the_old_maps(tmp_path, monkeypatch):
    """The maps go to temporaries page by page: a run that fails after some frames leaves the
    files of the previous run as they were (even with --overwrite) and no debris."""
    import napari_hemd.models as models

    img = tmp_path / "img.tif"
    frames = np.random.default_rng(0).integers(0, 500, (4, 48, 48)).astype(np.uint16)
    tifffile.imwrite(img, frames, photometric="minisblack")
    out = tmp_path / "maps.tif"
    args = ["predict", str(img), "--model", "nuclei-fluo", "-o", str(out), "--tta", "1",
            "--outputs", "foreground,background", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    written = {p.name: p.read_bytes() for p in tmp_path.glob("maps_*.tif")}
    assert set(written) == {"maps_foreground.tif", "maps_background.tif"}
    for name in written:  # one page per frame, read back as the (T, Y, X) stack
        assert tifffile.imread(tmp_path / name).shape == (4, 48, 48)
    real = models.iter_predict

    def failing(*a, **kw):
        for t, res in real(*a, **kw):
            if t == 2:
                raise RuntimeError("out of memory at frame 2")
            yield t, res

    monkeypatch.setattr(models, "iter_predict", failing)
    with pytest.raises(RuntimeError, match="frame 2"):
        main([*args, "--overwrite"])
    assert {p.name: p.read_bytes() for p in tmp_path.glob("maps_*.tif")} == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif", *sorted(written)]


def test_one_channel_of_a_hyperstack_is_segmented_as_that_channel_alone(tmp_path, capsys):
    """segment / predict / stream --model on an ImageJ (T, C, Y, X) hyperstack with --channel
    give exactly what the one-channel movie gives; without --channel they refuse, naming the
    channels, and write nothing."""
    import zarr

    from napari_hemd.data.synthetic import nuclei_video

    nuclei = nuclei_video(n_frames=4, shape=(96, 96), n_cells=6, seed=3)["image"]
    other = np.random.default_rng(1).integers(0, 3000, nuclei.shape).astype(nuclei.dtype)
    tifffile.imwrite(tmp_path / "nuclei.tif", nuclei, photometric="minisblack")
    both = np.stack([other, nuclei], axis=1)
    tifffile.imwrite(tmp_path / "both.tif", both, imagej=True, metadata={"axes": "TCYX"})
    opts = ["--model", "nuclei-fluo", "--tta", "1", "--no-progress"]
    for cmd, out in (("segment", "labels.tif"), ("predict", "prob.tif"), ("stream", "l.zarr")):
        assert main([cmd, str(tmp_path / "both.tif"), "-o", str(tmp_path / out), *opts]) == 2
        err = capsys.readouterr().err
        assert "has 2 channels (axes TCYX" in err and "--channel 0..1" in err, err
        assert not (tmp_path / out).exists()
    for src, tag in (("nuclei.tif", "one"), ("both.tif", "ch1")):
        extra = ["--channel", "1"] if tag == "ch1" else []
        s = tmp_path / src
        assert main(["segment", str(s), "-o", str(tmp_path / f"{tag}.tif"), *opts, *extra]) == 0
        assert main(["predict", str(s), "-o", str(tmp_path / f"{tag}_p.tif"), *opts, *extra]) == 0
        assert main(["stream", str(s), "-o", str(tmp_path / f"{tag}.zarr"), *opts, *extra]) == 0
    one = tifffile.imread(tmp_path / "one.tif")
    assert one.max() > 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "ch1.tif"), one)
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "ch1_p.tif"), tifffile.imread(tmp_path / "one_p.tif")
    )
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "ch1.zarr"), mode="r")[:],
        zarr.open_array(str(tmp_path / "one.zarr"), mode="r")[:],
    )
    # the labels record the channel they come from
    from napari_hemd.io.stacks import recorded_params

    assert recorded_params(tmp_path / "ch1.tif")["channel"] == 1  # (an ImageJ file's Info)
    assert zarr.open_array(str(tmp_path / "ch1.zarr"), mode="r").attrs["channel"] == 1


@pytest.mark.parametrize("command", ["segment", "predict", "stream", "models"])
def test_a_tiff_given_as_model_is_one_line_naming_the_option(folder, capsys, command):
    """``--model some.tif`` (or ``models some.tif``): one line that names the option and says
    the file is a TIFF image; nothing of PyTorch's (weights_only=False advice, KeyError: 101)."""
    tif = folder / "stack.tif"
    if command == "models":
        argv = ["models", str(tif)]
    else:
        out = folder / ("o.zarr" if command == "stream" else "o.tif")
        argv = [command, str(tif), "--model", str(tif), "-o", str(out)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    option = "FILE" if command == "models" else "--model"
    assert (
        f"error: {option}: {str(tif)!r} is not a napari-hemd model file: it is a TIFF image" in err
    )
    assert err.count("\n") == 1 and "weights_only" not in err and "arbitrary code" not in err
    assert not list(folder.glob("o.*"))


def test_init_that_is_no_model_names_the_option(folder, capsys):
    (folder / "notes.txt").write_text("e")
    argv = ["train", "--data", str(folder / "data"), "--init", str(folder / "notes.txt")]
    assert main([*argv, "-o", str(folder / "t.pt")]) == 2
    err = capsys.readouterr().err
    assert "--init: " in err and "it is a text file" in err and "KeyError" not in err


def test_train_never_replaces_its_data_and_names_bad_files(folder, capsys):
    """train -o took any name: with --overwrite a training image (or a movie given by mistake)
    became a model file, and the next train failed with 'not a TIFF file' naming no file.
    Negative ids in a mask gave numpy's bincount message."""
    data = folder / "data"
    image = data / "images" / "im0.tif"
    kept = image.read_bytes()
    argv = ["train", "--data", str(data), "--steps", "1", "--no-progress", "--no-calibrate"]
    assert main([*argv, "-o", str(image), "--overwrite"]) == 2
    assert "-o/--output must be a model file ending in .pt" in capsys.readouterr().err
    assert image.read_bytes() == kept
    (data / "images" / "im1.tif").write_bytes(b"PK\x03\x04 not a tiff")
    assert main([*argv, "-o", str(folder / "m.pt")]) == 2
    assert f"data {str(data / 'images' / 'im1.tif')!r} is not a readable TIFF" in (
        capsys.readouterr().err
    )
    (data / "images" / "im1.tif").write_bytes(kept)
    lab = tifffile.imread(data / "labels" / "im2.tif").astype(np.int32)
    tifffile.imwrite(data / "labels" / "im2.tif", -lab)
    assert main([*argv, "-o", str(folder / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "im2.tif" in err and "expected instance labels (whole numbers >= 0)" in err


def test_stream_refuses_one_stack_for_a_three_plane_model(tmp_path, capsys):
    """A Fiji ZYX stack with nuclei-3d: stream ran its slices as 2D frames, silently."""
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((6, 32, 32), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "s.zarr"
    assert main(["stream", str(stack), "--model", "nuclei-3d", "-o", str(out)]) == 2
    assert "is one (Z, Y, X) stack" in capsys.readouterr().err and not out.exists()
    # a plain stack too, as segment takes it (it ran as 30 frames, ids per slice: audit 15)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((6, 32, 32), np.uint16))
    assert main(["stream", str(plain), "--model", "nuclei-3d", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is one (Z, Y, X) stack (segment takes a 3D input so)" in err and not out.exists()
    assert main(["stream", str(plain), "--model", "nuclei-fluo", "--planes", "3", "-o",
                 str(out)]) == 2  # fmt: skip
    assert "(one (Z, Y, X) stack: napari-hemd segment)" in capsys.readouterr().err


def test_a_tiff_of_maps_is_segmented_as_its_model_segments_them(tmp_path, capsys, caplog):
    """``predict stack.tif --model nuclei-3d -o prob.tif`` then ``segment prob.tif`` ran the
    stack's slices as 2D frames, ids per slice (audit 15: 3D F1 0.69 against 0.85), though the
    TIFF records its model; with the background beside it (``--outputs
    foreground,background``) it gives the one-click labels, as a maps .zarr does."""
    from napari_hemd._sample_data import nuclei_volume_sample

    image = next(d for d, m, k in nuclei_volume_sample() if k == "image")[:, :64, :64]
    tifffile.imwrite(tmp_path / "stack.tif", image)
    opts = ["--model", "nuclei-3d", "--tta", "1", "--no-progress"]
    assert main(["segment", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "one.tif"),
                 *opts]) == 0  # fmt: skip
    want = tifffile.imread(tmp_path / "one.tif")
    assert want.max() > 1
    assert main(["predict", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "p.tif"), *opts,
                 "--outputs", "foreground,background"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "two.tif"
    assert main(["segment", str(tmp_path / "p_foreground.tif"), "-o", str(out)]) == 0
    assert "on maps of nuclei-3d" in capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(out), want)
    # the foreground alone: the model's 3D settings, no growth (said)
    assert main(["predict", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "fg.tif"),
                 *opts]) == 0  # fmt: skip
    from napari_hemd._log import NOTE

    caplog.set_level(NOTE)
    out = tmp_path / "three.tif"
    assert main(["segment", str(tmp_path / "fg.tif"), "-o", str(out)]) == 0
    assert "holds no background map" in caplog.text
    got = tifffile.imread(out)
    ids = [i for i in np.unique(got) if i]
    assert len(ids) <= len(np.unique(want))  # 3D objects, not a movie's ids per slice
    assert max(len(np.unique(np.nonzero(got == i)[0])) for i in ids) > 3


def test_maps_predicted_from_numbered_frames_keep_their_numbers_in_a_ctc_folder(tmp_path):
    """predict t050-t052 -> maps (zarr, TIFF) -> segment -o CTC folder: mask050-mask052 and
    tracks in those frames, as segmenting the folder itself gives (they were mask000-002)."""
    from napari_hemd.data.synthetic import nuclei_video

    frames = tmp_path / "frames"
    frames.mkdir()
    for t, img in enumerate(nuclei_video(n_frames=3, shape=(96, 96), n_cells=6, seed=3)["image"]):
        tifffile.imwrite(frames / f"t{50 + t:03d}.tif", img)
    opts = ["--model", "nuclei-fluo", "--tta", "1", "--no-progress"]
    assert main(["segment", str(frames), "--link", "-o", str(tmp_path / "direct"), *opts]) == 0
    expected = [f"mask{t:03d}.tif" for t in (50, 51, 52)]
    for maps in ("maps.zarr", "maps.tif"):
        extra = ["--outputs", "foreground,background"] if maps.endswith("zarr") else []
        assert main(["predict", str(frames), "-o", str(tmp_path / maps), *opts, *extra]) == 0
        out = tmp_path / f"res_{maps.split('.')[1]}"
        args = [str(tmp_path / maps), "--link", "-o", str(out), "--no-progress"]
        assert main(["segment", *args]) == 0
        assert sorted(p.name for p in out.glob("mask*.tif")) == expected, maps
        tracks = np.loadtxt(out / "res_track.txt", dtype=int, ndmin=2)
        assert tracks[:, 1].min() == 50 and tracks[:, 2].max() == 52
    for name in expected:  # the model's maps group: segmented as segment --model does
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "res_zarr" / name),
            tifffile.imread(tmp_path / "direct" / name),
        )
    # the foreground array of the maps group names them too; a TIFF output is not renumbered
    out = tmp_path / "res_fg"
    assert main(["segment", str(tmp_path / "maps.zarr" / "foreground"), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.glob("mask*.tif")) == expected


def test_a_stack_with_a_single_plane_axis_is_told_how_to_drop_it(tmp_path, capsys):
    """A (Z, 1, Y, X) stack was refused with the general shape message (audit 15); the
    message names the axis of one plane and the options that drop it, which work."""
    from napari_hemd._sample_data import nuclei_volume_sample

    image = next(d for d, m, k in nuclei_volume_sample() if k == "image")[:12, :48, :48]
    tifffile.imwrite(tmp_path / "zc.tif", image[:, None])
    tifffile.imwrite(tmp_path / "z.tif", image)
    out = tmp_path / "o.tif"
    opts = ["--model", "nuclei-3d", "--tta", "1", "--no-progress"]
    assert main(["segment", str(tmp_path / "zc.tif"), "-o", str(out), *opts]) == 2
    fix = "axis 1 holds one plane: --channel 0 --channel-axis 1 drops it"
    assert fix in capsys.readouterr().err and not out.exists()
    drop = ["--channel", "0", "--channel-axis", "1"]
    assert main(["segment", str(tmp_path / "zc.tif"), "-o", str(out), *opts, *drop]) == 0
    assert main(["segment", str(tmp_path / "z.tif"), "-o", str(tmp_path / "w.tif"), *opts]) == 0
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(tmp_path / "w.tif"))


def test_an_interrupted_training_says_how_to_resume_and_keeps_its_plan(folder, capsys, monkeypatch):
    """After Ctrl-C / SIGTERM, train said only "interrupted"; a --resume without --steps
    planned its steps anew (292 became 277: the schedule moved, audit 27)."""
    from napari_hemd.cli import _train

    model = folder / "m.pt"
    args = ["train", "--data", str(folder / "data"), "-o", str(model), "--batch-size", "1",
            "--patch-size", "32", "--base-channels", "4", "--depth", "2", "--no-progress",
            "--val", "0.34", "--threads", "1", "--checkpoint-every", "2"]  # fmt: skip
    assert main([*args, "--steps", "6", "--max-minutes", "0"]) == 0  # stopped at once
    assert _train._planned_steps(model) == 6  # recorded in the checkpoint
    model.unlink()  # (the run wrote the model of its one step too)

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("napari_hemd.models.train_model", interrupted)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 130
    err = capsys.readouterr().err
    assert (
        "interrupted; no new model written. The checkpoint" in err and "--resume continues" in err
    )
    model.write_bytes(b"old")  # an output replaced with --overwrite: said to be as it was
    assert main([*args, "--resume", "--overwrite"]) == 130
    assert f"no new model written ({model} is as it was)" in capsys.readouterr().err
    assert model.read_bytes() == b"old"
    monkeypatch.undo()
    # the same command without --resume replaced the checkpoint, then removed it (audit 37)
    model.unlink()
    assert main(args) == 2
    assert "holds an interrupted run" in capsys.readouterr().err
    other = folder / "other"  # and --resume on other data: refused (the file named it alone)
    (other / "images").mkdir(parents=True)
    (other / "labels").mkdir()
    for sub in ("images", "labels"):
        for f in sorted((folder / "data" / sub).iterdir())[:2]:
            (other / sub / f"x{f.name}").write_bytes(f.read_bytes())
    moved = [a if a != str(folder / "data") else str(other) for a in args]
    assert main([*moved, "--resume", "--val", "0.5"]) == 2
    assert "was trained on other samples" in capsys.readouterr().err
    import shutil

    shutil.copytree(folder / "data", folder / "twin")  # another folder of the same names: no
    twin = [a if a != str(folder / "data") else str(folder / "twin") for a in args]
    assert main([*twin, "--resume"]) == 2  # (its frames' names alone resumed: review 33c)
    assert "was trained on other samples" in capsys.readouterr().err
    (folder / "sub").mkdir()  # the same frames moved into another folder resume
    (folder / "data").rename(folder / "sub" / "data")
    args = [a if a != str(folder / "data") else str(folder / "sub" / "data") for a in args]
    assert main([*args, "--resume"]) == 0  # the plan kept: steps 1 -> 6
    from napari_hemd.models import load_model_file

    assert load_model_file(model).metadata["training"]["steps_done"] == 6
    # --overwrite discards an old run's checkpoint (a new run that wrote none of its own left
    # it, then offered to --resume it: review 33b)
    ckpt = model.with_name(model.name + ".ckpt")
    ckpt.write_bytes(b"an old run's")
    # a run refused at its start keeps it (it was deleted before the run's checks: review 33c)
    assert main([*args, "--steps", "1", "--overwrite", "--patch-size", "30"]) == 2
    assert ckpt.read_bytes() == b"an old run's"
    assert main([*args, "--steps", "1", "--checkpoint-every", "0", "--overwrite"]) == 0
    assert not ckpt.exists()
