"""Fine-tuning on corrected frames (napari_hemd.finetune, train --init on a project)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def video():
    from napari_hemd.data.synthetic import nuclei_video

    d = nuclei_video(n_frames=4, shape=(96, 96), n_cells=6, seed=3)
    return d["image"], d["labels"].astype(np.uint32)


def test_frames_as_samples_refuses_bad_input(video):
    from napari_hemd.finetune import frames_as_samples

    image, labels = video
    norm = {"low": 1.0, "high": 99.8}
    with pytest.raises(ValueError, match="same shape"):
        frames_as_samples(image, labels[:, :50], [0], norm, "x")
    with pytest.raises(ValueError, match="at least one corrected frame"):
        frames_as_samples(image, labels, [], norm, "x")
    with pytest.raises(ValueError, match=r"frames must be in 0\.\.3; got \[7\]"):
        frames_as_samples(image, labels, [1, 7], norm, "x")
    got = frames_as_samples(image, labels, [2, 0, 2], norm, "mine")
    assert [s.name for s in got] == ["mine/t000", "mine/t002"]
    assert np.array_equal(got[1].labels, labels[2])


def test_held_out_frame_only_with_three_or_more():
    from napari_hemd.finetune import held_out_frame

    assert held_out_frame([4]) is None and held_out_frame([1, 4]) is None
    assert held_out_frame([9, 1, 4]) == 9


def test_finetune_a_stack_scores_the_held_out_frame(video, tmp_path, monkeypatch, capsys):
    from napari_hemd.finetune import finetune
    from napari_hemd.models import load_model, load_model_file

    image, labels = video
    base = load_model("nuclei-fluo")
    before_weights = {k: v.clone() for k, v in base.network.state_dict().items()}
    seen = []
    res = finetune(
        image, labels, [0, 1, 3], base, output=tmp_path / "t.pt", minutes=0.08, threads=1,
        on_step=lambda s, loss: seen.append((s, loss)),
    )  # fmt: skip
    assert res.frames == [0, 1] and res.held_out == 3
    assert set(res.before) == set(res.after) == {"F1", "AJI", "SEG"}
    assert res.steps == len(seen) > 0 and not res.cancelled
    meta = load_model_file(res.path).metadata
    assert meta["fine_tuned"]["frames"] == [0, 1] and meta["fine_tuned"]["held_out"] == 3
    assert meta["fine_tuned"]["before"] == res.before and meta["name"] == "t"
    assert meta["training"]["train_samples"] == ["checked/t000", "checked/t001"]
    # calibrated on its own training frames (not the base's records)
    for key in ("calibration", "tta_calibration"):
        assert meta[key]["frames"] == ["checked/t000", "checked/t001"]
    assert meta["segment_defaults"]["grow_threshold"] == meta["calibration"]["value"]
    # the recipe keeps the base model's batch-norm statistics; the weights did change
    tuned = load_model_file(res.path).network.state_dict()
    stats = [k for k in tuned if k.endswith(("running_mean", "running_var"))]
    assert stats and all(np.allclose(tuned[k].numpy(), before_weights[k].numpy()) for k in stats)
    assert any(not np.allclose(tuned[k].numpy(), before_weights[k].numpy()) for k in tuned)
    # the model passed in is left as it was
    for k, v in base.network.state_dict().items():
        assert np.array_equal(v.numpy(), before_weights[k].numpy())
    assert not list(tmp_path.glob(".*"))  # no temporary left behind
    # listed by `napari-hemd models` once the plugin registered it
    from napari_hemd import _settings
    from napari_hemd.cli import main

    monkeypatch.setenv(_settings.CONFIG_ENV, str(tmp_path / "config"))
    _settings.remember_model("mine", res.path, "unet")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "fine-tuned in the plugin" in out and str(res.path) in out
    assert "from (a loaded model) on checked frames [0, 1]" in out and "held-out frame 3" in out
    # the name the plugin lists is not a file: the command line says which file to pass
    tif = tmp_path / "one.tif"
    tifffile.imwrite(tif, image[:1])
    assert main(["segment", str(tif), "--model", "mine", "-o", str(tmp_path / "l.tif")]) == 2
    err = capsys.readouterr().err
    assert "'mine' is a model you fine-tuned in the plugin" in err and str(res.path) in err
    with pytest.raises(FileExistsError, match="already exists"):
        finetune(image, labels, [0], base, output=res.path, minutes=0.05)


def test_zoom_samples_as_prediction_sees_the_frames(video):
    """Images resized as ``predict(scale=)`` resizes a frame; labels nearest, ids kept."""
    import torch

    from napari_hemd.finetune import frames_as_samples
    from napari_hemd.models.data import median_diameter, zoom_samples

    image, labels = video
    norm = {"low": 1.0, "high": 99.8}
    plain = frames_as_samples(image, labels, [0, 2], norm, "x")
    assert zoom_samples(plain, 1.0) == plain
    for scale, shape in ((2.0, (192, 192)), (0.37, (36, 36))):
        zoomed = frames_as_samples(image, labels, [0, 2], norm, "x", scale)
        for a, b in zip(plain, zoomed, strict=True):
            assert b.name == a.name and b.image.shape == b.labels.shape == shape
            assert b.image.dtype == np.float32 and b.labels.dtype == a.labels.dtype
            want = torch.nn.functional.interpolate(
                torch.from_numpy(a.image)[None, None], size=shape, mode="bilinear",
                align_corners=False, antialias=scale < 1,
            )[0, 0].numpy()  # fmt: skip
            np.testing.assert_allclose(b.image, want, atol=1e-6)
            assert set(np.unique(b.labels)) <= set(np.unique(a.labels))
        d0, _ = median_diameter([s.labels for s in plain])
        d1, _ = median_diameter([s.labels for s in zoomed])
        assert d1 == pytest.approx(d0 * scale, rel=0.12)
    big = frames_as_samples(image, labels, [1], norm, "x", 2.0)[0].labels
    assert np.array_equal(big[::2, ::2], labels[1]) and np.array_equal(big[1::2, 1::2], labels[1])


def test_finetune_at_the_zoom_the_movie_was_segmented_at(video, tmp_path, monkeypatch, capsys):
    """Trained and scored on frames zoomed as Segment zoomed them: the model records the
    zoom and the objects' size as the network saw them; affinity models refuse a zoom."""
    from napari_hemd.finetune import finetune, score_frames
    from napari_hemd.models import load_model_file
    from napari_hemd.models.data import median_diameter

    image, labels = video
    res = finetune(image, labels, [0, 1, 3], "nuclei-fluo", output=tmp_path / "z.pt",
                   minutes=0.08, threads=1, scale=1.5)  # fmt: skip
    assert res.scale == 1.5 and res.steps > 0
    meta = load_model_file(res.path).metadata
    assert meta["fine_tuned"]["scale"] == 1.5 and meta["scale"] == 1.5
    found, _ = median_diameter(list(labels[:2]))
    assert meta["object_diameters"]["checked"] == pytest.approx(1.5 * found, rel=0.1)
    # the score before is that of Segment at this zoom, not at the frames' own size
    assert res.before == score_frames("nuclei-fluo", image, labels, [3], 1.5)
    assert res.before != score_frames("nuclei-fluo", image, labels, [3], 1.0)
    # the model is used at its zoom unless told otherwise: segment, predict, stream
    from napari_hemd import segment_image
    from napari_hemd.models import predict
    from napari_hemd.pipeline import stream_segment

    own = segment_image(image, res.path, iterations=2)
    at = segment_image(image, res.path, iterations=2, scale=1.5)
    assert own.params["scale"] == 1.5 and np.array_equal(own.labels, at.labels)
    plain = segment_image(image, res.path, iterations=2, scale=1)
    assert plain.params["scale"] == 1.0  # recorded: not the model's own zoom
    assert not np.array_equal(plain.labels, own.labels)
    fg = predict(res.path, image[:1])["foreground"]
    np.testing.assert_array_equal(fg, predict(res.path, image[:1], scale=1.5)["foreground"])
    assert not np.array_equal(fg, predict(res.path, image[:1], scale=1.0)["foreground"])
    import zarr

    for zoom, name in ((None, "own"), (1.0, "one")):
        out = stream_segment(image, tmp_path / f"{name}.zarr", model=res.path, scale=zoom,
                             iterations=2)  # fmt: skip
        assert zarr.open_array(str(out), mode="r").attrs["scale"] == (zoom or 1.5)
    streamed = zarr.open_array(str(tmp_path / "own.zarr"), mode="r")[:]
    assert (streamed > 0).sum() == pytest.approx((own.labels > 0).sum(), rel=0.05)
    import tifffile

    from napari_hemd.cli import main

    tifffile.imwrite(tmp_path / "movie.tif", image)
    capsys.readouterr()
    cmd = ["stream", str(tmp_path / "movie.tif"), "--model", str(res.path), "--iterations", "2"]
    assert main([*cmd, "-o", str(tmp_path / "cli.zarr"), "--no-progress"]) == 0
    assert "stream: zoom 1.5 (the model's own)" in capsys.readouterr().err
    # napari-hemd models says at which zoom it is used
    from napari_hemd import _settings

    monkeypatch.setenv(_settings.CONFIG_ENV, str(tmp_path / "config"))
    _settings.remember_model("zoomed", res.path, "unet")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "trained at zoom 1.5: segment, predict and stream use it at that zoom" in out
    with pytest.raises(ValueError, match=r"scale=1\.5 needs a U-Net model"):
        finetune(image, labels, [0], "nuclei-affinity", output=tmp_path / "a.pt", minutes=0.05,
                 scale=1.5)  # fmt: skip
    assert not (tmp_path / "a.pt").exists()


def test_finetune_a_single_image_and_the_affinity_model(video, tmp_path):
    from napari_hemd.finetune import finetune
    from napari_hemd.models import load_model_file

    image, labels = video
    res = finetune(image[0], labels[0], [0], "nuclei-affinity", output=tmp_path / "a.pt",
                   minutes=0.05, threads=1)  # fmt: skip
    assert res.held_out is None and res.before is None and res.steps > 0
    assert load_model_file(res.path).kind == "affinity"


def test_stop_keeps_the_best_model_so_far(video, tmp_path, capsys, monkeypatch):
    from napari_hemd.finetune import finetune

    image, labels = video
    steps = []
    res = finetune(
        image, labels, [0, 1], "nuclei-fluo", output=tmp_path / "c.pt", minutes=5, threads=1,
        on_step=lambda s, loss: steps.append(s), stop=lambda: len(steps) >= 3,
    )  # fmt: skip
    assert res.cancelled and res.steps == 3 and res.path.is_file()
    # stopped before its own calibration: it uses the base's settings, and does not carry the
    # base's calibration records (frames it never trained on, scores of another network)
    from napari_hemd.cli import main
    from napari_hemd.models import load_model, load_model_file

    base, meta = load_model("nuclei-fluo").metadata, load_model_file(res.path).metadata
    assert "calibration" not in meta and "tta_calibration" not in meta
    assert meta["segment_defaults"]["grow_threshold"] == base["segment_defaults"]["grow_threshold"]
    assert meta["tta"] == base["tta"] == 4
    assert meta["fine_tuned_from"]["calibration"] == {"grow_threshold": 0.5, "tta": 4}
    assert main(["models", str(res.path)]) == 0
    out = capsys.readouterr().out
    assert "chosen on" not in out and "training frames' (F1+AJI)/2" not in out
    inherited = (
        "whole cells: growth into background probability < 0.5; test-time flips 4 views: the "
        "starting model's (this run stopped before calibrating on its own training frames)"
    )
    assert inherited in out
    # and in the list of the models fine-tuned in the plugin
    from napari_hemd import _settings

    monkeypatch.setenv(_settings.CONFIG_ENV, str(tmp_path / "config"))
    _settings.remember_model("stopped", res.path, "unet")
    assert main(["models"]) == 0
    assert inherited in capsys.readouterr().out.split("fine-tuned in the plugin")[1]


def test_a_killed_finetune_writes_nothing(video, tmp_path):
    """Closing the workflow (the window closed, the run killed) leaves no model file."""
    from napari_hemd.finetune import finetune_workflow

    image, labels = video
    out = tmp_path / "k.pt"
    gen = finetune_workflow(image, labels, [0, 1], "nuclei-fluo", output=out, minutes=5)
    for stage, done, _total in gen:
        if stage == "fine-tune" and done >= 2:
            break
    gen.close()
    import time

    time.sleep(2.0)  # the training thread stops at its next step
    assert not out.exists() and not list(tmp_path.iterdir())


def test_steps_for_budget_grows_with_time():
    from napari_hemd.finetune import RECIPE, steps_for_budget
    from napari_hemd.models import load_model

    m = load_model("nuclei-fluo")
    assert steps_for_budget(m, RECIPE, 60) > steps_for_budget(m, RECIPE, 6) >= 5


def test_split_auto_holds_out_the_last_of_three():
    from napari_hemd.models.data import Sample, split_samples

    cell = np.zeros((4, 4), np.int32)
    cell[1:3, 1:3] = 1
    s = [Sample(np.zeros((4, 4), np.float32), cell, f"a/t{i}", "x") for i in range(3)]
    tr, va = split_samples(s, "auto")
    assert [x.name for x in va] == ["a/t2"] and len(tr) == 2
    tr, va = split_samples(s[:2], "auto")
    assert len(tr) == 2 and va == []
    empty = [Sample(x.image, np.zeros_like(cell), x.name, "x") for x in s]
    tr, va = split_samples(empty, "auto")  # nothing to score: none held out
    assert len(tr) == 3 and va == []


def test_project_checked_frames_are_training_data(video, tmp_path, capsys):
    """A project saves its checked frames; ``train --init --data PROJECT`` learns from them
    (steps from the time budget), re-saving keeps the project's models."""
    from napari_hemd.cli import main
    from napari_hemd.models import load_model_file
    from napari_hemd.models.data import load_samples
    from napari_hemd.workflows import load_project, save_project

    image, labels = video
    folder = tmp_path / "p.zarr"
    save_project(folder, prob=image.astype(np.float32) / image.max(), labels=labels,
                 params={"method": "hemd"}, image=image, checked=[2, 0, 1])  # fmt: skip
    samples = load_samples(folder)
    assert [s.name for s in samples] == ["p/t000", "p/t001", "p/t002"]
    assert np.array_equal(samples[2].labels, labels[2])
    (folder / "models").mkdir()
    out = folder / "models" / "tuned.pt"
    args = ["train", "--init", "nuclei-fluo", "--data", str(folder), "-o", str(out)]
    assert main([*args, "--max-minutes", "0.1", "--threads", "1", "--no-progress"]) == 0
    meta = load_model_file(out).metadata
    assert meta["training"]["train_samples"] == ["p/t000", "p/t001"]
    assert meta["training"]["held_out_samples"] == ["p/t002"]
    assert meta["training"]["config"]["lr"] == 2e-3 and meta["training"]["config"]["freeze_bn"]
    save_project(folder, prob=image.astype(np.float32) / image.max(), labels=labels,
                 params={"method": "hemd"}, image=image, checked=[0], overwrite=True)  # fmt: skip
    proj = load_project(folder)
    assert proj["checked"] == [0] and proj["models"] == [out]
    # one corrected frame: nothing held out (the default --val is "auto" with --init)
    save_project(folder, prob=image.astype(np.float32) / image.max(), labels=labels,
                 params={"method": "hemd"}, image=image, checked=[3], overwrite=True)  # fmt: skip
    one = folder / "models" / "one.pt"
    args = ["train", "--init", "nuclei-fluo", "--data", str(folder), "-o", str(one)]
    capsys.readouterr()
    assert main([*args, "--max-minutes", "0.05", "--threads", "1", "--no-progress"]) == 0
    assert load_model_file(one).metadata["training"]["train_samples"] == ["p/t003"]
    assert "no held-out frames" in capsys.readouterr().out  # it said "held-out loss nan"
    save_project(tmp_path / "q.zarr", prob=image.astype(np.float32), labels=labels, params={})
    with pytest.raises(ValueError, match="no checked frames"):
        load_samples(tmp_path / "q.zarr")


def test_train_init_on_a_project_fine_tunes_at_its_zoom(video, tmp_path, capsys):
    """``train --init`` on a project segmented with a zoom trains at that zoom (as the Fine-tune
    widget does); ``--scale`` overrides it; an affinity model is refused, naming the project."""
    from napari_hemd.cli import main
    from napari_hemd.models import load_model_file
    from napari_hemd.models.data import median_diameter, project_scale
    from napari_hemd.workflows import save_project

    image, labels = video
    folder = tmp_path / "z.zarr"
    save_project(folder, prob=image.astype(np.float32) / image.max(), labels=labels,
                 params={"method": "hemd", "scale": 1.5}, image=image, checked=[0, 1, 2])  # fmt: skip
    assert project_scale(folder) == 1.5 and project_scale(tmp_path) == 1.0
    base = ["train", "--init", "nuclei-fluo", "--data", str(folder), "--steps", "2"]
    base += ["--batch-size", "1", "--patch-size", "64", "--threads", "1", "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "a.pt")]) == 0
    meta = load_model_file(tmp_path / "a.pt").metadata
    assert meta["training"]["data"] == [f"{folder} (zoom 1.5)"]
    found, _ = median_diameter(list(labels[:2]))
    assert meta["object_diameters"]["z"] == pytest.approx(1.5 * found, rel=0.1)
    assert meta["scale"] == 1.5  # used at that zoom
    assert main([*base, "-o", str(tmp_path / "b.pt"), "--scale", "1"]) == 0
    meta_b = load_model_file(tmp_path / "b.pt").metadata
    assert meta_b["training"]["data"] == [str(folder)] and meta_b["scale"] == 1.0
    # from a model used at a zoom, on data that are not a project: trained at that zoom
    import tifffile

    plain = tmp_path / "plain"
    for sub, stack in (("images", image), ("labels", labels)):
        (plain / sub).mkdir(parents=True)
        for t, frame in enumerate(stack[:3]):
            tifffile.imwrite(plain / sub / f"f{t}.tif", frame)
    again = [*base, "-o", str(tmp_path / "d.pt")]
    again[again.index("nuclei-fluo")] = str(tmp_path / "a.pt")
    again[again.index(str(folder))] = str(plain)
    assert main(again) == 0
    meta_d = load_model_file(tmp_path / "d.pt").metadata
    assert meta_d["training"]["data"] == [f"{plain} (zoom 1.5)"] and meta_d["scale"] == 1.5
    capsys.readouterr()
    affinity = [*base, "-o", str(tmp_path / "c.pt")]
    affinity[affinity.index("nuclei-fluo")] = "nuclei-affinity"
    assert main(affinity) == 2
    err = capsys.readouterr().err
    assert f"project {str(folder)!r} was segmented at zoom 1.5" in err and "--scale 1" in err


def test_checked_frames_without_objects(video, tmp_path):
    """Checked frames whose labels were all cleared were trained on (background alone) and the
    model then wiped every frame it re-segmented, its held-out score NaN: refused, in the API
    and from a project on the command line. An empty checked frame among others is training
    data, not the held-out frame (nothing to score)."""
    from napari_hemd.cli import main
    from napari_hemd.finetune import empty_frames, finetune, held_out_frame
    from napari_hemd.models.data import load_samples
    from napari_hemd.workflows import save_project

    image, labels = video
    cleared = np.zeros_like(labels)
    with pytest.raises(ValueError, match=r"checked frame\(s\) 0, 1, 3 hold no objects"):
        finetune(image, cleared, [0, 1, 3], "nuclei-fluo", output=tmp_path / "e.pt", minutes=0.05)
    assert not (tmp_path / "e.pt").exists()
    folder = tmp_path / "p.zarr"
    save_project(folder, prob=image.astype(np.float32) / image.max(), labels=cleared,
                 params={"method": "hemd"}, image=image, checked=[0, 2])  # fmt: skip
    with pytest.raises(ValueError, match=r"p\.zarr'?: the checked frame\(s\) 0, 2 hold no objects"):
        load_samples(folder)
    args = ["train", "--init", "nuclei-fluo", "--data", str(folder), "-o", str(tmp_path / "c.pt")]
    assert main([*args, "--steps", "2", "--threads", "1", "--no-progress"]) == 2
    assert not (tmp_path / "c.pt").exists()
    # one empty frame among corrected ones: trained on, the last frame with objects held out
    some = labels.copy()
    some[3] = 0
    assert empty_frames(some, [0, 1, 3]) == [3]
    assert held_out_frame([0, 1, 3], [3]) == 1 and held_out_frame([0, 1, 3]) == 3
    assert held_out_frame([0, 1, 3], [1, 3]) is None  # the one with cells is trained on
    res = finetune(image, some, [0, 1, 3], "nuclei-fluo", output=tmp_path / "s.pt",
                   minutes=0.05, threads=1)  # fmt: skip
    assert res.held_out == 1 and res.frames == [0, 3]
    # the same on the command line's project split (train --init PROJECT: val "auto")
    from napari_hemd.models.data import split_samples

    save_project(folder, prob=image.astype(np.float32) / image.max(), labels=some,
                 params={"method": "hemd"}, image=image, checked=[0, 1, 3], overwrite=True)  # fmt: skip
    train, held = split_samples(load_samples(folder), "auto")
    assert [s.name for s in held] == ["p/t001"] and [s.name for s in train] == ["p/t000", "p/t003"]
    one = [s for s in load_samples(folder) if s.name != "p/t000"]  # t001 alone holds cells
    assert split_samples([*one, one[-1]], "auto")[1] == []
    assert np.isfinite(res.before["F1"]) and np.isfinite(res.after["F1"])


def test_train_refuses_a_project_of_stacks_over_time(tmp_path, capsys):
    """A project of a (T, Z, Y, X) time-lapse of stacks gave "too many values to unpack"."""
    from napari_hemd.cli import main
    from napari_hemd.workflows import save_project

    rng = np.random.default_rng(0)
    image = rng.random((2, 4, 32, 32)).astype(np.float32)
    labels = np.zeros((2, 4, 32, 32), np.uint32)
    labels[:, 1:3, 8:16, 8:16] = 1
    folder = tmp_path / "s.zarr"
    save_project(folder, prob=image, labels=labels, params={"method": "hemd"}, image=image,
                 checked=[0, 1])  # fmt: skip
    args = ["train", "--init", "nuclei-3d", "--data", str(folder), "-o", str(tmp_path / "x.pt")]
    assert main([*args, "--steps", "2", "--threads", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "labels have shape (2, 4, 32, 32)" in err and "time-lapse of 3D stacks" in err


def test_train_says_it_kept_a_checkpoint(video, tmp_path, capsys):
    """A run stopped by --max-minutes before --steps kept a 20 MB MODEL.pt.ckpt beside the
    2.6 MB model without a word: it is named, with what it is for."""
    from napari_hemd.cli import main
    from napari_hemd.workflows import save_project

    image, labels = video
    folder = tmp_path / "p.zarr"
    save_project(folder, prob=image.astype(np.float32) / image.max(), labels=labels,
                 params={"method": "hemd"}, image=image, checked=[0, 1])  # fmt: skip
    out = tmp_path / "m.pt"
    args = ["train", "--init", "nuclei-fluo", "--data", str(folder), "-o", str(out)]
    args += ["--steps", "100000", "--max-minutes", "0.02", "--checkpoint-every", "1"]
    assert main([*args, "--batch-size", "1", "--patch-size", "64", "--threads", "1",
                 "--no-progress"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert (tmp_path / "m.pt.ckpt").exists()
    assert f"kept the checkpoint {tmp_path / 'm.pt.ckpt'}" in printed and "--resume" in printed
