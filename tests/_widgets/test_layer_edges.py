"""Widgets on layers that are not a whole in-memory uint32 movie: a frame range placed at later
frames, a layer read from a zarr store (Large data), napari's own uint8 labels layers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hemd._widgets import ProofreadWidget, SegmentWidget


def _range_layer(viewer, qtbot, first: int, last: int):
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.frames.value = "range"
    seg.first.value, seg.last.value = first, last
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    return viewer.layers[f"nuclei video labels (frames {first}-{last})"]


def test_current_frame_of_a_frame_range_is_the_one_on_screen(viewer, qtbot, errors):
    """Segment on frames 1-5 gives a layer placed at frame 1: at the viewer's frame 2 Delete
    edited the layer's frame 2 (the viewer's 3); at the viewer's last frames it raised."""
    part = _range_layer(viewer, qtbot, 1, 5)
    proof = ProofreadWidget(viewer)
    proof.labels.value = part
    viewer.dims.set_current_step(0, 2)  # the layer's frame 1
    before = part.data.copy()
    proof.ids.value = str(int(np.unique(before[1])[1]))
    assert proof.delete()
    changed = [t for t in range(len(before)) if not np.array_equal(part.data[t], before[t])]
    assert changed == [1]
    viewer.dims.set_current_step(0, 5)  # the layer's last frame, 4
    ids = [int(i) for i in np.unique(part.data[4])[1:3]]
    proof.ids.value = " ".join(map(str, ids))
    assert proof.merge() and not errors
    assert ids[1] not in part.data[4] and ids[1] in part.data[3]
    yx = np.argwhere(part.data[4] == ids[0])[[0, -1]].astype(float)
    seeds = viewer.add_points(np.c_[np.full(2, 5.0), yx])  # at the viewer's frame 5
    assert proof.split(seeds) and not errors
    viewer.dims.set_current_step(0, 0)  # before the layer's frames: said, nothing edited
    kept = part.data.copy()
    assert not proof.delete([ids[0]])
    assert "holds frames 1-5 of the viewer; it shows frame 0" in errors[-1]
    np.testing.assert_array_equal(part.data, kept)


def test_a_layer_read_from_disk_is_refused(make_napari_viewer, tmp_path, errors):
    """A Large data result (zarr, opened read-only) took Delete as done, recorded it for undo
    and changed nothing (current frame), or raised (all frames)."""
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(str(tmp_path / "l.zarr"), shape=(2, 16, 16), dtype=np.uint32)
    z[:, 2:6, 2:6] = 1
    viewer = make_napari_viewer()
    layer = viewer.add_labels(zarr.open_array(str(tmp_path / "l.zarr"), mode="r"), name="big")
    proof = ProofreadWidget(viewer)
    proof.labels.value = layer
    for scope in ("current frame", "all frames"):
        proof.scope.value = scope
        assert not proof.delete([1])
        assert "is read from disk" in errors[-1]
    assert "hemd_history" not in layer.metadata and (z[:] == 1).sum() == 32


def test_uint8_layers_grow_to_uint32_for_larger_ids(make_napari_viewer, errors):
    """napari's New labels layer is uint8: Relabel to 300 raised OverflowError, and painting a
    new object after id 255 raised in napari."""
    viewer = make_napari_viewer()
    data = np.zeros((2, 32, 32), np.uint8)
    data[:, 4:10, 4:10], data[:, 20:26, 20:26] = 1, 255
    layer = viewer.add_labels(data, name="painted")
    proof = ProofreadWidget(viewer)
    proof.labels.value = layer
    proof.scope.value = "all frames"
    assert proof.paint_new() == 256 and layer.data.dtype == np.uint32
    layer = viewer.add_labels(data.copy(), name="painted again")
    proof.labels.value = layer
    proof.ids.value = "1"
    assert proof.relabel(new=300) and not errors
    assert layer.data.dtype == np.uint32 and (layer.data == 300).sum() == 72
    assert proof.undo() and (layer.data == 1).sum() == 72  # undone in the converted layer


def test_segment_keeps_a_painted_layer_of_its_name_one_undo_away(viewer, qtbot, errors):
    """Segment over the user's hand-painted 'nuclei video labels' (uint8, napari's own type)
    replaced the painting with no undo; a layer of another shape was overwritten too."""
    hand = np.zeros(viewer.layers["nuclei video probability"].data.shape, np.uint8)
    hand[:, 10:40, 10:40] = 7
    painted = viewer.add_labels(hand.copy(), name="nuclei video labels")
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    assert viewer.layers["nuclei video labels"] is painted and painted.data.dtype == np.uint32
    assert painted.data.max() > 7  # the result
    proof = ProofreadWidget(viewer)
    proof.labels.value = painted
    assert proof.undo() == "segment (hemd)"
    np.testing.assert_array_equal(painted.data, hand)
    painted.name = "painted"
    other = viewer.add_labels(hand[:2].copy(), name="nuclei video labels")  # another shape
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    np.testing.assert_array_equal(other.data, hand[:2])  # kept
    assert viewer.layers["nuclei video labels [1]"].data.max() > 7 and not errors


def test_a_frame_range_is_inspected_and_reopened_where_it_sits(viewer, qtbot, tmp_path, errors):
    """The inspector's outline of a frame-range layer sat at frame 0 (3 frames early) and Next
    uncertain stepped the viewer to the layer's own frame number; a reopened project put the
    layer at frame 0."""
    from napari_hemd._widgets import InspectorWidget, ProjectWidget

    part = _range_layer(viewer, qtbot, 3, 5)
    assert part.translate[0] == 3
    insp = InspectorWidget(viewer)
    insp.labels.value = part
    yx = np.argwhere(part.data[1] > 0)[0]
    assert insp.inspect(1, (int(yx[0]), int(yx[1])))
    insp.preview_row(0)
    preview = viewer.layers[f"{part.name} preview"]
    assert tuple(preview.translate) == tuple(part.translate)
    if insp.next_uncertain(margin=1.0) is not None:  # every object counts as uncertain
        assert 3 <= viewer.dims.current_step[0] <= 5
    proj = ProjectWidget(viewer)
    proj.labels.value = part
    out = proj.save(tmp_path / "range")
    viewer.layers.clear()
    with qtbot.waitSignal(proj.open(out).finished, timeout=120_000):
        pass
    back = viewer.layers[part.name]
    assert back.translate[0] == 3 and not errors
    res = back.metadata["hemd_result"]  # rebuilt from the frames the layer holds
    assert len(res.forests) == 3


def _lock_one(viewer, labels, frame=1):
    """An inspector on ``labels`` that used (locked) H-EMD's first object of ``frame``."""
    from napari_hemd._widgets import InspectorWidget

    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    res = labels.metadata["hemd_result"]
    node = int(res.selections[frame].nodes[0])
    pixel = tuple(int(v) for v in np.argwhere(res.forests[frame].mask(node))[0])
    rows = insp.inspect(frame, pixel)
    insp.use_candidate(next(i for i, r in enumerate(rows) if r.chosen))
    return insp, node


def test_lock_and_rerun_of_a_frame_range_stays_in_it(viewer, qtbot, errors):
    """Lock choices and re-run H-EMD on a frame-range layer ran on the whole movie into a new
    layer named after the map, the locks applied to the movie's first frames."""

    part = _range_layer(viewer, qtbot, 3, 5)
    insp, node = _lock_one(viewer, part)
    names = [ly.name for ly in viewer.layers]
    with qtbot.waitSignal(insp.lock_and_rerun().finished, timeout=120_000):
        pass
    assert [ly.name for ly in viewer.layers if "preview" not in ly.name] == [
        n for n in names if "preview" not in n
    ]  # no new layer
    assert part.data.shape[0] == 3 and part.translate[0] == 3
    new = part.metadata["hemd_result"]
    assert len(new.forests) == 3 and node in new.selections[1].nodes  # the lock held
    assert not errors


def test_lock_and_rerun_writes_into_its_layer_renamed_meanwhile(viewer, qtbot, errors):
    """Audit 36: the labels layer renamed while Lock choices and re-run ran: the result went
    to a new layer of the old name (no undo history, the locked objects' pixels not kept), the
    renamed layer left as it was. It goes into the layer the run was started on."""
    from napari_hemd._widgets._layer_state import history_of

    part = _range_layer(viewer, qtbot, 3, 5)
    insp, node = _lock_one(viewer, part)
    n, res = len(history_of(part).undo_stack), part.metadata["hemd_result"]
    names = {ly.name for ly in viewer.layers}
    worker = insp.lock_and_rerun()
    part.name = "my version"  # while it runs
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert {ly.name for ly in viewer.layers} - names <= {"my version", "my version preview"}
    assert part.metadata["hemd_result"] is not res  # the re-run's result, one more edit
    assert len(history_of(part).undo_stack) == n + 1
    assert node in part.metadata["hemd_result"].selections[1].nodes
    assert not errors


def test_relabel_onto_an_id_present_in_the_same_frame_says_it_merged(
    make_napari_viewer, monkeypatch, errors
):
    """Relabel 1 -> 2 while object 2 was in the same frames made one object of two, silently.
    It is said now; onto an id of other frames only (a daughter given its mother's id) not."""
    import napari_hemd._widgets.proofread as proofread

    said: list[str] = []
    monkeypatch.setattr(proofread, "show_warning", said.append)
    viewer = make_napari_viewer()
    data = np.zeros((3, 32, 32), np.uint32)
    data[:, 4:10, 4:10], data[:2, 20:26, 20:26], data[2, 20:26, 20:26] = 1, 2, 3
    layer = viewer.add_labels(data, name="cells")
    proof = ProofreadWidget(viewer)
    proof.labels.value = layer
    proof.scope.value = "all frames"
    assert proof.relabel(3, 2) and not said  # frame 2 only, where 2 is not: a track continued
    assert proof.relabel(1, 2) and not errors
    assert len(said) == 1 and "object 2 was already there (3 frames)" in said[0]
    assert "one object now" in said[0] and set(np.unique(layer.data[0])) == {0, 2}


def test_napari_undo_keys_go_through_the_edit_history(make_napari_viewer, errors):
    """napari's own Ctrl-Z reverted a brush stroke behind the history's back: the history (and
    a saved project) kept the stroke, and Proofread's next Undo undid nothing."""
    from app_model.types import KeyCode, KeyMod
    from napari.utils.key_bindings import KeyBinding

    from napari_hemd._widgets._layer_state import history_of

    viewer = make_napari_viewer()
    data = np.zeros((2, 32, 32), np.uint32)
    data[:, 4:10, 4:10] = 1
    layer = viewer.add_labels(data.copy(), name="cells")
    proof = ProofreadWidget(viewer)
    proof.labels.value = layer
    proof.scope.value = "all frames"
    assert proof.relabel(1, 40)
    layer.paint((0, 20, 20), 7)  # a brush stroke, as napari records it
    assert [e.name for e in history_of(layer).undo_stack][-1] == "paint"

    def press(key: int) -> None:  # as napari's key handler: the layer's binding, else its class'
        kb = KeyBinding.from_int(key)
        (layer.keymap.get(kb) or type(layer).class_keymap[kb])(layer)

    press(KeyMod.CtrlCmd | KeyCode.KeyZ)
    assert not (layer.data == 7).any() and history_of(layer).undo_stack[-1].name.startswith("rel")
    assert proof.undo().startswith("relabel")  # the edit before the stroke
    np.testing.assert_array_equal(layer.data, data)
    press(KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ)
    assert (layer.data == 40).sum() == 72 and not errors


def test_proofread_edits_a_stack_s_3d_objects(make_napari_viewer, errors):
    """On one (Z, Y, X) stack (a 3D model's labels, or a first axis named z), Delete cells cut
    by the edge cut nuclei slice by slice (half of one gone, one on the top face kept) and a
    split by seeds split only the slice on screen. Both work on the 3D objects now."""
    viewer = make_napari_viewer()
    data = np.zeros((10, 32, 32), np.uint32)
    data[2:8, 0:8, 10:18] = 1  # touches the y edge in its slices only
    data[0:4, 12:20, 12:20] = 2  # touches the bottom face (slice 0)
    data[3:9, 22:30, 4:28] = 3  # inside: to split
    layer = viewer.add_labels(data.copy(), name="stack", axis_labels=("z", "y", "x"))
    proof = ProofreadWidget(viewer)
    proof.labels.value = layer
    proof.scope.value = "current frame"
    viewer.dims.set_current_step(0, 5)
    assert proof.delete_border()
    assert set(np.unique(layer.data)) == {0, 3}  # 1 and 2 whole, whatever the scope
    seeds = viewer.add_points([[5, 26, 6], [5, 26, 25]])
    assert proof.split(seeds)
    parts = np.unique(layer.data[3:9][data[3:9] == 3])
    assert len(parts) == 2  # the 3D object, every slice of it, in two
    for z in range(3, 9):
        assert set(np.unique(layer.data[z][data[z] == 3])) == set(parts.tolist())
    assert not errors


def test_merge_delete_and_relabel_edit_a_stacks_whole_objects(make_napari_viewer, errors):
    """Merge, Delete and Relabel on one stack changed only the z-slice on screen (the default
    scope, current frame): one nucleus kept its old id in the other slices (audit 15). They act
    on the whole 3D objects, and *apply to* is off for a stack."""
    viewer = make_napari_viewer()
    data = np.zeros((10, 32, 32), np.uint32)
    data[2:8, 4:12, 4:12] = 1
    data[2:8, 4:12, 12:20] = 2  # touching 1: one nucleus cut in two
    data[1:9, 20:28, 20:28] = 3
    layer = viewer.add_labels(data.copy(), name="stack", axis_labels=("z", "y", "x"))
    movie = viewer.add_labels(data.copy(), name="movie")  # a (T, Y, X) movie: frames stay
    proof = ProofreadWidget(viewer)
    proof.labels.value = layer
    assert not proof.scope.enabled and proof.scope.value == "current frame"
    viewer.dims.set_current_step(0, 5)
    assert proof.merge([1, 2])
    assert not (layer.data == 2).any() and (layer.data[data == 2] == 1).all()
    assert proof.delete([3]) and not (layer.data == 3).any()
    assert proof.relabel(1, 7) and not (layer.data == 1).any()
    assert ((layer.data == 7) == ((data == 1) | (data == 2))).all()
    for _ in range(3):
        proof.undo()
    np.testing.assert_array_equal(layer.data, data)
    proof.labels.value = movie
    assert proof.scope.enabled
    assert proof.delete([3])
    assert not (movie.data[5] == 3).any() and (movie.data[4] == 3).any()  # frame 5 only
    assert not errors


def test_segment_again_keeps_the_checked_frames(viewer, qtbot, errors, monkeypatch):
    """Segment pressed again replaced the frames the user corrected and marked checked, which
    stayed marked checked: Fine-tune then taught the model its own output (audit 17). A re-run
    keeps them (the other frames' ids moved above theirs; linked, a cell keeps its id across),
    says so, and Undo brings the run before back."""
    from napari_hemd._widgets import ProofreadWidget, SegmentWidget, _segment_run

    infos: list[str] = []
    monkeypatch.setattr(_segment_run, "show_info", infos.append)
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    proof.scope.value = "all frames"
    assert proof.delete([int(np.unique(labels.data[0])[1])])  # a correction
    proof.mark_checked(0)
    proof.mark_checked(2)
    corrected = labels.data.copy()
    seg.tau.value = 0.7  # other settings: other objects
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    assert labels.metadata["hemd_checked"] == [0, 2]
    for t in (0, 2):
        np.testing.assert_array_equal(labels.data[t], corrected[t])
    fresh = set(np.unique(labels.data[1])) - {0}
    kept_ids = set(np.unique(corrected[[0, 2]])) - {0}
    assert fresh and not fresh & kept_ids  # a fresh object never takes a kept id
    assert "the checked frames 0, 2 kept as you corrected them" in infos[-1]
    proof.undo()
    np.testing.assert_array_equal(labels.data, corrected)
    proof.mark_checked(1)  # 0-2 checked, from a run not linked: ids per frame (audit 18)
    seg.link.value = True  # linked: all frames linked again, the kept ones among them
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    assert "linked over time with the others" in infos[-1]
    for t in range(3):  # the same objects, pixel for pixel; ids may be renamed
        before, after = corrected[t], labels.data[t]
        pairs = {(int(a), int(b)) for a, b in zip(before.ravel(), after.ravel(), strict=True)}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    for t in range(4):  # an id in two frames is one cell: no jump across the field
        for lab in set(np.unique(labels.data[t])) & set(np.unique(labels.data[t + 1])) - {0}:
            a, b = labels.data[t] == lab, labels.data[t + 1] == lab
            assert (a & b).sum() > 0, (t, lab)
    same = set(np.unique(labels.data[0])) & set(np.unique(corrected[0])) - {0}
    assert len(same) >= 0.8 * (len(np.unique(corrected[0])) - 1)  # frame 0 keeps its ids
    # the lineage (Export's, the Tracks layer's) in the labels' ids, not the run's (review)
    from napari_hemd._widgets._tracks import lineage_of

    data, tracks = lineage_of(labels, labels.data)
    rows = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in tracks}
    for lab in set(np.unique(data)) - {0}:
        frames = np.nonzero((data == lab).any(axis=(1, 2)))[0]
        assert rows[int(lab)][:2] == (frames[0], frames[-1]), lab
    assert all(p == 0 or p in rows for _, _, p in rows.values())
    shown = viewer.layers["nuclei video labels tracks"]
    assert set(shown.graph) <= set(rows) and all(
        set(ps) <= set(rows) for ps in shown.graph.values()
    )
    assert {k: list(v) for k, v in shown.graph.items()} == {
        d: [p] for d, (_, _, p) in rows.items() if p
    }
    assert not errors


def test_a_linked_run_again_keeps_the_checked_frames_ids(viewer, qtbot, errors, monkeypatch):
    """Linked labels, a cell relabelled in one frame, two frames checked, Segment run again:
    the other checked frame's cells were renamed to the first's ids (audit 29: its cell 1
    became 7000, though never edited). Each checked frame keeps its ids; the track changes id
    at the checked frame that says so, as a daughter of the id before. The movie is linked
    again in the worker, not on napari's thread (5 s frozen on the HeLa movie), unless a
    checked frame changed meanwhile."""
    import threading

    from napari_hemd._widgets import ProofreadWidget, SegmentWidget, _layer_state, _segment_run
    from napari_hemd._widgets._tracks import lineage_of

    threads = []
    real = _layer_state.keep_checked_frames

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    for module in (_layer_state, _segment_run):  # the worker's call and napari's thread's
        monkeypatch.setattr(module, "keep_checked_frames", recorded)

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.link.value = True
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    data = labels.data
    cell = next(int(i) for i in np.unique(data[1]) if i and (data[3] == i).any())
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    viewer.dims.set_current_step(0, 1)
    assert proof.scope.value == "current frame" and proof.relabel(cell, 7000)
    proof.mark_checked(1)
    proof.mark_checked(3)
    corrected = labels.data.copy()
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    assert threads == [False]  # in the worker
    for t in (1, 3):
        np.testing.assert_array_equal(labels.data[t], corrected[t])
    assert (labels.data[2] == 7000).any()  # after frame 1, up to frame 3: frame 1's id
    data, tracks = lineage_of(labels, labels.data)
    rows = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in tracks}
    assert rows[cell][0] == 3 and rows[cell][2] == 7000 and rows[7000][1] == 2
    for lab in set(np.unique(data)) - {0}:  # a valid lineage of these labels
        frames = np.nonzero((data == lab).any(axis=(1, 2)))[0]
        assert rows[int(lab)][:2] == (frames[0], frames[-1]), lab
    # a checked frame corrected while the run runs: kept as it is then, on napari's thread
    worker = seg.run()
    viewer.dims.set_current_step(0, 3)
    proof.delete([int(np.unique(labels.data[3])[1])])
    corrected = labels.data[3].copy()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert threads[1:] == [False, True]  # the worker's made from the frame before: again
    np.testing.assert_array_equal(labels.data[3], corrected)
    assert not errors


def test_a_stack_run_again_keeps_its_checked_slice_in_one_3d_object():
    """One stack with a checked slice, segmented again: the kept slice's nucleus and the new
    slices' were two ids (review); its slices are one 3D object: the kept id carries over.
    Ids that would not fit the labels' dtype are refused, not wrapped."""
    from types import SimpleNamespace

    from napari.components import ViewerModel

    from napari_hemd._widgets._layer_state import (
        CHECKED_KEY,
        LOCKED_KEY,
        PARAMS_KEY,
        RESULT_KEY,
        keep_checked_frames,
    )
    from napari_hemd._widgets._segment_run import _write_labels

    viewer = ViewerModel()
    z, y, x = np.ogrid[:21, :40, :40]
    new = np.zeros((21, 40, 40), np.uint32)  # two balls: their poles are small slices (the
    new[(z - 10) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 <= 81] = 1  # slices relinked as a movie
    new[(z - 10) ** 2 + (y - 28) ** 2 + (x - 28) ** 2 <= 64] = 2  # split them: the review)
    old = np.where(new > 0, new + 3, 0).astype(np.uint32)  # the user's ids: 4 and 5
    meta = {PARAMS_KEY: {"planes": 3}, CHECKED_KEY: [10]}
    viewer.add_labels(old, name="stack labels", metadata=meta)
    run = SimpleNamespace(
        name="stack labels", translate=None, layer=None, method="hemd", target=None
    )
    state = {PARAMS_KEY: {"planes": 3}, RESULT_KEY: None, LOCKED_KEY: {}}
    out = _write_labels(viewer, run, new.copy(), state)
    for i, mine in ((1, 4), (2, 5)):  # one 3D object each, the kept slice's id throughout
        assert np.unique(out.data[new == i]).tolist() == [mine]
    assert run.kept == ([10], False)
    wide = np.zeros((2, 8, 8), np.int64)  # int64 labels: kept ids past uint32 (the review)
    wide[:, 1:4, 1:4] = 2**32 + 5
    got, tracks = keep_checked_frames(wide, wide.copy(), [0], linked=True)
    assert got.dtype == np.uint64 and int(got.max()) == 2**32 + 5 and len(tracks) == 1
    small = np.zeros((2, 8, 8), np.uint8)
    small[1, :4] = 200
    with pytest.raises(ValueError, match="do not fit the labels' uint8"):
        keep_checked_frames(np.full((2, 8, 8), 100, np.uint8), small, [0], linked=False)


def test_one_stack_is_what_the_run_made_of_a_z_stack():
    """A Fiji stack of slices (first axis z) segmented with a 2D model, not linked, has ids per
    slice: Export measured ids of different slices as one 3D object (audit 22). Slices linked
    into 3D objects, a 3D model's run, or a file's z stack are one stack."""
    from types import SimpleNamespace

    from napari_hemd._widgets._layer_state import PARAMS_KEY, is_one_stack

    def layer(names, params=None):
        meta = {} if params is None else {PARAMS_KEY: params}
        return SimpleNamespace(ndim=3, axis_labels=names, metadata=meta)

    assert not is_one_stack(layer(("z", "y", "x"), {"method": "hemd", "model": "nuclei-fluo"}))
    assert is_one_stack(layer(("z", "y", "x"), {"method": "hemd", "link": True}))
    assert is_one_stack(layer(("-3", "-2", "-1"), {"method": "hemd", "planes": 3}))
    assert is_one_stack(layer(("-3", "-2", "-1"), {"method": "hemd", "planes": 1}))
    assert is_one_stack(layer(("z", "y", "x")))  # a file's stack
    assert not is_one_stack(layer(("t", "y", "x")))
    assert not is_one_stack(layer(("-3", "-2", "-1"), {"method": "hemd", "link": True}))


@pytest.mark.parametrize("scope", ["current frame", "all frames"])
def test_merge_delete_relabel_touch_only_their_objects_pixels(make_napari_viewer, errors, scope):
    """Merge, delete and relabel give what the pure functions give (one frame or all), undo and
    redo restore them exactly, and the layer's array is edited in place: an "all frames" merge
    copied, compared and rewrote the whole movie on napari's thread (audit 25)."""
    from napari_hemd.workflows import delete_label, merge_labels, relabel

    rng = np.random.default_rng(3)
    data = rng.integers(0, 9, size=(4, 24, 24)).astype(np.uint16)  # many objects, many pieces
    viewer = make_napari_viewer()
    layer = viewer.add_labels(data.copy(), name="cells")
    array = layer.data
    proof = ProofreadWidget(viewer)
    proof.labels.value = layer
    proof.scope.value = scope
    viewer.dims.set_current_step(0, 2)
    frame = 2 if scope == "current frame" else None
    expected = data.copy()
    steps = [
        (lambda: proof.merge([3, 5, 8]), lambda a: merge_labels(a, [3, 5, 8], frame)),
        (lambda: proof.delete([1, 7]), lambda a: delete_label(delete_label(a, 1, frame), 7, frame)),
        (lambda: proof.relabel(3, 40), lambda a: relabel(a, 3, 40, frame)),
    ]
    states = [expected.copy()]
    for act, pure in steps:
        assert act()
        expected = pure(expected)
        states.append(expected.copy())
        np.testing.assert_array_equal(layer.data, expected)
        assert layer.data is array  # edited in place, not replaced by a copy
    if frame is not None:  # the other frames are as they were
        np.testing.assert_array_equal(np.delete(layer.data, 2, 0), np.delete(data, 2, 0))
    assert not proof.merge([3, 5])  # neither is left: nothing to do, nothing recorded
    for state in states[-2::-1]:
        assert proof.undo()
        np.testing.assert_array_equal(layer.data, state)
    for state in states[1:]:
        assert proof.redo()
        np.testing.assert_array_equal(layer.data, state)
    assert not errors


def test_checked_ids_are_kept_through_gaps_and_the_lineage_stays_valid():
    """Review 31: a cell named alike in two checked frames, missed by the re-run in a frame
    between, took a fresh id in the later checked frame; a cell relabelled in the middle one of
    three checked frames dropped the whole movie's lineage (a division far away lost). Each
    checked frame keeps its ids; the tracks span the gap as the labels do, and Export's
    lineage renames the later stretch in its copy, divisions kept."""
    from napari_hemd._widgets._layer_state import keep_checked_frames
    from napari_hemd._widgets._tracks import with_lineage

    T, S = 6, 48
    old = np.zeros((T, S, S), np.uint32)
    for t in range(T):
        if t < 3:
            old[t, 5:17, 5:17] = 1
        else:  # 1 divides into 3 and 4
            old[t, 3:11, 3:11], old[t, 12:20, 12:20] = 3, 4
        old[t, 30:40, 30 + t : 40 + t] = 2
    old[1][old[1] == 2] = 9  # relabelled in frame 1 only
    new = np.zeros_like(old)
    for t in range(T):  # the re-run: the same objects, ids per frame; cell 2 missed in frame 4
        for k, i in enumerate(sorted(set(np.unique(old[t])) - {0} - ({2} if t == 4 else set()))):
            new[t][old[t] == i] = k + 1
    keep = [0, 1, 2, 3, 5]
    labels, tracks = keep_checked_frames(old, new, keep, linked=True, tracked=True)
    for t in keep:
        np.testing.assert_array_equal(labels[t], old[t])
    data, valid = with_lineage(labels, (tracks, False))  # what Export writes
    rows = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in valid}
    for lab in set(np.unique(data)) - {0}:  # each label in exactly its frames B..E
        frames = np.nonzero((data == lab).any(axis=(1, 2)))[0].tolist()
        assert frames == list(range(rows[lab][0], rows[lab][1] + 1)), lab
    assert rows[3][2] == rows[4][2] == 1  # the division, far from the edits, kept
    np.testing.assert_array_equal(data[:2], labels[:2])  # renamed only after a gap


def test_huge_ids_make_no_table_as_long_as_the_largest():
    """Review 31: ids around 1e10 (int64 labels) coming back after a gap made a look-up table
    of 75 GiB (MemoryError); the renaming goes frame by frame."""
    from napari_hemd._widgets._layer_state import keep_checked_frames
    from napari_hemd.core.linking import lineage_after_edits

    big = 10**10
    old = np.zeros((4, 16, 16), np.int64)
    old[:, 2:6, 2:6] = big + 1
    old[:, 10:14, 10:14] = big + 2
    old[2][old[2] == big + 2] = 0  # a gap
    labels, tracks = lineage_after_edits(old, np.array([[big + 1, 0, 3, 0], [big + 2, 0, 3, 0]]))
    assert sorted(int(r[0]) for r in tracks) == [big + 1, big + 2, big + 3]
    assert (labels[3] == big + 3).any() and (labels[1] == big + 2).any()
    new = (old > 0).astype(np.uint32) * (1 + (old == big + 2))
    got, _ = keep_checked_frames(old, new, [0, 3], linked=True, tracked=True)
    for t in (0, 3):
        np.testing.assert_array_equal(got[t], old[t])


def test_merge_and_relabel_never_wrap_an_id(make_napari_viewer, errors):
    """Review 31: merging ``300 5`` on a uint8 layer made cell 5 id 44 (another cell's); an id
    past uint32 (the API's) was wrapped too. The layer grows to uint32 for what fits, the rest
    is refused, the labels unchanged."""
    from napari_hemd._widgets._layer_state import apply_id_map

    viewer = make_napari_viewer()
    data = np.zeros((2, 16, 16), np.uint8)
    data[:, 2:6, 2:6], data[:, 10:14, 10:14] = 5, 44
    layer = viewer.add_labels(data.copy(), name="cells")
    proof = ProofreadWidget(viewer)
    proof.labels.value = layer
    proof.scope.value = "all frames"
    assert not proof.merge([300, 77]) and layer.data.dtype == np.uint8  # 77 is nowhere:
    assert proof.merge([300, 5]) and layer.data.dtype == np.uint32  # converted only for this
    assert sorted(set(np.unique(layer.data)) - {0}) == [44, 300]
    before = layer.data.copy()
    assert not proof.relabel(44, 5_000_000_000)
    np.testing.assert_array_equal(layer.data, before)
    assert layer.data.dtype == np.uint32
    said = "Proofread: id 5000000000 does not fit the labels' uint32 (ids up to 4294967295)"
    assert errors == [said]
    with pytest.raises(ValueError, match="does not fit the labels' uint32"):
        apply_id_map(layer, "relabel", {44: 2**32})


def test_labels_that_lie_elsewhere_than_their_map_re_run_on_all_of_it(viewer, qtbot, errors):
    """Review 33: labels at frame 0 over their map placed at frame 3 (a project saved before
    the widgets placed labels where their image lies): Lock choices and re-run sliced the map
    from frame -3 ("prob is empty"). Labels of as many frames as the map hold all of it."""

    prob = viewer.layers["nuclei video probability"]
    prob.translate = (3.0, 0.0, 0.0)
    seg = SegmentWidget(viewer)
    seg.prob.value = prob
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    assert labels.translate[0] == 3.0
    labels.translate = (0.0, 0.0, 0.0)  # as the widgets made it before, and a project keeps it
    insp, node = _lock_one(viewer, labels)
    before = labels.data.copy()
    with qtbot.waitSignal(insp.lock_and_rerun().finished, timeout=120_000):
        pass
    np.testing.assert_array_equal(labels.data, before)
    assert node in labels.metadata["hemd_result"].selections[1].nodes and not errors


def test_named_stacks_of_3_slices_are_segmented_with_a_model(make_napari_viewer, qtbot, errors):
    """Review 33: a (T, Z, Y, X) layer of 3-slice stacks with its axes named t, z, y, x passed
    the widget's check, then segment_image refused it as channels."""
    from napari_hemd.data.synthetic import nuclei_video

    img = nuclei_video(n_frames=6, shape=(64, 64), n_cells=4, seed=3)["image"]
    viewer = make_napari_viewer()
    stacks = np.stack([img[0:3], img[3:6]])
    layer = viewer.add_image(stacks, name="tzyx", axis_labels=("t", "z", "y", "x"))
    seg = SegmentWidget(viewer)
    seg.prob.value = layer
    seg.model.value = "nuclei-fluo"
    seg.tta.value = 1
    with qtbot.waitSignal(seg.run().finished, timeout=300_000):
        pass
    assert viewer.layers["tzyx labels"].data.shape == stacks.shape and not errors
