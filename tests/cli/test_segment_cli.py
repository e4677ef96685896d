from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import tifffile

from napari_hemd.cli import main
from napari_hemd.data.synthetic import nuclei_video
from napari_hemd.io import read_stack


@pytest.fixture(scope="module")
def prob_file(tmp_path_factory):
    v = nuclei_video(n_frames=5, shape=(96, 96), n_cells=6, seed=2)
    path = tmp_path_factory.mktemp("in") / "prob.tif"
    tifffile.imwrite(path, v["prob"])
    return path


@pytest.mark.parametrize("out_name", ["labels.tif", "labels.zarr", "labels.ome.zarr", "ctc_res"])
def test_segment_writes_each_format(prob_file, tmp_path, out_name):
    out = tmp_path / out_name
    assert main(["segment", str(prob_file), "-o", str(out), "--no-progress", "--link"]) == 0
    lab = read_stack(out)
    assert lab.shape == (5, 96, 96) and lab.max() > 0
    if out_name == "ctc_res":
        tracks = np.loadtxt(out / "res_track.txt", dtype=int, ndmin=2)
        assert set(tracks[:, 0]) == set(np.unique(lab)) - {0}
        assert json.loads((out / "hemd-params.json").read_text())["method"] == "hemd"
    if out_name == "labels.ome.zarr":
        attrs = json.loads((out / ".zattrs").read_text())
        assert attrs["image-label"]["version"] == "0.4"
        assert attrs["multiscales"][0]["datasets"][0]["path"] == "0"


def test_segment_baseline_and_uint8_input(tmp_path):
    v = nuclei_video(n_frames=3, shape=(64, 64), n_cells=4)
    path = tmp_path / "p.npy"
    np.save(path, (v["prob"] * 255).astype(np.uint8))
    out = tmp_path / "o.tif"
    assert (
        main(["segment", str(path), "-o", str(out), "--method", "watershed", "--no-progress"]) == 0
    )
    assert read_stack(out).max() > 0


def test_refuses_existing_output_and_keeps_it(prob_file, tmp_path, capsys):
    out = tmp_path / "o.tif"
    out.write_bytes(b"precious")
    assert main(["segment", str(prob_file), "-o", str(out), "--no-progress"]) == 2
    assert out.read_bytes() == b"precious"
    assert "already exists" in capsys.readouterr().err
    assert main(["segment", str(prob_file), "-o", str(out), "--no-progress", "--overwrite"]) == 0
    assert read_stack(out).shape == (5, 96, 96)


@pytest.mark.parametrize("with_model", [False, True])
def test_unwritable_output_suffix_fails_before_the_work(
    prob_file, tmp_path, capsys, monkeypatch, with_model
):
    """A mistyped output (``.png``) is refused at once, not after predicting and segmenting."""
    import napari_hemd.core.segment as core_segment
    import napari_hemd.image_segmentation as image_segmentation

    def no_work(*a, **k):
        raise AssertionError("the work ran before the output was checked")

    monkeypatch.setattr(core_segment, "hemd", no_work)
    monkeypatch.setattr(image_segmentation, "segment_image", no_work)
    out = tmp_path / "labels.png"
    argv = ["segment", str(prob_file), "-o", str(out), "--no-progress"]
    assert main(argv + (["--model", "nuclei-fluo"] if with_model else [])) == 2
    err = capsys.readouterr().err
    assert "labels.png" in err and ".tif/.tiff file, a .zarr store or a folder" in err
    assert "'.png'" in err and not out.exists()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((3, 8, 8), np.nan, np.float32), "finite"),
        (np.full((3, 8, 8), 2.0, np.float32), "[0, 1]"),
        (np.zeros((2, 2, 8, 8, 8), np.float32), "must be 2D"),
    ],
)
def test_bad_input_message_no_output(tmp_path, capsys, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    out = tmp_path / "o.tif"
    assert main(["segment", str(path), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.npy"]  # no half-written temp file


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(prob_file, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert main(["segment", str(prob_file), "-o", str(ro / "o.tif"), "--no-progress"]) == 2


def test_missing_output_folder(prob_file, tmp_path, capsys):
    assert main(["segment", str(prob_file), "-o", str(tmp_path / "no" / "o.tif")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path, capsys):
    """README's first command: the demo, then segment --model on its image, at the model's zoom."""
    import re

    pytest.importorskip("torch")
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    masks = read_stack(out / "masks")
    image = read_stack(out / "image.tif")
    assert masks.shape == image.shape == (12, 288, 288) and masks.max() >= 10
    said = capsys.readouterr().err
    f1 = float(re.search(r"F1@0.5 vs exact labels = ([0-9.]+)", said).group(1))
    assert "model 'nuclei-fluo'" in said and f1 >= 0.93, said  # 0.957 (0.841 at 18 px)
    # the run is recorded: the model's name (was "(unet model)") and the H-EMD settings it used
    recorded = json.loads((out / "masks" / "hemd-params.json").read_text())
    assert recorded["model"] == "nuclei-fluo" and recorded["method"] == "hemd"
    from napari_hemd.core.segment import SELECTION_KEYS

    for key in ("tau", "delta", "iterations", "connectivity", "min_size", "grow", *SELECTION_KEYS):
        assert key in recorded, key
    # the sample's nuclei are the size nuclei-fluo learned: no zoom note
    args = ["segment", str(out / "image.tif"), "--model", "nuclei-fluo", "--no-progress"]
    assert main([*args, "-o", str(out / "labels.tif")]) == 0
    said = capsys.readouterr().err
    assert "whole cells" in said and "note:" not in said, said
    assert np.array_equal(read_stack(out / "labels.tif") > 0, masks > 0)


def test_demo_without_a_model_uses_the_samples_map(tmp_path, capsys, monkeypatch):
    """Without torch (or the model) the demo runs H-EMD on the sample's own probability map."""
    import re

    from napari_hemd.cli import _demo

    monkeypatch.setattr(_demo, "_segment", lambda image, model: None)
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    said = capsys.readouterr().err
    assert "no model available" in said, said
    f1 = float(re.search(r"F1@0.5 vs exact labels = ([0-9.]+)", said).group(1))
    assert f1 >= 0.85, said  # 0.881
    assert read_stack(tmp_path / "demo" / "masks").max() >= 10
    recorded = json.loads((tmp_path / "demo" / "masks" / "hemd-params.json").read_text())
    assert {"tau", "delta", "iterations"} <= set(recorded) and "model" not in recorded


def test_progress_in_a_log_file_is_plain_lines(tmp_path):
    """stderr not a terminal: a plain line per stage, no carriage-return bar filling the log."""
    import subprocess
    import sys

    v = nuclei_video(n_frames=4, shape=(64, 64), n_cells=4)
    np.save(tmp_path / "p.npy", v["prob"])
    with open(tmp_path / "log.txt", "w") as log:
        rc = subprocess.run(
            [
                sys.executable,
                "-m",
                "napari_hemd.cli",
                "segment",
                str(tmp_path / "p.npy"),
                "-o",
                str(tmp_path / "o.tif"),
            ],
            stderr=log,
            check=False,
        ).returncode
    text = (tmp_path / "log.txt").read_text()
    assert rc == 0 and "\r" not in text
    assert "forests: 4/4" in text and "selection:" in text


def test_user_errors_are_one_line(prob_file, tmp_path, capsys):
    cases = [
        (["--iterations", "40000"], "iterations must be between 0 and 10000"),
        (["--method", "maxvalue", "--boundary", str(prob_file)], None),
    ]
    for extra, message in cases:
        rc = main(["segment", str(prob_file), "-o", str(tmp_path / "o.tif"), *extra])
        err = capsys.readouterr().err
        if message is None:
            assert rc == 0
            (tmp_path / "o.tif").unlink()
        else:
            assert rc == 2 and message in err and err.count("\n") == 1
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((2, 96, 96), np.float32))
    rc = main(
        [
            "segment",
            str(prob_file),
            "-o",
            str(tmp_path / "o.tif"),
            "--method",
            "maxvalue",
            "--boundary",
            str(short),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "boundary must have the shape of prob (5, 96, 96)" in err
    np.save(tmp_path / "empty.npy", np.zeros((0, 96, 96), np.float32))
    rc = main(["segment", str(tmp_path / "empty.npy"), "-o", str(tmp_path / "e.tif")])
    assert rc == 2 and "there is no frame to segment" in capsys.readouterr().err


def test_raw_image_without_model_is_refused(tmp_path, capsys):
    v = nuclei_video(n_frames=3, shape=(64, 64), n_cells=4)
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, v["image"], photometric="minisblack")  # uint16 raw intensities
    rc = main(["segment", str(raw), "-o", str(tmp_path / "o.tif")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not look like a probability map" in err and "--model" in err
    assert not (tmp_path / "o.tif").exists()


def test_cli_methods_match_the_engine_and_help_is_light():
    import subprocess
    import sys

    from napari_hemd.cli._segment import METHODS as CLI_METHODS
    from napari_hemd.core.segment import METHODS

    assert CLI_METHODS == METHODS
    code = (
        "import sys; from napari_hemd.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('scipy', 'numba', 'torch', 'napari_hemd.core.segment') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # --help imports neither the engine nor torch


def test_silent_acceptances_are_refused(tmp_path, capsys):
    np.save(tmp_path / "one.npy", np.full((32, 32), 0.9, np.float32))
    rc = main(
        [
            "segment",
            str(tmp_path / "one.npy"),
            "-o",
            str(tmp_path / "o.tif"),
            "--axis",
            "5",
            "--method",
            "threshold",
        ]
    )
    assert rc == 2 and "axis must be 0 for a single 2D frame; got 5" in capsys.readouterr().err
    np.save(tmp_path / "p.npy", np.zeros((3, 32, 32), np.float32))
    (tmp_path / "o.zarr").mkdir()
    rc = main(["stream", str(tmp_path / "p.npy"), "-o", str(tmp_path / "s.zarr"), "--follow", "-1"])
    assert rc == 2 and "--follow must be 0 or more seconds" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "p.tif", np.zeros((3, 32, 32), np.float32))
    rc = main(["stream", str(tmp_path / "p.tif"), "-o", str(tmp_path / "s.zarr"), "--follow", "5"])
    assert rc == 2 and "--follow reads a .zarr array" in capsys.readouterr().err
    out = tmp_path / "exists.tif"
    out.write_bytes(b"x")
    assert main(["segment", str(tmp_path / "p.npy"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite" in err and "overwrite=True" not in err


def test_progress_rate_only_when_the_start_is_known(capsys):
    """A stage first reported already finished (one fast frame) prints no made-up rate."""
    from napari_hemd.cli._progress import Progress

    with Progress(interval=0.0) as bar:
        bar("predict", 1, 1)
        bar("forests", 0, 2)
        bar("forests", 2, 2)
        bar("selection", 1, 3)  # first reported with one done: timed from there on
        bar("selection", 3, 3)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "predict: 1/1"
    assert err[1].startswith("forests: 2/2 (") and err[1].endswith("/s)")
    assert err[2] == "selection: 1/3"
    assert err[3].startswith("selection: 3/3 (") and err[3].endswith("/s)")


def test_one_stack_to_a_ctc_folder_is_one_3d_mask(tmp_path, capsys):
    """A (Z, Y, X) stack segmented with the 3D model into a CTC result folder: one 3D
    ``mask000.tif`` whose objects have no lineage (it wrote each slice as a frame, and the
    slices' links as divisions along z)."""
    from napari_hemd.data.synthetic import nuclei_volume

    vol = nuclei_volume((32, 96, 96), n_cells=8, seed=3)["image"]
    tifffile.imwrite(tmp_path / "stack.tif", vol, photometric="minisblack")
    out = tmp_path / "res"
    argv = ["segment", str(tmp_path / "stack.tif"), "--model", "nuclei-3d", "--tta", "1"]
    assert main([*argv, "-o", str(out), "--no-progress", "--threads", "1"]) == 0
    assert sorted(p.name for p in out.glob("*.tif")) == ["mask000.tif"]
    mask = tifffile.imread(out / "mask000.tif")
    assert mask.shape == vol.shape
    tracks = np.loadtxt(out / "res_track.txt", dtype=np.int64, ndmin=2)
    ids = np.unique(mask)[1:]
    assert len(ids) >= 3 and sorted(tracks[:, 0]) == ids.tolist()
    assert (tracks[:, 1:] == 0).all()  # each in frame 0 only, no parent
    assert main([*argv, "-o", str(tmp_path / "s.tif"), "--no-progress", "--threads", "1"]) == 0
    np.testing.assert_array_equal(read_stack(tmp_path / "s.tif"), mask)  # the same labels


def test_options_that_would_do_nothing_are_refused(prob_file, tmp_path, capsys):
    """--boundary with a method that does not read it, --z-scale on an image predicted on one
    plane, and a negative training noise were taken and ignored."""
    out = str(tmp_path / "o.tif")
    rc = main(["segment", str(prob_file), "-o", out, "--boundary", str(prob_file)])
    assert rc == 2 and "--boundary is used by --method maxvalue only; got --method hemd" in (
        capsys.readouterr().err
    )
    raw = nuclei_video(n_frames=1, shape=(64, 64), n_cells=3, seed=1)["image"][0]
    tifffile.imwrite(tmp_path / "img.tif", raw)
    argv = ["segment", str(tmp_path / "img.tif"), "-o", out, "--model", "nuclei-3d"]
    assert main([*argv, "--z-scale", "2", "--no-progress"]) == 2
    assert "z_scale is for three prediction planes" in capsys.readouterr().err
    assert not os.path.exists(out)
    from napari_hemd.models.training import TrainConfig

    with pytest.raises(ValueError, match=r"noise_sigma \(--noise\) must be >= 0; got -1"):
        TrainConfig(noise_sigma=-1)


def test_maps_a_model_predicted_are_segmented_as_the_model_segments(tmp_path, capsys, caplog):
    """``segment maps.zarr`` on what ``predict --model`` wrote ignored the model its attributes
    name: no whole-cell growth, none of its defaults (a 3D model's delta, linking and fragment
    size). It now gives the labels ``segment --model`` gives."""
    from napari_hemd.data.synthetic import nuclei_volume

    movie = nuclei_video(n_frames=4, shape=(128, 128), n_cells=8, seed=4)["image"]
    stack = nuclei_volume((32, 96, 96), n_cells=8, seed=3)["image"]
    common = ["--tta", "1", "--threads", "1", "--no-progress"]
    for name, data, model in (("movie", movie, "nuclei-fluo"), ("stack", stack, "nuclei-3d")):
        raw = tmp_path / f"{name}.tif"
        tifffile.imwrite(raw, data, photometric="minisblack")
        maps = tmp_path / f"{name}.zarr"
        argv = ["predict", str(raw), "--model", model, "-o", str(maps), *common]
        assert main([*argv, "--outputs", "foreground,background"]) == 0
        assert main(["segment", str(maps), "-o", str(tmp_path / f"{name}_a.tif")]) == 0
        assert "whole cells (grown 2 px)" in capsys.readouterr().err
        assert main(["segment", str(raw), "--model", model, "-o", str(tmp_path / f"{name}_b.tif"),
                     *common]) == 0  # fmt: skip
        got, want = (read_stack(tmp_path / f"{name}_{k}.tif") for k in "ab")
        np.testing.assert_array_equal(got, want)
        assert len(np.unique(got)) > 3
    from napari_hemd.io.stacks import recorded_params

    assert recorded_params(tmp_path / "stack_a.tif")["planes"] == 3  # one stack, as --model
    fg = tmp_path / "fg.zarr"
    assert main(["predict", str(tmp_path / "movie.tif"), "--model", "nuclei-fluo", "-o", str(fg),
                 *common]) == 0  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert main(["segment", str(fg), "-o", str(tmp_path / "fg.tif")]) == 0
    assert "holds no background map: instances not grown" in caplog.text


def test_a_model_s_maps_of_stacks_over_time_are_segmented_stack_by_stack(tmp_path, capsys):
    """``segment`` and ``stream`` on the (T, Z, Y, X) maps ``predict --model nuclei-3d`` wrote
    segmented them as plain maps (each stack one H-EMD frame: no 3D settings, no growth, other
    objects). Each stack is now segmented as ``segment --model`` segments it, then the objects
    linked over time: the same labels and tracks."""
    import zarr

    from napari_hemd.data.synthetic import nuclei_volume
    from napari_hemd.io.stacks import recorded_params

    stack = nuclei_volume((20, 72, 72), n_cells=8, seed=5)["image"]
    raw = tmp_path / "stacks.tif"
    tifffile.imwrite(raw, np.stack([stack, np.roll(stack, 2, axis=2)]), imagej=True,
                     metadata={"axes": "TZYX"})  # fmt: skip
    common = ["--model", "nuclei-3d", "--tta", "1", "--threads", "1", "--no-progress"]
    maps = tmp_path / "maps.zarr"
    argv = ["predict", str(raw), "-o", str(maps), "--outputs", "foreground,background"]
    assert main([*argv, *common]) == 0
    assert main(["segment", str(raw), "-o", str(tmp_path / "want"), *common]) == 0
    assert main(["segment", str(maps), "-o", str(tmp_path / "got"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "2 stack(s) over time, objects linked over time" in err
    assert "whole cells (grown 2 px)" in err
    want, got = read_stack(tmp_path / "want"), read_stack(tmp_path / "got")  # CTC: 3D masks
    np.testing.assert_array_equal(got, want)
    assert [len(np.unique(s)) - 1 for s in got] == [9, 8]
    tracks = [(tmp_path / k / "res_track.txt").read_text() for k in ("got", "want")]
    assert tracks[0] == tracks[1] and len(tracks[0].splitlines()) == 9
    assert recorded_params(tmp_path / "got")["planes"] == 3
    out = tmp_path / "streamed.zarr"
    assert main(["stream", str(maps), "-o", str(out), "--no-progress"]) == 0
    assert "2 stack(s) over time, stack by stack" in capsys.readouterr().err
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], want)
    assert recorded_params(out)["napari_hemd_labels"]  # opened as labels by its mark


def test_segment_with_an_affinity_model_gives_its_mutex_watershed(tmp_path, shared_data, capsys):
    """segment --model nuclei-affinity: the model's own method, its Mutex watershed instances
    (the listed held-out scores are theirs; H-EMD on its foreground scored 0.09 AJI less), the
    same as predict's; --method hemd still segments the foreground; the maps' options refused."""
    import glob

    import tifffile

    from napari_hemd.image_segmentation import segment_image
    from napari_hemd.models import predict

    img = tifffile.imread(sorted(glob.glob(str(shared_data / "bbbc039/images/*.tif")))[-1])
    crop = tmp_path / "crop.tif"
    tifffile.imwrite(crop, img[:160, :160])
    out = tmp_path / "m.tif"
    args = ["--model", "nuclei-affinity", "--threads", "1", "--no-progress"]
    assert main(["segment", str(crop), "-o", str(out), *args]) == 0
    assert "mutex with model nuclei-affinity" in capsys.readouterr().err
    labels = tifffile.imread(out)
    inst = predict("nuclei-affinity", img[:160, :160], outputs=("instances",))["instances"]
    pairs = np.unique(np.stack([labels.ravel(), inst.ravel()]), axis=1)
    assert labels.max() > 3 and pairs.shape[1] == len(np.unique(labels)) == len(np.unique(inst))
    api = segment_image(img[:160, :160], "nuclei-affinity")
    assert api.params["method"] == "mutex" and api.params["min_size"] == 30  # as used
    assert (api.labels > 0).sum() == (labels > 0).sum()
    assert segment_image(img[:160, :160], "nuclei-affinity", "hemd").params["method"] == "hemd"
    for bad, msg in (
        ([*args, "--tau", "0.6"], "--tau: not used by --method mutex"),
        (["--model", "nuclei-fluo", "--method", "mutex"], "nuclei-fluo is a U-Net"),
        (["--method", "mutex"], "--method mutex segments an affinity model's affinities"),
    ):
        assert main(["segment", str(crop), "-o", str(tmp_path / "x.tif"), *bad]) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(ValueError, match="tau: not used by method 'mutex'"):
        segment_image(img[:64, :64], "nuclei-affinity", tau=0.6)


def test_an_affinity_models_maps_are_segmented_with_its_mutex_watershed(
    tmp_path, shared_data, capsys, caplog
):
    """``segment maps.zarr`` of maps ``predict --model nuclei-affinity`` wrote ran H-EMD, silently
    (audit 20: 0.869 / 0.765 against the model's 0.923 / 0.855), and --method mutex was refused:
    the Mutex watershed of the maps' affinities (offsets recorded) or instances, as ``segment
    --model``; a foreground alone is segmented with H-EMD, said."""
    import glob

    import tifffile
    import zarr

    from napari_hemd._log import NOTE

    img = tifffile.imread(sorted(glob.glob(str(shared_data / "bbbc039/images/*.tif")))[-1])
    crop = tmp_path / "crop.tif"
    tifffile.imwrite(crop, img[:160, :160])
    quiet = ["--threads", "1", "--no-progress"]
    direct = tmp_path / "direct.tif"
    assert (
        main(["segment", str(crop), "--model", "nuclei-affinity", "-o", str(direct), *quiet]) == 0
    )
    want = tifffile.imread(direct)
    predict = ["predict", str(crop), "--model", "nuclei-affinity", *quiet]
    group = tmp_path / "maps.zarr"
    assert main([*predict, "--outputs", "foreground,affinities", "-o", str(group)]) == 0
    offsets = zarr.open_group(str(group), mode="r").attrs["offsets"]
    assert offsets[:2] == [[-1, 0], [0, -1]] and len(offsets) == 10  # channel c's offset
    tiffs = tmp_path / "m.tif"  # m_foreground.tif, m_instances.tif beside it
    assert main([*predict, "--outputs", "foreground,instances", "-o", str(tiffs)]) == 0
    capsys.readouterr()
    for src in (group, tmp_path / "m_foreground.tif"):
        out = tmp_path / f"{src.stem}-labels.tif"
        assert main(["segment", str(src), "-o", str(out), "--no-progress"]) == 0
        assert "mutex on maps of nuclei-affinity" in capsys.readouterr().err
        np.testing.assert_array_equal(tifffile.imread(out), want)
    # a movie's TIFFs: the affinities' pages are frames times channels (review 29: refused)
    movie = tmp_path / "movie.tif"
    tifffile.imwrite(movie, np.stack([img[:96, :96], img[64:160, 64:160]]))
    assert main(["segment", str(movie), "--model", "nuclei-affinity", "-o",
                 str(tmp_path / "mdirect.tif"), *quiet]) == 0  # fmt: skip
    mtif = tmp_path / "mv.tif"
    assert main(["predict", str(movie), "--model", "nuclei-affinity", *quiet,
                 "--outputs", "foreground,affinities", "-o", str(mtif)]) == 0  # fmt: skip
    assert main(["segment", str(tmp_path / "mv_foreground.tif"), "-o",
                 str(tmp_path / "mv-labels.tif"), "--no-progress"]) == 0  # fmt: skip
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "mv-labels.tif"), tifffile.imread(tmp_path / "mdirect.tif")
    )
    fg = tmp_path / "fg.zarr"
    assert main([*predict, "--outputs", "foreground", "-o", str(fg)]) == 0
    caplog.set_level(NOTE)
    assert main(["segment", str(fg), "-o", str(tmp_path / "h.tif"), "--no-progress"]) == 0
    assert "foreground alone: segmented with H-EMD" in caplog.text
    assert "hemd on maps of nuclei-affinity" in capsys.readouterr().err
    bad = ["segment", str(fg), "-o", str(tmp_path / "x.tif"), "--method", "mutex"]
    assert main(bad) == 2
    assert "needs the affinity model's 'instances' or 'affinities'" in capsys.readouterr().err
