from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from napari_hemd.models.affinity import (  # noqa: E402
    AffinityNet,
    affinity_targets,
    instance_pairs,
    make_offsets,
    pyramid_ranges,
    self_correlation,
)
from napari_hemd.models.unet import UNet2d  # noqa: E402


def test_unet_shapes():
    net = UNet2d(base_channels=4, depth=2)
    assert net(torch.zeros(2, 1, 32, 48)).shape == (2, 3, 32, 48)
    assert net.divisor == 4


def test_affinity_net_pyramid_shapes():
    net = AffinityNet(embedding_dim=5, base_channels=4, depth=4)
    out = net(torch.zeros(1, 1, 64, 32), with_pyramid=True)
    assert out["embedding"].shape == (1, 5, 64, 32)
    assert out["foreground"].shape == (1, 1, 64, 32)
    assert [tuple(p.shape[-2:]) for p in out["pyramid"]] == [(32, 16), (16, 8), (8, 4), (4, 2)]


def test_offsets_default_and_errors():
    offs = make_offsets()
    assert offs[:2] == [(-1, 0), (0, -1)] and offs[-1] == (0, -27) and len(offs) == 10
    assert len(make_offsets((1, 2), neighbourhood=8)) == 8
    with pytest.raises(ValueError, match="neighbourhood"):
        make_offsets((1,), neighbourhood=6)
    assert pyramid_ranges((1, 3, 5, 9, 27), 4) == [1, 2, 3, 7]


def test_self_correlation_matches_targets_for_ideal_embeddings():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :, 4:] = 1
    # One-hot embeddings: cosine is 1 within a segment and 0 across.
    emb = torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float()
    offs = make_offsets((1, 3))
    aff, valid = self_correlation(emb, offs)
    target, tvalid = affinity_targets(labels, offs)
    assert torch.equal(valid, tvalid)
    assert torch.allclose(aff[:, valid], target[:, valid])
    # Channel (0, -1) at x=4 compares x=4 (label 1) with x=3 (label 0).
    assert aff[0, 1, 0, 4] == 0 and aff[0, 1, 0, 5] == 1
    assert not valid[1, 0, 0]  # leaves the image


def test_instance_pairs_are_the_pairs_across_touching_objects():
    labels = torch.zeros(2, 7, 9, dtype=torch.long)
    labels[0, 1:6, 1:4] = 1
    labels[0, 1:6, 4:7] = 2  # touches object 1 along x = 3 | 4
    labels[1, 2:5, 2:5] = 3  # alone: no pair joins two objects
    offs = make_offsets((1, 3))
    pairs = instance_pairs(labels, offs)
    target, valid = affinity_targets(labels, offs)
    assert pairs.shape == target.shape and pairs.dtype == torch.bool
    lab = labels.numpy()
    for c, (dy, dx) in enumerate(offs):  # brute force
        for b in range(2):
            for y in range(7):
                for x in range(9):
                    yy, xx = y + dy, x + dx
                    inside = 0 <= yy < 7 and 0 <= xx < 9
                    want = inside and 0 < lab[b, y, x] != lab[b, yy, xx] > 0
                    assert bool(pairs[b, c, y, x]) == want, (b, c, y, x)
    assert not pairs[1].any()
    # every such pair has affinity target 0 and stays inside the image
    assert (target[pairs] == 0).all() and valid.expand_as(pairs)[pairs].all()
    # (0, -1) at x = 4 looks back at x = 3: the 5 rows of the contact; (0, -3) reaches 3 columns
    assert int(pairs[0, 1].sum()) == 5 and int(pairs[0, 3].sum()) == 15
