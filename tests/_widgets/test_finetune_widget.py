"""The human-in-the-loop loop through the Plugins menu on real data: segment, correct a few
frames, mark them checked, save the project, fine-tune, re-segment the rest, revert."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

CROP = (slice(200, 456), slice(300, 556))


def _wait(qtbot, worker, timeout=180_000):
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=timeout):
        pass


def _segmented_sample(viewer, qtbot, link: bool = False):
    """The sample video segmented with nuclei-fluo (one view) by the Segment widget: its labels."""
    from napari_hemd._widgets import SegmentWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video image"]
    seg.model.value = "nuclei-fluo"
    seg.tta.value = 1
    seg.link.value = link
    _wait(qtbot, seg.run())
    return viewer.layers["nuclei video image labels"]


@pytest.fixture
def hela(shared_data):
    """Six frames of Fluo-N2DL-HeLa 01 (a 256 x 256 crop) and their silver-truth masks."""
    import tifffile

    seq = shared_data / "ctc" / "Fluo-N2DL-HeLa" / "01"
    frames = range(6)
    image = np.stack([tifffile.imread(seq / f"t{t:03d}.tif")[CROP] for t in frames])
    truth = np.stack(
        [
            tifffile.imread(seq.parent / "01_ST" / "SEG" / f"man_seg{t:03d}.tif")[CROP]
            for t in frames
        ]
    )
    return image, truth.astype(np.uint32)


def test_proofread_finetune_resegment_revert_from_plugins_menu(
    make_napari_viewer, qtbot, errors, hela, tmp_path
):
    from napari_hemd.workflows import load_project

    image, truth = hela
    viewer = make_napari_viewer()
    viewer.add_image(image, name="hela")
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["hela"]
    seg.model.value = "nuclei-fluo"
    seg.run_button.native.click()
    _wait(qtbot, seg._worker)
    labels = viewer.layers["hela labels"]

    # proofread: frames 0-2 corrected (here: replaced by the reference), marked checked
    _, proof = viewer.window.add_plugin_dock_widget("napari-hemd", "Proofread")
    proof.labels.value = labels
    from napari_hemd._widgets._layer_state import apply_edit

    for t in (0, 1, 2):
        apply_edit(labels, f"correct frame {t}", truth[t], frame=t)
        viewer.dims.set_current_step(0, t)
        proof.checked.value = True  # the checkbox, as a user ticks it
    viewer.dims.set_current_step(0, 4)
    assert proof.checked.value is False  # frame 4 is not checked
    proof.toggle_checked()  # Alt-C checks it ...
    assert 4 in labels.metadata["hemd_checked"]
    proof.toggle_checked()  # ... and unchecks it
    assert labels.metadata["hemd_checked"] == [0, 1, 2]
    assert proof.checked_list.value == "checked frames: 0-2"

    # the project keeps the checked frames
    _, project = viewer.window.add_plugin_dock_widget(
        "napari-hemd", "Project (save / reopen session)"
    )
    project.labels.value = labels
    folder = project.save(tmp_path / "session.zarr")
    assert load_project(folder)["checked"] == [0, 1, 2]

    # fine-tune on the checked frames; frame 2 is held out and scored before and after
    _, tune = viewer.window.add_plugin_dock_widget(
        "napari-hemd", "Fine-tune (learn from your corrections)"
    )
    tune.image.value, tune.labels.value = viewer.layers["hela"], labels
    assert tune.frames_info.value.startswith("3 checked frame(s)")
    proof.mark_checked(5)  # checked while the Fine-tune dock is open: it follows
    assert tune.frames_info.value.startswith("4 checked frame(s)")
    proof.mark_checked(5, False)
    tune.base.value = "nuclei-fluo"
    tune.name.value = "my hela"
    tune.minutes.value = 0.15
    tune.run_button.native.click()
    _wait(qtbot, tune._worker)
    res = tune.result
    assert res is not None and not errors
    assert res.path == folder / "models" / "my hela.pt" and res.path.is_file()
    assert res.frames == [0, 1] and res.held_out == 2 and res.steps > 0
    assert set(res.before) == {"F1", "AJI", "SEG"} and set(res.after) == {"F1", "AJI", "SEG"}
    assert "held-out frame 2" in tune.scores.value and "after" in tune.scores.value
    assert len(tune.plot.losses) == res.steps  # the live loss curve saw every step
    # the new model is in every model list, under the given name
    assert str(res.path) in seg.model.choices
    shown = [seg.model.native.itemText(i) for i in range(seg.model.native.count())]
    assert "my hela (fine-tuned)" in shown
    # ... and the project's last model is offered as the start of the next round
    i = tune.base.choices.index(str(res.path))
    assert tune.base.native.itemText(i) == "this project's last model (my hela)"
    before = labels.data.copy()

    # re-segment: unchecked frames change, checked ones are kept exactly
    tune.resegment_button.native.click()
    _wait(qtbot, tune._worker)
    after = labels.data
    for t in (0, 1, 2):
        assert np.array_equal(after[t], truth[t])
    assert not np.array_equal(after[3:], before[3:])
    assert labels.metadata["hemd_params"]["hemd_model"] == str(res.path)
    # the project was saved again with the model still in it
    project.autosave_now()
    assert (folder / "models" / "my hela.pt").is_file()

    # the re-segment undone (Proofread): Revert has nothing to revert and records nothing (it
    # said it reverted, and its empty edit cleared Redo); redone, it reverts
    from napari_hemd._widgets._layer_state import history_of, step_history

    hist = history_of(labels)
    assert step_history(labels) is not None and np.array_equal(labels.data, before)
    n = len(hist.undo_stack)
    assert tune.revert() is False and len(hist.undo_stack) == n and hist.redo_stack
    assert step_history(labels, redo=True) is not None

    # revert: labels and model as before
    tune.revert_button.native.click()
    assert np.array_equal(labels.data, before)
    assert labels.metadata["hemd_params"]["hemd_model"] == "nuclei-fluo"
    assert not errors


def test_cancel_keeps_the_best_model_and_leaves_labels(make_napari_viewer, qtbot, errors, hela):
    from napari_hemd._widgets import FineTuneWidget
    from napari_hemd._widgets import finetune as ft_module

    image, truth = hela
    viewer = make_napari_viewer()
    viewer.add_image(image, name="hela")
    labels = viewer.add_labels(truth.copy(), name="hela labels")
    labels.metadata["hemd_checked"] = [0, 1, 2, 3]
    tune = FineTuneWidget(viewer)
    tune.image.value, tune.labels.value = viewer.layers["hela"], labels
    tune.base.value = "nuclei-fluo"
    tune.minutes.value = 5.0
    worker = tune.run()
    qtbot.waitUntil(lambda: len(tune.plot.losses) >= 3, timeout=120_000)
    tune.cancel_button.native.click()
    _wait(qtbot, worker, timeout=60_000)
    res = tune.result
    assert res is not None and res.cancelled and res.path.is_file()
    assert res.path.parent == ft_module.models_folder(labels)  # no project: the settings folder
    assert res.steps < 200
    assert np.array_equal(labels.data, truth)  # nothing applied
    assert not errors


def test_single_image_with_the_affinity_model(make_napari_viewer, qtbot, errors):
    """A single 2D image (frame 0) and the affinity network go through the same loop."""
    from napari_hemd._widgets import FineTuneWidget, ProofreadWidget
    from napari_hemd.data.synthetic import nuclei_video
    from napari_hemd.models import load_model_file

    d = nuclei_video(n_frames=1, shape=(96, 96), n_cells=6, seed=2)
    viewer = make_napari_viewer()
    viewer.add_image(d["image"][0], name="cells")
    labels = viewer.add_labels(d["labels"][0].astype(np.uint32), name="cells labels")
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    assert proof.mark_checked() == [0]  # a 2D image is frame 0
    tune = FineTuneWidget(viewer)
    tune.image.value, tune.labels.value = viewer.layers["cells"], labels
    tune.base.value = "nuclei-affinity"
    tune.minutes.value = 0.1
    _wait(qtbot, tune.run())
    res = tune.result
    assert res is not None and res.held_out is None and res.frames == [0]
    assert load_model_file(res.path).kind == "affinity"
    assert "check 3 or more frames" in tune.scores.value
    assert tune.resegment() is None  # every frame is checked: nothing to redo
    assert not errors


def test_a_worse_model_is_flagged():
    from types import SimpleNamespace

    from napari_hemd._widgets._finetune_report import scores_lower, scores_text

    before = {"F1": 0.8, "AJI": 0.7, "SEG": 0.7}
    worse = SimpleNamespace(name="m", held_out=2, steps=9, frames=[0, 1], before=before,
                            after={"F1": 0.82, "AJI": 0.6, "SEG": 0.7})  # fmt: skip
    better = SimpleNamespace(**{**vars(worse), "after": {"F1": 0.85, "AJI": 0.75, "SEG": 0.8}})
    assert scores_lower(worse) and "better not re-segment" in scores_text(worse)
    assert not scores_lower(better) and "better not" not in scores_text(better)


def test_checked_frames_of_a_layer_placed_at_later_frames(make_napari_viewer, errors):
    """Segment on frames 5-9 makes a layer translated by 5: checking viewer frame 7 marks the
    layer's frame 2."""
    from napari_hemd._widgets import ProofreadWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((10, 32, 32), np.float32), name="movie")
    labels = viewer.add_labels(np.zeros((5, 32, 32), np.uint32), name="part", translate=(5, 0, 0))
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    viewer.dims.set_current_step(0, 7)
    assert proof.toggle_checked() == [2]
    viewer.dims.set_current_step(0, 2)  # before the layer starts
    assert proof.toggle_checked() == [2] and errors  # refused, saying which frames exist


def test_finetune_and_resegment_at_the_labels_zoom(make_napari_viewer, qtbot, errors, monkeypatch):
    """Labels segmented with a zoom: the model is fine-tuned on frames zoomed alike, and the
    unchecked frames are re-segmented with it at that zoom."""
    from napari_hemd import segment_image
    from napari_hemd._widgets import FineTuneWidget
    from napari_hemd._widgets import finetune as ft_module
    from napari_hemd._widgets._layer_state import PARAMS_KEY
    from napari_hemd.data.synthetic import nuclei_video

    image = nuclei_video(n_frames=4, shape=(96, 96), n_cells=6, seed=3)["image"]
    seg = segment_image(image, "nuclei-fluo", iterations=2, scale=1.5)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    labels = viewer.add_labels(seg.labels, name="cells labels", metadata={PARAMS_KEY: seg.params})
    labels.metadata["hemd_checked"] = [0, 1, 2]
    assert ft_module.run_zoom(labels) == 1.5
    infos: list[str] = []
    monkeypatch.setattr(ft_module, "show_info", infos.append)
    monkeypatch.setattr(ft_module, "show_warning", infos.append)  # a model scoring lower
    tune = FineTuneWidget(viewer)
    tune.image.value, tune.labels.value = viewer.layers["cells"], labels
    tune.base.value = "nuclei-fluo"
    tune.minutes.value = 0.1
    assert tune.frames_info.value.endswith("; at zoom 1.5, the labels' zoom")  # said before
    _wait(qtbot, tune.run())
    res = tune.result
    assert res is not None and res.scale == 1.5 and res.held_out == 2
    assert "trained at zoom 1.5, the labels' zoom" in infos[-1]
    # Segment, Predict and Large data take its zoom when it is chosen (a shipped model's: 1)
    from napari_hemd._widgets import PredictWidget, SegmentWidget, StreamWidget
    from napari_hemd._widgets.predict import FROM_FILE

    for w in (SegmentWidget(viewer), PredictWidget(viewer), StreamWidget(viewer)):
        w.model.value = str(res.path)
        assert w.scale.value == 1.5, type(w).__name__
        info = w.model_info.value  # and says what the model is
        assert info.startswith("U-Net, fine-tuned from nuclei-fluo\n"), info
        assert info.endswith("\ntrained at zoom 1.5: used at that zoom"), info
        w.model.value = "nuclei-fluo"
        assert w.scale.value == 1.0, type(w).__name__
        assert w.model_info.value.startswith("fluorescent nuclei in time-lapses\n")
        assert "held out, Fluo-N2DL-HeLa/01 ST: F1 0." in w.model_info.value
    predict_widget = PredictWidget(viewer)
    predict_widget.model.value = FROM_FILE
    predict_widget.model_file.value = res.path
    assert predict_widget.scale.value == 1.5
    assert "trained at zoom 1.5" in predict_widget.model_info.value
    _wait(qtbot, tune.resegment())
    params = labels.metadata[PARAMS_KEY]
    assert params["scale"] == 1.5 and params["hemd_model"] == str(res.path)
    keys = [k for k in ft_module._SEGMENT_KEYS if k in seg.params]
    redo = segment_image(image, str(res.path), scale=1.5, **{k: seg.params[k] for k in keys})
    np.testing.assert_array_equal(labels.data[3] > 0, redo.labels[3] > 0)
    np.testing.assert_array_equal(labels.data[:3], seg.labels[:3])  # the checked frames kept
    assert not errors


def test_run_zoom_reads_segment_and_large_data_labels():
    from napari.layers import Labels

    from napari_hemd._widgets.finetune import run_zoom

    data = np.zeros((2, 8, 8), np.uint32)
    assert run_zoom(Labels(data)) == 1.0
    assert run_zoom(Labels(data, metadata={"hemd_params": {"scale": 0.62}})) == 0.62
    assert run_zoom(Labels(data, metadata={"hemd_stream": {"scale": 1.74}})) == 1.74
    for bad in ("auto", True, 0, None):  # not a zoom a run used: frames at their own size
        assert run_zoom(Labels(data, metadata={"hemd_params": {"scale": bad}})) == 1.0


def test_an_empty_model_name_shows_the_name_it_gives(make_napari_viewer, tmp_path):
    """The name field, left empty, shows greyed the name the model will be saved under."""
    from napari_hemd._widgets import FineTuneWidget
    from napari_hemd._widgets.finetune import FROM_FILE

    w = FineTuneWidget(make_napari_viewer())
    shipped = w.base.value
    assert shipped and not shipped.endswith(".pt")
    assert w.name.native.placeholderText() == f"{shipped}-tuned"
    w.base.value = FROM_FILE
    assert w.name.native.placeholderText() == ""  # no file yet
    w.base_file.value = tmp_path / "my-nuclei.pt"
    assert w.name.native.placeholderText() == "my-nuclei-tuned"
    w.base.value = shipped
    assert w.name.native.placeholderText() == f"{shipped}-tuned"
    # a file name the model name cannot hold: the name shown is one Run takes
    w.base.value = FROM_FILE
    w.base_file.value = tmp_path / "nuclei-fluo (copy).pt"
    assert w.name.native.placeholderText() == "nuclei-fluo-copy-tuned"


def test_a_model_name_another_project_lists_is_not_taken_again(
    viewer, qtbot, errors, tmp_path, monkeypatch
):
    """Two projects fine-tuned under the default name: the second one's model replaced the
    first's in every model list (the registry is keyed by name; only the project's own folder
    was checked). The default name is numbered past it; a typed one is refused."""
    import napari_hemd.finetune as finetune_module
    from napari_hemd import _settings
    from napari_hemd._widgets import FineTuneWidget

    other = tmp_path / "a.zarr" / "models" / "nuclei-fluo-tuned.pt"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"a fine-tuned model of project A")
    _settings.remember_model("nuclei-fluo-tuned", other, "unet")
    asked = []

    def workflow(*args, output, name, **kwargs):  # the run's names, no training
        asked.append((name, output))
        yield ("fine-tune", 0, 1)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(finetune_module, "finetune_workflow", workflow)
    labels = viewer.layers["nuclei video ground truth"]
    labels.metadata["hemd_checked"] = [0, 1]
    w = FineTuneWidget(viewer)
    w.image.value = viewer.layers["nuclei video image"]
    w.labels.value = labels
    w.base.value = "nuclei-fluo"
    _wait(qtbot, w.run())
    assert asked[-1][0] == "nuclei-fluo-tuned-2" and asked[-1][1].name == "nuclei-fluo-tuned-2.pt"
    w.name.value = "nuclei-fluo-tuned"
    assert w.run() is None
    assert (
        "a model named 'nuclei-fluo-tuned' exists" in errors[-1] and "another project" in errors[-1]
    )
    assert _settings.user_models()["nuclei-fluo-tuned"]["path"] == str(other.resolve())
    w.name.value = "cells-phc"  # a shipped model's name: listed beside it (audit 27)
    assert w.run() is None
    assert "'cells-phc' is a shipped model's name" in errors[-1]


def test_resegmented_frames_keep_the_ids_of_the_checked_frames_cells(
    viewer, qtbot, errors, monkeypatch
):
    """Re-segment on a linked layer gave the re-segmented frames ids above the checked frames'
    (an offset), so no cell kept its id across the boundary: every track was cut there. A cell
    continuing one of the checked frame before now takes its id. The movie is linked again in
    the worker, not on napari's thread."""
    import threading

    from napari_hemd._widgets import FineTuneWidget, ProofreadWidget, _layer_state, finetune

    threads = []
    real = _layer_state.keep_checked_frames

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    for module in (_layer_state, finetune):
        monkeypatch.setattr(module, "keep_checked_frames", recorded)

    labels = _segmented_sample(viewer, qtbot, link=True)
    labels.data = labels.data.astype(np.int32)  # as an int32 TIFF reads (review 31b: the
    before = labels.data.copy()  # worker's frames were thrown away for their type)
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    proof.mark_checked(0)
    proof.mark_checked(1)
    tune = FineTuneWidget(viewer)
    tune.image.value, tune.labels.value = viewer.layers["nuclei video image"], labels
    _wait(qtbot, tune.resegment(model="nuclei-fluo"))  # the same model: the same cells
    assert threads == [False]
    after = labels.data
    np.testing.assert_array_equal(after[:2], before[:2])
    shared = [int(i) for i in np.intersect1d(after[1], after[2]) if i]
    assert len(shared) >= 0.8 * (len(np.unique(before[2])) - 1)  # tracks go on across 1 -> 2
    for i in shared:  # the same cell (the video's nuclei move little from frame to frame)
        a, b = after[2] == i, after[1] == i
        assert (a & b).sum() / (a | b).sum() > 0.5
    assert not errors


def test_checked_frames_without_objects_are_refused_before_training(
    make_napari_viewer, errors, monkeypatch
):
    """Checked frames that all hold no object were refused by the training worker: "Fine-tune
    failed" and a traceback on the console (audit 17); now one line before any work."""
    import napari_hemd.finetune as finetune_module
    from napari_hemd._widgets import FineTuneWidget
    from napari_hemd._widgets._layer_state import set_checked

    monkeypatch.setattr(finetune_module, "finetune", lambda *a, **k: pytest.fail("trained"))
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((3, 32, 32)), name="movie")
    labels = viewer.add_labels(np.zeros((3, 32, 32), np.uint32), name="movie labels")
    set_checked(labels, 0)
    set_checked(labels, 1)
    w = FineTuneWidget(viewer)
    w.image.value, w.labels.value = image, labels
    assert w.run() is None
    want = (
        "Fine-tune: the checked frame(s) 0, 1 hold no objects (every label 0): fine-tuning on "
        "them would teach the model to find no cells. Check frames whose cells you corrected"
    )
    assert errors == [want]


def test_start_from_is_the_model_the_labels_came_from(make_napari_viewer):
    """*start from* read nuclei-fluo (the first shipped model) for labels segmented with
    cells-phc: a phase-contrast user taking the default tuned the fluorescence network
    (audit 18)."""
    from napari_hemd._widgets import FineTuneWidget
    from napari_hemd._widgets._layer_state import PARAMS_KEY

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 32, 32), np.float32), name="movie")
    meta = {PARAMS_KEY: {"method": "hemd", "model": "cells-phc"}}
    labels = viewer.add_labels(np.zeros((3, 32, 32), np.uint32), name="phc", metadata=meta)
    w = FineTuneWidget(viewer)
    w.labels.value = labels
    assert w.base.value == "cells-phc"
    other = viewer.add_labels(np.zeros((3, 32, 32), np.uint32), name="plain")
    w.labels.value = other  # no model recorded: the first shipped one
    assert w.base.value != "cells-phc"
    w.labels.value = labels
    assert w.base.value == "cells-phc" and w.default_name() == "cells-phc-tuned"


def test_corrections_made_while_or_after_resegmenting_are_kept(viewer, qtbot, errors):
    """A frame corrected and checked while Re-segment ran was replaced by the model's labels
    and stayed checked; Revert mixed a frame corrected after the re-segment with the old labels
    (audit 27). Both now stay as the user left them."""
    from napari_hemd._widgets import FineTuneWidget, ProofreadWidget
    from napari_hemd._widgets._layer_state import checked_frames

    truth = np.asarray(viewer.layers["nuclei video ground truth"].data).astype(np.uint32)
    labels = _segmented_sample(viewer, qtbot)
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    proof.mark_checked(0)
    viewer.dims.set_current_step(0, 2)
    assert proof.delete([int(np.unique(labels.data[2])[1])])  # re-segmenting brings it back
    first = labels.data.copy()
    tune = FineTuneWidget(viewer)
    tune.image.value, tune.labels.value = viewer.layers["nuclei video image"], labels
    yy, xx = np.mgrid[: truth.shape[1], : truth.shape[2]]

    def correct(t):  # napari's brush / fill path
        at = (np.full(yy.size, t), yy.ravel(), xx.ravel())
        labels.data_setitem(at, truth[t].ravel().astype(labels.data.dtype))

    worker = tune.resegment(model="nuclei-fluo")
    correct(3)  # the user goes on proofreading while it runs
    proof.mark_checked(3)
    _wait(qtbot, worker)
    np.testing.assert_array_equal(labels.data[3], truth[3])
    assert checked_frames(labels) == [0, 3]
    assert not np.array_equal(labels.data[2], first[2])  # frame 2 re-segmented
    correct(4)  # corrected after the re-segment (and checked), then Revert
    proof.mark_checked(4)
    assert tune.revert()
    np.testing.assert_array_equal(labels.data[4], truth[4])
    np.testing.assert_array_equal(labels.data[3], truth[3])
    for t in (1, 2, 5):  # the frames nobody touched since: back to the first labels
        np.testing.assert_array_equal(labels.data[t], first[t])
    assert not errors


def test_revert_and_resegment_edge_cases(make_napari_viewer, monkeypatch):
    """Review 30c, with a stand-in segmentation: Revert kept frames checked before the
    re-segment, whose ids it had relinked (id 1 then named another cell in the next frame); one
    image checked while it ran was replaced; a stroke where the re-segment changed nothing left
    that frame mixed."""
    from types import SimpleNamespace

    from napari_hemd import image_segmentation
    from napari_hemd._widgets import FineTuneWidget
    from napari_hemd._widgets._layer_state import PARAMS_KEY, set_checked, track_paint

    viewer = make_napari_viewer()
    monkeypatch.setattr(image_segmentation, "segment_image_workflow", lambda *a, **k: iter(()))

    def widget(labels, params=None, checked=()):
        viewer.layers.clear()
        image = viewer.add_image(np.zeros(labels.shape, np.float32), name="img")
        layer = viewer.add_labels(labels.copy(), name="lab", metadata={PARAMS_KEY: params or {}})
        track_paint(layer)
        for t in checked:
            set_checked(layer, t)
        tune = FineTuneWidget(viewer)
        tune.image.value, tune.labels.value = image, layer
        got = {}
        tune.run_workflow = lambda gen, done, *a: got.setdefault("done", done)
        tune.resegment(model="x")
        return tune, layer, got["done"]

    def result(new):
        maps = {"foreground": np.zeros(new.shape, np.float32)}
        return SimpleNamespace(labels=new, tracks=None, params={}, maps=maps, grow=0, defaults={},
                               result=None)  # fmt: skip

    old = np.zeros((3, 32, 32), np.uint32)  # linked labels, frames 0 and 2 checked
    old[:, 5:10, 5:10] = [[[1]], [[5]], [[5]]]
    old[1:, 20:25, 20:25] = 1
    tune, layer, done = widget(old, {"link": True}, checked=(0, 2))
    new = np.zeros_like(old)
    new[1, 5:10, 5:10], new[1, 20:25, 20:25] = 1, 2
    done(result(new))
    assert tune.revert()
    np.testing.assert_array_equal(layer.data, old)  # every frame back, with its ids
    one = np.zeros((32, 32), np.uint32)  # one image, checked while it ran: kept
    tune, layer, done = widget(one)
    corrected = one.copy()
    corrected[20:25, 20:25] = 2
    layer.data = corrected.copy()
    set_checked(layer, 0)
    done(result(np.full((32, 32), 9, np.uint32)))
    np.testing.assert_array_equal(layer.data, corrected)
    old = np.zeros((3, 32, 32), np.uint32)  # a stroke where the re-segment changed nothing
    old[:, 5:10, 5:10] = 1
    tune, layer, done = widget(old)
    new = np.zeros_like(old)
    new[:, 5:12, 5:12], new[:, 20:26, 20:26] = 1, 2
    done(result(new))
    at = (np.full(4, 1), np.array([26, 26, 27, 27]), np.array([20, 21, 20, 21]))
    layer.data_setitem(at, np.full(4, 2, layer.data.dtype))
    stroked = np.asarray(layer.data[1]).copy()
    assert tune.revert()
    np.testing.assert_array_equal(layer.data[1], stroked)  # the frame as the user left it
    np.testing.assert_array_equal(layer.data[[0, 2]], old[[0, 2]])
