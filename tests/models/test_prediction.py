from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_hemd.models import HemdModel, predict  # noqa: E402


def _model(kind: str, seed: int = 0) -> HemdModel:
    torch.manual_seed(seed)
    if kind == "unet":
        model = HemdModel.create("unet", base_channels=4, depth=3)
    else:
        model = HemdModel.create("affinity", base_channels=4, depth=3, embedding_dim=4)
    # Non-trivial batch-norm statistics, as after training.
    for m in model.network.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.__class__(model.network.eval(), model.metadata)


@pytest.mark.parametrize("kind", ["unet", "affinity"])
def test_tiled_equals_untiled(kind, blobs):
    image = np.tile(blobs[0], (2, 3))[:170, :250]  # not a multiple of the tile size
    model = _model(kind)
    outputs = ["foreground", "boundary", "background"] + (["affinities"] if kind != "unet" else [])
    whole = predict(model, image, outputs=outputs, tile=0, halo=64)
    tiled = predict(model, image, outputs=outputs, tile=64, halo=64, batch_size=5)
    for name in outputs:
        assert whole[name].shape == tiled[name].shape
        np.testing.assert_allclose(tiled[name], whole[name], atol=1e-4, err_msg=name)


def test_deterministic_and_batched_over_time(blobs):
    image = blobs[0]
    stack = np.stack([image, image[::-1], image[:, ::-1]])
    model = _model("unet")
    a = predict(model, stack, outputs=["foreground", "boundary"], tile=64, batch_size=3)
    b = predict(model, stack, outputs=["foreground", "boundary"], tile=64, batch_size=1)
    assert a["foreground"].shape == (3, 96, 96) and a["foreground"].dtype == np.float32
    np.testing.assert_array_equal(
        a["foreground"], predict(model, stack, tile=64, batch_size=3)["foreground"]
    )
    np.testing.assert_allclose(a["boundary"], b["boundary"], atol=1e-5)
    single = predict(model, image, tile=64)["foreground"]
    np.testing.assert_allclose(single, a["foreground"][0], atol=1e-5)


def test_softmax_maps_sum_to_one(blobs):
    res = predict(_model("unet"), blobs[0], outputs=["foreground", "boundary", "background"])
    total = res["foreground"] + res["boundary"] + res["background"]
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


def _unflip(a: np.ndarray, dims: tuple[int, ...], transpose: bool) -> np.ndarray:
    if transpose:
        a = a.T
    return np.flip(a, [d % 2 for d in dims]) if dims else a


@pytest.mark.parametrize("tta", [2, 4, 8])
def test_test_time_flips_average_the_mirrored_views(blobs, tta):
    from napari_hemd.models import load_model
    from napari_hemd.models.prediction import TTA_VIEWS

    # 96 + 2 x 16 px margin = 128, a multiple of the divisor: the padding is symmetric, so a
    # view of the tile is the tile of that view of the image and the average can be redone by
    # hand. A trained network (a random one's maps are nearly flat)
    image, model = blobs[0], load_model("nuclei-fluo")
    outs = ["foreground", "boundary", "background"]
    got = predict(model, image, outputs=outs, tta=tta)
    for name in outs:
        views = []
        for dims, transpose in TTA_VIEWS[tta]:
            view = np.flip(image, [d % 2 for d in dims]) if dims else image
            view = np.ascontiguousarray(view.T if transpose else view)
            one = predict(model, view, outputs=[name], tta=1)[name]  # one view each
            views.append(_unflip(one, dims, transpose))
        np.testing.assert_allclose(got[name], np.mean(views, axis=0), atol=1e-5, err_msg=name)
    np.testing.assert_allclose(sum(got[k] for k in outs), 1.0, atol=1e-5)
    plain = predict(model, image, tta=1)["foreground"]
    assert np.abs(got["foreground"] - plain).max() > 0.01  # the views do differ
    # the average is as symmetric as its views: mirrored input -> mirrored output
    mirrored = predict(model, np.ascontiguousarray(image[:, ::-1]), tta=tta)["foreground"]
    np.testing.assert_allclose(mirrored[:, ::-1], got["foreground"], atol=1e-5)
    if tta == 8:
        transposed = predict(model, np.ascontiguousarray(image.T), tta=tta)["foreground"]
        np.testing.assert_allclose(transposed.T, got["foreground"], atol=1e-5)


def test_test_time_flips_tiled_equal_untiled_and_errors(blobs):
    image = np.tile(blobs[0], (2, 3))[:170, :250]
    model = _model("unet")
    whole = predict(model, image, tile=0, halo=64, tta=4)["foreground"]
    tiled = predict(model, image, tile=64, halo=64, batch_size=5, tta=4)["foreground"]
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    for bad in (3, 0, True, 4.0, "4"):
        with pytest.raises(ValueError, match=r"tta must be one of \[1, 2, 4, 8\]"):
            predict(model, image, tta=bad)
    with pytest.raises(ValueError, match="needs a U-Net model"):
        predict(_model("affinity"), image, tta=4)
    predict(_model("affinity"), blobs[0], tta=1)  # no flips: any model


def test_normalisation_inside_the_wrapper(blobs):
    # Intensity scale and offset do not change the prediction (percentile normalisation).
    model = _model("unet")
    a = predict(model, blobs[0])["foreground"]
    b = predict(model, blobs[0] * 7.0 + 300.0)["foreground"]
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_affinity_outputs(blobs):
    model = _model("affinity")
    res = predict(
        model,
        blobs[0][None],
        outputs=["foreground", "affinities", "embeddings", "instances"],
        ranges=[1, 2],
        neighbourhood=8,
    )
    assert res["affinities"].shape == (1, 8, 96, 96)
    assert res["embeddings"].shape == (1, 4, 96, 96)
    np.testing.assert_allclose(np.linalg.norm(res["embeddings"], axis=1), 1.0, atol=1e-4)
    assert res["instances"].dtype == np.int32 and res["instances"].shape == (1, 96, 96)
    assert 0 <= res["affinities"].min() and res["affinities"].max() <= 1


def test_lazy_zarr_input(tmp_path, blobs):
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(
        str(tmp_path / "in.zarr"), mode="w", shape=(2, 96, 96), chunks=(1, 96, 96), dtype="f4"
    )
    z[0], z[1] = blobs[0], blobs[0]
    model = _model("unet")
    res = predict(model, z, tile=64)
    np.testing.assert_allclose(res["foreground"][0], res["foreground"][1])


def test_output_errors(blobs):
    model = _model("unet")
    with pytest.raises(ValueError, match="need an affinity model"):
        predict(model, blobs[0], outputs=["instances"])
    with pytest.raises(ValueError, match="subset of"):
        predict(model, blobs[0], outputs=["nonsense"])
    with pytest.raises(ValueError, match="multiple of 8"):
        predict(model, blobs[0], tile=68)
    with pytest.raises(ValueError, match="tile 16 is smaller than its halo"):
        predict(model, blobs[0], tile=16)  # 81x the pixels: ran 9-43x slower
    with pytest.raises(ValueError, match="RGB"):
        predict(model, np.zeros((16, 16, 3), np.float32))
    with pytest.raises(TypeError, match=r"got str .read it first"):
        predict(model, "image.tif")
    assert predict(model, blobs[0], outputs="boundary").keys() == {"boundary"}  # one name
    with pytest.raises(ValueError, match=r"\(Y, X\) or \(T, Y, X\)"):
        predict(model, np.zeros((1, 2, 8, 8)))


def test_instances_from_maps_grow_into_boundary():
    from napari_hemd.models import instances_from_maps

    fg = np.zeros((20, 30), np.float32)
    fg[5:15, 5:12], fg[5:15, 16:25] = 0.9, 0.8
    background = np.ones_like(fg)
    background[4:16, 4:26] = 0.0  # boundary pixels between and around the two interiors
    maps = {
        "foreground": fg,
        "boundary": 1 - fg - background.clip(0, 1) * 0,
        "background": background,
    }
    lab = instances_from_maps(maps, "threshold", grow=3)
    assert lab.max() == 2
    assert (lab[4:16, 4:26] > 0).all() and (lab[background > 0.5] == 0).all()
    assert instances_from_maps(maps, "threshold", grow=0).sum() < lab.sum()


def test_evaluate_model_on_blobs(blobs):
    from napari_hemd.models import Sample, evaluate_model

    res = evaluate_model(
        _model("unet"), [Sample(blobs[0], blobs[1], "s/0", "labels")], methods=["threshold"]
    )
    assert set(res["threshold"]) >= {"F1", "AJI", "PQ", "SEG", "n_gt", "n_pred"}
    assert res["threshold"]["n_gt"] == 6


def test_an_abandoned_prediction_leaves_no_inference_mode_behind(blobs):
    """A generator suspended inside ``torch.inference_mode()`` leaked that thread-local mode into
    the caller (and into whichever thread finally closed it): later training had no gradients."""
    from napari_hemd.models import iter_predict, load_model

    frames = np.stack([blobs[0]] * 3)
    gen = iter_predict(load_model("nuclei-fluo"), frames, batch_size=1)
    next(gen)  # one frame out, the generator suspended mid-movie
    assert not torch.is_inference_mode_enabled()
    w = torch.ones(2, requires_grad=True)
    (w * 2).sum().backward()
    assert w.grad is not None
    gen.close()
    assert not torch.is_inference_mode_enabled()


# ------------------------------------------------------------------- tri-planar stacks
def _stack(blobs) -> np.ndarray:
    """A (6, 40, 48) stack: no two axes alike, so a swapped axis shows."""
    image = blobs[0]
    return np.stack([image[i * 5 : i * 5 + 40, i * 4 : i * 4 + 48] for i in range(6)])


def test_volume_with_z_weight_one_is_slice_by_slice(blobs):
    from napari_hemd.models import predict_volume

    model, vol = _model("unet"), _stack(blobs)
    outs = ["foreground", "background"]
    tri = predict_volume(model, vol, outputs=outs, z_weight=1.0, z_scale=2.0)
    flat = predict(model, vol, outputs=outs)
    for k in outs:
        assert tri[k].shape == vol.shape and tri[k].dtype == np.float32
        np.testing.assert_allclose(tri[k], flat[k], atol=1e-6)


def test_volume_averages_the_three_planes(blobs):
    """z_scale 1: the y- and x-slices are the stack's own planes; z_weight 0: their mean."""
    from napari_hemd.models import predict_volume

    model, vol = _model("unet"), _stack(blobs)
    tri = predict_volume(model, vol, outputs=["foreground"], z_weight=0.0, z_scale=1.0)
    ys = predict(model, np.moveaxis(vol, 1, 0))["foreground"]  # (Y, Z, X)
    xs = predict(model, np.moveaxis(vol, 2, 0))["foreground"]  # (X, Z, Y)
    expected = 0.5 * np.moveaxis(ys, 0, 1) + 0.5 * np.moveaxis(xs, 0, 2)
    np.testing.assert_allclose(tri["foreground"], expected, atol=1e-5)
    # and the default weight mixes in the z-slices
    mixed = predict_volume(model, vol, outputs=["foreground"], z_scale=1.0, z_weight=0.5)
    flat = predict(model, vol)["foreground"]
    np.testing.assert_allclose(mixed["foreground"], 0.5 * flat + 0.5 * expected, atol=1e-5)


def test_volume_progress_counts_slices_and_cancel_returns_none(blobs):
    from napari_hemd.models import predict_volume_workflow

    model, vol = _model("unet"), _stack(blobs)
    gen = predict_volume_workflow(model, vol, z_scale=2.0)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    total = sum(vol.shape)
    assert events[0] == ("predict", 0, total) and events[-1] == ("predict", total, total)
    assert [e[1] for e in events] == list(range(total + 1))
    assert result["foreground"].shape == vol.shape
    calls = []
    gen = predict_volume_workflow(model, vol, cancel=lambda: len(calls) > 8 or calls.append(1))
    with pytest.raises(StopIteration) as stop:
        while True:
            next(gen)
    assert stop.value.value is None


def test_volume_errors(blobs):
    from napari_hemd.models import predict_volume

    vol = _stack(blobs)
    unet = _model("unet")
    with pytest.raises(ValueError, match="z_scale must be a voxel depth / pixel width > 0; got 0"):
        predict_volume(unet, vol, z_scale=0)
    with pytest.raises(ValueError, match=r"z_weight must be in \[0, 1\]; got 2"):
        predict_volume(unet, vol, z_weight=2)
    with pytest.raises(
        ValueError, match=r"volume must be a \(Z, Y, X\) stack; got shape \(40, 48\)"
    ):
        predict_volume(unet, vol[0])
    with pytest.raises(ValueError, match="outputs must be a subset of"):
        predict_volume(unet, vol, outputs=["affinities"])
    with pytest.raises(ValueError, match="must be a U-Net for tri-planar prediction"):
        predict_volume(_model("affinity"), vol)


def test_planes_default_from_the_model():
    from napari_hemd.models.prediction import resolve_planes

    plain = _model("unet")
    stack_model = plain.__class__(plain.network, {**plain.metadata, "volume": {"planes": 3}})
    assert resolve_planes(plain, None, (5, 40, 48)) == 1
    assert resolve_planes(stack_model, None, (5, 40, 48)) == 3
    assert resolve_planes(stack_model, None, (40, 48)) == 1  # a single frame
    assert resolve_planes(stack_model, None, (1, 40, 48)) == 1
    assert resolve_planes(stack_model, 1, (5, 40, 48)) == 1  # the caller wins
    assert resolve_planes(plain, 3, (5, 40, 48)) == 3
    with pytest.raises(ValueError, match=r"planes=3 needs a .Z, Y, X. stack of 2 or more slices"):
        resolve_planes(plain, 3, (40, 48))
    with pytest.raises(ValueError, match=r"planes must be 1 .z-slices. or 3"):
        resolve_planes(plain, 2, (5, 40, 48))
