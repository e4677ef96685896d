from __future__ import annotations

import math
from fractions import Fraction as Fr

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import adapted_rand_error as sk_are
from skimage.metrics import variation_of_information as sk_voi

from napari_hemd.core.metrics import (
    METRIC_NAMES,
    aggregated_jaccard_index,
    ctc_det,
    ctc_seg,
    evaluate_frame,
    evaluate_sequence,
    f1_score,
    overlap_table,
    panoptic_quality,
    symmetric_best_dice,
    variation_of_information,
)

# gt objects: 1 (4 px), 2 (2 px); pred objects: 1 (3 px, inside gt 1), 2 (3 px: gt 2 + 1 bg),
# 3 (2 px, background only)
GT = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 0, 0]])
PRED = np.array([[1, 1, 1, 0, 0, 2, 2, 2, 3, 3]])


def test_overlap_table_counts():
    t = overlap_table(GT, PRED)
    assert t.gt_labels.tolist() == [0, 1, 2]
    assert t.pred_labels.tolist() == [0, 1, 2, 3]
    dense = np.zeros((3, 4), int)
    dense[t.rows, t.cols] = t.counts
    assert dense.tolist() == [[1, 0, 1, 2], [1, 3, 0, 0], [0, 0, 2, 0]]
    assert t.gt_sizes.tolist() == [4, 4, 2]
    assert t.pred_sizes.tolist() == [2, 3, 3, 2]


def test_hand_computed_scores():
    r = evaluate_frame(GT, PRED)
    # TP = 2 (IoU 3/4 and 2/3), FP = 1, FN = 0
    assert r["F1"] == pytest.approx(4 / 5)
    # C = 3 + 2, U = 4 + 3 + |pred 3| = 9
    assert r["AJI"] == pytest.approx(5 / 9)
    # both gt objects covered > 50 %: mean Jaccard
    assert r["SEG"] == pytest.approx(float((Fr(3, 4) + Fr(2, 3)) / 2))
    # AOGM-D = 1 FP (weight 1); AOGM-D0 = 10 * 2
    assert r["DET"] == pytest.approx(1 - 1 / 20)
    assert r["PQ"] == pytest.approx(float((Fr(3, 4) + Fr(2, 3)) / Fr(5, 2)))
    # Dice 6/7 and 4/5; BD(pred, gt) = (6/7 + 4/5 + 0) / 3 is the smaller
    assert r["SBD"] == pytest.approx(float((Fr(6, 7) + Fr(4, 5)) / 3))
    assert r["DiC"] == 1
    # N H(pred|gt) = sum a log a - sum n log n = 18 - (4 + 3 log2 3); N H(gt|pred) = 3 log2 3
    assert r["VOI_split"] == pytest.approx((14 - 3 * math.log2(3)) / 10)
    assert r["VOI_merge"] == pytest.approx(3 * math.log2(3) / 10)
    # pairs: joint 10, gt 26, pred 16
    assert r["ARAND"] == pytest.approx(1 - 20 / 42)
    assert (r["TP"], r["FP"], r["FN"]) == (2, 1, 0)


def test_merge_counts_as_one_split_operation():
    gt = np.array([[1, 1, 2, 2]])
    pred = np.array([[1, 1, 1, 1]])
    r = evaluate_frame(gt, pred)
    assert r["det_NS"] == 1 and r["det_FN"] == 0 and r["det_FP"] == 0
    assert r["DET"] == pytest.approx(1 - 5 / 20)
    assert r["SEG"] == pytest.approx(0.5)
    assert r["F1"] == pytest.approx(2 / 3)  # IoU exactly 0.5 for both: only one can match
    assert r["PQ"] == 0.0  # PQ needs IoU > 0.5
    assert r["AJI"] == pytest.approx(4 / 8)  # pred 1 is counted once per gt object


def test_f1_uses_a_maximum_matching_on_exact_ties():
    gt = np.array([[1, 1, 1, 1]])
    pred = np.array([[1, 1, 2, 2]])  # both IoU = 0.5
    assert f1_score(gt, pred) == pytest.approx(2 / 3)


def test_seg_requires_more_than_half_of_the_reference():
    gt = np.array([[1, 1, 1, 1, 0, 0]])
    half = np.array([[1, 1, 0, 0, 0, 0]])
    more = np.array([[1, 1, 1, 0, 0, 0]])
    assert ctc_seg(gt, half) == 0.0
    assert ctc_det(gt, half) == 0.0  # AOGM-D = 10 (FN) + 1 (FP) > AOGM-D0 = 10
    assert ctc_seg(gt, more) == pytest.approx(3 / 4)
    assert ctc_det(gt, more) == 1.0


def test_aji_takes_best_iou_and_lowest_label_on_ties_and_counts_unmatched():
    gt = np.array([[1, 1, 1, 1, 0, 2, 2]])
    pred = np.array([[3, 3, 5, 5, 0, 0, 0]])  # tie: pred 3 wins; pred 5 unused; gt 2 alone
    # C = 2, U = |g1 ∪ p3| (4) + |g2| (2) + |p5| (2)
    assert aggregated_jaccard_index(gt, pred) == pytest.approx(2 / 8)


def test_empty_frames_are_nan_or_zero():
    z = np.zeros((3, 3), int)
    one = z.copy()
    one[1, 1] = 1
    r = evaluate_frame(z, z)
    assert math.isnan(r["F1"]) and math.isnan(r["SEG"]) and math.isnan(r["SBD"])
    r = evaluate_frame(one, z)
    assert r["F1"] == 0.0 and r["SEG"] == 0.0 and r["DET"] == 0.0 and r["SBD"] == 0.0
    r = evaluate_frame(z, one)
    assert r["F1"] == 0.0 and math.isnan(r["SEG"]) and r["SBD"] == 0.0 and r["DiC"] == 1


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"gt \(2, 2\) and pred \(2, 3\)"):
        overlap_table(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(TypeError, match="pred: expected an integer label array; got dtype float"):
        overlap_table(np.zeros((2, 2), int), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="gt: expected labels >= 0"):
        overlap_table(-np.ones((2, 2), int), np.zeros((2, 2), int))


def test_large_and_sparse_label_values():
    gt = np.array([[2**40, 2**40, 0, 7]], dtype=np.int64)
    pred = np.array([[2**31, 2**31, 0, 9]], dtype=np.int64)
    r = evaluate_frame(gt, pred)
    assert r["F1"] == 1.0 and r["AJI"] == 1.0
    gt = np.array([[2**62, 2**62, 0, 7]], dtype=np.uint64)
    assert evaluate_frame(gt, gt)["F1"] == 1.0


def _random_labels(rng, shape, n):
    from skimage.segmentation import watershed

    markers = np.zeros(shape, np.int32)
    idx = rng.choice(markers.size, n, replace=False)
    markers.flat[idx] = np.arange(1, n + 1)
    lab = watershed(np.zeros(shape), markers)
    lab[rng.random(shape) < 0.15] = 0
    return lab


@pytest.mark.parametrize("ignore", [False, True])
def test_voi_and_arand_match_skimage(ignore):
    rng = np.random.default_rng(1)
    gt, pred = _random_labels(rng, (64, 64), 20), _random_labels(rng, (64, 64), 25)
    ignore_labels = (0,) if ignore else ()
    split, merge = variation_of_information(gt, pred, ignore_gt_background=ignore)
    ref = sk_voi(gt, pred, ignore_labels=ignore_labels)
    assert (split, merge) == pytest.approx(tuple(ref), rel=1e-9)
    r = evaluate_frame(gt, pred, ignore_gt_background=ignore)
    assert r["ARAND"] == pytest.approx(sk_are(gt, pred, ignore_labels=ignore_labels)[0], rel=1e-9)


def test_sequence_aggregation_pools_counts():
    rng = np.random.default_rng(2)
    gt = np.stack([_random_labels(rng, (48, 48), k) for k in (5, 12, 30)])
    pred = np.stack([_random_labels(rng, (48, 48), k) for k in (6, 10, 33)])
    r = evaluate_sequence(gt, pred)
    c = r["counts"]
    assert c["n_gt"] == sum(f["n_gt"] for f in r["frames"])
    assert r["F1"] == pytest.approx(2 * c["TP"] / (2 * c["TP"] + c["FP"] + c["FN"]))
    assert r["SBD"] == pytest.approx(np.mean([f["SBD"] for f in r["frames"]]))
    assert r["DiC"] == pytest.approx(np.mean([f["DiC"] for f in r["frames"]]))
    # equal-size frames: pooled VOI is the frame mean
    assert r["VOI_split"] == pytest.approx(np.mean([f["VOI_split"] for f in r["frames"]]))
    # SEG is a mean over all reference objects, not over frames
    seg_sum = sum(f["SEG"] * f["n_gt"] for f in r["frames"])
    assert r["SEG"] == pytest.approx(seg_sum / c["n_gt"])
    # sparse reference: a mapping scores only its frames
    sparse = evaluate_sequence({0: gt[0], 2: gt[2]}, pred)
    assert [f["frame"] for f in sparse["frames"]] == [0, 2]
    assert sparse["frames"][1]["F1"] == r["frames"][2]["F1"]
    assert set(METRIC_NAMES) | {"frames", "counts"} == set(r)


def test_sequence_errors():
    a = np.zeros((2, 4, 4), int)
    with pytest.raises(ValueError, match="same number of frames; got 2 and 3"):
        evaluate_sequence(a, np.zeros((3, 4, 4), int))
    with pytest.raises(ValueError, match="pred: no frame 5"):
        evaluate_sequence({5: a[0]}, {0: a[0]})


def test_sequence_refuses_a_single_2d_image():
    """A ``(Y, X)`` pair was scored as Y one-pixel-high frames (F1 of rows, not of objects)."""
    gt = np.zeros((8, 8), int)
    gt[1:4, 1:4], gt[5:7, 5:7] = 1, 2
    with pytest.raises(ValueError, match=r"gt: frames must be \(Y, X\).*shape \(8,\).*gt\[None\]"):
        evaluate_sequence(gt, gt)
    assert evaluate_sequence(gt[None], gt[None])["counts"]["n_gt"] == 2


def test_a_thousand_objects_against_themselves_and_others():
    """A frame of 1,000 objects: all matched with itself, and counted right against another
    (its speed is benchmarks' business, not a test's)."""
    rng = np.random.default_rng(3)
    gt, pred = _random_labels(rng, (1024, 1024), 1000), _random_labels(rng, (1024, 1024), 1000)
    same = evaluate_frame(gt, gt)
    assert same["n_gt"] == same["n_pred"] == same["TP"] == 1000 and same["F1"] == 1.0
    r = evaluate_frame(gt, pred)
    assert r["n_gt"] == r["n_pred"] == 1000 and r["TP"] < 1000


# -- properties --------------------------------------------------------------------------------

labels_2d = st.integers(1, 6).flatmap(
    lambda n: st.lists(st.integers(0, n), min_size=36, max_size=36).map(
        lambda v: np.array(v).reshape(6, 6)
    )
)


@settings(max_examples=40, deadline=None)
@given(labels_2d)
def test_identical_labels_score_perfectly(lab):
    r = evaluate_frame(lab, lab)
    if lab.any():
        for k in ("F1", "AJI", "SEG", "DET", "PQ", "SBD"):
            assert r[k] == pytest.approx(1.0), k
    assert r["DiC"] == 0
    assert r["VOI_split"] == pytest.approx(0.0, abs=1e-12)
    assert r["VOI_merge"] == pytest.approx(0.0, abs=1e-12)
    assert r["ARAND"] == pytest.approx(0.0, abs=1e-12) or math.isnan(r["ARAND"])


def _permute(lab, seed):
    perm = np.random.default_rng(seed).permutation(np.arange(1, 50)) + 100
    lut = np.concatenate([[0], perm])
    return lut[lab]


@settings(max_examples=40, deadline=None)
@given(labels_2d, labels_2d, st.integers(0, 2**32 - 1))
def test_scores_ignore_label_values(gt, pred, seed):
    a = evaluate_frame(gt, pred)
    b = evaluate_frame(_permute(gt, seed), _permute(pred, seed + 1))
    for k in METRIC_NAMES:
        if k == "AJI":
            continue  # AJI breaks IoU ties by label: checked below without ties
        assert a[k] == pytest.approx(b[k], nan_ok=True), k


@settings(max_examples=40, deadline=None)
@given(labels_2d, labels_2d)
def test_symmetric_scores(gt, pred):
    a, b = evaluate_frame(gt, pred), evaluate_frame(pred, gt)
    for k in ("F1", "PQ", "SBD", "DiC", "ARAND"):
        assert a[k] == pytest.approx(b[k], nan_ok=True), k
    assert a["VOI_split"] == pytest.approx(b["VOI_merge"])
    assert 0.0 <= a["F1"] <= 1.0 or math.isnan(a["F1"])
    for k in ("AJI", "SEG", "DET", "PQ", "SBD"):
        assert 0.0 <= a[k] <= 1.0 or math.isnan(a[k]), k


def test_aji_permutation_invariant_without_ties():
    rng = np.random.default_rng(4)
    gt, pred = _random_labels(rng, (64, 64), 15), _random_labels(rng, (64, 64), 18)
    assert aggregated_jaccard_index(gt, pred) == pytest.approx(
        aggregated_jaccard_index(_permute(gt, 1), _permute(pred, 2))
    )


def test_single_metric_functions_reuse_a_table():
    t = overlap_table(GT, PRED)
    assert f1_score(table=t) == pytest.approx(0.8)
    assert panoptic_quality(table=t) == pytest.approx(evaluate_frame(GT, PRED)["PQ"])
    assert symmetric_best_dice(table=t)[1] == 1


# -- independent implementations ---------------------------------------------------------------


def _ctc_folders(tmp_path, gt_frames, res):
    """A GT folder (TRA = SEG = ``gt_frames``) and a RES folder, as the CTC tools read them."""
    import tifffile

    from napari_hemd.io.ctc import write_ctc_result

    gt_dir, res_dir = tmp_path / "01_GT", tmp_path / "01_RES"
    write_ctc_result(np.stack(gt_frames), gt_dir / "TRA")
    for p in (gt_dir / "TRA").glob("mask*.tif"):
        p.rename(p.with_name(p.name.replace("mask", "man_track")))
    (gt_dir / "TRA" / "res_track.txt").rename(gt_dir / "TRA" / "man_track.txt")
    (gt_dir / "SEG").mkdir()
    for t, f in enumerate(gt_frames):
        tifffile.imwrite(gt_dir / "SEG" / f"man_seg{t:03d}.tif", f.astype(np.uint16))
    write_ctc_result(res, res_dir)
    return gt_dir, res_dir


def test_seg_and_det_match_py_ctcmetrics(tmp_path):
    ctc_eval = pytest.importorskip("ctc_metrics.scripts.evaluate")
    rng = np.random.default_rng(5)
    gt = [_random_labels(rng, (80, 80), k) for k in (10, 14, 20)]
    res = np.stack([_random_labels(rng, (80, 80), k) for k in (9, 16, 25)])
    # a merge, a missed object and a split-off piece in frame 0
    res[0][gt[0] == 1] = 50
    res[0][gt[0] == 2] = 50
    gt_dir, res_dir = _ctc_folders(tmp_path, gt, res)
    ref = ctc_eval.evaluate_sequence(str(res_dir), str(gt_dir), ["SEG", "DET"], threads=1)
    ours = evaluate_sequence(np.stack(gt), res)
    assert ours["SEG"] == pytest.approx(ref["SEG"], abs=1e-12)
    assert ours["DET"] == pytest.approx(ref["DET"], abs=1e-12)
    assert ours["counts"]["det_NS"] > 0


@pytest.mark.shared
def test_real_ctc_gold_vs_silver_truth(shared_data):
    from napari_hemd.io.ctc import read_ctc_sequence

    seq = read_ctc_sequence(shared_data / "ctc" / "DIC-C2DH-HeLa" / "01")
    assert sorted(seq.gt_seg) == [2, 5, 21, 31, 33, 34, 39, 54, 67]
    r = evaluate_sequence(seq.gt_seg, seq.st_seg)
    assert [f["frame"] for f in r["frames"]] == sorted(seq.gt_seg)
    # silver truth is a good segmentation of these cells
    assert 0.8 < r["SEG"] < 1.0
    assert 0.8 < r["F1"] <= 1.0
    assert 0.9 < r["DET"] <= 1.0


@pytest.mark.shared
def test_real_ctc_seg_det_match_py_ctcmetrics(shared_data, tmp_path):
    ctc_eval = pytest.importorskip("ctc_metrics.scripts.evaluate")
    from napari_hemd.io.ctc import read_ctc_sequence, write_ctc_result

    gt_dir = shared_data / "ctc" / "DIC-C2DH-HeLa" / "01_GT"
    seq = read_ctc_sequence(gt_dir.parent / "01")
    st_stack = np.stack([seq.st_seg[t] for t in sorted(seq.st_seg)])
    res_dir = write_ctc_result(st_stack, tmp_path / "01_RES")
    ref = ctc_eval.evaluate_sequence(str(res_dir), str(gt_dir), ["SEG", "DET"], threads=1)
    assert evaluate_sequence(seq.gt_seg, st_stack)["SEG"] == pytest.approx(ref["SEG"], abs=1e-12)
    assert evaluate_sequence(seq.gt_tra, st_stack)["DET"] == pytest.approx(ref["DET"], abs=1e-12)
