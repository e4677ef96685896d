"""Project widget: a session saved, layers closed, reopened exactly (labels, locks, undo, forest)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hemd._widgets import InspectorWidget, ProjectWidget, ProofreadWidget, SegmentWidget


def test_save_close_reopen(viewer, qtbot, tmp_path, errors):
    image = np.array(viewer.layers["nuclei video image"].data)
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    pr = ProofreadWidget(viewer)
    pr.labels.value = labels
    pr.scope.value = "all frames"
    assert pr.delete([1])
    edited = labels.data.copy()
    labels.metadata["hemd_locked"] = {2: [0]}

    proj = ProjectWidget(viewer)
    proj.labels.value = labels
    out = proj.save(tmp_path / "session")
    assert out == tmp_path / "session.zarr" and out.is_dir()
    other = ProjectWidget(viewer, restore=False)
    other.labels.value = labels
    other.confirm_overwrite = lambda p: False
    assert other.save(out) is None  # never over an existing project without asking
    proj.confirm_overwrite = lambda p: pytest.fail("re-saving its own session asks nothing")
    assert proj.save(out) == out

    viewer.layers.clear()
    with qtbot.waitSignal(proj.open(out).finished, timeout=120_000):
        pass
    back = viewer.layers["nuclei video labels"]  # the layer keeps its name
    np.testing.assert_array_equal(back.data, edited)
    assert back.metadata["hemd_locked"] == {2: [0]}
    assert back.metadata["hemd_result"] is not None
    assert "nuclei video probability" in viewer.layers
    # the sample's image comes back too: the labels are not shown over black
    np.testing.assert_array_equal(viewer.layers["nuclei video image"].data, image)
    insp = InspectorWidget(viewer)
    insp.labels.value = back
    t, y, x = np.argwhere(back.data > 0)[0]
    assert insp.inspect(int(t), (int(y), int(x)))
    pr2 = ProofreadWidget(viewer)
    pr2.labels.value = back
    assert pr2.undo().startswith("delete")  # the undo history came back too
    assert (back.data == 1).any()
    assert not errors


def test_open_not_a_project(viewer, tmp_path, errors):
    proj = ProjectWidget(viewer)
    assert proj.open(tmp_path / "nothing.zarr") is None
    assert "cannot open" in errors[-1]


def test_the_save_button_writes_off_naparis_thread(viewer, qtbot, tmp_path, errors, monkeypatch):
    """Save wrote the whole session on napari's thread (seconds on a whole movie, audit 13):
    the button writes it in a worker; the session follows the folder once written, and an edit
    made meanwhile is autosaved after it."""
    import time

    import napari_hemd._widgets.project as project_module
    from napari_hemd.workflows import load_project

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    proj = ProjectWidget(viewer, restore=False)
    proj.labels.value = labels
    proj.path.value = tmp_path / "session.zarr"
    real = project_module.save_project

    threads = []

    def slow_save(**kwargs):
        import threading

        threads.append(threading.current_thread() is threading.main_thread())
        time.sleep(1.0)  # a big session
        return real(**kwargs)

    monkeypatch.setattr(project_module, "save_project", slow_save)
    proj.save_button.clicked.emit()  # as a click does: back at once, the save still running
    assert not proj.save_button.enabled and "saving" in proj.status.value
    pr = ProofreadWidget(viewer)
    pr.labels.value = labels
    pr.scope.value = "all frames"
    assert pr.delete([1])  # while it is written
    edited = labels.data.copy()
    qtbot.waitUntil(lambda: proj.folder == tmp_path / "session.zarr", timeout=60_000)
    assert proj.save_button.enabled or proj._saving is not None
    qtbot.waitUntil(lambda: "(autosaved)" in proj.status.value and proj._saving is None,
                    timeout=60_000)  # fmt: skip
    proj.flush()
    np.testing.assert_array_equal(load_project(tmp_path / "session.zarr")["labels"], edited)
    assert threads and not any(threads)  # every save in a worker, none on napari's thread
    assert not errors


def test_the_open_button_reads_the_project_off_naparis_thread(
    viewer, qtbot, tmp_path, errors, monkeypatch
):
    """Open project read the whole session on napari's thread (4 s frozen on a 92-frame movie,
    audit 13): the button reads it in a worker, the layers come when it is done, then the
    forest's rebuild; a folder that is no project is said as before."""
    import time

    import napari_hemd._widgets.project as project_module

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    proj = ProjectWidget(viewer, restore=False)
    proj.labels.value = labels
    out = proj.save(tmp_path / "session")
    saved = labels.data.copy()
    viewer.layers.clear()
    proj.path.value = out

    real, threads = project_module.load_project, []

    def slow_load(folder):
        import threading

        threads.append(threading.current_thread())
        time.sleep(1.0)  # a big session
        return real(folder)

    monkeypatch.setattr(project_module, "load_project", slow_load)
    proj.open_button.clicked.emit()  # as a click does: back at once, the reading still running
    assert not proj.open_button.enabled and "nuclei video labels" not in viewer.layers
    qtbot.waitUntil(lambda: "nuclei video labels" in viewer.layers, timeout=60_000)
    import threading

    assert threads and threads[0] is not threading.main_thread()
    back = viewer.layers["nuclei video labels"]
    np.testing.assert_array_equal(back.data, saved)
    qtbot.waitUntil(lambda: back.metadata.get("hemd_result") is not None, timeout=120_000)
    assert proj.open_button.enabled or proj._worker is not None  # the rebuild runs, or ran

    proj.path.value = tmp_path / "nothing.zarr"
    worker = proj.open(background=True)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: any("cannot open" in e for e in errors), timeout=10_000)
    assert all("cannot open" in e for e in errors)


def _session(viewer, qtbot):
    """Segment, re-run with another tau, delete an object, swap a candidate: a real session."""
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.variant.value = "paper"
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    seg.tau.value = 0.45
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    return viewer.layers["nuclei video labels"]


def _snapshot(layer):
    hist = layer.metadata["hemd_history"]
    return {
        "labels": layer.data.copy(),
        "locked": {int(k): list(v) for k, v in layer.metadata["hemd_locked"].items()},
        "params": dict(layer.metadata["hemd_params"]),
        "undo": [e.name for e in hist.undo_stack],
        "redo": [e.name for e in hist.redo_stack],
    }


def _same(a, b):
    np.testing.assert_array_equal(a["labels"], b["labels"])
    assert {k: v for k, v in a.items() if k != "labels"} == {
        k: v for k, v in b.items() if k != "labels"
    }


def _saved_session(viewer, qtbot, folder):
    """The video segmented, saved as a project at ``folder``, a Proofread widget on all frames:
    ``(labels, project widget, folder, proofread widget)``."""
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    proj = ProjectWidget(viewer, restore=False)
    proj.labels.value = labels
    out = proj.save(folder)
    pr = ProofreadWidget(viewer)
    pr.labels.value = labels
    pr.scope.value = "all frames"
    return labels, proj, out, pr


def test_autosave_runs_in_the_background_and_saves_edits_made_meanwhile(
    viewer, qtbot, tmp_path, errors, monkeypatch
):
    """An autosave writes the folder in a thread (napari stays usable on a large movie); an
    edit made while it runs is saved by the next one; the folder ends as the layer is."""
    import threading

    from napari_hemd import workflows
    from napari_hemd._widgets import project as project_widget

    labels, proj, out, pr = _saved_session(viewer, qtbot, tmp_path / "bg")
    release, threads = threading.Event(), []

    def slow_save(**kwargs):  # the real save, held until the test lets it go
        threads.append(threading.current_thread())
        assert release.wait(30)
        return workflows.save_project(**kwargs)

    monkeypatch.setattr(project_widget, "save_project", slow_save)
    first, second = (int(v) for v in np.unique(labels.data)[1:3])
    assert pr.delete([first])
    proj._timer.stop()
    proj._autosave_in_background()  # what the timer does after a quiet moment
    assert proj._saving is not None and "saving" in proj.status.value  # returned at once
    assert pr.delete([second])  # edited while it runs: saved next
    proj._timer.stop()
    proj._autosave_in_background()
    assert proj._save_again
    saved = []
    proj.autosaved.connect(saved.append)
    release.set()
    qtbot.waitUntil(lambda: len(saved) == 2, timeout=30_000)  # the second after a quiet moment
    assert len(threads) == 2 and threading.main_thread() not in threads
    assert proj.wait_for_autosave(30)
    back = workflows.load_project(out)["labels"]
    np.testing.assert_array_equal(back, labels.data)
    assert not (back == first).any() and not (back == second).any()
    assert proj.status.value.endswith("(autosaved)")
    assert not errors


def test_a_finished_save_lets_its_copy_of_the_labels_go(viewer, qtbot, tmp_path, errors):
    """Every autosave (and background Save) kept its copy of the labels: napari keeps finished
    workers, whose function held it (audit 25: +270 MB per edit on a 92-frame movie)."""
    import gc
    import weakref

    labels, proj, out, pr = _saved_session(viewer, qtbot, tmp_path / "copies")
    copies = []
    take = proj._save_kwargs

    def watched(*args, **kwargs):
        got = take(*args, **kwargs)
        copies.append(weakref.ref(got["labels"]))
        return got

    proj._save_kwargs = watched
    for _ in range(2):
        assert pr.delete([int(np.unique(labels.data)[1])])
        proj._timer.stop()
        proj._autosave_in_background()
        assert proj.wait_for_autosave(30)
        qtbot.waitUntil(lambda: proj._saving is None, timeout=30_000)
    worker = proj.save(out, background=True)
    qtbot.waitUntil(lambda: worker.is_running is False and proj._saving is None, timeout=30_000)
    gc.collect()
    assert len(copies) == 3 and sum(c() is not None for c in copies) == 0
    assert not errors


def test_an_edit_made_just_before_napari_closes_is_saved(viewer, qtbot, tmp_path, errors):
    """An edit less than the autosave's quiet moment old was lost when napari closed (the timer
    died with the widget); closing the window now saves it, as does opening a project."""
    from napari_hemd.workflows import load_project

    labels, proj, out, pr = _saved_session(viewer, qtbot, tmp_path / "closing")
    gone = int(np.unique(labels.data)[1])
    assert pr.delete([gone])
    assert proj._timer.isActive()  # the autosave still waits for a quiet moment
    other = ProjectWidget(viewer, restore=False)
    other.labels.value = labels
    elsewhere = other.save(tmp_path / "elsewhere")
    assert pr.delete([int(np.unique(labels.data)[1])])
    assert proj._timer.isActive()
    edited = np.asarray(labels.data).copy()
    proj.open(elsewhere)  # another project opened: this session's edit saved first
    np.testing.assert_array_equal(load_project(out)["labels"], edited)
    labels = proj.session_layer  # the session now: the project opened
    pr.labels.value = labels
    assert pr.delete([int(np.unique(labels.data)[1])])
    assert proj._timer.isActive()
    expected = np.asarray(labels.data).copy()
    viewer.window._qt_window.close()  # napari's window closed a moment after an edit
    np.testing.assert_array_equal(load_project(elsewhere)["labels"], expected)
    assert not errors


def test_saving_to_another_folder_first_saves_the_sessions_last_edit(
    viewer, qtbot, tmp_path, errors
):
    """Save as another folder made that folder the session's: an edit still waiting for its
    autosave never reached the folder followed until then (review)."""
    from napari_hemd.workflows import load_project

    labels, proj, out, pr = _saved_session(viewer, qtbot, tmp_path / "first")
    assert pr.delete([int(np.unique(labels.data)[1])])
    assert proj._timer.isActive()
    edited = np.asarray(labels.data).copy()
    second = proj.save(tmp_path / "second")
    assert proj.folder == second
    np.testing.assert_array_equal(load_project(out)["labels"], edited)
    np.testing.assert_array_equal(load_project(second)["labels"], edited)
    assert not errors


def test_an_edit_made_just_before_viewer_close_is_saved(viewer, qtbot, tmp_path, errors):
    """``viewer.close()`` removes the layers before the window: the session is saved as its
    layers go."""
    from napari_hemd.workflows import load_project

    labels, proj, out, pr = _saved_session(viewer, qtbot, tmp_path / "closing")
    assert pr.delete([int(np.unique(labels.data)[1])])
    assert proj._timer.isActive()
    expected = np.asarray(labels.data).copy()
    viewer.close()
    np.testing.assert_array_equal(load_project(out)["labels"], expected)
    assert not errors


def test_an_edit_before_viewer_close_is_saved_from_a_docked_widget(viewer, qtbot, tmp_path):
    """The same with the widget docked from the plugins menu, whose viewer is napari's
    public-only proxy: each layer it hands out is a new wrapper, the session's layer was never
    recognised as it went, and the edit was lost (audit 18)."""
    from napari_hemd.workflows import load_project

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    _, proj = viewer.window.add_plugin_dock_widget("napari-hemd", "Project (save / reopen session)")
    proj.labels.value = labels
    out = proj.save(tmp_path / "docked")
    proj.confirm_overwrite = lambda p: pytest.fail("re-saving its own session asks nothing")
    assert proj.save(out) == out
    _, pr = viewer.window.add_plugin_dock_widget("napari-hemd", "Proofread")
    pr.labels.value = labels
    pr.scope.value = "all frames"
    assert pr.delete([int(np.unique(labels.data)[1])])
    assert proj._timer.isActive()
    expected = np.asarray(labels.data).copy()
    viewer.close()
    np.testing.assert_array_equal(load_project(out)["labels"], expected)


def test_the_background_save_reads_its_own_copy_of_the_history(viewer, qtbot, tmp_path, errors):
    """A re-run while an autosave runs drops old H-EMD results from the live edits' states: the
    worker iterated those very dicts ("dictionary changed size during iteration"). The snapshot
    holds its own copies."""
    from napari_hemd._widgets._layer_state import forget_old_results

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    for tau in (0.5, 0.6):
        seg.tau.value = tau
        with qtbot.waitSignal(seg.run().finished, timeout=120_000):
            pass
    labels = viewer.layers["nuclei video labels"]
    proj = ProjectWidget(viewer, restore=False)
    proj.labels.value = labels
    kwargs = proj._save_kwargs(labels, tmp_path / "s.zarr", overwrite=False, snapshot=True)
    live = labels.metadata["hemd_history"].undo_stack
    snap = kwargs["history"].undo_stack
    assert [e.name for e in snap] == [e.name for e in live]
    for a, b in zip(snap, live, strict=True):
        assert a.state is None or all(x is not y for x, y in zip(a.state, b.state, strict=True))
    before = [dict(st) for e in snap if e.state for st in e.state]
    assert forget_old_results(labels, keep=0) > 0  # the live states change ...
    assert [dict(st) for e in snap if e.state for st in e.state] == before  # ... not the copy
    assert not errors


def test_autosave_then_new_viewer_restores_session(
    viewer, make_napari_viewer, qtbot, tmp_path, errors, settings_dir
):
    labels = _session(viewer, qtbot)
    proj = ProjectWidget(viewer)
    assert proj.restored is None  # nothing remembered yet
    proj.labels.value = labels
    folder = proj.save(tmp_path / "work")
    assert (settings_dir / "settings.json").is_file()

    # edits after the save reach the folder by themselves (after a quiet moment)
    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    res = labels.metadata["hemd_result"]
    t, pix, parent = next(
        (t, tuple(np.argwhere(f.mask(int(n)))[0]), int(f.parent[n]))
        for t, (f, s) in enumerate(zip(res.forests, res.selections, strict=True))
        for n in s.nodes
        if f.parent[n] >= 0
    )
    insp.inspect(t, pix)
    with qtbot.waitSignal(proj.autosaved, timeout=10_000):
        assert insp.use_candidate([r.node for r in insp.rows].index(parent))
    pr = ProofreadWidget(viewer)
    pr.labels.value = labels
    pr.scope.value = "all frames"
    with qtbot.waitSignal(proj.autosaved, timeout=10_000):
        labels.paint((0, 1, 1), 77)  # napari's own brush: saved, and in the undo history
    gone = int(np.unique(labels.data)[1])
    assert pr.delete([gone])
    with qtbot.waitSignal(proj.autosaved, timeout=10_000):
        assert pr.undo().startswith("delete")  # leaves one redo step
    # what undo/redo give in this viewer, step by step (autosave off: the folder stays as is)
    proj.autosave.value = False
    steps = [_snapshot(labels)]
    assert steps[0]["locked"][t] == [parent] and steps[0]["redo"][0].startswith("delete")
    assert steps[0]["params"]["tau"] == 0.45 and (labels.data == 77).any()
    assert pr.redo().startswith("delete")
    steps.append(_snapshot(labels))
    assert pr.undo().startswith("delete") and pr.undo() == "paint"
    assert not (labels.data == 77).any()  # the stroke is undone like any edit
    assert pr.undo().startswith("use candidate")
    steps.append(_snapshot(labels))
    assert t not in steps[-1]["locked"]
    assert pr.undo().startswith("segment")
    steps.append(_snapshot(labels))
    assert steps[-1]["params"]["tau"] == 0.5
    first_params = dict(labels.metadata["hemd_result"].params)
    viewer.close()

    # "reopen napari": a new viewer; the Project widget restores the last session by itself
    v2 = make_napari_viewer()
    proj2 = ProjectWidget(v2)
    assert proj2.restored is not None and proj2.folder == folder
    back = v2.layers["nuclei video labels"]
    qtbot.waitUntil(lambda: back.metadata["hemd_result"] is not None, timeout=120_000)
    proj2.autosave.value = False
    assert "nuclei video probability" in v2.layers
    _same(_snapshot(back), steps[0])
    pr2 = ProofreadWidget(v2)
    pr2.labels.value = back
    assert pr2.redo().startswith("delete")
    _same(_snapshot(back), steps[1])
    assert pr2.undo().startswith("delete") and (back.data == 77).any()
    assert pr2.undo() == "paint" and not (back.data == 77).any()  # after a restart too
    assert pr2.undo().startswith("use candidate")
    _same(_snapshot(back), steps[2])
    assert back.metadata["hemd_result"] is not None  # a swap keeps the forest
    assert pr2.undo().startswith("segment")
    _same(_snapshot(back), steps[3])
    # the result of the first run was not saved: it is rebuilt from its parameters
    qtbot.waitUntil(lambda: back.metadata["hemd_result"] is not None, timeout=120_000)
    rebuilt = back.metadata["hemd_result"]
    assert rebuilt.params["tau"] == first_params["tau"] == 0.5
    brushed = back.data == 77  # the brush stroke is not in our history: it stays
    np.testing.assert_array_equal(rebuilt.labels[~brushed], back.data[~brushed])
    assert not errors


def test_restore_is_optional(viewer, qtbot, tmp_path, errors, settings_dir):
    labels = _session(viewer, qtbot)
    proj = ProjectWidget(viewer)
    proj.labels.value = labels
    folder = proj.save(tmp_path / "work")
    # a viewer that already holds a session is left alone
    assert ProjectWidget(viewer).restored is None
    proj.auto_restore.value = False
    viewer.layers.clear()
    assert ProjectWidget(viewer).restored is None and not len(viewer.layers)
    other = ProjectWidget(viewer)
    with qtbot.waitSignal(other.restore_last().finished, timeout=120_000):
        pass
    assert other.folder == folder and "nuclei video labels" in viewer.layers
    assert not errors


def test_any_widget_brings_back_the_last_session(
    viewer, make_napari_viewer, qtbot, tmp_path, errors, settings_dir
):
    from qtpy.QtWidgets import QApplication

    labels = _session(viewer, qtbot)
    proj = ProjectWidget(viewer)
    proj.labels.value = labels
    proj.save(tmp_path / "work")
    expected = labels.data.copy()
    viewer.close()

    # reopen napari and go straight to Segment from the Plugins menu: the session comes back
    v2 = make_napari_viewer()
    v2.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    qtbot.waitUntil(lambda: "nuclei video labels" in v2.layers, timeout=60_000)
    back = v2.layers["nuclei video labels"]
    np.testing.assert_array_equal(back.data, expected)
    qtbot.waitUntil(lambda: back.metadata["hemd_result"] is not None, timeout=120_000)
    # one Project widget, however many widgets open afterwards
    v2.window.add_plugin_dock_widget("napari-hemd", "Proofread")
    QApplication.processEvents()
    assert sum("Project" in str(name) for name in v2.window.dock_widgets) == 1
    assert not errors


def test_no_to_restore_docks_nothing(
    viewer, make_napari_viewer, qtbot, tmp_path, errors, restore_answer
):
    """Asked before the Project widget docks: "No" leaves the window as it was, and "Yes" is
    asked once (not again by the Project widget)."""
    from qtpy.QtWidgets import QApplication

    labels = _session(viewer, qtbot)
    proj = ProjectWidget(viewer, restore=False)
    proj.labels.value = labels
    proj.save(tmp_path / "work")
    viewer.close()
    restore_answer["yes"], restore_answer["asked"] = False, []
    v2 = make_napari_viewer()
    v2.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    qtbot.wait(100)
    QApplication.processEvents()
    assert len(restore_answer["asked"]) == 1
    assert not any("Project" in str(name) for name in v2.window.dock_widgets)
    assert len(v2.layers) == 0
    restore_answer["yes"], restore_answer["asked"] = True, []
    v3 = make_napari_viewer()
    v3.window.add_plugin_dock_widget("napari-hemd", "Proofread")
    qtbot.waitUntil(lambda: "nuclei video labels" in v3.layers, timeout=60_000)
    assert len(restore_answer["asked"]) == 1
    assert not errors


def test_restore_asks_never_hijacks_and_brings_the_image_back(
    viewer, make_napari_viewer, qtbot, tmp_path, errors, settings_dir, restore_answer
):
    """The issue's case: after a restart, a user opens another movie and docks Predict: the last
    session is not pulled in. In an empty viewer it is offered (asked), and comes back with its raw
    image under the labels (not labels on black)."""
    from qtpy.QtWidgets import QApplication

    image = viewer.layers["nuclei video image"]
    viewer.layers["nuclei video probability"].metadata["hemd_source"] = image.name
    labels = _session(viewer, qtbot)
    proj = ProjectWidget(viewer)
    proj.labels.value = labels
    folder = proj.save(tmp_path / "work")
    viewer.close()

    busy = make_napari_viewer()
    busy.add_image(np.zeros((3, 40, 40), np.uint16), name="HeLa movie")
    busy.window.add_plugin_dock_widget("napari-hemd", "Predict")
    QApplication.processEvents()
    QApplication.processEvents()
    assert [ly.name for ly in busy.layers] == ["HeLa movie"]  # nothing injected
    assert not any("Project" in str(n) for n in busy.window.dock_widgets)
    assert restore_answer["asked"] == []

    restore_answer["yes"] = False
    assert ProjectWidget(make_napari_viewer()).restored is None  # asked, declined
    assert restore_answer["asked"] == [folder]

    restore_answer["yes"] = True
    v3 = make_napari_viewer()
    proj3 = ProjectWidget(v3)
    assert proj3.restored is not None
    assert "nuclei video image" in v3.layers  # the raw image came back with the session
    np.testing.assert_array_equal(v3.layers["nuclei video image"].data, image.data)
    qtbot.waitUntil(
        lambda: v3.layers["nuclei video labels"].metadata["hemd_result"] is not None,
        timeout=120_000,
    )
    proj3.autosave.value = False
    assert not errors


def test_brush_strokes_undo_after_a_restart_from_plugins_menu(
    viewer, make_napari_viewer, qtbot, tmp_path, errors
):
    """A brush stroke is one step of the undo history, also after napari is restarted."""
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.run_button.native.click()
    with qtbot.waitSignal(seg._worker.finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    _, proj = viewer.window.add_plugin_dock_widget("napari-hemd", "Project (save / reopen session)")
    proj.labels.value = labels
    folder = proj.save(tmp_path / "brush")
    before = labels.data.copy()
    viewer.dims.set_current_step(0, 3)
    labels.brush_size = 9
    with qtbot.waitSignal(proj.autosaved, timeout=10_000):
        labels.paint((3, 40, 40), 99)  # napari's brush, as a click with the paint tool does
    assert (labels.data[3] == 99).sum() > 20
    viewer.close()

    v2 = make_napari_viewer()  # napari restarted: its own Ctrl-Z history is gone
    _, proj2 = v2.window.add_plugin_dock_widget("napari-hemd", "Project (save / reopen session)")
    assert proj2.folder == folder
    back = v2.layers["nuclei video labels"]
    assert (back.data[3] == 99).sum() > 20
    _, pr = v2.window.add_plugin_dock_widget("napari-hemd", "Proofread")
    pr.labels.value = back
    pr.undo_button.native.click()
    np.testing.assert_array_equal(back.data, before)
    pr.redo_button.native.click()
    assert (back.data[3] == 99).sum() > 20
    assert not errors


def test_fields_keep_their_captions_in_an_empty_viewer(make_napari_viewer):
    """The labels-layer combo is also magicgui's ``Container.labels`` (captions or not): with no
    layer yet it was false, and a widget docked in an empty viewer lost every caption."""
    from napari_hemd._widgets import ExportWidget

    viewer = make_napari_viewer()
    for widget in (ProjectWidget(viewer, restore=False), ExportWidget(viewer)):
        assert widget.labels.choices == ()
        assert widget.path._labeled_widget() is not None  # "project (.zarr)" / "save to"
        assert widget.labels._labeled_widget() is not None


def test_a_reopened_session_with_a_model_re_runs_and_resaves_as_it_was(
    make_napari_viewer, qtbot, tmp_path, errors
):
    """A project of labels segmented with a model keeps what its probability map was made with:
    after reopening, Lock and re-run grows whole cells exactly as in the session (it used to
    give the bare H-EMD regions: the background map was not saved), and saving again keeps
    the raw image (it used to drop it: the reopened map no longer named its image)."""
    pytest.importorskip("torch")
    from napari_hemd.data.synthetic import nuclei_video
    from napari_hemd.workflows import load_project

    movie = nuclei_video(n_frames=4, shape=(128, 128), n_cells=8, seed=4)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(movie, name="movie")
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["movie"]
    seg.model.value = "nuclei-fluo"
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["movie labels"]
    grown = labels.data.copy()
    res = labels.metadata["hemd_result"]
    assert (grown > 0).sum() > (res.labels > 0).sum()  # whole cells: beyond H-EMD's regions
    t = 2
    node = int(res.selections[t].nodes[0])
    labels.metadata["hemd_locked"] = {t: [node]}
    proj = ProjectWidget(viewer, restore=False)
    proj.labels.value = labels
    out = proj.save(tmp_path / "session")
    assert load_project(out)["background"] is not None
    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    with qtbot.waitSignal(insp.lock_and_rerun().finished, timeout=120_000):
        pass
    in_session = labels.data.copy()

    viewer.layers.clear()
    with qtbot.waitSignal(proj.open(out).finished, timeout=120_000):
        pass
    back = viewer.layers["movie labels"]
    np.testing.assert_array_equal(back.data, grown)
    prob = viewer.layers["movie probability"]
    assert prob.metadata["hemd_source"] == "movie" and prob.metadata["hemd_grow"] > 0
    assert prob.metadata["hemd_model"] == "nuclei-fluo"
    assert prob.metadata["hemd_segment_defaults"]["min_size"] > 0
    insp2 = InspectorWidget(viewer)
    insp2.labels.value = back
    with qtbot.waitSignal(insp2.lock_and_rerun().finished, timeout=120_000):
        pass
    np.testing.assert_array_equal(back.data, in_session)  # grown as in the session
    assert proj.autosave_now() == out
    np.testing.assert_array_equal(load_project(out)["image"], movie)  # the image kept
    assert not errors


def test_a_moved_project_lists_its_fine_tuned_models(viewer, qtbot, tmp_path, errors):
    """The model lists remember a model by its path: a project moved (or copied, or received)
    with its models/ reopened with none of them in Predict, Segment or Fine-tune. Reopening
    lists each one not listed yet; a name another file holds gets the project's name."""
    pytest.importorskip("torch")
    import shutil

    from napari_hemd import _settings
    from napari_hemd._widgets._models import model_choices
    from napari_hemd.models.weights import HemdModel, save_model_file
    from napari_hemd.workflows import save_project

    video = viewer.layers["nuclei video probability"].data
    labels = np.asarray(viewer.layers["nuclei video ground truth"].data, np.uint32)
    first = tmp_path / "first.zarr"
    save_project(first, prob=video, labels=labels, params={"method": "hemd"})
    (first / "models").mkdir()
    save_model_file(
        HemdModel.create("unet", base_channels=4, depth=2), first / "models" / "mine.pt"
    )
    _settings.remember_model("mine", first / "models" / "mine.pt", "unet")
    moved = tmp_path / "moved" / "copy.zarr"
    shutil.copytree(first, moved)
    viewer.layers.clear()
    worker = ProjectWidget(viewer, restore=False).open(moved)
    if worker is not None:
        with qtbot.waitSignal(worker.finished, timeout=120_000):
            pass
    listed = _settings.user_models()
    assert listed["mine"]["path"] == str((first / "models" / "mine.pt").resolve())  # kept
    assert listed["mine (copy)"]["path"] == str((moved / "models" / "mine.pt").resolve())
    assert "mine (copy) (fine-tuned)" in [label for label, _ in model_choices()]
    worker = ProjectWidget(viewer, restore=False).open(moved)  # listed once, not again
    if worker is not None:
        with qtbot.waitSignal(worker.finished, timeout=120_000):
            pass
    assert len(_settings.user_models()) == 2 and not errors


def test_save_as_brings_the_projects_models_along(viewer, qtbot, tmp_path, errors):
    """Saved into a new folder, a reopened project left its models/ behind (only a folder being
    replaced had its models carried over)."""
    from napari_hemd.workflows import load_project, save_project

    video = viewer.layers["nuclei video probability"].data
    labels = np.asarray(viewer.layers["nuclei video ground truth"].data, np.uint32)
    first = tmp_path / "first.zarr"
    save_project(first, prob=video, labels=labels, params={"method": "hemd"})
    (first / "models").mkdir()
    (first / "models" / "mine.pt").write_bytes(b"a fine-tuned model")
    viewer.layers.clear()
    proj = ProjectWidget(viewer, restore=False)
    worker = proj.open(first)
    if worker is not None:
        with qtbot.waitSignal(worker.finished, timeout=120_000):
            pass
    out = proj.save(tmp_path / "second")
    assert out == tmp_path / "second.zarr"
    assert load_project(out)["models"] == [out / "models" / "mine.pt"]
    assert (out / "models" / "mine.pt").read_bytes() == b"a fine-tuned model"
    assert (first / "models" / "mine.pt").exists() and not errors  # the first one keeps its own
