"""Every shipped model loads and gives sane maps on a frame it was not trained on."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tifffile = pytest.importorskip("tifffile")

from napari_hemd.models import SHIPPED_MODELS, load_model, predict  # noqa: E402
from napari_hemd.models.registry import model_path  # noqa: E402

#: 3D F1 of ``nuclei-3d`` on its held-out slab (15 nuclei, 5 of them cut by the slab's edge):
#: the issue's target. Measured 0.846 with the model's tri-planar prediction, 0.690 with its
#: z-slices alone (docs/models.md).
MIN_3D_F1 = 0.75

# A held-out frame per model (see docs/models.md) and its reference mask.
FRAMES = {
    "nuclei-fluo": (
        "ctc/Fluo-N2DH-SIM+/02/t045.tif",
        "ctc/Fluo-N2DH-SIM+/02_GT/SEG/man_seg045.tif",
    ),
    "cells-phc": ("ctc/PhC-C2DL-PSC/01/t045.tif", "ctc/PhC-C2DL-PSC/01_ST/SEG/man_seg045.tif"),
    "cells-dic": ("ctc/DIC-C2DH-HeLa/01/t034.tif", "ctc/DIC-C2DH-HeLa/01_GT/SEG/man_seg034.tif"),
}


def _frame(shared_data, name):
    if name == "nuclei-3d":  # slices 70-99 are held out
        import h5py

        with h5py.File(shared_data / "volumes" / "nuclei3d_1135.h5", "r") as f:
            return np.asarray(f["raw"][85]), np.asarray(f["label"][85])
    if name == "nuclei-affinity":  # the last image by name is held out
        img = sorted((shared_data / "bbbc039" / "images").glob("*.tif"))[-1]
        return tifffile.imread(img), tifffile.imread(shared_data / "bbbc039" / "labels" / img.name)
    image, mask = FRAMES[name]
    return tifffile.imread(shared_data / image), tifffile.imread(shared_data / mask)


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_model_loads_with_metadata(name):
    if not model_path(name).exists():
        pytest.skip(f"weights of {name} not installed")
    model = load_model(name)
    assert model.kind == SHIPPED_MODELS[name].kind
    assert model_path(name).stat().st_size < 4 * 2**20
    training = model.metadata["training"]
    assert training["train_samples"] and training["held_out_samples"]
    assert not set(training["train_samples"]) & set(training["held_out_samples"])


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_model_gives_sane_maps(shared_data, name):
    if not model_path(name).exists():
        pytest.skip(f"weights of {name} not installed")
    torch.set_num_threads(1)
    model = load_model(name)
    image, mask = _frame(shared_data, name)
    outputs = ["foreground", "boundary", "background"]
    res = predict(model, image, outputs=outputs)  # whole frame: percentiles need cells in view
    for key in outputs:
        assert res[key].shape == image.shape and res[key].dtype == np.float32
        assert 0.0 <= res[key].min() and res[key].max() <= 1.0
    cell = 1.0 - res["background"]  # foreground (interior) + boundary
    inside, outside = cell[mask > 0].mean(), cell[mask == 0].mean()
    assert inside > 0.5 and outside < 0.2, (inside, outside)
    assert res["foreground"][mask > 0].mean() > 0.3
    # The maps agree with the reference: foreground + boundary cover most cells.
    cover = ((1 - res["background"]) > 0.5) == (mask > 0)
    assert cover.mean() > 0.85


def test_shipped_affinity_model_instances(shared_data):
    if not model_path("nuclei-affinity").exists():
        pytest.skip("weights of nuclei-affinity not installed")
    torch.set_num_threads(1)
    image, mask = _frame(shared_data, "nuclei-affinity")
    res = predict("nuclei-affinity", image, outputs=["instances", "affinities"])
    n_ref, n_found = len(np.unique(mask)) - 1, int(res["instances"].max())
    assert 0.6 * n_ref < n_found < 1.3 * n_ref, (n_ref, n_found)
    # Unit-range affinities are high inside nuclei and low across the nucleus / background border.
    assert res["affinities"][0][mask > 0].mean() > 0.8


def test_nuclei_3d_segments_a_held_out_slab_in_3d(shared_data, tmp_path):
    """``segment STACK --model nuclei-3d`` on a (Z, Y, X) slab the model never saw: slices
    predicted, H-EMD across slices, linked into 3D objects; 3D F1 against the annotation."""
    if not model_path("nuclei-3d").exists():
        pytest.skip("weights of nuclei-3d not installed")
    import h5py

    from napari_hemd.cli import main
    from napari_hemd.core.metrics import evaluate_sequence

    with h5py.File(shared_data / "volumes" / "nuclei3d_1135.h5", "r") as f:
        raw, ref = np.asarray(f["raw"][70:]), np.asarray(f["label"][70:])
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, raw, photometric="minisblack")
    out = tmp_path / "labels.tif"
    args = ["segment", str(stack), "--model", "nuclei-3d", "-o", str(out)]  # the model's defaults
    assert main([*args, "--no-progress", "--threads", "1"]) == 0
    labels = tifffile.imread(out)
    assert labels.shape == raw.shape
    r = evaluate_sequence({0: ref}, {0: labels})  # one 3D volume: objects matched in 3D
    assert r["F1"] >= MIN_3D_F1, r["F1"]
    # the z-slices alone (what the model did before its tri-planar default) score lower
    flat = tmp_path / "flat.tif"
    args = ["segment", str(stack), "--model", "nuclei-3d", "-o", str(flat), "--planes", "1"]
    assert main([*args, "--no-progress", "--threads", "1"]) == 0
    r_flat = evaluate_sequence({0: ref}, {0: tifffile.imread(flat)})
    assert r["F1"] > r_flat["F1"] and r["AJI"] > r_flat["AJI"], (r, r_flat)
