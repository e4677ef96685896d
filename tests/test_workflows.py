"""Qt-free workflows: progress events, results, cancel, candidate swaps, undo/redo."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hemd.core.segment import HEMDResult
from napari_hemd.workflows import (
    EditHistory,
    best_match,
    candidate_path,
    choose_candidate,
    delete_label,
    merge_labels,
    next_free_id,
    relabel,
    run_workflow,
    segment_workflow,
)


def _two_blobs(t: int = 3) -> np.ndarray:
    """Two touching blobs joined by a lower-probability bridge: one root, two children."""
    p = np.zeros((t, 32, 48), np.float32)
    p[:, 8:24, 6:22] = 0.9
    p[:, 8:24, 26:42] = 0.9
    p[:, 12:20, 22:26] = 0.6
    return p


def test_segment_workflow_yields_progress_then_result():
    events = []
    res = run_workflow(segment_workflow(_two_blobs(), tau=0.5), lambda *e: events.append(e))
    assert isinstance(res, HEMDResult)
    assert res.labels.shape == (3, 32, 48)
    assert {e[0] for e in events} >= {"forests"}
    assert all(len(e) == 3 and e[1] <= e[2] for e in events)


def test_segment_workflow_baseline_returns_labels():
    lab = run_workflow(segment_workflow(_two_blobs(), "threshold", tau=0.5))
    assert isinstance(lab, np.ndarray) and lab.shape == (3, 32, 48)
    assert lab.max() == 1


def test_segment_workflow_errors_propagate():
    with pytest.raises(ValueError, match="method"):
        run_workflow(segment_workflow(_two_blobs(), "nope"))
    with pytest.raises(ValueError, match="prob"):
        run_workflow(segment_workflow(np.zeros((2, 2, 2, 2, 2), np.float32)))


def test_segment_workflow_close_cancels():
    gen = segment_workflow(np.repeat(_two_blobs(), 10, axis=0), tau=0.5)
    assert next(gen)[0] == "forests"
    gen.close()  # must not hang; the thread stops at its next report


def test_candidate_path_and_split_merge():
    prob = _two_blobs()
    res = run_workflow(segment_workflow(prob, tau=0.5, variant="paper"))
    f, s = res.forests[1], res.selections[1]
    rows = candidate_path(f, s, (16, 10))
    assert len(rows) == 2 and rows[0].threshold > rows[1].threshold  # leaf then root
    assert any(r.chosen for r in rows)
    assert candidate_path(f, s, (0, 0)) == []
    frame = res.labels[1]
    lab = int(frame[16, 10])
    root = rows[-1].node
    merged = choose_candidate(frame, f, root, lab, next_free_id(res.labels))
    assert (merged[f.mask(root)] == lab).all()
    assert len(np.unique(merged)) == 2  # background + one object
    leaf = rows[0].node
    split = choose_candidate(merged, f, leaf, lab, next_free_id(merged))
    assert len(np.unique(split[split > 0])) == 2  # the sibling became a new object
    assert (split[f.mask(leaf)] == lab).all()


def _brute_best(f, n, g):
    m = f.mask(n)
    ious = []
    for c in range(g.n_nodes):
        mc = g.mask(c)
        ious.append((m & mc).sum() / (m | mc).sum())
    return int(np.argmax(ious)), float(max(ious))


def test_best_match_in_both_neighbours():
    prob = _two_blobs(4)
    prob[2, 12:20, 22:26] = 0.95  # frame 2: the bridge is bright, the two blobs are one
    prob[3, :, 20:] = 0  # frame 3: the right blob is gone
    res = run_workflow(segment_workflow(prob, tau=0.5, variant="paper"))
    f1 = res.forests[1]
    for n in range(f1.n_nodes):
        for g in (res.forests[0], res.forests[2]):
            m = best_match(f1, n, g)
            node, iou = _brute_best(f1, n, g)
            assert m.iou == pytest.approx(iou) and m.node == node
    rows = candidate_path(
        f1, res.selections[1], (16, 34),
        left=(res.forests[0], res.selections[0]), right=(res.forests[2], res.selections[2]),
    )  # fmt: skip
    assert all(r.left is not None and r.right is not None for r in rows)
    assert rows[0].left.iou == pytest.approx(1.0)  # frame 0 is the same picture
    assert rows[0].right.iou < 1.0  # frame 2 has the blobs joined
    chosen_right = set(res.selections[2].nodes.tolist())
    assert all(r.right.chosen == (r.right.node in chosen_right) for r in rows)
    # nothing of frame 3 lies under the right blob of frame 1
    assert best_match(res.forests[2], rows[0].right.node, res.forests[3]) is not None
    assert best_match(f1, rows[0].node, res.forests[3]) is None
    assert candidate_path(f1, res.selections[1], (16, 34))[0].left is None  # not asked
    with pytest.raises(ValueError, match="other: expected a frame of shape"):
        best_match(f1, 0, run_workflow(segment_workflow(prob[:, :16], tau=0.5)).forests[0])


def test_label_edits_and_history():
    lab = np.zeros((2, 4, 4), np.uint32)
    lab[:, :2] = 1
    lab[:, 2:] = 2
    assert next_free_id(lab) == 3
    m = merge_labels(lab, [1, 2], frame=0)
    assert set(np.unique(m[0])) == {1} and set(np.unique(m[1])) == {1, 2}
    assert (delete_label(lab, 2) == 2).sum() == 0
    assert (relabel(lab, 2, 7) == 7).sum() == 16
    h = EditHistory()
    work = lab.copy()
    h.record("merge", work, m)
    work[...] = m
    assert h.undo(work) == "merge" and np.array_equal(work, lab)
    assert h.redo(work) == "merge" and np.array_equal(work, m)
    assert h.redo(work) is None
    assert h.record("noop", work, work.copy()) is None


def test_workflows_import_no_qt_or_torch():
    import subprocess
    import sys

    code = (
        "import sys, napari_hemd.workflows; "
        "print(sorted({'qtpy', 'napari', 'torch', 'PyQt6'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_project_round_trip(tmp_path):
    from napari_hemd.workflows import load_project, rebuild_workflow, save_project

    prob = _two_blobs()
    res = run_workflow(segment_workflow(prob, tau=0.5, variant="paper"))
    hist = EditHistory()
    edited = delete_label(res.labels, 1)
    hist.record("merge", res.labels, edited)
    hist.undo(edited.copy())  # one edit undone: redo stack non-empty
    hist.record("merge again", res.labels, edited)
    locked = {1: [int(res.forests[1].roots[0])]}
    out = save_project(
        tmp_path / "s.zarr",
        prob=prob,
        labels=edited,
        params=res.params,
        locked=locked,
        history=hist,
    )
    with pytest.raises(FileExistsError):
        save_project(out, prob=prob, labels=edited, params=res.params)
    back = load_project(out)
    np.testing.assert_array_equal(back["labels"], edited)
    np.testing.assert_array_equal(back["prob"], prob)
    assert back["locked"] == locked and back["params"]["tau"] == 0.5
    assert [e.name for e in back["history"].undo_stack] == ["merge again"]
    work = back["labels"].copy()
    assert back["history"].undo(work) == "merge again"
    np.testing.assert_array_equal(work, res.labels)
    rebuilt = run_workflow(rebuild_workflow(back["prob"], back["params"], back["locked"]))
    assert locked[1][0] in rebuilt.selections[1].nodes
    assert rebuilt.forests[1].n_nodes == res.forests[1].n_nodes


def test_saving_a_project_again_writes_only_the_frames_that_changed(tmp_path):
    """Autosave after an edit rewrites the edited frame's chunk; the others are the old files
    (hard links), and the folder reads back exactly, also after a frame emptied and a 2D array."""
    from pathlib import Path

    from napari_hemd.workflows import CHUNK_DIGESTS_KEY, load_project, save_project

    rng = np.random.default_rng(3)
    prob = rng.random((5, 32, 40), dtype=np.float32)
    labels = (prob > 0.7).astype(np.int32) * np.arange(1, 6, dtype=np.int32)[:, None, None]
    image = rng.integers(0, 4000, (5, 32, 40), dtype=np.uint16)
    out = save_project(tmp_path / "s.zarr", prob=prob, labels=labels, params={}, image=image)
    inode = {f.relative_to(out): f.stat().st_ino for f in out.rglob("c/*/*/*")}
    assert len(inode) == 15  # prob, labels, image: 5 frames each

    edited = labels.copy()
    edited[2, :10, :10] = 9
    edited[4] = 0  # a frame emptied: its chunk is no longer stored
    save_project(out, prob=prob, labels=edited, params={}, image=image, overwrite=True)
    after = {f.relative_to(out): f.stat().st_ino for f in out.rglob("c/*/*/*")}
    changed = sorted(str(k) for k in inode if after.get(k) != inode[k])
    assert changed == [str(Path("labels/c/2/0/0")), str(Path("labels/c/4/0/0"))]
    assert Path("labels/c/4/0/0") not in after
    back = load_project(out)
    np.testing.assert_array_equal(back["labels"], edited)
    np.testing.assert_array_equal(back["prob"], prob)
    np.testing.assert_array_equal(back["image"], image)

    # another type or shape is written anew, as is a project saved before digests were kept
    save_project(out, prob=prob[:4], labels=edited[:4], params={}, overwrite=True)
    np.testing.assert_array_equal(load_project(out)["labels"], edited[:4])
    import zarr

    zarr.open_group(str(out), mode="r+").attrs.pop(CHUNK_DIGESTS_KEY)
    one = save_project(out, prob=prob[0], labels=edited[0], params={}, overwrite=True)
    again = save_project(one, prob=prob[0], labels=labels[0], params={}, overwrite=True)
    np.testing.assert_array_equal(load_project(again)["labels"], labels[0])
    np.testing.assert_array_equal(load_project(again)["prob"], prob[0])


def test_the_undo_history_is_packed_and_older_projects_still_open(tmp_path):
    """The history is three flat arrays (an array per edit and part made saving 300 edits take
    3 s); a project of format 1 (those arrays) opens with the same history."""
    import zarr

    from napari_hemd.workflows import load_project, save_project

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, (3, 20, 24)).astype(np.uint32)
    prob = rng.random((3, 20, 24), dtype=np.float32)
    hist, work = EditHistory(), labels.copy()
    for k in range(40):
        before = work.copy()
        work[k % 3, k % 20, :] = k + 7
        hist.record(
            f"edit {k}", before, work.copy(), state=({"a": k}, {"a": k + 1}) if k % 2 else None
        )
    hist.undo(work)
    out = save_project(tmp_path / "p.zarr", prob=prob, labels=work, params={}, history=hist)
    root = zarr.open_group(str(out), mode="r")
    assert sorted(k for k in root.array_keys() if "history" in k or "undo" in k) == [
        "history_after", "history_before", "history_index",
    ]  # fmt: skip
    assert root.attrs["format"] == "napari-hemd project 2"

    def same(a, b):
        assert [e.name for e in a.undo_stack] == [e.name for e in b.undo_stack]
        assert [e.name for e in a.redo_stack] == [e.name for e in b.redo_stack]
        for x, y in zip(a.undo_stack + a.redo_stack, b.undo_stack + b.redo_stack, strict=True):
            for part in ("index", "before", "after"):
                np.testing.assert_array_equal(getattr(x, part), getattr(y, part))
                assert getattr(x, part).dtype == getattr(y, part).dtype or part == "index"

    back = load_project(out)
    same(back["history"], hist)
    work2 = back["labels"].copy()
    while back["history"].undo(work2):
        pass
    np.testing.assert_array_equal(work2, labels)
    # the same session as format 1 wrote it: an array per edit and part
    old = zarr.open_group(str(out), mode="r+")
    edits = []
    for entry in old.attrs["edits"]:
        stack, i, name, state, a, b, _ = entry
        for part in ("index", "before", "after"):
            old.create_array(f"{stack}_{i}_{part}", data=old[f"history_{part}"][a:b].astype(
                np.int64 if part == "index" else np.uint32))  # fmt: skip
        edits.append([stack, i, name, state])
    for part in ("index", "before", "after"):
        del old[f"history_{part}"]
    old.attrs.update({"edits": edits, "format": "napari-hemd project 1"})
    same(load_project(out)["history"], hist)


def _merged_pair_with_specks():
    """A merged object whose only split candidates are two specks at a high threshold:
    ``(prob, forest, frame labels, its label, one speck's node)``."""
    from napari_hemd.core.forest import build_candidate_forest

    p = np.zeros((40, 60), np.float32)
    p[10:30, 5:55] = 0.6  # one merged object
    p[18:21, 14:17] = 0.99  # a speck of each cell survives the highest thresholds
    p[18:21, 42:45] = 0.99
    f = build_candidate_forest(p, tau=0.5)
    root = int(f.node_map[20, 30])
    while f.parent[root] >= 0:
        root = int(f.parent[root])
    frame = f.labels_of([root]).astype(np.uint32)
    label = int(frame[20, 30])
    speck = int(f.node_map[19, 15])
    return p, f, frame, label, speck


def test_choosing_a_speck_child_splits_instead_of_erasing():
    """The inspector's case: the only split candidate of a merged pair is two specks at a high
    threshold; choosing one must give the rest of the parent's pixels to the pieces."""
    p, f, frame, label, speck = _merged_pair_with_specks()
    assert f.area[speck] <= 9
    out = choose_candidate(frame, f, speck, label, next_id=label + 1, prob=p)
    assert (out[frame > 0] > 0).all()  # nothing of the object dropped to background
    assert len(np.unique(out[out > 0])) == 2 and out[19, 15] == label and out[19, 43] != label
    assert (out[10:30, 5:28] == label).mean() > 0.9  # split near the middle
    old_way = choose_candidate(frame, f, speck, label, next_id=label + 1, fill=False)
    assert (old_way > 0).sum() < 30  # what users got before: two specks


@pytest.mark.parametrize("n_cells", [1, 2, 3, 5])
def test_sample_video_with_few_cells(n_cells):
    from napari_hemd.data.synthetic import nuclei_video

    v = nuclei_video(n_frames=4, shape=(64, 64), n_cells=n_cells)  # an odd count failed
    assert v["labels"].shape == (4, 64, 64) and v["labels"].max() >= 1


def test_keep_locked_objects_restores_a_filled_child_after_rerun():
    """A re-run selects a locked speck as its own region; the filled object survives."""
    from napari_hemd.workflows import keep_locked_objects

    p, f, frame, label, speck = _merged_pair_with_specks()
    chosen = choose_candidate(frame, f, speck, label, next_id=label + 1, prob=p)
    rerun = f.labels_of([speck]).astype(np.uint32)[None]  # H-EMD: the speck alone
    out = keep_locked_objects(rerun, chosen[None], [f], {0: [speck]}, p[None])
    mine = chosen == chosen[19, 15]
    assert (out[0][mine] > 0).all() and (out[0][mine] == out[0][19, 15]).all()
    assert out[0][19, 43] == 0  # the other piece was not locked: not brought back
    assert (rerun[0][mine] > 0).sum() < 10  # what the re-run alone gave


def test_candidate_path_says_why_a_merged_candidate_is_no_object():
    """Two cells touching in every frame: the inspector's path names the merged candidate."""
    import napari_hemd as nh

    p = np.zeros((40, 180), np.float32)
    for x in (70, 110, 150):
        p[10:30, x : x + 20] = 0.95
    p[10:30, 5:45] = 0.95
    p[10:30, 45:47] = 0.6
    p[10:30, 47:62] = 0.95
    res = nh.hemd(np.stack([p, p]))
    f, s = res.forests[0], res.selections[0]
    rows = candidate_path(f, s, (20, 20))
    assert rows[0].chosen and rows[-1].how == "touching cells"
    assert rows[-1].area == 1140 and not rows[-1].chosen
    assert s.split.tolist() == [rows[-1].node]
    assert nh.hemd(np.stack([p, p]), variant="paper").selections[0].split.size == 0


def test_locks_of_a_movie_and_of_a_time_lapse_of_stacks_as_json():
    """Frame -> nodes (a movie) and time -> slice -> nodes (stacks): integer keys in memory,
    string keys in JSON, and back."""
    import json

    from napari_hemd.workflows import jsonable_locked, locked_choices

    stacks = {1: {4: [7, 9]}, 3: {0: [2]}}
    movie = {5: [11, 12]}
    for locked in (stacks, movie):
        text = json.dumps(jsonable_locked(locked))
        assert locked_choices(json.loads(text)) == locked
    assert jsonable_locked(stacks) == {"1": {"4": [7, 9]}, "3": {"0": [2]}}
    assert locked_choices({"2": ["3", 4]}) == {2: [3, 4]} and locked_choices(None) == {}
    copy = locked_choices(stacks)
    copy[1][4].append(1)
    assert stacks[1][4] == [7, 9]  # a copy: an edit's state is not changed behind its back


def test_project_round_trip_with_locks_per_stack(tmp_path):
    from napari_hemd.workflows import load_project, save_project

    labels = np.zeros((2, 3, 8, 8), np.uint32)
    locked = {1: {2: [5, 6]}}
    hist = EditHistory()
    edited = labels.copy()
    edited[1, 2, 2:4, 2:4] = 3
    hist.record("use candidate 5 (time 1, slice 2)", labels, edited,
                state=({"hemd_locked": {}}, {"hemd_locked": locked}))  # fmt: skip
    out = save_project(
        tmp_path / "s.zarr", prob=np.zeros(labels.shape, np.float32), labels=edited,
        params={"tau": 0.5}, locked=locked, history=hist,
    )  # fmt: skip
    back = load_project(out)
    assert back["locked"] == locked
    assert back["history"].undo_stack[0].state == ({"hemd_locked": {}}, {"hemd_locked": locked})


def test_replace_locks_keeps_the_choices_a_new_one_does_not_overlap():
    from napari_hemd.workflows import replace_locks

    res = run_workflow(segment_workflow(_two_blobs(), tau=0.5, variant="paper"))
    f = res.forests[1]
    root = int(f.roots[0])
    left, right = (int(n) for n in f.children(root))
    assert replace_locks([left], f, [right]) == [left, right]  # siblings: both stay
    assert replace_locks([left, right], f, [root]) == [root]  # the parent replaces both
    assert replace_locks([root], f, [left, right]) == [left, right]
    assert replace_locks([left], f, [left]) == [left]


def test_match_ids_keeps_the_ids_of_the_objects_replaced():
    from napari_hemd.workflows import match_ids

    old = np.zeros((2, 20, 30), np.uint32)
    old[:, 2:8, 2:8] = 5  # kept as it was
    old[:, 10:18, 2:22] = 7  # split in two: each part less than half of it
    old[:, 2:8, 20:28] = 9  # shifted a little
    new = np.zeros_like(old)
    new[:, 2:8, 2:8] = 1
    new[:, 10:18, 2:11] = 2
    new[:, 10:18, 12:21] = 3
    new[:, 3:8, 20:28] = 4
    new[1, 15:19, 22:26] = 6  # a new object
    out, kept, fresh = match_ids(new, old, next_id=12)
    assert (kept, fresh) == (2, 3)
    assert (out[new == 1] == 5).all() and (out[new == 4] == 9).all()
    assert {int(out[new == i][0]) for i in (2, 3, 6)} == {12, 13, 14}
    assert (out[new == 0] == 0).all() and out.dtype == np.uint32
    # one to one: with a lower bar, the half that overlaps best takes the id, the other a new one
    wide = new.copy()
    wide[:, 10:18, 12:21] = 0
    wide[:, 10:18, 13:21] = 3
    out, kept, fresh = match_ids(wide, old, next_id=12, min_iou=0.3)
    assert (out[wide == 2] == 7).all() and (out[wide == 3] == 12).all()
    with pytest.raises(ValueError, match="same shape"):
        match_ids(new[0], old, next_id=12)


def test_rerun_stacks_workflow_reruns_only_the_locked_stack():
    """A lock in one slice of one stack: that stack re-run (its other slices follow the split),
    its other objects keep their ids; the other stacks are not returned (nor read)."""
    from napari_hemd.core.linking import link_labels
    from napari_hemd.workflows import rerun_stacks_workflow, split_siblings, stack_rebuild_params

    pair = np.zeros((5, 32, 64), np.float32)  # a stack: slices of two blobs with a bridge
    pair[:, 8:24, 6:22] = 0.9
    pair[:, 8:24, 26:42] = 0.9
    pair[:, 12:20, 22:26] = 0.6
    pair[:, 10:20, 48:58] = 0.9  # and a lone one
    prob = np.stack([pair, pair, pair])
    params = dict(tau=0.5, variant="paper", link=True)
    results = [run_workflow(segment_workflow(p, **params)) for p in prob]
    labels, _ = link_labels(np.stack([r.labels for r in results]))
    before = labels.copy()
    f = results[1].forests[2]
    root = int(f.node_map[16, 10])
    while f.parent[root] >= 0:
        root = int(f.parent[root])
    child = int(f.node_map[16, 10])
    while f.parent[child] != root:
        child = int(f.parent[child])
    frame = labels[1, 2]
    label = int(frame[16, 10])
    siblings = split_siblings(f, child, frame == label)
    labels[1, 2] = choose_candidate(frame, f, child, label, next_free_id(labels), prob=prob[1, 2])
    locked = {1: {2: [child, *siblings]}, 2: {}}

    class OnlyStack1:  # reading another stack's probability would be a bug
        shape = prob.shape

        def __getitem__(self, t):
            assert t == 1
            return prob[t]

    events = []
    out = run_workflow(
        rerun_stacks_workflow(OnlyStack1(), labels, stack_rebuild_params(results[1]), locked),
        lambda *e: events.append(e),
    )
    assert list(out) == [1] and events and events[0][0].startswith("time 1 (1/1): ")
    new = out[1].labels
    assert child in out[1].result.selections[2].nodes
    for z in range(5):  # the split propagated to every slice: two objects where one was
        ids = np.unique(new[z][before[1, z] == label])
        assert len(ids[ids > 0]) == 2, z
    lone = int(before[1, 0, 15, 52])
    assert (new[before[1] == lone] == lone).all() and (out[1].kept, out[1].fresh) == (2, 1)
    # the part the user clicked is over half of the object it was (IoU 0.53): it keeps the id
    assert (new[2][f.mask(child)] == label).all()
    assert set(np.unique(new)) == {0, lone, label, int(labels.max()) + 1}


def test_split_by_seeds_gives_each_seed_its_nucleus():
    """Three touching nuclei of the sample as one object, a seed on two of them: the second
    seed sits off the object's peak, on a slope (a plain watershed gave it 5 of 104 px)."""
    from napari_hemd.data.synthetic import nuclei_video
    from napari_hemd.workflows import split_by_seeds

    video = nuclei_video()
    gt, prob = np.asarray(video["labels"][5]), np.asarray(video["prob"][5])
    merged = np.where(np.isin(gt, [2, 13, 16]), 7, 0).astype(np.uint32)
    seeds = [np.argwhere(gt == g).mean(0).round().astype(int) for g in (2, 13)]
    for p in (None, prob):  # the object's shape alone, and with its probability
        out = split_by_seeds(merged, seeds, 8, prob=p)
        assert set(np.unique(out)) == {0, 7, 8}
        assert (out[gt == 13] == 8).mean() > 0.95  # the nucleus clicked, nearly whole
        assert (out[gt == 2] == 7).mean() > 0.9 and (out[gt == 16] == 7).all()


def test_split_seeds_off_the_frame_or_not_numbers_are_named_plainly():
    """Seeds from clicks: NaN gave numpy's 'index -9223372036854775808 is out of bounds', a
    seed past the edge wrapped around or failed the same way, and messages showed
    'np.int64(36)'; now each is named in plain numbers, and sub-pixel clicks are rounded."""
    from napari_hemd.workflows import split_by_seeds

    frame = np.zeros((20, 20), np.uint32)
    frame[5:15, 5:15] = 3
    for seeds, message in (
        ([[0, 0], [6, 6]], r"the first seed \[0, 0\] is on background"),
        ([[6, 6], [np.nan, 3]], r"must be finite numbers; got \[\[6.0, 6.0\], \[nan, 3.0\]\]"),
        ([[6, 6], [25, 3]], r"\[\[25, 3\]\] lie outside the frame \(shape \(20, 20\)\)"),
        ([[6, 6], [-1, 3]], r"\[\[-1, 3\]\] lie outside the frame"),
    ):
        with pytest.raises(ValueError, match=message):
            split_by_seeds(frame, seeds, 10)
    out = split_by_seeds(frame, [[6.4, 6.2], [13.3, 13.0]], 10)
    assert set(np.unique(out)) == {0, 3, 10} and out[6, 6] == 3 and out[13, 13] == 10
