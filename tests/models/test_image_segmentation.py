"""Raw movie -> whole-cell masks: one implementation behind the API, the CLI and the demo."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

torch = pytest.importorskip("torch")

from napari_hemd.cli import main  # noqa: E402
from napari_hemd.data.synthetic import nuclei_video  # noqa: E402
from napari_hemd.image_segmentation import segment_image  # noqa: E402
from napari_hemd.io import read_stack  # noqa: E402
from napari_hemd.models import load_model, predict  # noqa: E402
from napari_hemd.models.prediction import AUTO_TILE, resolve_tiling  # noqa: E402


@pytest.fixture(scope="module")
def movie():
    return nuclei_video(n_frames=4, shape=(128, 128), n_cells=8, seed=4)


def test_api_gives_whole_cells(movie):
    model = load_model("nuclei-fluo")
    res = segment_image(movie["image"], model)
    plain = segment_image(movie["image"], model, grow=0)
    assert res.labels.shape == movie["image"].shape and res.labels.dtype == np.uint32
    assert res.grow > 0 and res.result is not None and len(res.result.forests) == 4
    # growth only adds pixels, into pixels below the model's calibrated background threshold
    # (chosen on its training frames: the default), and keeps every id
    threshold = model.metadata["segment_defaults"]["grow_threshold"]
    assert res.params["grow_threshold"] == threshold >= 0.5
    assert set(np.unique(res.labels)) == set(np.unique(plain.labels))
    kept = plain.labels > 0
    assert (res.labels[kept] == plain.labels[kept]).all()
    added = (res.labels > 0) & ~kept
    assert added.sum() > 0 and (res.maps["background"][added] < threshold).all()
    # a threshold above 0.5 takes uncertain border pixels too, and only adds to the 0.5 growth
    wide = segment_image(movie["image"], model, grow_threshold=0.8)
    assert wide.params["grow_threshold"] == 0.8
    assert set(np.unique(wide.labels)) == set(np.unique(plain.labels))
    assert ((wide.labels > 0) >= (res.labels > 0)).all()  # a superset of the default growth
    more = (wide.labels > 0) & ~kept
    assert (wide.maps["background"][more] < 0.8).all()
    assert (wide.maps["background"][more] >= threshold).any()


@pytest.mark.shared
def test_whole_cells_match_the_annotation(shared_data):
    """On a real held-out HeLa frame the masks are the size an annotator draws (total area within
    15 % of the silver truth's, with the model's calibrated growth), and growing the foreground's
    instances into the contact band (the network's own decision, 0.5) never lowers AJI."""
    from napari_hemd.core.metrics import evaluate_sequence

    seq = shared_data / "ctc" / "Fluo-N2DL-HeLa"
    image = tifffile.imread(seq / "01" / "t085.tif")[:352, :480]
    truth = tifffile.imread(seq / "01_ST" / "SEG" / "man_seg085.tif")[:352, :480]
    model = load_model("nuclei-fluo")
    grown = segment_image(image, model, "threshold", min_size=20, grow_threshold=0.5).labels
    plain = segment_image(image, model, "threshold", min_size=20, grow=0).labels
    aji = {
        k: evaluate_sequence(truth[None], v[None])["AJI"] for k, v in [("g", grown), ("p", plain)]
    }
    assert aji["g"] >= aji["p"], aji
    calibrated = segment_image(image, model, "threshold", min_size=20).labels
    assert 0.85 < (calibrated > 0).sum() / (truth > 0).sum() < 1.15


def test_cli_segment_model_equals_api(movie, tmp_path):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, movie["image"], photometric="minisblack")
    out = tmp_path / "labels.tif"
    args = ["segment", str(path), "--model", "nuclei-fluo", "-o", str(out), "--no-progress"]
    assert main([*args, "--threads", "1"]) == 0
    expected = segment_image(movie["image"], "nuclei-fluo").labels
    assert (read_stack(out) == expected).all()
    out2 = tmp_path / "ws"
    args = ["segment", str(path), "--model", "nuclei-fluo", "-o", str(out2), "--method"]
    assert main([*args, "watershed", "--link", "--no-progress"]) == 0
    lab = read_stack(out2)
    tracks = np.loadtxt(out2 / "res_track.txt", dtype=int, ndmin=2)
    assert lab.max() > 0 and set(tracks[:, 0]) == set(np.unique(lab)) - {0}


def _with_flips(views: int):
    """nuclei-fluo's network with ``views`` test-time flips as its own (its calibration's field)."""
    import copy

    from napari_hemd.models.weights import HemdModel

    base = load_model("nuclei-fluo")
    return HemdModel(copy.deepcopy(base.network), {**base.metadata, "tta": views})


def test_test_time_flips_in_segment(movie, tmp_path, capsys):
    """``segment --model --tta 4`` = ``segment_image(tta=4)``: the maps of four mirrored views;
    without ``--tta`` / ``tta`` the model's own flips (``metadata["tta"]``, its calibration's)."""
    from napari_hemd.models.weights import save_model_file

    one, four = _with_flips(1), _with_flips(4)
    plain = segment_image(movie["image"], one)
    res = segment_image(movie["image"], one, tta=4)
    assert res.params["tta"] == 4 and "tta" not in plain.params
    expected = predict(one, movie["image"], tta=4)["foreground"]
    np.testing.assert_array_equal(res.maps["foreground"], expected)
    assert np.abs(res.maps["foreground"] - plain.maps["foreground"]).max() > 0.01
    # a model whose own flips are four: used with them unless told, and the run says which
    own = segment_image(movie["image"], four)
    assert own.params["tta"] == 4 and (own.labels == res.labels).all()
    np.testing.assert_array_equal(predict(four, movie["image"])["foreground"], expected)
    off = segment_image(movie["image"], four, tta=1)
    assert off.params["tta"] == 1 and (off.labels == plain.labels).all()  # recorded: not its own
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, movie["image"], photometric="minisblack")
    files = {v: save_model_file(m, tmp_path / f"tta{v}.pt") for v, m in ((1, one), (4, four))}
    out = tmp_path / "labels.tif"
    args = ["segment", str(path), "-o", str(out), "--no-progress", "--overwrite"]
    capsys.readouterr()
    assert main([*args, "--model", str(files[1]), "--tta", "4"]) == 0
    assert (read_stack(out) == res.labels).all()
    said = capsys.readouterr().err
    assert "4 mirrored views averaged, " in said and "the model's own" not in said
    assert main([*args, "--model", str(files[4])]) == 0
    assert (read_stack(out) == res.labels).all()
    said = capsys.readouterr().err  # the model's own flips, and how to go faster
    assert "4 mirrored views averaged (the model's own; --tta 1: 4x faster prediction)" in said
    assert main([*args, "--model", str(files[4]), "--tta", "1"]) == 0
    assert (read_stack(out) == plain.labels).all()
    assert "mirrored views" not in capsys.readouterr().err
    args = ["segment", str(path), "-o", str(tmp_path / "x.tif")]
    assert main([*args, "--tta", "4"]) == 2
    assert "--tta needs --model" in capsys.readouterr().err
    assert main([*args, "--model", "nuclei-affinity", "--tta", "2"]) == 2
    assert "tta=2 needs a U-Net model" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists()


def test_model_flips_are_only_a_u_nets(blobs):
    """``model_tta``: a U-Net's recorded flips; 1 for an affinity network, a file from before
    calibration chose flips, or a value that is not a number of views."""
    from napari_hemd.models.prediction import model_tta

    assert model_tta(_with_flips(4)) == 4 and model_tta(_with_flips(1)) == 1
    for bad in (3, "4", True, None):
        assert model_tta(_with_flips(bad)) == 1
    affinity = load_model("nuclei-affinity")
    assert model_tta(affinity) == 1
    affinity.metadata["tta"] = 4
    assert model_tta(affinity) == 1
    maps = predict(affinity, blobs[0], outputs=["foreground"])  # no flips refused by default
    assert maps["foreground"].shape == blobs[0].shape


def test_cli_segment_model_user_errors(movie, tmp_path, capsys):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, movie["image"], photometric="minisblack")
    out = str(tmp_path / "o.tif")
    assert main(["segment", str(path), "-o", out, "--grow", "2"]) == 2
    assert "--grow needs --model" in capsys.readouterr().err
    assert main(["segment", str(path), "-o", out, "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert main(["segment", str(path), "-o", out, "--model", "nuclei-fluo", "--axis", "1"]) == 2
    assert "--axis must be 0 with --model" in capsys.readouterr().err
    assert main(["segment", str(path), "-o", out, "--grow-threshold", "0.5"]) == 2
    assert "--grow-threshold needs --model" in capsys.readouterr().err
    args = ["segment", str(path), "-o", out, "--model", "nuclei-fluo", "--grow-threshold", "0"]
    assert main(args) == 2
    assert "--grow-threshold must be in (0, 1]; got 0.0" in capsys.readouterr().err
    assert main(["segment", str(path), "-o", out, "--planes", "3"]) == 2
    assert "--planes needs --model" in capsys.readouterr().err
    args = ["segment", str(path), "-o", out, "--model", "nuclei-3d", "--z-scale", "0"]
    assert main(args) == 2
    assert "--z-scale must be a voxel depth / pixel width > 0; got 0.0" in capsys.readouterr().err
    args = ["segment", str(path)[:-4] + "x.tif", "-o", out, "--model", "nuclei-affinity"]
    tifffile.imwrite(args[1], movie["image"], photometric="minisblack")
    assert main([*args, "--planes", "3"]) == 2
    assert "must be a U-Net for tri-planar prediction" in capsys.readouterr().err


def test_stack_model_predicts_three_planes_on_every_path(movie, tmp_path):
    """nuclei-3d's tri-planar default: API, segment --model, predict and the predict workflow
    agree; ``--planes 1`` / ``planes=1`` is the slice-by-slice prediction."""
    from napari_hemd.models import predict_volume
    from napari_hemd.workflows import predict_workflow, run_workflow

    stack = movie["image"][:, :64, :80]
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    tri = predict_volume("nuclei-3d", stack, outputs=["foreground", "background"])
    res = segment_image(stack, "nuclei-3d")
    np.testing.assert_allclose(res.maps["foreground"], tri["foreground"], atol=1e-6)
    assert res.params["planes"] == 3 and res.params["z_scale"] == 2.2
    flat = segment_image(stack, "nuclei-3d", planes=1)
    assert flat.params["planes"] == 1 and "z_scale" not in flat.params  # still one stack
    assert not np.allclose(flat.maps["foreground"], tri["foreground"], atol=1e-3)
    # a 2D model's run on the same array is a movie's: no planes recorded
    assert "planes" not in segment_image(stack, "nuclei-fluo", tta=1).params
    out = tmp_path / "labels.tif"
    args = ["segment", str(path), "--model", "nuclei-3d", "-o", str(out), "--no-progress"]
    assert main([*args, "--threads", "1"]) == 0
    assert (read_stack(out) == res.labels).all()
    # written as one stack (axes ZYX, planes recorded): measure takes it as one volume
    from napari_hemd.core.measure import measure_objects
    from napari_hemd.io.channels import input_axes
    from napari_hemd.io.stacks import recorded_params

    assert input_axes(out) == "ZYX" and recorded_params(out)["planes"] == 3
    assert main(["measure", str(out), "-o", str(tmp_path / "cells.csv")]) == 0
    rows = (tmp_path / "cells.csv").read_text().splitlines()
    want = measure_objects(res.labels, frames=False)
    assert len(rows) == 1 + len(want["label"]) and "centroid_z" in rows[0]
    # slice by slice (--planes 1) it is one stack too (was written as a movie, with "tracks")
    out1 = tmp_path / "labels1.tif"
    assert main([*args[:-3], "-o", str(out1), "--planes", "1", "--no-progress"]) == 0
    assert (read_stack(out1) == flat.labels).all()
    assert input_axes(out1) == "ZYX" and recorded_params(out1)["planes"] == 1
    # and so are the maps predict makes slice by slice, segmented (they were frames)
    maps1 = tmp_path / "maps1.zarr"
    predicted = ["predict", str(path), "--model", "nuclei-3d", "--planes", "1", "--tta", "1"]
    assert main([*predicted, "--outputs", "foreground,background", "-o", str(maps1)]) == 0
    out2 = tmp_path / "labels2.tif"
    assert main(["segment", str(maps1), "-o", str(out2), "--no-progress"]) == 0
    tta1 = segment_image(stack, "nuclei-3d", planes=1, tta=1)
    assert (read_stack(out2) == tta1.labels).all() and input_axes(out2) == "ZYX"
    fg = tmp_path / "fg.tif"
    assert main(["predict", str(path), "--model", "nuclei-3d", "-o", str(fg), "--no-progress"]) == 0
    np.testing.assert_allclose(read_stack(fg), tri["foreground"], atol=1e-6)
    zout = tmp_path / "maps.zarr"  # a zarr OUT too (written in one process)
    args = ["predict", str(path), "--model", "nuclei-3d", "-o", str(zout), "--no-progress"]
    assert main(args) == 0
    import zarr

    group = zarr.open_group(str(zout), mode="r")
    np.testing.assert_allclose(group["foreground"][:], tri["foreground"], atol=1e-6)
    assert group.attrs["planes"] == 3 and group.attrs["z_scale"] == 2.2
    maps = run_workflow(predict_workflow(stack, "nuclei-3d", outputs=["foreground"]))
    np.testing.assert_allclose(maps["foreground"], tri["foreground"], atol=1e-6)
    # a 2D frame is predicted as a frame
    assert segment_image(stack[0], "nuclei-3d").labels.shape == stack[0].shape


def test_cli_grow_threshold_overrides_the_model(movie, tmp_path):
    """``--grow-threshold`` replaces the model's calibrated threshold (nuclei-fluo: 0.5, the
    network's own decision); a higher one grows the masks further."""
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, movie["image"], photometric="minisblack")
    out = tmp_path / "labels.tif"
    calibrated_at = load_model("nuclei-fluo").metadata["segment_defaults"]["grow_threshold"]
    wider = 0.8 if calibrated_at < 0.8 else 0.5
    args = ["segment", str(path), "--model", "nuclei-fluo", "-o", str(out), "--no-progress"]
    assert main([*args, "--grow-threshold", str(wider), "--threads", "1"]) == 0
    override = segment_image(movie["image"], "nuclei-fluo", grow_threshold=wider).labels
    calibrated = segment_image(movie["image"], "nuclei-fluo").labels
    assert (read_stack(out) == override).all()
    ratio = (override > 0).sum() / (calibrated > 0).sum()  # 0.8 takes more than 0.5, and so on
    assert ratio > 1 if wider > calibrated_at else ratio < 1


def test_unknown_keywords_are_refused_before_the_model_runs(movie, monkeypatch):
    """A typo (``taw=``) or a keyword the method does not take fails at once, naming it; it
    used to surface as ``hemd() got an unexpected keyword`` after the whole prediction, or to be
    ignored by a baseline."""
    import napari_hemd.models.prediction as prediction

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the keywords were checked")

    monkeypatch.setattr(prediction, "_resolve_model", no_model)
    image = movie["image"][:2]
    with pytest.raises(TypeError, match=r"segment_image\(\).*'taw' for method 'hemd'.* tau"):
        segment_image(image, "nuclei-fluo", taw=0.3)
    with pytest.raises(TypeError, match="'sigma' for method 'otsu'"):
        segment_image(image, "nuclei-fluo", "otsu", sigma=2)
    with pytest.raises(TypeError, match="'time_limit' for method 'watershed'"):
        segment_image(image, "nuclei-fluo", "watershed", time_limit=5)
    # a stack's slices are 2D: connectivity 3 failed after the whole prediction
    with pytest.raises(ValueError, match=r"connectivity must be 1 .faces. or 2 .full.*got 3"):
        segment_image(np.stack([image[0]] * 4), "nuclei-3d", connectivity=3)
    with pytest.raises(TypeError, match=r"got str \(read the file first"):
        segment_image("movie.tif", "nuclei-fluo")
    with pytest.raises(TypeError, match="got NoneType"):
        segment_image(None, "nuclei-fluo")


def test_a_colour_image_is_refused_and_a_list_of_frames_taken(movie, monkeypatch):
    """An RGB frame ``(Y, X, 3)`` was segmented as Y frames 3 pixels wide (labels of shape
    ``(Y, X, 3)``, no error); a list of frames was refused as "shape ()"."""
    import napari_hemd.models.prediction as prediction

    frame = movie["image"][0]
    with monkeypatch.context() as m:
        m.setattr(prediction, "_resolve_model", lambda *a, **k: pytest.fail("model loaded"))
        with pytest.raises(ValueError, match=r"\(128, 128, 3\) has 3 values on its last axis"):
            segment_image(np.stack([frame] * 3, axis=-1), "nuclei-fluo")
        with pytest.raises(ValueError, match="RGB"):
            segment_image(np.stack([frame] * 4, axis=-1)[None], "nuclei-fluo")
        # a (T, C, Y, X) two-colour movie was segmented as stacks of 2 slices, the second
        # stain's objects given the nuclei's ids (audit 35); the command line refuses it
        two = np.stack([movie["image"][:2]] * 2, axis=1)
        with pytest.raises(ValueError, match=r"2 plane\(s\) on axis 1: taken for channels"):
            segment_image(two, "nuclei-fluo")
        for wrong in ("ZYX", "TCYX", "CZYX"):  # (any 4 letters were taken: review 33b)
            with pytest.raises(ValueError, match=r"axes must name the image's 4 axes"):
                segment_image(two, "nuclei-fluo", axes=wrong)
    # stacks of 2 slices, said so (review 33: the command line's and widgets' named TZYX
    # stacks of so few slices were refused here after their own checks let them through)
    res = segment_image(two, "nuclei-fluo", "threshold", axes="TZYX", tta=1)
    assert res.labels.shape == two.shape
    res = segment_image(list(movie["image"][:2]), "nuclei-fluo", "threshold")
    assert res.labels.shape == (2, 128, 128)


def test_single_frame_and_2d(movie):
    res = segment_image(movie["image"][0], "nuclei-fluo", "threshold")
    assert res.labels.shape == (128, 128) and res.maps["foreground"].shape == (128, 128)


def test_tiles_sized_to_the_frame(movie):
    assert resolve_tiling((700, 1100), None, None, 16) == (0, 16)  # one tile, thin margin
    assert resolve_tiling((5, 4096, 4096), None, None, 16) == (AUTO_TILE, 64)
    assert resolve_tiling((700, 1100), 512, None, 16) == (512, 64)
    assert resolve_tiling((700, 1100), 0, None, 8) == (0, 16)
    model = load_model("nuclei-fluo")
    auto = predict(model, movie["image"][:2])["foreground"]
    explicit = predict(model, movie["image"][:2], tile=0, halo=16)["foreground"]
    assert np.array_equal(auto, explicit)
    tiled = predict(model, movie["image"][:2], tile=64, halo=64)["foreground"]
    # margins differ, not the inside: a misplaced or mis-cropped tile would differ by ~0.5 over
    # whole regions; padding a 192-pixel window instead of the frame moves a few pixels slightly
    # (up to 0.08-0.11, on 0.1 % of the pixels more than 0.05, with the shipped files of
    # 2026-12-04; how far depends on the weights)
    inside = np.abs(auto - tiled)[:, 16:-16, 16:-16]
    assert inside.max() < 0.25 and (inside > 0.05).mean() < 0.01 and inside.mean() < 0.005


@pytest.mark.shared
def test_touching_nuclei_are_not_merged(shared_data):
    """On held-out HeLa frames (t074-t077, a crop with clusters of touching nuclei) the refined
    H-EMD keeps cells that touch at a dip apart where H-EMD without the split pads the cluster as
    one object: fewer nuclei merged against the hand-made tracking markers, better F1 and AJI
    against the silver truth (measured with the nuclei-fluo shipped since the eighth session,
    2026-12-04: merges 8 -> 3, F1 0.902 -> 0.936, AJI 0.759 -> 0.802). The crop of t079-t082
    used before (merges 6 -> 2 and 10 -> 2 with the two files before) has no merge left for the
    split to undo with this file: its network separates those nuclei itself (2 either way)."""
    from napari_hemd.core.metrics import evaluate_sequence

    seq = shared_data / "ctc" / "Fluo-N2DL-HeLa"
    ys, xs, ts = slice(0, 350), slice(100, 800), range(74, 78)
    image = np.stack([tifffile.imread(seq / "01" / f"t{t:03d}.tif")[ys, xs] for t in ts])
    truth = {
        i: tifffile.imread(seq / "01_ST" / "SEG" / f"man_seg{t:03d}.tif")[ys, xs]
        for i, t in enumerate(ts)
    }
    markers = {
        i: tifffile.imread(seq / "01_GT" / "TRA" / f"man_track{t:03d}.tif")[ys, xs]
        for i, t in enumerate(ts)
    }
    model = load_model("nuclei-fluo")
    scores = {}
    for name, kw in (("no split", {"split_coverage": 0}), ("refined", {})):
        labels = dict(enumerate(segment_image(image, model, "hemd", **kw).labels))
        seg, det = evaluate_sequence(truth, labels), evaluate_sequence(markers, labels)
        scores[name] = (seg["F1"], seg["AJI"], det["counts"]["det_NS"])
    (f_off, a_off, m_off), (f_on, a_on, m_on) = scores["no split"], scores["refined"]
    assert m_on <= m_off - 3, scores
    assert f_on > f_off + 0.005 and a_on > a_off + 0.02, scores


def _touching_edge(frame: np.ndarray) -> set[int]:
    edge = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    return set(np.unique(edge).tolist()) - {0}


def test_exclude_border_on_every_path(movie, tmp_path):
    """API and CLI remove the cells the frame's edge cuts, per frame; the rest is unchanged."""
    image = np.ascontiguousarray(movie["image"][:, 20:90, 20:90])  # edges through cells
    plain = segment_image(image, "nuclei-fluo")
    res = segment_image(image, "nuclei-fluo", exclude_border=True)
    assert res.params["exclude_border"] is True
    cut = [_touching_edge(f) for f in plain.labels]
    assert sum(map(len, cut)) > 0  # the generated cells do reach the edge
    for t, (p, r) in enumerate(zip(plain.labels, res.labels, strict=True)):
        assert not _touching_edge(r)
        gone = np.isin(p, list(cut[t]))
        assert (r[gone] == 0).all() and (r[~gone] == p[~gone]).all()
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, image, photometric="minisblack")
    out = tmp_path / "labels.tif"
    args = ["segment", str(path), "--model", "nuclei-fluo", "-o", str(out), "--no-progress"]
    assert main([*args, "--exclude-border"]) == 0
    assert (read_stack(out) == res.labels).all()
    # linked: the tracks written follow the CTC rule (a label in exactly frames B..E)
    folder = tmp_path / "linked"
    args = ["segment", str(path), "--model", "nuclei-fluo", "-o", str(folder), "--link"]
    assert main([*args, "--exclude-border", "--no-progress"]) == 0
    lab = read_stack(folder)
    tracks = np.loadtxt(folder / "res_track.txt", dtype=int, ndmin=2)
    assert set(tracks[:, 0]) == set(np.unique(lab)) - {0}
    for label, begin, end, _ in tracks:
        assert [t for t in range(len(lab)) if (lab[t] == label).any()] == list(
            range(begin, end + 1)
        )
    assert not any(_touching_edge(f) for f in lab)


def test_cli_exclude_border_on_probability_maps(tmp_path):
    prob = np.zeros((5, 40, 40), np.float32)
    prob[:, 0:8, 10:18] = 0.9  # cut by the top edge in every frame
    prob[:, 20:28, 20:28] = 0.9
    prob[2, 30:40, 0:6] = 0.9  # cut in frame 2 only
    path = tmp_path / "prob.tif"
    for axis, data in ((0, prob), (1, np.moveaxis(prob, 0, 1))):
        tifffile.imwrite(path, np.ascontiguousarray(data))
        out = tmp_path / f"labels{axis}.tif"
        args = ["segment", str(path), "-o", str(out), "--method", "threshold", "--axis"]
        assert main([*args, str(axis), "--exclude-border", "--no-progress"]) == 0
        lab = np.moveaxis(read_stack(out), axis, 0)
        assert [len(np.unique(f)) - 1 for f in lab] == [1] * 5
        assert (lab[:, 20:28, 20:28] > 0).all()


@pytest.mark.shared
def test_exclude_border_matches_the_silver_truth_convention(shared_data):
    """HeLa's silver truth leaves out the nuclei the frame's edge cuts: without them our masks
    match it better (F1), and the nuclei inside keep their masks."""
    from napari_hemd.core.metrics import evaluate_sequence

    seq = shared_data / "ctc" / "Fluo-N2DL-HeLa"
    frames = np.stack([tifffile.imread(seq / "01" / f"t{t:03d}.tif") for t in (85, 86, 87)])
    truth = np.stack(
        [tifffile.imread(seq / "01_ST" / "SEG" / f"man_seg{t:03d}.tif") for t in (85, 86, 87)]
    )
    model = load_model("nuclei-fluo")  # one view: the convention, not the flips, is tested
    plain = segment_image(frames, model, tta=1).labels
    inside = segment_image(frames, model, exclude_border=True, tta=1).labels
    assert sum(len(_touching_edge(f)) for f in truth) <= 3  # the convention
    assert sum(len(_touching_edge(f)) for f in plain) >= 20
    f1 = {k: evaluate_sequence(truth, v)["F1"] for k, v in (("plain", plain), ("inside", inside))}
    assert f1["inside"] > f1["plain"] + 0.03, f1
    kept = inside > 0
    assert (inside[kept] == plain[kept]).all()


def test_exclude_border_of_a_volume_counts_its_first_and_last_slice():
    """A stack segmented as one volume (tri-planar prediction) loses the objects that touch any
    face, the first and last slice too; frames of a movie are cleared one by one."""
    from napari_hemd.image_segmentation import labels_from_maps_workflow
    from napari_hemd.workflows import run_workflow

    fg = np.zeros((4, 30, 30), np.float32)
    fg[:, 10:20, 10:20] = 0.9  # through every slice, inside in Y and X
    fg[1:3, 0:6, 22:28] = 0.9  # cut by the Y edge, not in the first or last slice
    maps = {"foreground": fg, "background": 1.0 - fg}
    kw = dict(min_size=5, exclude_border=True)
    frames, _, _ = run_workflow(labels_from_maps_workflow(maps, "threshold", 0, **kw))
    wf = labels_from_maps_workflow(maps, "threshold", 0, volume=True, link=True, **kw)
    volume, _, tracks = run_workflow(wf)  # linked: one label per 3D object
    assert (frames[:, 10:20, 10:20] > 0).all() and not frames[:, 0:6, 22:28].any()
    assert not volume.any() and len(tracks) == 0  # the middle object reaches slices 0 and 3


def test_a_time_lapse_of_stacks_is_each_stack_then_linked_over_time(tmp_path, capsys):
    """(T, Z, Y, X) with a model: every stack exactly as segment does it alone; a 3D model's
    objects (linked across slices) keep their id over time; a 2D model's are not linked."""
    from napari_hemd.data.synthetic import nuclei_volume

    vol = nuclei_volume()["image"][:24, :96]
    movie = np.stack([vol[..., s : s + 96] for s in (0, 2)])  # the nuclei move 2 px
    res = segment_image(movie, "nuclei-3d", tta=1)
    assert res.labels.shape == movie.shape and res.maps["foreground"].shape == movie.shape
    assert res.params["link_time"] and len(res.result.results) == 2  # each stack's forests
    assert res.result.tracks is res.tracks
    assert len(res.result.results[1].forests) == movie.shape[1]  # one per slice
    for t in range(2):
        alone = segment_image(movie[t], "nuclei-3d", tta=1)
        np.testing.assert_array_equal(res.maps["foreground"][t], alone.maps["foreground"])
        # the same objects: one label of the time-lapse per label of the stack alone
        pairs = {(a, b) for a, b in zip(res.labels[t].ravel(), alone.labels.ravel(), strict=True)}
        assert len(pairs) == len(np.unique(alone.labels)) > 5
    a, b = res.labels
    same = 0  # every nucleus found at both time points (IoU > 0.5) keeps its id
    for i in set(np.unique(a)) - {0}:
        j, n = np.unique(b[a == i], return_counts=True)
        k = j[np.argmax(n)]
        if k and n.max() / np.count_nonzero((a == i) | (b == k)) > 0.5:
            assert k == i
            same += 1
    assert same >= len(np.unique(a)) - 2 > 5  # (a nucleus at the crop edge may not be)
    assert {int(r[0]) for r in res.tracks} == set(np.unique(res.labels)) - {0}
    flat = segment_image(movie, "nuclei-fluo", tta=1)  # a 2D model: slices of each stack
    assert "link_time" not in flat.params and flat.tracks is None
    np.testing.assert_array_equal(
        flat.labels[1], segment_image(movie[1], "nuclei-fluo", tta=1).labels
    )
    with pytest.raises(ValueError, match="scale='auto' is not available for a"):
        segment_image(movie, "nuclei-fluo", scale="auto")
    # the command line: an ImageJ TZYX file; a plain 4D file with 2 on axis 1 is taken for channels
    tifffile.imwrite(tmp_path / "tz.tif", movie, imagej=True, metadata={"axes": "TZYX"})
    out = tmp_path / "tz_labels.tif"
    args = ["segment", str(tmp_path / "tz.tif"), "--model", "nuclei-3d", "--tta", "1"]
    assert main([*args, "-o", str(out), "--no-progress"]) == 0
    assert "2 stack(s) over time, objects linked over time" in capsys.readouterr().err
    np.testing.assert_array_equal(read_stack(out), res.labels)
    assert main([*args, "-o", str(tmp_path / "auto.tif"), "--scale", "auto"]) == 2
    assert "--scale auto is not available for a (T, Z, Y, X)" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "tc.tif", movie[:, :2], photometric="minisblack")
    args[1] = str(tmp_path / "tc.tif")
    assert main([*args, "-o", str(tmp_path / "x.tif"), "--no-progress"]) == 2
    assert "One channel of a multi-channel movie: --channel N" in capsys.readouterr().err


def test_predict_a_time_lapse_of_stacks_stack_by_stack(tmp_path, capsys):
    """predict on (T, Z, Y, X): each stack's maps exactly as that stack's alone, written as a TZYX
    hyperstack (.tif) or (T, Z, Y, X) arrays (.zarr); what it refuses it names."""
    import zarr

    from napari_hemd.data.synthetic import nuclei_volume
    from napari_hemd.io.channels import input_axes
    from napari_hemd.workflows import predict_workflow, run_workflow

    vol = nuclei_volume()["image"][:12, :48]
    movie = np.stack([vol[..., s : s + 48] for s in (0, 2, 4)])
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TZYX"})
    outputs = ("foreground", "background")
    api = run_workflow(predict_workflow(movie, "nuclei-3d", outputs=outputs, tta=1))
    assert api["foreground"].shape == movie.shape
    for t in (0, 2):
        alone = run_workflow(predict_workflow(movie[t], "nuclei-3d", outputs=outputs, tta=1))
        np.testing.assert_array_equal(api["background"][t], alone["background"])
    args = ["predict", str(path), "--model", "nuclei-3d", "--tta", "1", "--no-progress"]
    out = tmp_path / "maps.tif"
    assert main([*args, "--outputs", "foreground,background", "-o", str(out)]) == 0
    fg = tmp_path / "maps_foreground.tif"
    assert input_axes(fg) == "TZYX"
    np.testing.assert_array_equal(tifffile.imread(fg), api["foreground"])
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "maps_background.tif"), api["background"]
    )
    assert main([*args, "-o", str(tmp_path / "maps.zarr")]) == 0
    group = zarr.open_group(str(tmp_path / "maps.zarr"), mode="r")
    np.testing.assert_array_equal(group["foreground"][:], api["foreground"])
    assert group.attrs["planes"] == 3 and group.attrs["stacks"] == 3
    # the maps segment as a (T, Z, Y, X) probability movie
    labels = tmp_path / "labels.tif"
    assert main(["segment", str(fg), "-o", str(labels), "--no-progress"]) == 0
    assert read_stack(labels).shape == movie.shape
    capsys.readouterr()
    for extra, message in (
        (["--scale", "auto"], "--scale auto is not available for a (T, Z, Y, X)"),
        (["--workers", "2"], "--workers: a (T, Z, Y, X) time-lapse of stacks"),
    ):
        assert main([*args, *extra, "-o", str(tmp_path / "x.zarr")]) == 2
        assert message in capsys.readouterr().err
    args[3] = "nuclei-affinity"
    assert main([*args, "-o", str(tmp_path / "y.tif")]) == 2
    assert "is an affinity model, which predicts 2D frames" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "tc.tif", movie[:, :2], photometric="minisblack")
    args[1], args[3] = str(tmp_path / "tc.tif"), "nuclei-3d"
    assert main([*args, "-o", str(tmp_path / "z.tif")]) == 2
    assert "One channel of a multi-channel movie: --channel N" in capsys.readouterr().err


def test_a_model_s_maps_with_a_wrong_background_are_refused_before_the_work():
    """A maps group's background outside [0, 1] was used silently, one of another shape was
    found after H-EMD ran on every frame (naming 'labels')."""
    from napari_hemd.model_maps import model_maps_workflow
    from napari_hemd.models import load_model
    from napari_hemd.workflows import run_workflow

    fg = np.zeros((3, 32, 32), np.float32)
    model = load_model("nuclei-fluo")
    for bg, said in (
        (np.full((3, 32, 32), 5.0, np.float32), r"maps\['background'\] \(first frame\) must hold"),
        (np.zeros((3, 32, 16), np.float32), r"maps\['background'\] must have the foreground's"),
    ):
        with pytest.raises(ValueError, match=said):
            run_workflow(model_maps_workflow({"foreground": fg, "background": bg}, model))


def test_a_stack_with_z_last_is_noted(caplog):
    """A (Y, X, Z) stack ran along the wrong axis without a word (AJI 0.80 -> 0.66)."""
    import logging

    from napari_hemd.data.synthetic import nuclei_volume

    stack = np.asarray(nuclei_volume(shape=(20, 48, 48), n_cells=3)["image"])
    with caplog.at_level(logging.INFO):
        segment_image(np.moveaxis(stack, 0, -1), "nuclei-3d", tta=1)
    assert "slices first; one stored with Z last" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        segment_image(stack, "nuclei-3d", tta=1)
    assert "Z last" not in caplog.text


def test_three_planes_with_a_2d_model_is_noted(movie, caplog):
    """A 2D time-lapse model on three planes found nothing on a movie, without a word."""
    import logging

    with caplog.at_level(logging.INFO):
        segment_image(movie["image"][:3], "nuclei-fluo", "threshold", planes=3, tta=1)
    assert "planes=3 with a model trained on 2D frames" in caplog.text


def test_segment_images_signature_shows_what_it_takes():
    """help(segment_image) showed ``**kwargs`` (audit 21): its signature lists the workflow's
    keywords, which it takes."""
    import inspect

    from napari_hemd.image_segmentation import segment_image_workflow

    shown = inspect.signature(segment_image).parameters
    assert (
        list(shown)[:3] == ["image", "model", "method"] and shown["model"].default == "nuclei-fluo"
    )
    flow = inspect.signature(segment_image_workflow).parameters
    assert {"grow", "tile", "tta", "scale", "planes", "progress"} <= set(shown)
    assert {k for k, p in flow.items() if p.kind is p.KEYWORD_ONLY} <= set(shown)
