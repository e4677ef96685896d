from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_hemd.cli import main
from napari_hemd.core.metrics import METRIC_NAMES, evaluate_sequence
from napari_hemd.io.ctc import write_ctc_result


@pytest.fixture
def stacks(tmp_path):
    rng = np.random.default_rng(0)
    gt = np.zeros((3, 32, 32), np.uint16)
    for t in range(3):
        for k in range(1, 6):
            y, x = rng.integers(2, 26, 2)
            gt[t, y : y + 5, x : x + 5] = k
    pred = gt.copy()
    pred[1][pred[1] == 2] = 0  # a missed object
    pred[2, :3, :3] = 9  # a false positive
    tifffile.imwrite(tmp_path / "gt.tif", gt, photometric="minisblack")
    tifffile.imwrite(tmp_path / "pred.tif", pred, photometric="minisblack")
    return tmp_path, gt, pred


def _run(capsys, *argv):
    rc = main(["evaluate", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_json_matches_library(stacks, capsys):
    d, gt, pred = stacks
    rc, out, _ = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "pred.tif", "--json")
    assert rc == 0
    res = json.loads(out)
    assert set(METRIC_NAMES) | {"frames"} <= set(res)
    ref = evaluate_sequence(gt, pred)
    for k in METRIC_NAMES:
        assert res[k] == pytest.approx(ref[k])
    assert [f["frame"] for f in res["frames"]] == [0, 1, 2]


def test_table_has_a_row_per_frame_and_all(stacks, capsys):
    d, _, _ = stacks
    rc, out, _ = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "pred.tif")
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("| frame | F1 | AJI | SEG | DET |")
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["0", "1", "2", "all"]


def test_sparse_ctc_reference_and_result_folder(stacks, capsys):
    d, gt, pred = stacks
    seg = d / "01_GT" / "SEG"
    seg.mkdir(parents=True)
    tifffile.imwrite(seg / "man_seg001.tif", gt[1], photometric="minisblack")
    tifffile.imwrite(seg / "man_seg002.tif", gt[2], photometric="minisblack")
    write_ctc_result(pred, d / "01_RES")
    for gt_arg in (d / "01_GT", seg):
        rc, out, _ = _run(capsys, "--gt", gt_arg, "--pred", d / "01_RES", "--json")
        assert rc == 0
        res = json.loads(out)
        assert [f["frame"] for f in res["frames"]] == [1, 2]
        ref = evaluate_sequence({1: gt[1], 2: gt[2]}, pred)
        assert res["F1"] == pytest.approx(ref["F1"])


def test_zarr_and_volume(stacks, capsys):
    zarr = pytest.importorskip("zarr")
    d, _, pred = stacks
    z = zarr.open_array(str(d / "pred.zarr"), mode="w", shape=pred.shape, dtype=pred.dtype)
    z[:] = pred
    rc, out, _ = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "pred.zarr", "--json")
    assert rc == 0 and len(json.loads(out)["frames"]) == 3
    rc, out, _ = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "pred.tif", "--json", "--volume")
    assert rc == 0 and len(json.loads(out)["frames"]) == 1


def test_user_errors_are_one_line(stacks, capsys):
    d, gt, _ = stacks
    rc, _, err = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "missing.tif")
    assert rc == 2 and err.count("\n") == 1 and "--pred" in err and "does not exist" in err
    tifffile.imwrite(d / "short.tif", gt[:2], photometric="minisblack")
    rc, _, err = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "short.tif")
    assert rc == 2 and "reference frame(s) [2]" in err and "Traceback" not in err
    # whose count is whose: said for both, and the way out
    assert "--gt has 3 frame(s) to score (0-2), --pred has 2 (0-1)" in err
    assert "--frames START:STOP" in err and err.count("\n") == 1
    # float labels: whole numbers (Fiji's 32-bit label images) are read as such, others refused
    tifffile.imwrite(d / "float.tif", gt.astype(np.float32), photometric="minisblack")
    rc, out, err = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "float.tif", "--json")
    assert rc == 0 and json.loads(out)["F1"] == 1.0 and "read as integers" in err
    tifffile.imwrite(d / "half.tif", gt.astype(np.float32) / 2, photometric="minisblack")
    rc, _, err = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "half.tif")
    assert rc == 2 and "--pred" in err and "not whole numbers (e.g." in err


def test_frames_scores_part_of_a_longer_reference(stacks, capsys):
    d, gt, pred = stacks
    tifffile.imwrite(d / "first2.tif", pred[:2], photometric="minisblack")
    tifffile.imwrite(d / "last2.tif", pred[1:], photometric="minisblack")
    # the first frames: matched by number
    rc, out, err = _run(
        capsys, "--gt", d / "gt.tif", "--pred", d / "first2.tif", "--frames", ":2", "--json"
    )
    assert rc == 0 and [f["frame"] for f in json.loads(out)["frames"]] == [0, 1]
    assert json.loads(out)["F1"] == pytest.approx(evaluate_sequence(gt[:2], pred[:2])["F1"])
    # later frames: a stack of exactly that many is aligned to START, said so
    for frames in ("1:3", "1:"):
        rc, out, err = _run(
            capsys, "--gt", d / "gt.tif", "--pred", d / "last2.tif", "--frames", frames, "--json"
        )
        assert rc == 0 and [f["frame"] for f in json.loads(out)["frames"]] == [1, 2]
        ref = evaluate_sequence({1: gt[1], 2: gt[2]}, {1: pred[1], 2: pred[2]})
        assert json.loads(out)["F1"] == pytest.approx(ref["F1"])
        assert "--gt frames 1-2 against --pred frames 0-1" in err
    # a full-length result: matched by number, nothing shifted
    rc, out, err = _run(
        capsys, "--gt", d / "gt.tif", "--pred", d / "pred.tif", "--frames", "1:", "--json"
    )
    assert rc == 0 and [f["frame"] for f in json.loads(out)["frames"]] == [1, 2] and not err
    for bad, said in (
        ("2:1", "0 <= START < STOP"),
        ("a:b", "must be START:STOP"),
        ("7:9", "no frame there"),
    ):
        rc, _, err = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "pred.tif", "--frames", bad)
        assert rc == 2 and said in err and "--frames" in err and err.count("\n") == 1


def test_a_ctc_folder_of_a_window_numbered_from_0_is_aligned_by_frames(stacks, tmp_path, capsys):
    """A window of a movie (frames 3-4) exported from a stack of those frames is a CTC folder
    numbered from 0 (mask000-001): --frames START:STOP failed on it too, no way out (audit
    18); a folder numbered from 0, apart from the span, that exactly fills it is taken as those
    frames. One numbered as the movie's own frames is never shifted (the review)."""
    from napari_hemd.io.ctc import write_ctc_result

    _, gt, pred = stacks
    gt6, pred6 = np.concatenate([gt, gt]), np.concatenate([pred, pred])
    tifffile.imwrite(tmp_path / "gt6.tif", gt6, photometric="minisblack")
    folder = write_ctc_result(pred6[3:5], tmp_path / "window")
    rc, _, err = _run(capsys, "--gt", tmp_path / "gt6.tif", "--pred", folder)
    assert rc == 2 and "masks numbered apart (from 0 ...) are taken as the reference" in err
    args = ["--gt", tmp_path / "gt6.tif", "--pred", folder, "--frames", "3:5", "--json"]
    rc, out, err = _run(capsys, *args)
    assert rc == 0 and [f["frame"] for f in json.loads(out)["frames"]] == [3, 4]
    ref = evaluate_sequence({3: gt6[3], 4: gt6[4]}, {3: pred6[3], 4: pred6[4]})
    assert json.loads(out)["F1"] == pytest.approx(ref["F1"])
    assert "--gt frames 3-4 against --pred masks 000-001" in err
    rc, _, err = _run(capsys, "--gt", tmp_path / "gt6.tif", "--pred", folder, "--frames", "2:5")
    assert rc == 2  # three frames asked of two masks: not aligned by guess
    own = write_ctc_result(pred6[2:4], tmp_path / "own", first_frame=2)  # mask002-003
    rc, _, err = _run(capsys, "--gt", tmp_path / "gt6.tif", "--pred", own, "--frames", "4:6")
    assert rc == 2 and "has no frame for reference frame(s) [4, 5]" in err


@pytest.mark.parametrize("arg", ["--gt", "--pred"])
def test_a_raw_image_is_refused_as_labels(tmp_path, capsys, arg):
    """Raw frames given as labels were scored as hundreds of "objects" without a word."""
    from napari_hemd.data.synthetic import nuclei_video

    sample = nuclei_video(n_frames=3, shape=(96, 96), n_cells=5)
    tifffile.imwrite(tmp_path / "raw.tif", sample["image"], photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", sample["labels"], photometric="minisblack")
    files = {"--gt": tmp_path / "labels.tif", "--pred": tmp_path / "labels.tif"}
    files[arg] = tmp_path / "raw.tif"
    rc, out, err = _run(capsys, "--gt", files["--gt"], "--pred", files["--pred"])
    assert rc == 2 and not out and err.count("\n") == 1
    assert (
        f"error: {arg}: {str(tmp_path / 'raw.tif')!r} looks like a raw image, not instance " in err
    )
    rc, _, _ = _run(capsys, "--gt", tmp_path / "labels.tif", "--pred", tmp_path / "labels.tif")
    assert rc == 0


@pytest.mark.shared
def test_real_raw_frames_are_refused_as_reference(shared_data, capsys):
    seq = shared_data / "ctc" / "Fluo-N2DL-HeLa"
    rc, _, err = _run(capsys, "--gt", seq / "01", "--pred", seq / "01_ST")
    assert rc == 2 and "--gt: " in err and "looks like a raw image" in err


@pytest.mark.shared
def test_real_result_of_a_few_frames_of_a_long_reference(shared_data, tmp_path, capsys):
    """The audit's case: 4 frames segmented, scored against the 92-frame silver truth."""
    from napari_hemd.io.ctc import read_ctc_labels

    st = shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01_ST"
    ref = read_ctc_labels(st / "SEG")
    tifffile.imwrite(tmp_path / "four.tif", np.stack([ref[t] for t in range(10, 14)]))
    rc, _, err = _run(capsys, "--gt", st, "--pred", tmp_path / "four.tif")
    assert rc == 2 and "--gt has 92 frame(s) to score (0-91), --pred has 4 (0-3)" in err
    rc, out, err = _run(
        capsys, "--gt", st, "--pred", tmp_path / "four.tif", "--frames", "10:14", "--json"
    )
    res = json.loads(out)
    assert rc == 0 and [f["frame"] for f in res["frames"]] == [10, 11, 12, 13]
    assert res["F1"] == 1.0 and "--gt frames 10-13 against --pred frames 0-3" in err


@pytest.mark.shared
def test_real_gold_vs_silver(shared_data, hela_gt_frames, capsys):
    seq = shared_data / "ctc" / "Fluo-N2DL-HeLa"
    rc, out, err = _run(capsys, "--gt", seq / "01_GT", "--pred", seq / "01_ST", "--json")
    assert rc == 0
    res = json.loads(out)
    # the newcomer's stumble: a sparse gold truth is detected and SEG pointed at
    assert res["sparse_reference"] is True
    assert "reference looks sparse" in err and "SEG" in err
    # the whole sequence (92 frames) has gold truth on 28 of them
    assert [f["frame"] for f in res["frames"]] == hela_gt_frames
    # gold truth annotates only some cells on most frames: SEG (recall-like) stays high
    assert res["SEG"] > 0.8


def test_a_zarr_result_scores_as_one_volume_or_one_image(stacks, tmp_path, capsys):
    """``--volume`` with a zarr (a 3D ``segment -o x.zarr``) and a 2D zarr crashed: a lazy zarr
    array takes no ``[None]``."""
    zarr = pytest.importorskip("zarr")
    d, gt, pred = stacks
    zarr.open_array(str(d / "vol.zarr"), mode="w", shape=pred.shape, dtype=pred.dtype)[:] = pred
    rc, out, _ = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "vol.zarr", "--json", "--volume")
    rc_tif, out_tif, _ = _run(
        capsys, "--gt", d / "gt.tif", "--pred", d / "pred.tif", "--json", "--volume"
    )
    assert rc == rc_tif == 0 and json.loads(out) == json.loads(out_tif)
    zarr.open_array(str(d / "one.zarr"), mode="w", shape=pred[1].shape, dtype=pred.dtype)[:] = pred[
        1
    ]
    tifffile.imwrite(d / "gt1.tif", gt[1], photometric="minisblack")
    rc, out, _ = _run(capsys, "--gt", d / "gt1.tif", "--pred", d / "one.zarr", "--json")
    assert rc == 0 and json.loads(out)["F1"] == pytest.approx(8 / 9)  # 4 of 5 found


def test_one_stack_recorded_as_such_is_scored_as_one_volume(stacks, capsys):
    """Labels that segment recorded as one 3D stack (``planes: 3``) were scored slice by slice
    as frames unless --volume was given; measure already read them as one volume."""
    from napari_hemd.io import write_labels

    d, _, pred = stacks
    write_labels(pred, d / "stack.tif", metadata={"planes": 3}, axes="ZYX")
    rc, out, err = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "stack.tif", "--json")
    want = _run(capsys, "--gt", d / "gt.tif", "--pred", d / "pred.tif", "--json", "--volume")[1]
    assert rc == 0 and "scored as one volume" in err
    assert json.loads(out) == json.loads(want) and len(json.loads(out)["frames"]) == 1


def test_folders_numbered_without_leading_zeros_pair_their_frames(stacks, tmp_path, capsys):
    """Audit 37: folders of img8, img9, img10 and img8_seg ... were read in plain name order
    (img10, img8, img9 against img10_seg, img8_seg, img9_seg): identical labels scored
    wrongly. Numbers sort as numbers; a result missing in the middle is named, not paired with
    the wrong reference; names that number no frames are paired as before (review 33c)."""
    _, gt, _ = stacks
    frames = [np.asarray(f) for f in gt[:3]]
    for sub in ("gt", "pred", "short", "from0", "ids"):
        (tmp_path / sub).mkdir()
    for n, frame in zip((8, 9, 10), frames, strict=True):
        tifffile.imwrite(tmp_path / "gt" / f"img{n}.tif", frame)
        tifffile.imwrite(tmp_path / "pred" / f"img{n}_seg.tif", frame)
        if n != 9:
            tifffile.imwrite(tmp_path / "short" / f"img{n}.tif", frame)
        tifffile.imwrite(tmp_path / "from0" / f"m{n - 8}.tif", frame)
    for hexid, frame in zip(("1a2", "2b755527", "3c42"), frames, strict=True):
        tifffile.imwrite(tmp_path / "ids" / f"img_{hexid}.tif", frame)  # ids, not frames
    from napari_hemd.io import read_stack
    from napari_hemd.io.tiff import natural_key

    np.testing.assert_array_equal(read_stack(tmp_path / "gt"), np.stack(frames))
    for names in (["t1.tif", "t01.tif"], ["t01.tif", "t1.tif"]):  # ties: by name, not listing
        assert sorted(names, key=natural_key) == ["t01.tif", "t1.tif"]
    args = ["evaluate", "--gt", str(tmp_path / "gt"), "--json"]
    for pred in ("pred", "from0", "ids"):  # paired in order: identical labels score 1
        assert main([*args, "--pred", str(tmp_path / pred)]) == 0, pred
        assert json.loads(capsys.readouterr().out)["F1"] == 1.0, pred
    assert main([*args, "--pred", str(tmp_path / "short")]) == 2
    assert "--pred has no file numbered 9" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "short" / "img11.tif", frames[2])  # as many, out of step
    assert main([*args, "--pred", str(tmp_path / "short")]) == 2
    assert "--pred's files skip from number 8 to 10" in capsys.readouterr().err
    (tmp_path / "short" / "img8.tif").unlink()  # one more than --gt, in a row: as before
    tifffile.imwrite(tmp_path / "short" / "img9.tif", frames[1])
    tifffile.imwrite(tmp_path / "short" / "img8.tif", frames[0])
    assert main([*args, "--pred", str(tmp_path / "short")]) == 2
    assert "Traceback" not in capsys.readouterr().err
