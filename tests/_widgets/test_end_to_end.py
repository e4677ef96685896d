"""The issue's end-to-end path: sample -> predict -> H-EMD -> inspect -> swap -> undo/redo -> CTC."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels

from napari_hemd._widgets import (
    ExportWidget,
    InspectorWidget,
    PredictWidget,
    ProofreadWidget,
    SegmentWidget,
)
from napari_hemd.io import read_stack


def _wait(qtbot, worker, timeout=120_000):
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=timeout):
        pass


def _split_site(res):
    """(frame, pixel, leaf row index) of a chosen candidate that has children."""
    for t, (f, s) in enumerate(zip(res.forests, res.selections, strict=True)):
        for n in s.nodes:
            kids = f.children(int(n))
            if kids.size >= 2:
                leaf = int(kids[0])
                while f.children(leaf).size:  # down to a leaf: where a path starts
                    leaf = int(f.children(leaf)[0])
                pix = np.argwhere(f.mask(leaf))[0]
                return t, tuple(pix), int(n), leaf
    return None


def _merge_site(res):
    """(frame, pixel, parent) for a chosen candidate that has a parent."""
    for t, (f, s) in enumerate(zip(res.forests, res.selections, strict=True)):
        for n in s.nodes:
            if f.parent[n] >= 0:
                return t, tuple(np.argwhere(f.mask(int(n)))[0]), int(f.parent[n])
    return None


def test_end_to_end(viewer, qtbot, tmp_path, errors):
    pred = PredictWidget(viewer)
    pred.image.value = viewer.layers["nuclei video image"]
    pred.model.value = "nuclei-fluo"
    _wait(qtbot, pred.run())
    prob = viewer.layers["nuclei video image probability"]
    assert isinstance(prob, Image) and prob.data.shape == (12, 192, 192)
    assert 0.0 <= prob.data.min() and prob.data.max() <= 1.0

    # The inspector's split and merge need objects whose candidates split: the sample's own
    # probability map has designed contact dips (the shipped model's maps of this synthetic
    # video are clean hills, one candidate path per nucleus).
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.variant.value = "paper"
    seg.tau.value = 0.3  # a merged pair whose candidates split (measured on the sample)
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei video labels"]
    assert isinstance(labels, Labels) and labels.data.max() > 3
    assert labels.metadata["hemd_params"]["tau"] == 0.3
    res = labels.metadata["hemd_result"]

    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    site = _split_site(res)
    assert site is not None, "no chosen candidate with children in the sample"
    t, pix, chosen, leaf = site
    rows = insp.inspect(t, pix)
    assert rows[0].node == leaf and any(r.chosen and r.node == chosen for r in rows)
    assert insp.table.rowCount() == len(rows)
    before = labels.data.copy()
    obj = int(before[t][pix])
    insp.table.cellEntered.emit(len(rows) - 1, 0)  # hovering the root row previews it
    preview = viewer.layers[f"{labels.name} preview"]
    assert (preview.data[t] > 0).sum() == rows[-1].area
    insp.select_row(0)  # selecting the leaf previews it
    assert (preview.data[t] > 0).sum() == rows[0].area
    assert insp.use_candidate(0)  # the child: splits the object
    after = labels.data.copy()
    frame_mask = res.forests[t].mask(leaf)
    assert (after[t][frame_mask] == obj).all()
    assert (after[t] == obj).sum() < (before[t] == obj).sum()
    from napari_hemd.workflows import split_siblings

    # locked: the child and the pieces it split off, what the user now sees
    mine = [leaf, *split_siblings(res.forests[t], leaf, before[t] == obj)]
    assert labels.metadata["hemd_locked"][t] == mine and len(mine) > 1

    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    assert proof.undo() is not None
    np.testing.assert_array_equal(labels.data, before)
    assert t not in labels.metadata["hemd_locked"]  # undoing the swap forgets the choice
    assert proof.redo() is not None
    np.testing.assert_array_equal(labels.data, after)
    assert labels.metadata["hemd_locked"][t] == mine

    exp = ExportWidget(viewer)
    exp.labels.value = labels
    exp.format.value = "CTC result folder"
    out = exp.export(tmp_path / "result")
    assert out is not None and (out / "mask000.tif").exists()
    back = read_stack(out)
    # CTC ids may be renumbered into tracks: compare the partitions, frame by frame
    for a, b in zip(back, after, strict=True):
        pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
        assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    assert len(np.unique(back[t][frame_mask])) == 1
    assert len(np.unique(back[t][before[t] == obj])) > 1  # the split is in the export
    assert not errors


def test_lock_and_rerun(viewer, qtbot, errors):
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.variant.value = "paper"
    seg.tau.value = 0.3  # a merged pair whose candidates split (measured on the sample)
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei video labels"]
    res = labels.metadata["hemd_result"]
    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    t, pix, parent = _merge_site(res)
    rows = insp.inspect(t, pix)
    row = [r.node for r in rows].index(parent)
    assert insp.use_candidate(row)  # the parent: merges
    _wait(qtbot, insp.lock_and_rerun())
    res2 = labels.metadata["hemd_result"]
    assert res2 is not res and parent in res2.selections[t].nodes
    assert labels.metadata["hemd_locked"][t] == [parent]
    insp.level.value = 0.7  # previews the cut
    assert f"{labels.name} preview" in viewer.layers
    assert not errors


def test_lock_and_rerun_asks_before_it_replaces_hand_edits(viewer, qtbot, errors):
    """Lock choices and re-run made the labels anew over the Proofread edits made since the run
    (a deleted cell back, a painted one gone), saying only the object count. It asks now, naming
    the edits; No keeps them; Yes re-runs (Undo brings them back)."""
    from napari_hemd._widgets import ProofreadWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.variant.value = "paper"
    seg.tau.value = 0.3
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei video labels"]
    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    t, pix, parent = _merge_site(labels.metadata["hemd_result"])
    row = [r.node for r in insp.inspect(t, pix)].index(parent)
    assert insp.use_candidate(row)  # a choice the re-run keeps: nothing to ask
    asked: list[str] = []
    insp.confirm_discard = lambda text: asked.append(text) or False
    _wait(qtbot, insp.lock_and_rerun())
    assert not asked
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    proof.scope.value = "all frames"
    victim = int(np.unique(labels.data[t])[-1])
    assert proof.delete([victim])
    edited = labels.data.copy()
    assert insp.lock_and_rerun() is None  # the user said No: nothing re-run
    assert len(asked) == 1 and f"1 edit(s) made since the run (delete [{victim}])" in asked[0]
    np.testing.assert_array_equal(labels.data, edited)
    insp.confirm_discard = lambda text: True
    _wait(qtbot, insp.lock_and_rerun())
    assert (labels.data == victim).any()  # re-run: the deleted cell is back ...
    assert proof.undo().startswith("segment") and not (labels.data == victim).any()  # ... undone
    assert not errors


def _selected(res) -> list[list[int]]:
    return [sorted(int(n) for n in s.nodes) for s in res.selections]


def test_a_reopened_locked_rerun_undoes_to_the_run_before(viewer, qtbot, tmp_path, errors):
    """After reopening a project, undoing Lock & re-run kept the re-run's H-EMD result (same
    parameters), so the inspector showed the re-run's choices over the earlier labels; and the
    reopened result was rebuilt with every lock, swaps made after the re-run too. The re-run now
    records the locks it selected with, and a rebuild selects as each run did."""
    from napari_hemd._widgets import ProjectWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.variant.value = "paper"
    seg.tau.value = 0.3  # a merged pair whose candidates split (as in test_lock_and_rerun)
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei video labels"]
    first = _selected(labels.metadata["hemd_result"])
    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    t, pix, parent = _merge_site(labels.metadata["hemd_result"])
    rows = insp.inspect(t, pix)
    assert insp.use_candidate([r.node for r in rows].index(parent))  # the parent: merges
    swapped = labels.data.copy()
    _wait(qtbot, insp.lock_and_rerun())
    rerun = _selected(labels.metadata["hemd_result"])
    assert parent in rerun[t] and parent not in first[t]
    assert labels.metadata["hemd_params"]["locked"] == {t: [parent]}
    proj = ProjectWidget(viewer, restore=False)
    proj.labels.value = labels
    out = proj.save(tmp_path / "session")

    viewer.layers.clear()
    _wait(qtbot, proj.open(out))
    back = viewer.layers["nuclei video labels"]
    assert _selected(back.metadata["hemd_result"]) == rerun  # rebuilt as the re-run selected
    proof = ProofreadWidget(viewer)
    proof.labels.value = back
    assert proof.undo().startswith("segment")  # the re-run
    np.testing.assert_array_equal(back.data, swapped)
    assert back.metadata["hemd_params"]["locked"] == {}
    qtbot.waitUntil(lambda: back.metadata.get("hemd_result") is not None, timeout=120_000)
    assert _selected(back.metadata["hemd_result"]) == first  # the run before, not the re-run
    assert back.metadata["hemd_locked"] == {t: [parent]}  # the swap's lock stays
    assert not errors


def test_rerun_is_undoable(viewer, qtbot, errors):
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei video labels"]
    first = labels.data.copy()
    first_res = labels.metadata["hemd_result"]
    seg.tau.value = 0.8
    _wait(qtbot, seg.run())
    assert viewer.layers["nuclei video labels"] is labels
    assert labels.metadata["hemd_params"]["tau"] == 0.8
    assert not np.array_equal(labels.data, first)
    second = labels.metadata["hemd_result"]
    assert second is not first_res
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    assert proof.undo().startswith("segment")
    np.testing.assert_array_equal(labels.data, first)
    # the stored result, parameters and locks follow the labels back
    assert labels.metadata["hemd_result"] is first_res
    assert labels.metadata["hemd_params"]["tau"] == 0.5
    np.testing.assert_array_equal(first_res.labels, labels.data)
    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    t, y, x = (int(v) for v in np.argwhere(labels.data > 0)[0])
    rows = insp.inspect(t, (y, x))
    chosen = [r.node for r in rows if r.chosen]
    assert chosen and first_res.forests[t].mask(chosen[0])[y, x]
    assert proof.redo().startswith("segment")
    assert labels.metadata["hemd_result"] is second
    assert labels.metadata["hemd_params"]["tau"] == 0.8
    np.testing.assert_array_equal(second.labels, labels.data)
    assert not errors


def test_re_runs_keep_two_results_in_memory_and_rebuild_older_ones(viewer, qtbot, errors):
    """Each re-run's H-EMD result stayed in the undo history (0.6 GB each on the whole HeLa
    movie: memory grew with every re-run). Two are kept; undoing to an older run rebuilds its
    forests, which select what that run selected."""
    import gc
    import weakref

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    runs = []
    for tau in (0.5, 0.6, 0.7, 0.8):
        seg.tau.value = tau
        _wait(qtbot, seg.run())
        labels = viewer.layers["nuclei video labels"]
        runs.append((labels.data.copy(), weakref.ref(labels.metadata["hemd_result"])))
    gc.collect()
    assert [r() is not None for _, r in runs] == [False, False, True, True]
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    assert proof.undo().startswith("segment")  # to tau 0.7: its result is still there
    assert labels.metadata["hemd_result"] is runs[2][1]()
    assert proof.undo().startswith("segment")  # to tau 0.6: rebuilt in the background
    qtbot.waitUntil(lambda: labels.metadata.get("hemd_result") is not None, timeout=60_000)
    res = labels.metadata["hemd_result"]
    np.testing.assert_array_equal(labels.data, runs[1][0])
    assert res.params["tau"] == 0.6 and labels.metadata["hemd_params"]["tau"] == 0.6
    np.testing.assert_array_equal(res.labels, labels.data)  # the rebuild selects as it did
    # napari's own Ctrl-Z back to tau 0.5: no result; the inspector rebuilds it when asked
    from napari_hemd._widgets._layer_state import _napari_key_step

    _napari_key_step(labels, redo=False)
    np.testing.assert_array_equal(labels.data, runs[0][0])
    assert labels.metadata.get("hemd_result") is None
    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    t, y, x = (int(v) for v in np.argwhere(labels.data > 0)[0])
    assert insp.inspect(t, (y, x)) == []  # rebuilding
    qtbot.waitUntil(lambda: labels.metadata.get("hemd_result") is not None, timeout=60_000)
    assert [r for r in insp.inspect(t, (y, x)) if r.chosen]
    assert not errors


def test_a_chosen_child_keeps_its_pixels_after_lock_and_rerun(viewer, qtbot, errors):
    """Choosing a child gives it the rest of its parent's pixels; "Lock choices and re-run" must
    keep them (it used to fold them back into H-EMD's speck-sized candidate region). Through the
    Plugins menu, with the buttons a user presses."""
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.variant.value = "paper"
    seg.tau.value = 0.3  # merged pairs whose candidates split (as in test_lock_and_rerun)
    seg.run_button.native.click()
    _wait(qtbot, seg._worker)
    labels = viewer.layers["nuclei video labels"]
    res = labels.metadata["hemd_result"]
    # a selected object with children: choose its smallest child (fills the parent)
    t, node, child = min(
        (
            (t, int(n), int(min(f.children(int(n)), key=lambda c: f.area[c])))
            for t, (f, s) in enumerate(zip(res.forests, res.selections, strict=True))
            for n in s.nodes
            if f.children(int(n)).size >= 1
        ),
        key=lambda x: res.forests[x[0]].area[x[2]] / res.forests[x[0]].area[x[1]],
    )
    f = res.forests[t]
    assert f.area[child] < 0.8 * f.area[node]
    pix = tuple(int(v) for v in np.argwhere(f.mask(child))[0])
    _, insp = viewer.window.add_plugin_dock_widget("napari-hemd", "Candidate forest inspector")
    insp.labels.value = labels
    rows = insp.inspect(t, pix)  # what a click on the object does
    insp.select_row([r.node for r in rows].index(child))
    before = labels.data[t] == labels.data[t][pix]  # the object as the user saw it
    insp.use_button.native.click()
    obj = labels.data[t] == labels.data[t][pix]
    kept = labels.data[t][obj].copy()
    assert obj.sum() > f.area[child]  # the child was filled beyond its own region
    insp.lock_button.native.click()
    _wait(qtbot, insp._segment._worker)
    from napari_hemd.workflows import split_siblings

    # the child and the pieces it split off are locked (what the user saw)
    assert labels.metadata["hemd_locked"][t] == [child, *split_siblings(f, child, before)]
    after = labels.data[t]
    assert (after[obj] > 0).all()  # no pixel of the chosen object fell to background
    assert (after[obj] == after[pix]).mean() > 0.9 * (kept == kept[0]).mean()
    assert not errors


def test_a_split_made_in_the_inspector_survives_lock_and_rerun(viewer, qtbot, errors):
    """Choosing a child that splits an object into several: the re-run keeps every piece (it used
    to lock the child alone, which then grew back over its unlocked siblings into one object),
    says what *Use this candidate* did, and the table shows the re-run's result."""
    from napari_hemd.workflows import split_siblings

    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.link.value = True
    seg.run_button.native.click()
    _wait(qtbot, seg._worker)
    labels = viewer.layers["nuclei video labels"]
    res = labels.metadata["hemd_result"]
    # a selected object whose child splits it into pieces of at least 20 px each
    found = None
    for t, (f, s) in enumerate(zip(res.forests, res.selections, strict=True)):
        for n in s.nodes:
            obj = res.labels[t] == res.labels[t][f.mask(int(n))].max()
            for c in f.children(int(n)):
                sib = split_siblings(f, int(c), obj)
                if sib and min(f.area[x] for x in [int(c), *sib]) >= 20:
                    found = found or (t, int(c), sib)
    assert found is not None
    t, child, siblings = found
    f = res.forests[t]
    pix = tuple(int(v) for v in np.argwhere(f.mask(child))[0])
    _, insp = viewer.window.add_plugin_dock_widget("napari-hemd", "Candidate forest inspector")
    insp.labels.value = labels
    insp.show_all.value = True  # every level: the child's row, wherever its area steps
    infos = []
    import napari_hemd._widgets.inspector as inspector_module

    orig = inspector_module.show_info
    inspector_module.show_info = infos.append
    try:
        rows = insp.inspect(t, pix)
        insp.select_row([r.node for r in rows].index(child))
        insp.use_button.native.click()
    finally:
        inspector_module.show_info = orig
    said = " | ".join(infos)
    assert f"is now candidate #{child}, split into {len(siblings) + 1} objects" in said
    texts = [insp.table.item(i, 2).text() for i in range(len(insp.rows))]
    assert "your choice (locked)" in texts
    # H-EMD's own row no longer reads as the object (it kept its tick, audit 19)
    assert not any(x.startswith("✓") for x in texts)
    assert any(x.startswith("H-EMD's before yours: ") for x in texts)
    grown = int((labels.data[t] == labels.data[t][pix]).sum())
    if grown != int(f.area[child]):  # the old object's pixels nearest the candidate: said
        assert f"holds {grown} px: candidate #{child}'s {int(f.area[child])}" in said
    pieces = [labels.data[t][f.mask(x)] for x in (child, *siblings)]
    ids = [np.bincount(p[p > 0]).argmax() for p in pieces]
    assert len(set(ids)) == len(ids)  # after Use: one object per piece
    insp.lock_button.native.click()
    _wait(qtbot, insp._segment._worker)
    qtbot.wait(50)
    after = labels.data[t]
    ids = [np.bincount(after[f.mask(x)][after[f.mask(x)] > 0]).argmax() for x in (child, *siblings)]
    assert len(set(ids)) == len(ids)  # after the re-run: still one object per piece
    assert insp.where.value.startswith(f"frame {t}, object {int(after[pix])}:")
    assert not errors


def test_a_rebuild_selects_as_the_run_did(viewer, qtbot, errors):
    """The labels' parameters record H-EMD's resolved choices (the refined variant's split), so
    rebuilding the forest for the inspector or a reopened project gives the same selection; a
    result saved before the split existed (no such key) is rebuilt without it."""
    from napari_hemd.workflows import rebuild_workflow, run_workflow

    seg = SegmentWidget(viewer)
    seg.prob.value = prob = viewer.layers["nuclei video probability"]
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei video labels"]
    params = labels.metadata["hemd_params"]
    assert params["split_coverage"] == 0.8 and params["split_size"] == 0.7
    assert params["variant"] == "refined" and params["lone_growth"] == 1.5
    rebuilt = run_workflow(rebuild_workflow(np.asarray(prob.data), params))
    np.testing.assert_array_equal(rebuilt.labels, labels.metadata["hemd_result"].labels)
    old = {k: v for k, v in params.items() if k not in ("split_coverage", "split_size")}
    assert run_workflow(rebuild_workflow(np.asarray(prob.data), old)).params["split_coverage"] == 0
    assert not errors


def test_delete_cells_cut_by_the_edge_is_an_undoable_edit(viewer, errors):
    data = np.zeros((3, 20, 20), np.uint32)
    data[:, 0:5, 5:10] = 1  # cut by the top edge in every frame
    data[:, 8:12, 8:12] = 2
    data[1, 15:20, 15:20] = 3  # cut in frame 1 only
    labels = viewer.add_labels(data.copy(), name="cells")
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    viewer.dims.set_current_step(0, 1)
    proof.scope.value = "current frame"
    assert proof.delete_border()
    assert set(np.unique(labels.data[1])) == {0, 2}
    assert (labels.data[[0, 2]] == data[[0, 2]]).all()  # other frames untouched
    proof.scope.value = "all frames"
    assert proof.delete_border()
    assert [set(np.unique(f)) for f in labels.data] == [{0, 2}] * 3
    assert not proof.delete_border()  # nothing left to delete
    assert proof.undo() == "delete cells cut by the edge"
    assert set(np.unique(labels.data[0])) == {0, 1, 2}
    assert proof.undo() == "delete cells cut by the edge"
    np.testing.assert_array_equal(labels.data, data)
    assert not errors
