from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_hemd.models import (  # noqa: E402
    HemdModel,
    TrainConfig,
    load_samples,
    split_samples,
    train_model,
)
from napari_hemd.models.training import contact_pixels, semantic_targets  # noqa: E402


def _crop(samples, size=192):
    for s in samples:
        s.image, s.labels = s.image[:size, :size], s.labels[:size, :size]
    return samples


def test_semantic_targets_separate_touching_cells():
    labels = np.zeros((6, 8), np.int32)
    labels[1:5, 1:4], labels[1:5, 4:7] = 1, 2
    cls = semantic_targets(labels)
    assert set(np.unique(cls)) == {0, 1, 2}
    assert (cls[:, 3] != 0).all() and (cls[:, 4] != 0).all()  # the shared border is boundary
    assert cls[2, 2] == 0 and cls[0, 0] == 2


def test_cell_targets_dip_only_where_cells_touch():
    labels = np.zeros((10, 20), np.int32)
    labels[1:9, 1:7], labels[1:9, 7:13] = 1, 2  # touching along x = 6 | 7
    labels[1:9, 14:19] = 3  # one pixel of background between cells 2 and 3 (as CTC masks)
    cls = semantic_targets(labels, "cell")
    contact = contact_pixels(labels)  # radius 2
    assert contact[:, 5:9].all(axis=1)[1:9].all() and contact[1:9, 5:9].sum() == 32
    assert contact[1:9, 12].all() and contact[1:9, 14].all()  # one pixel each side of the gap
    assert contact.sum() == 32 + 16  # nothing where a cell borders only background
    assert (cls[1:9, 1:5] == 0).all() and (cls[1:9, 15:19] == 0).all()  # whole cell elsewhere
    assert (cls[contact] == 1).all() and (cls[labels == 0] == 2).all()
    assert contact_pixels(labels, radius=1).sum() == 16  # only the touching pair, 2 px wide
    # the old targets also mark every cell's outer ring as boundary
    assert (semantic_targets(labels, "interior")[1, 1:13] == 1).all()
    with pytest.raises(ValueError, match="targets must be"):
        semantic_targets(labels, "whole")


def test_score_based_selection_and_metadata(blobs, tmp_path):
    from napari_hemd.models import Sample

    samples = [Sample(blobs[0] / 255, blobs[1], f"d{i % 2}/t{i}", "labels") for i in range(4)]
    cfg = TrainConfig(
        model="unet",
        architecture={"base_channels": 4, "depth": 2},
        steps=4,
        batch_size=1,
        patch_size=32,
        val_every=2,
        score_every=2,
        checkpoint_every=0,
    )
    model, history = train_model(samples[:2], samples[2:], tmp_path / "m.pt", cfg, progress=False)
    scored = [h for h in history if "val_score" in h]
    assert [h["step"] for h in scored] == [2, 4]
    assert set(scored[0]["val_scores"]) == {"d0", "d1"}  # one score per data folder
    meta = model.metadata
    assert meta["targets"] == "cell"
    assert meta["training"]["best_val_score"] == max(h["val_score"] for h in scored)
    assert meta["training"]["augmentation"]["elastic"] > 0
    assert meta["training"]["config"]["class_weights"] == [1.0, 3.0, 1.0]
    # calibrated at the end on training frames, the choice stored for segment --model
    cal = meta["calibration"]
    assert cal["parameter"] == "grow_threshold" and set(cal["frames"]) <= {"d0/t0", "d1/t1"}
    assert meta["segment_defaults"]["grow_threshold"] == cal["value"]
    assert set(cal["scores"]) == {"0.5", "0.6", "0.7", "0.8", "0.9", "0.95"}


def test_split_samples_holds_out_a_block(blobs):
    from napari_hemd.models import Sample

    samples = [Sample(blobs[0], blobs[1], f"s/{i}", "labels") for i in range(10)]
    train, val = split_samples(samples, 0.2)
    assert [s.name for s in val] == ["s/8", "s/9"] and len(train) == 8
    train, val = split_samples(samples, "3:5")
    assert [s.name for s in val] == ["s/3", "s/4"]
    with pytest.raises(ValueError, match="fraction"):
        split_samples(samples, 1.5)
    with pytest.raises(ValueError, match="holds out none of the 10 frames with masks"):
        split_samples(samples, "5:2")
    # frame numbers past the labelled frames (audit 17: the message said START < STOP, true)
    with pytest.raises(ValueError, match=r"positions among them \(0-9\), not frame numbers"):
        split_samples(samples, "40:46")
    with pytest.raises(
        ValueError, match=r"a fraction in \[0, 1\), 'START:STOP' or 'auto'; got 'abc'"
    ):
        split_samples(samples, "abc")  # Python's 'could not convert string to float' before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "data", "arch"),
    [
        ("unet", "ctc/Fluo-N2DL-HeLa/01", {"base_channels": 4, "depth": 2}),
        ("affinity", "bbbc039", {"base_channels": 4, "depth": 2, "embedding_dim": 4}),
    ],
)
def test_training_reduces_loss_on_real_data(shared_data, tmp_path, kind, data, arch):
    torch.set_num_threads(1)
    samples = _crop(load_samples(shared_data / data)[:6])
    train, val = split_samples(samples, 0.34)
    cfg = TrainConfig(
        model=kind,
        architecture=arch,
        steps=40,
        batch_size=2,
        patch_size=64,
        lr=1e-2,
        val_every=10,
        checkpoint_every=0,
        ranges=(1, 3, 9),
        seed=1,
    )
    model, history = train_model(train, val, tmp_path / "m.pt", cfg, progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    assert min(h["val_loss"] for h in history[1:]) < history[0]["val_loss"]
    assert model.metadata["training"]["held_out_samples"] == [s.name for s in val]
    assert (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.ckpt").exists()


def test_the_model_file_is_float16_like_the_shipped_ones(blobs, tmp_path):
    """train writes float16 weights (half the file, as the shipped models); the model it returns
    and scores is exactly the file's. half=False keeps float32."""
    import torch

    from napari_hemd.models import Sample, load_model_file

    samples = [Sample(blobs[0] / 255, blobs[1], f"s/{i}", "labels") for i in range(3)]
    cfg = TrainConfig(
        model="unet", architecture={"base_channels": 4, "depth": 2}, steps=2, batch_size=1,
        patch_size=32, val_every=1, checkpoint_every=0, calibrate=False,
    )  # fmt: skip
    sizes = {}
    for half in (True, False):
        out = tmp_path / f"{half}.pt"
        model, _ = train_model(samples[:2], samples[2:], out, cfg, progress=False, half=half)
        stored = torch.load(out, weights_only=True)["state_dict"]
        dtypes = {v.dtype for v in stored.values() if v.is_floating_point()}
        assert dtypes == {torch.float16 if half else torch.float32}
        back = load_model_file(out).network.state_dict()
        assert all(torch.equal(v, back[k]) for k, v in model.network.state_dict().items())
        assert "final_score" in model.metadata["training"]
        sizes[half] = out.stat().st_size
    assert sizes[True] < 0.75 * sizes[False]


def test_checkpoint_and_resume(blobs, tmp_path):
    from napari_hemd.models import Sample

    samples = [Sample(blobs[0] / 255, blobs[1], f"s/{i}", "labels") for i in range(2)]
    cfg = TrainConfig(
        model="unet",
        architecture={"base_channels": 4, "depth": 2},
        steps=6,
        batch_size=1,
        patch_size=32,
        val_every=2,
        checkpoint_every=2,
        max_minutes=0.0,
    )
    out = tmp_path / "m.pt"
    _, history = train_model(samples, samples[:1], out, cfg, progress=False)
    assert history[-1]["step"] == 1  # stopped by max_minutes, checkpoint kept
    assert (tmp_path / "m.pt.ckpt").exists()
    cfg.max_minutes = None
    model, history = train_model(samples, samples[:1], out, cfg, resume=True, progress=False)
    assert [h["step"] for h in history] == [1, 2, 4, 6]
    assert model.metadata["training"]["steps_done"] == 6
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_model(samples, [], out, cfg, resume=True, progress=False)


def test_a_checkpoint_is_written_whole_or_not_at_all(blobs, tmp_path, monkeypatch):
    """Checkpoints were written in place: a run killed while writing lost the only one, and
    --resume printed PyTorch's "failed reading zip archive" traceback."""
    from napari_hemd.models import Sample

    samples = [Sample(blobs[0] / 255, blobs[1], f"s/{i}", "labels") for i in range(2)]
    cfg = TrainConfig(
        model="unet", architecture={"base_channels": 4, "depth": 2}, steps=4, batch_size=1,
        patch_size=32, val_every=2, checkpoint_every=2, max_minutes=0.0,
    )  # fmt: skip
    out = tmp_path / "m.pt"
    train_model(samples, samples[:1], out, cfg, progress=False)
    ckpt = tmp_path / "m.pt.ckpt"
    good = ckpt.read_bytes()
    from napari_hemd.models import weights

    # half the file written, then the run dies
    monkeypatch.setattr(weights, "open", _write_fails(len(good) // 2, KeyboardInterrupt),
                        raising=False)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        train_model(samples, samples[:1], out, cfg, resume=True, progress=False)
    monkeypatch.undo()
    assert ckpt.read_bytes() == good and not list(tmp_path.glob(".*"))  # no temporary left
    ckpt.write_bytes(good[: len(good) // 2])  # damaged some other way (a full disk, a copy)
    with pytest.raises(ValueError, match=r"resume: the checkpoint .* cannot be read .* damaged"):
        train_model(samples, samples[:1], out, cfg, resume=True, progress=False)


def test_resume_refuses_another_network_in_one_line(blobs, tmp_path, caplog):
    """Resuming with other sizes than the run that wrote the checkpoint gave torch's size
    mismatch (dozens of lines); a checkpoint past the steps asked for trained nothing, unsaid."""
    import dataclasses
    import logging

    from napari_hemd.models import Sample

    samples = [Sample(blobs[0] / 255, blobs[1], f"s/{i}", "labels") for i in range(2)]
    cfg = TrainConfig(
        model="unet", architecture={"base_channels": 4, "depth": 2}, steps=6, batch_size=1,
        patch_size=32, val_every=2, checkpoint_every=1, max_minutes=0.0,
    )  # fmt: skip
    out = tmp_path / "m.pt"
    train_model(samples, samples[:1], out, cfg, progress=False)  # stops at step 1: a checkpoint
    wider = dataclasses.replace(cfg, architecture={"base_channels": 8, "depth": 2})
    with pytest.raises(ValueError, match=r"another network: base_channels 4 \(now 8\)") as e:
        train_model(samples, samples[:1], out, wider, resume=True, progress=False)
    assert "\n" not in str(e.value)
    ckpt = tmp_path / "m.pt.ckpt"
    state = torch.load(ckpt, weights_only=True)
    del state["architecture"]  # a checkpoint written before they named their network
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="does not fit this network") as e:
        train_model(samples, samples[:1], out, wider, resume=True, progress=False)
    assert "\n" not in str(e.value) and "size mismatch" in str(e.value)
    before = dataclasses.replace(cfg, steps=1, max_minutes=None)  # the checkpoint is at step 1
    with caplog.at_level(logging.INFO):
        train_model(samples, samples[:1], out, before, resume=True, progress=False)
    assert "no step trained" in caplog.text


def test_train_cli_refuses_zero_steps(tmp_path, capsys):
    """``--steps 0`` trained the default 2000 steps (``steps or 2000``)."""
    import tifffile

    from napari_hemd.cli import main
    from napari_hemd.data.synthetic import nuclei_video

    v = nuclei_video(n_frames=2, shape=(64, 64), n_cells=4, seed=1)
    for sub, arrays in (("images", v["image"]), ("labels", v["labels"])):
        (tmp_path / sub).mkdir()
        for i, a in enumerate(arrays):
            tifffile.imwrite(tmp_path / sub / f"im{i}.tif", a)
    rc = main(["train", "--data", str(tmp_path), "-o", str(tmp_path / "m.pt"), "--steps", "0"])
    assert rc == 2 and "steps must be >= 1; got 0" in capsys.readouterr().err


def test_weight_average_follows_the_network_with_a_warm_up():
    from napari_hemd.models.training import _ema_network

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ema = _ema_network(net, 0.99)
    start = [p.detach().clone() for p in net.parameters()]
    for p in net.parameters():
        p.data += 1.0
    net[1].num_batches_tracked += 5
    ema.update_parameters(net)  # second update: decay min(0.99, 2 / 11)
    d = 2 / 11
    for a, s0 in zip(ema.module.parameters(), start, strict=True):
        torch.testing.assert_close(a, s0 * d + (s0 + 1) * (1 - d))
    assert int(ema.module[1].num_batches_tracked) == int(net[1].num_batches_tracked)
    for _ in range(2000):  # long after the warm-up the decay is the one asked for
        ema.update_parameters(net)
    torch.testing.assert_close(ema.module[0].weight, net[0].weight)


def test_overflowed_batch_norm_statistics_are_repaired_or_kept_consistent():
    """Channels whose running variance is inf: re-estimated from frames on request, reset for
    training that updates the statistics, and a weight average of them stays inf, not NaN."""
    from napari_hemd.models import HemdModel
    from napari_hemd.models.training import (
        _ema_network,
        _reset_nonfinite_batch_norm,
        repair_batch_norm,
    )

    torch.manual_seed(0)
    model = HemdModel.create("unet", base_channels=4, depth=2)
    rng = np.random.default_rng(0)
    frames = [rng.random((40, 36)).astype(np.float32) for _ in range(3)]
    names = [n for n, m in model.network.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn = dict(model.network.named_modules())[names[1]]
    inputs = []
    handle = bn.register_forward_pre_hook(lambda _m, i: inputs.append(i[0].detach()))
    model.network.eval()
    with torch.no_grad():
        for f in frames:
            model.network(torch.from_numpy(f)[None, None])  # 40 x 36: no padding needed
    handle.remove()
    x = torch.cat([i.permute(1, 0, 2, 3).reshape(i.shape[1], -1) for i in inputs], dim=1)
    before = bn.running_var.clone()
    bn.running_var[[0, 2]] = float("inf")

    ema = _ema_network(model.network, 0.9)
    ema.update_parameters(model.network)
    assert torch.isinf(ema.module.state_dict()[names[1] + ".running_var"][[0, 2]]).all()
    assert not any(torch.isnan(v).any() for v in ema.module.state_dict().values())

    assert repair_batch_norm(model, frames) == [f"{names[1]}[0]", f"{names[1]}[2]"]
    torch.testing.assert_close(bn.running_var[[0, 2]], x.var(dim=1, unbiased=False)[[0, 2]])
    torch.testing.assert_close(bn.running_mean[[0, 2]], x.mean(dim=1)[[0, 2]])
    torch.testing.assert_close(bn.running_var[1], before[1])  # finite statistics untouched
    assert repair_batch_norm(model, []) == []  # nothing left to repair

    bn.running_var[1] = float("inf")
    _reset_nonfinite_batch_norm(model.network)
    assert float(bn.running_var[1]) == 1.0 and float(bn.running_mean[1]) == 0.0


def test_weight_average_is_scored_kept_and_resumed(blobs, tmp_path):
    from napari_hemd.models import Sample

    samples = [Sample(blobs[0] / 255, blobs[1], f"d/t{i}", "labels") for i in range(3)]
    cfg = TrainConfig(
        model="unet",
        architecture={"base_channels": 4, "depth": 2},
        steps=6,
        batch_size=1,
        patch_size=32,
        lr=1e-2,
        val_every=2,
        score_every=2,
        checkpoint_every=2,
        max_minutes=0.0,
        ema=0.9,
    )
    out = tmp_path / "m.pt"
    train_model(samples[:2], samples[2:], out, cfg, progress=False)
    ckpt = torch.load(tmp_path / "m.pt.ckpt", weights_only=True)
    assert "ema" in ckpt and int(ckpt["ema"]["n_averaged"]) == 2  # the copy + one step
    cfg.max_minutes = None
    model, history = train_model(samples[:2], samples[2:], out, cfg, resume=True, progress=False)
    scored = [h for h in history if "val_score" in h]
    assert [h["step"] for h in scored] == [1, 2, 4, 6]
    assert all("raw_score" in h for h in scored)  # the network as trained, for comparison
    best = max(scored, key=lambda h: h["val_score"])
    assert model.metadata["training"]["best_val_score"] == best["val_score"]
    # a checkpoint written without the average cannot resume with one
    cfg.ema, cfg.max_minutes = 0.0, 0.0
    train_model(samples[:2], samples[2:], tmp_path / "p.pt", cfg, progress=False)
    cfg.ema = 0.9
    with pytest.raises(ValueError, match="without ema"):
        train_model(samples[:2], samples[2:], tmp_path / "p.pt", cfg, resume=True, progress=False)
    with pytest.raises(ValueError, match="ema must be"):
        TrainConfig(ema=1.0)


def test_learning_rate_decays_over_the_steps_or_the_time_budget(blobs, tmp_path):
    """The cosine ends at 5 % of the rate at the last step, or when max_minutes runs out first."""
    from napari_hemd.models import Sample

    samples = [Sample(blobs[0] / 255, blobs[1], f"s/{i}", "labels") for i in range(2)]
    kw = dict(
        model="unet",
        architecture={"base_channels": 4, "depth": 2},
        batch_size=1,
        patch_size=32,
        lr=1e-3,
        val_every=1,
        checkpoint_every=0,
    )
    _, history = train_model(
        samples, samples[:1], tmp_path / "a.pt", TrainConfig(steps=8, **kw), progress=False
    )
    lrs = [h["lr"] for h in history]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(0.05e-3)
    # a million steps asked for, 6 seconds allowed: the rate still comes down in time
    cfg = TrainConfig(steps=1_000_000, max_minutes=6 / 60, **kw)
    _, history = train_model(samples, samples[:1], tmp_path / "b.pt", cfg, progress=False)
    lrs = [h["lr"] for h in history]
    assert 2 <= history[-1]["step"] < 1_000_000 and lrs[0] > 0.5e-3
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.1e-3


def test_contact_weight_weighs_the_pairs_across_touching_objects(blobs):
    """The correlation losses weigh pairs that join two objects by contact_weight, others by 1."""
    from napari_hemd.models.affinity import (
        AffinityNet,
        affinity_targets,
        instance_pairs,
        make_offsets,
        self_correlation,
    )
    from napari_hemd.models.training import _affinity_loss

    torch.manual_seed(0)
    net = AffinityNet(embedding_dim=4, base_channels=4, depth=2).eval()
    model = HemdModel(net, {"architecture": {"name": "affinity"}})
    img = torch.from_numpy(blobs[0][None, None, :64, :64] / 255).float()
    lab = blobs[1][None, :64, :64]  # discs 1 and 2 touch
    labels = torch.from_numpy(lab.astype(np.int64))
    offs = make_offsets((1, 3))
    pairs = instance_pairs(labels, offs)
    assert pairs.sum() > 0
    with torch.no_grad():
        out = net(img)
        aff, _ = self_correlation(out["embedding"], offs)
        target, valid = affinity_targets(labels, offs)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            out["foreground"], (labels > 0).float()[:, None]
        )
        err = (aff - target) ** 2 * valid
        mask = valid.expand_as(aff).float()
        for w in (1.0, 6.0):
            cfg = TrainConfig(model="affinity", ranges=(1, 3), gamma=0, beta=0, contact_weight=w)
            weight = mask * (1 + (w - 1) * pairs.float())
            want = (err * weight).sum() / weight.sum() + bce
            got = _affinity_loss(model, img, lab, cfg, None)
            torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="contact_weight must be > 0"):
        TrainConfig(model="affinity", contact_weight=0)
    with pytest.raises(ValueError, match="needs model='affinity'"):
        TrainConfig(model="unet", contact_weight=3)


def test_dice_weight_adds_a_whole_cell_dice_loss(blobs):
    """U-Net loss = weighted cross-entropy + dice_weight x (1 - soft Dice of the whole cell)."""
    from napari_hemd.models.training import _unet_loss, semantic_targets, whole_cell_dice_loss

    lab = blobs[1][None, :64, :64]
    target = torch.from_numpy(semantic_targets(lab[0], "cell")[None].astype(np.int64))
    # logits that say exactly the target: Dice loss ~ 0; the opposite: ~ 1
    exact = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 30
    assert float(whole_cell_dice_loss(exact, target)) < 1e-3
    flipped = exact.clone()
    flipped[:, 2] = 30 - exact[:, 2]  # background where the cells are, and nowhere else
    flipped[:, :2] = 0
    assert float(whole_cell_dice_loss(flipped, target)) > 0.99
    # by hand, on random logits
    logits = torch.randn(1, 3, 64, 64)
    p_cell = 1 - torch.softmax(logits, 1)[:, 2]
    truth = (target != 2).float()
    want = 1 - (2 * (p_cell * truth).sum() + 1) / (p_cell.sum() + truth.sum() + 1)
    torch.testing.assert_close(whole_cell_dice_loss(logits, target), want)
    # in the training loss, on a real network
    torch.manual_seed(0)
    model = HemdModel.create("unet", base_channels=4, depth=2)
    img = torch.from_numpy(blobs[0][None, None, :64, :64] / 255).float()
    with torch.no_grad():
        out = model.network(img).float()
        ce = torch.nn.functional.cross_entropy(out, target, weight=torch.tensor([1.0, 3.0, 1.0]))
        for w in (0.0, 0.5):
            got = _unet_loss(model, img, lab, TrainConfig(dice_weight=w))
            torch.testing.assert_close(got, ce + w * whole_cell_dice_loss(out, target))
    with pytest.raises(ValueError, match=r"dice_weight must be >= 0 \(0: off\); got -1"):
        TrainConfig(dice_weight=-1)
    with pytest.raises(ValueError, match="needs model='unet'"):
        TrainConfig(model="affinity", dice_weight=0.5)


def test_dim_objects_option_reaches_the_augmentation():
    assert TrainConfig().augmentation.dim_prob == 0.0
    aug = TrainConfig(dim_objects=0.5, noise_sigma=0.1).augmentation
    assert aug.dim_prob == 0.5 and aug.noise_sigma == 0.1
    assert TrainConfig(dim_objects=0.5).augmentation.noise_sigma == 0.25  # the default stays
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"dim_objects must be a probability in \[0, 1\]"):
            TrainConfig(dim_objects=bad)
    with pytest.raises(ValueError, match=r"part of the full augmentation.*augment='basic'"):
        TrainConfig(dim_objects=0.5, augment="basic")
    assert TrainConfig().augmentation.part_prob == 0.0
    assert TrainConfig(dim_parts=0.4).augmentation.part_prob == 0.4
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"dim_parts must be a probability in \[0, 1\]"):
            TrainConfig(dim_parts=bad)
    with pytest.raises(ValueError, match=r"dim_parts is part of the full augmentation"):
        TrainConfig(dim_parts=0.5, augment="basic")


def test_affinity_checkpoints_are_scored_with_their_calibrated_bias(blobs, tmp_path):
    """Each score of an affinity network uses the Mutex bias chosen for it on training frames."""
    from napari_hemd.models import Sample
    from napari_hemd.models.evaluation import MUTEX_BIASES

    samples = [Sample(blobs[0] / 255, blobs[1], f"d/t{i}", "labels") for i in range(3)]
    kw = dict(
        model="affinity",
        architecture={"base_channels": 4, "depth": 2, "embedding_dim": 4},
        ranges=(1, 3),
        steps=4,
        batch_size=1,
        patch_size=32,
        lr=1e-2,
        val_every=2,
        score_every=2,
        checkpoint_every=0,
        seed=3,
    )
    model, history = train_model(
        samples[:2], samples[2:], tmp_path / "m.pt", TrainConfig(**kw), progress=False
    )
    scored = [h for h in history if "val_score" in h]
    assert [h["step"] for h in scored] == [2, 4]
    assert all(h["mutex_bias"] in MUTEX_BIASES for h in scored)
    best = next(h for h in scored if h["val_score"] == max(x["val_score"] for x in scored))
    # the kept network's final calibration (same training frames) agrees with its score's bias
    assert model.metadata["mutex_bias"] == best["mutex_bias"]
    assert model.metadata["calibration"]["frames"] == ["d/t0", "d/t1"]
    # without calibration the model's own bias is used and none is recorded
    _, history = train_model(
        samples[:2],
        samples[2:],
        tmp_path / "n.pt",
        TrainConfig(**kw, calibrate=False),
        progress=False,
    )
    assert not any("mutex_bias" in h for h in history)
    # with a weight average the average is calibrated; the trained network is scored alike
    _, history = train_model(
        samples[:2], samples[2:], tmp_path / "e.pt", TrainConfig(**kw, ema=0.9), progress=False
    )
    scored = [h for h in history if "val_score" in h]
    assert all(h["mutex_bias"] in MUTEX_BIASES and "raw_score" in h for h in scored)


def test_config_errors():
    with pytest.raises(ValueError, match="model must be"):
        TrainConfig(model="resnet")
    with pytest.raises(ValueError, match="steps must be"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="targets must be 'cell' or 'interior'; got 'x'"):
        TrainConfig(targets="x")
    with pytest.raises(ValueError, match="augment must be"):
        TrainConfig(augment="heavy")
    with pytest.raises(ValueError, match=r"foreground_oversample must be a fraction in \[0, 1\]"):
        TrainConfig(foreground_oversample=1.5)
    with pytest.raises(ValueError, match=r"fraction in .* got True"):
        TrainConfig(foreground_oversample=True)  # a flag is not a fraction
    assert TrainConfig(foreground_oversample=np.float32(0.5)).foreground_oversample == 0.5


def _sparse_samples():
    """Two 256-pixel frames, one with a lone 10-pixel object (0.15 % of it), one empty."""
    from napari_hemd.models.data import Sample

    rng = np.random.default_rng(0)
    lab = np.zeros((256, 256), np.int32)
    lab[200:210, 40:50] = 7
    img = (rng.normal(0, 0.1, lab.shape) + (lab > 0)).astype(np.float32)
    empty = np.zeros_like(lab)
    return [
        Sample(img, lab, "sparse/t000", "labels"),
        Sample(img.copy(), empty, "sparse/t001", "labels"),
    ]


def test_foreground_oversampling_centres_patches_on_objects():
    from napari_hemd.models.augmentation import Augmentation
    from napari_hemd.models.training import _PatchSampler

    frame = _sparse_samples()[:1]

    def hits(fraction, n=200, seed=1):
        sampler = _PatchSampler(frame, 32, np.random.default_rng(seed), Augmentation.off(),
                                foreground=fraction)  # fmt: skip
        _, labs = sampler(n)
        return np.mean([(lab == 7).any() for lab in labs])

    # uniform positions: a 32-pixel patch meets the object in about (32 + 10)^2 / 256^2 = 3 %
    assert hits(0.0) < 0.1
    assert hits(1.0) == 1.0  # every patch centred on the object
    assert 0.35 < hits(0.5) < 0.65
    # 0 draws exactly the patches the sampler drew before the option existed (the same random
    # stream: frame, then warp, then intensity), so earlier runs reproduce
    from napari_hemd.models.augmentation import augment_intensity, warp_patch

    aug, rng = Augmentation(), np.random.default_rng(3)
    old = []
    for _ in range(4):
        s = frame[rng.choice(1, p=[1.0])]
        img, lab = warp_patch(s.image, s.labels, 32, rng, aug)
        old.append((augment_intensity(img, rng, aug), lab))
    imgs, labs = _PatchSampler(frame, 32, np.random.default_rng(3), aug, foreground=0.0)(4)
    assert all(np.array_equal(imgs[k, 0], old[k][0]) for k in range(4))
    assert all(np.array_equal(labs[k], old[k][1]) for k in range(4))
    # a frame without objects is cut anywhere
    empty = _sparse_samples()[1:]
    _, labs = _PatchSampler(empty, 32, np.random.default_rng(0), foreground=1.0)(3)
    assert labs.shape == (3, 32, 32) and not labs.any()


def test_foreground_oversampling_per_folder():
    """A dict oversamples the folders it names; the others keep uniform patches."""
    from napari_hemd.models.augmentation import Augmentation
    from napari_hemd.models.data import Sample
    from napari_hemd.models.training import _oversample_fractions, _PatchSampler

    frame = _sparse_samples()[0]
    two = [  # the same frame in two folders, its object labelled 7 in one and 9 in the other
        Sample(frame.image, frame.labels, "sim/02/t000", "labels"),
        Sample(frame.image, np.where(frame.labels > 0, 9, 0), "hela/01/t000", "labels"),
    ]
    sampler = _PatchSampler(two, 32, np.random.default_rng(4), Augmentation.off(),
                            foreground={"sim": 1.0})  # fmt: skip
    _, labs = sampler(400)
    on_sim = np.mean([(lab == 7).any() for lab in labs])
    on_hela = np.mean([(lab == 9).any() for lab in labs])
    assert 0.4 < on_sim < 0.6  # every patch of the named folder (half of them) is on its object
    assert on_hela < 0.05  # the other folder's patches are uniform: about 3 % of them meet it
    # "*" sets the folders no key names; a dict of zeros draws what 0.0 draws
    assert _oversample_fractions({"sim": 0.5, "*": 0.2}, ["sim/02", "hela/01"]) == [0.5, 0.2]
    a = _PatchSampler(two, 32, np.random.default_rng(5), foreground={"*": 0.0, "sim": 0.0})(3)
    b = _PatchSampler(two, 32, np.random.default_rng(5), foreground=0.0)(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    with pytest.raises(ValueError, match=r"\['PSC'\] names no data folder; the folders are"):
        _oversample_fractions({"PSC": 0.5}, ["sim/02", "hela/01"])
    with pytest.raises(ValueError, match="named by keys with different fractions"):
        _oversample_fractions({"sim": 0.5, "02": 0.1}, ["sim/02"])
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\]; got 2 for 'sim'"):
        TrainConfig(foreground_oversample={"sim": 2})


def test_volume_slices_load_as_samples(tmp_path):
    h5py = pytest.importorskip("h5py")
    raw = np.random.default_rng(0).integers(0, 255, (6, 32, 40), dtype=np.uint8)
    lab = np.zeros((6, 32, 40), np.uint8)
    lab[:, 8:20, 10:30] = 3
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        f["raw"], f["label"] = raw, lab
    samples = load_samples(tmp_path / "vol.h5")
    assert [s.name for s in samples[:2]] == ["vol/z000", "vol/z001"] and len(samples) == 6
    assert samples[3].image.shape == (32, 40) and samples[3].labels.max() == 3
    _, held = split_samples(samples, 0.34)
    assert [s.name for s in held] == ["vol/z003", "vol/z004", "vol/z005"]  # a contiguous slab
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["raw"] = raw
    with pytest.raises(ValueError, match="needs datasets raw and label"):
        load_samples(tmp_path / "bad.h5")


def test_fine_tune_starts_from_the_given_model(blobs, tmp_path):
    from napari_hemd.models import HemdModel, Sample, load_model_file, save_model_file

    base = HemdModel.create("unet", base_channels=4, depth=2)
    base.metadata["targets"] = "interior"
    save_model_file(base, tmp_path / "base.pt")
    samples = [Sample(blobs[0] / 255, blobs[1], f"s/{i}", "labels") for i in range(2)]
    cfg = TrainConfig(
        model="unet",
        init=str(tmp_path / "base.pt"),
        architecture={"base_channels": 16, "depth": 4},  # overridden by the init model's
        steps=2,
        batch_size=1,
        patch_size=32,
        lr=1e-9,  # the weights barely move: they must be the init model's
        val_every=1,
        checkpoint_every=0,
    )
    # float32 file: the weights are compared to the init model's to 1e-5
    train_model(samples, samples[:1], tmp_path / "tuned.pt", cfg, progress=False, half=False)
    tuned = load_model_file(tmp_path / "tuned.pt")
    assert tuned.metadata["architecture"]["base_channels"] == 4
    assert tuned.metadata["targets"] == "interior"  # kept: the head predicts what it learnt
    assert tuned.metadata["fine_tuned_from"]["model"] == str(tmp_path / "base.pt")
    a = base.network.state_dict()["head.weight"]
    b = tuned.network.state_dict()["head.weight"]
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="is a unet model"):
        train_model(
            samples,
            [],
            tmp_path / "x.pt",
            TrainConfig(model="affinity", init=str(tmp_path / "base.pt"), steps=1),
            progress=False,
        )
    with pytest.raises(ValueError, match="is an affinity model; got model='unet'"):  # not "a a"
        train_model(
            samples, [], tmp_path / "y.pt",
            TrainConfig(model="unet", init="nuclei-affinity", steps=1), progress=False,
        )  # fmt: skip


def test_class_weights_are_checked_and_kept_by_a_fine_tune():
    from napari_hemd.models import HemdModel
    from napari_hemd.models.training import _init_model

    for bad in ((1, 0, 1), (1, 3), (1, float("nan"), 1)):
        with pytest.raises(ValueError, match="class_weights must be three positive numbers"):
            TrainConfig(model="unet", class_weights=bad)
    base = HemdModel.create("unet", base_channels=4, depth=2)
    base.metadata["targets"] = "interior"
    # the default weights follow the base model's targets ...
    cfg = TrainConfig(model="unet", init="base.pt")
    _init_model(cfg, base)
    assert cfg.targets == "interior" and cfg.class_weights == (1.0, 2.0, 1.0)
    # ... chosen ones are kept
    cfg = TrainConfig(model="unet", init="base.pt", class_weights=(2, 6, 1))
    _init_model(cfg, base)
    assert cfg.class_weights == (2.0, 6.0, 1.0)


def test_images_without_labels_are_named(tmp_path, caplog):
    """An images/ + labels/ folder whose label file for an image is missing (misnamed) lost that
    image without a word."""
    import logging

    import tifffile

    from napari_hemd.data.synthetic import nuclei_video
    from napari_hemd.models.data import load_samples

    v = nuclei_video(n_frames=3, shape=(48, 48), n_cells=3, seed=1)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(3):
        tifffile.imwrite(tmp_path / "images" / f"im{i}.tif", v["image"][i])
    tifffile.imwrite(tmp_path / "labels" / "im1.tif", v["labels"][1])
    tifffile.imwrite(tmp_path / "labels" / "im_2.tif", v["labels"][2])  # misnamed
    with caplog.at_level(logging.INFO):
        samples = load_samples(tmp_path)
    assert [s.name for s in samples] == [f"{tmp_path.name}/im1"]
    assert "2 of 3 images have no label file of the same name in labels/ (im0.tif, im2.tif)" in (
        caplog.text
    )


def test_a_wrong_training_layout_is_named(tmp_path):
    """images/ without labels/ was told about missing CTC _ST/SEG folders, a folder of PNGs
    found "no image/mask pairs" without a word that only TIFFs are read (audit 17)."""
    import tifffile

    from napari_hemd.models.data import load_samples

    half = tmp_path / "half"
    (half / "images").mkdir(parents=True)
    tifffile.imwrite(half / "images" / "a.tif", np.zeros((16, 16), np.uint16))
    with pytest.raises(FileNotFoundError, match=r"has images/ but no labels/"):
        load_samples(half)
    png = tmp_path / "png"
    for sub in ("images", "labels"):
        (png / sub).mkdir(parents=True)
        (png / sub / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match=r"found \.png files: only TIFFs are read"):
        load_samples(png)
    # an empty folder (or one of other files) is told every layout, not CTC's alone
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    for folder, found in (("empty", ""), ("notes", r" \(found \.txt files")):
        with pytest.raises(ValueError, match=r"images/ \+ labels/ folders .*\.h5 volume .*project"
                           rf"; found no image/mask pairs{found}"):  # fmt: skip
            load_samples(tmp_path / folder)
    # TIFF frames without their masks: still told where the CTC masks were looked for
    seq = tmp_path / "ctc" / "01"
    seq.mkdir(parents=True)
    tifffile.imwrite(seq / "t000.tif", np.zeros((16, 16), np.uint16))
    with pytest.raises(FileNotFoundError, match=r"no mask folder .*01_ST.SEG"):
        load_samples(seq)


def test_val_zero_says_it_held_nothing_out(tmp_path, capsys):
    """``--val 0`` ended with "too few in --data to hold a block out", though none was asked."""
    import tifffile

    from napari_hemd.cli import main

    data = tmp_path / "d"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
    lab = np.zeros((48, 48), np.uint16)
    lab[8:20, 8:20], lab[26:40, 24:40] = 1, 2
    for i in range(3):
        tifffile.imwrite(data / "images" / f"i{i}.tif", (lab > 0).astype(np.uint16) * 900 + 100)
        tifffile.imwrite(data / "labels" / f"i{i}.tif", lab)
    argv = ["train", "--data", str(data), "--steps", "1", "--no-progress", "--no-calibrate",
            "--patch-size", "32", "-o", str(tmp_path / "m.pt")]  # fmt: skip
    assert main([*argv, "--val", "0"]) == 0
    assert "no held-out frames: --val 0 holds none out" in capsys.readouterr().out


def test_binary_masks_are_not_taken_for_instance_labels(tmp_path, capsys):
    """0/255 masks trained as one 'cell' of every nucleus (held-out F1 0) and measured as one
    object per frame, without a word (audit 17): train, measure and evaluate name them."""
    import tifffile
    from skimage.measure import label

    from napari_hemd.cli import main
    from napari_hemd.models.data import load_samples

    mask = np.zeros((64, 64), np.uint8)
    for y in range(4, 60, 14):
        for x in range(4, 60, 14):
            mask[y : y + 8, x : x + 8] = 255  # 16 separate nuclei, one value
    data = tmp_path / "d"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
    tifffile.imwrite(data / "images" / "a.tif", mask.astype(np.uint16) * 4 + 100)
    tifffile.imwrite(data / "labels" / "a.tif", mask)
    with pytest.raises(ValueError, match=r"a\.tif'.*share 1 value\(s\) \(255\) over 16 separate"):
        load_samples(data)
    tifffile.imwrite(tmp_path / "m.tif", mask[None])
    assert main(["measure", str(tmp_path / "m.tif"), "-o", str(tmp_path / "t.csv")]) == 2
    assert "binary mask, not instance labels" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "l.tif", label(mask)[None].astype(np.uint16))  # numbered: fine
    assert main(["measure", str(tmp_path / "l.tif"), "-o", str(tmp_path / "t.csv")]) == 0
    assert (
        main(["evaluate", "--gt", str(tmp_path / "l.tif"), "--pred", str(tmp_path / "m.tif")]) == 2
    )
    tifffile.imwrite(data / "labels" / "a.tif", label(mask).astype(np.uint16))
    assert len(load_samples(data)) == 1


def test_a_full_disk_while_saving_a_model_is_one_line(tmp_path, monkeypatch, capsys):
    """torch's writer reported a full disk as ``RuntimeError: ... unexpected pos`` (a traceback,
    exit 1) and left ``.m.pt.tmp`` (audit 28): the file is written from memory, the disk's
    error is an ``OSError`` the command line says in one line, and nothing is left."""
    import errno

    from napari_hemd.models import weights
    from napari_hemd.models.unet import UNet2d

    model = weights.HemdModel(UNet2d(base_channels=4, depth=2), metadata={})
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(weights, "open", _write_fails(100, full), raising=False)
    with pytest.raises(OSError, match="No space left"):
        weights.save_model_file(model, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def _write_fails(written: int, error):
    """An ``open`` for ``models.weights`` whose file takes ``written`` bytes, then ``error``."""
    real = open

    class Failing:
        def __init__(self, path, mode):
            self.f = real(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(bytes(data[:written]))
            raise error

    return Failing


def test_own_data_layouts_pair_each_frame_and_take_stacks(tmp_path, caplog):
    """Audit 37: frames named pos1_t003_c1.tif (their last number the channel) were all paired
    with one mask and trained on without a word; binary masks after a real first one went
    through; a 3D stack with its 3D mask in images/ + labels/ failed with "too many values to
    unpack"; a (1, Y, X) image was refused; images/ was read in plain name order (im10 before
    im2: the held-out block not the last images)."""
    import logging

    import tifffile

    from napari_hemd.data.synthetic import nuclei_video
    from napari_hemd.models.data import load_samples

    v = nuclei_video(n_frames=3, shape=(48, 48), n_cells=3, seed=1)
    seq = tmp_path / "ctc" / "01"
    (tmp_path / "ctc" / "01_GT" / "SEG").mkdir(parents=True)
    seq.mkdir()
    for t in range(3):
        tifffile.imwrite(seq / f"pos1_t{t:03d}_c1.tif", v["image"][t])
        tifffile.imwrite(tmp_path / "ctc" / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", v["labels"][t])
    with pytest.raises(ValueError, match=r"pos1_t000_c1.tif and pos1_t001_c1.tif both end in the "
                       r"number 1, which is taken as the frame"):  # fmt: skip
        load_samples(seq)
    own = tmp_path / "own"
    for sub in ("images", "labels"):
        (own / sub).mkdir(parents=True)
    for i, n in enumerate((1, 2, 10)):
        tifffile.imwrite(own / "images" / f"im{n}.tif", v["image"][i][None])  # (1, Y, X)
        tifffile.imwrite(own / "labels" / f"im{n}.tif", v["labels"][i])
    assert [s.name.split("/")[1] for s in load_samples(own)] == ["im1", "im2", "im10"]
    binary = np.zeros((48, 48), np.uint8)
    binary[2:46:8, 2:46:8] = 1  # 36 separate nuclei, one value
    tifffile.imwrite(own / "labels" / "im10.tif", binary)
    with pytest.raises(ValueError, match=r"im10\.tif'.*a binary mask"):
        load_samples(own)
    stack = tmp_path / "stack"
    for sub in ("images", "labels"):
        (stack / sub).mkdir(parents=True)
    tifffile.imwrite(stack / "images" / "cells.tif", v["image"])  # (Z, Y, X) and its 3D mask
    tifffile.imwrite(stack / "labels" / "cells.tif", v["labels"].astype(np.uint16))
    tifffile.imwrite(stack / "images" / "rgb.tif", np.stack([v["image"][0]] * 3, axis=-1))
    tifffile.imwrite(stack / "labels" / "rgb.tif", v["labels"][0].astype(np.uint16))
    with caplog.at_level(logging.INFO):
        samples = load_samples(stack)
    assert [s.name for s in samples] == [*(f"stack/cells/z{z:03d}" for z in range(3)), "stack/rgb"]
    np.testing.assert_array_equal(samples[1].labels, v["labels"][1])
    assert "1 colour image(s) (rgb.tif) trained on as grey" in caplog.text
