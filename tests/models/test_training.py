from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_hemd.models import TrainConfig, load_samples, split_samples, train_model  # noqa: E402
from napari_hemd.models.training import semantic_targets  # noqa: E402


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


def test_split_samples_holds_out_a_block(blobs):
    from napari_hemd.models import Sample

    samples = [Sample(blobs[0], blobs[1], f"s/{i}", "labels") for i in range(10)]
    train, val = split_samples(samples, 0.2)
    assert [s.name for s in val] == ["s/8", "s/9"] and len(train) == 8
    train, val = split_samples(samples, "3:5")
    assert [s.name for s in val] == ["s/3", "s/4"]
    with pytest.raises(ValueError, match="fraction"):
        split_samples(samples, 1.5)


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


def test_config_errors():
    with pytest.raises(ValueError, match="model must be"):
        TrainConfig(model="resnet")
    with pytest.raises(ValueError, match="steps must be"):
        TrainConfig(steps=0)
