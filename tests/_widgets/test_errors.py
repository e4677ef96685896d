"""Error paths: wrong layer type, a 2D frame where a sequence is needed, cancel, overwrite, read-only."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_hemd._widgets import ExportWidget, InspectorWidget, ProofreadWidget, SegmentWidget


def test_only_matching_layers_offered(viewer):
    seg = SegmentWidget(viewer)
    names = [c[0] if isinstance(c, tuple) else c for c in seg.prob.choices]
    assert "nuclei video ground truth" not in [getattr(c, "name", c) for c in seg.prob.choices]
    assert names  # images are offered


def test_wrong_layer_type(viewer, errors):
    seg = SegmentWidget(viewer)
    assert seg.run(prob_layer=viewer.layers["nuclei video ground truth"]) is None
    assert errors and "probability" in errors[-1]
    insp = InspectorWidget(viewer)
    assert insp.inspect(0, (5, 5)) == []  # ground truth has no H-EMD result
    assert "Segment widget" in errors[-1]


def test_2d_frame_needs_sequence(viewer, errors):
    layer = viewer.add_image(np.full((32, 32), 0.9, np.float32), name="one frame")
    seg = SegmentWidget(viewer)
    assert seg.run(prob_layer=layer) is None
    assert "single 2D frame" in errors[-1]


def test_maps_with_channels_last_are_refused(viewer, errors):
    """An ilastik-style (T, Y, X, C) export in one layer: refused before any work, naming the
    channels (it was segmented as a volume of 3-pixel-wide slices)."""
    fg = np.asarray(viewer.layers["nuclei video probability"].data[:3], np.float32)
    layer = viewer.add_image(np.stack([1 - fg, fg, 0 * fg], -1), name="ilastik export")
    seg = SegmentWidget(viewer)
    assert seg.run(prob_layer=layer) is None
    assert "looks like channels" in errors[-1]
    assert "ilastik export labels" not in viewer.layers


def test_cancel_mid_run(viewer, qtbot, errors):
    big = np.repeat(viewer.layers["nuclei video probability"].data, 4, axis=0)
    layer = viewer.add_image(big, name="long probability")
    seg = SegmentWidget(viewer)
    worker = seg.run(prob_layer=layer)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        with qtbot.waitSignal(worker.yielded, timeout=60_000):
            pass
        seg.cancel()
    assert "long labels" not in viewer.layers
    assert seg.run_button.enabled and not errors


def test_export_never_overwrites_without_asking(viewer, tmp_path, errors):
    exp = ExportWidget(viewer)
    exp.labels.value = viewer.layers["nuclei video ground truth"]
    exp.format.value = "TIFF stack"
    out = exp.export(tmp_path / "gt")
    assert out == tmp_path / "gt.tif" and out.exists()
    stamp = out.stat().st_mtime_ns
    exp.confirm_overwrite = lambda p: False
    assert exp.export(tmp_path / "gt") is None
    assert out.stat().st_mtime_ns == stamp
    exp.confirm_overwrite = lambda p: True
    assert exp.export(tmp_path / "gt") == out


def test_export_never_replaces_a_folder_it_did_not_write(viewer, tmp_path, errors):
    exp = ExportWidget(viewer)
    exp.labels.value = viewer.layers["nuclei video ground truth"]
    exp.format.value = "CTC result folder"
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    exp.confirm_overwrite = lambda p: pytest.fail("must not even offer to replace it")
    assert exp.export(user) is None
    assert (user / "notes.txt").read_text() == "keep me" and len(list(user.iterdir())) == 1
    assert len(errors) == 1 and "did not write" in errors[0] and "Errno" not in errors[0]
    ours = exp.export(tmp_path / "res")  # an earlier export of ours is offered and replaced
    exp.confirm_overwrite = lambda p: True
    assert exp.export(tmp_path / "res") == ours and len(errors) == 1


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_export_read_only_folder(viewer, tmp_path, errors, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root ignores permissions: make the write fail as it would
        from napari_hemd._widgets import export

        def refuse(*args, **kwargs):
            raise PermissionError(f"[Errno 13] Permission denied: {str(ro)!r}")

        monkeypatch.setattr(export, "write_labels", refuse)
    exp = ExportWidget(viewer)
    exp.labels.value = viewer.layers["nuclei video ground truth"]
    assert exp.export(ro / "out") is None
    assert "Export failed" in errors[-1]


def test_proofread_ops(viewer, errors):
    lab = np.zeros((2, 8, 8), np.uint32)
    lab[:, :4] = 1
    lab[:, 4:] = 2
    layer = viewer.add_labels(lab, name="toy")
    pr = ProofreadWidget(viewer)
    pr.labels.value = layer
    viewer.dims.current_step = (1, 0, 0)
    assert pr.merge([1, 2])
    assert set(np.unique(layer.data[1])) == {1} and set(np.unique(layer.data[0])) == {1, 2}
    pr.scope.value = "all frames"
    assert pr.relabel(2, 9) and (layer.data == 9).sum() == 32
    assert pr.delete([9]) and (layer.data == 9).sum() == 0
    assert pr.paint_new() == 2 and layer.mode == "paint"
    assert pr.undo().startswith("delete") and pr.undo().startswith("relabel")
    assert pr.undo().startswith("merge")
    np.testing.assert_array_equal(layer.data, lab)
    assert pr.undo() is None
    pr.ids.value = "1, x"
    assert not pr.merge() and "integers" in errors[-1]


def test_split_by_seeds(viewer, errors):
    lab = np.zeros((2, 10, 20), np.uint32)
    lab[:, 2:8, 2:18] = 5
    layer = viewer.add_labels(lab, name="blob")
    seeds = viewer.add_points(np.array([[1, 5, 4], [1, 5, 15], [0, 5, 10]]), name="seeds")
    pr = ProofreadWidget(viewer)
    pr.labels.value = layer
    pr.seeds.value = seeds
    viewer.dims.current_step = (1, 0, 0)
    assert pr.split()
    assert set(np.unique(layer.data[1])) == {0, 5, 6} and set(np.unique(layer.data[0])) == {0, 5}
    assert layer.data[1][5, 4] == 5 and layer.data[1][5, 15] == 6
    assert pr.undo().startswith("split") and (layer.data == 5).sum() == 2 * 6 * 16
    viewer.dims.current_step = (0, 0, 0)  # one seed only in frame 0
    assert not pr.split() and "at least 2" in errors[-1]


def test_failed_run_keeps_previous_labels(viewer, qtbot, errors, monkeypatch):
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    before = labels.data.copy()
    result = labels.metadata["hemd_result"]

    import napari_hemd.workflows as wf

    def crash(*args, progress=None, **kwargs):
        progress("forests", 1, 12)
        raise MemoryError("out of memory in frame 2")

    monkeypatch.setattr(wf, "hemd", crash)
    # The crash is immediate: the worker may finish before a waitSignal could connect, so wait on
    # the error notification the widget shows instead.
    seg.run()
    qtbot.waitUntil(lambda: bool(errors) and "out of memory" in errors[-1], timeout=60_000)
    np.testing.assert_array_equal(labels.data, before)
    assert labels.metadata["hemd_result"] is result


def test_cancel_predict(viewer, qtbot, errors):
    from napari_hemd._widgets import PredictWidget

    big = np.repeat(viewer.layers["nuclei video image"].data, 3, axis=0)
    layer = viewer.add_image(big, name="long")
    pred = PredictWidget(viewer)
    pred.image.value = layer
    worker = pred.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        with qtbot.waitSignal(worker.yielded, timeout=60_000):
            pass
        pred.cancel()
    assert "long probability" not in viewer.layers
    assert not errors


@pytest.mark.parametrize("which", ["Predict", "Segment"])
def test_closing_the_dock_stops_its_run(viewer, qtbot, errors, monkeypatch, which):
    """Audit 25: closing the Predict or Segment dock mid-run let the run go on (its Cancel
    button gone with the dock) and add its layers. Closing stops it as Cancel does; hiding or
    floating the dock does not."""
    import napari_hemd._widgets._common as common
    from napari_hemd._widgets import PredictWidget

    infos: list[str] = []
    monkeypatch.setattr(common, "show_info", infos.append)
    source = "image" if which == "Predict" else "probability"
    big = np.repeat(viewer.layers[f"nuclei video {source}"].data, 4, axis=0)
    layer = viewer.add_image(big, name="long")
    widget = PredictWidget(viewer) if which == "Predict" else SegmentWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name=which)
    dock.setFloating(True)  # floated and docked again, hidden and shown: still its dock
    dock.setFloating(False)
    dock.hide()
    dock.show()
    assert not infos
    if which == "Predict":
        widget.image.value = layer
        worker = widget.run()
    else:
        worker = widget.run(prob_layer=layer)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        with qtbot.waitSignal(worker.yielded, timeout=60_000):
            pass
        viewer.window.remove_dock_widget(dock)
    assert f"{which}: stopping, its dock was closed" in infos
    assert not [n for n in viewer.layers if n.name.startswith("long ")] and not errors


def test_predict_affinity_outputs(viewer, qtbot, errors):
    from napari_hemd._widgets import PredictWidget

    layer = viewer.add_image(viewer.layers["nuclei video image"].data[:2, :96, :96], name="crop")
    pred = PredictWidget(viewer)
    pred.image.value = layer
    pred.affinity.value = True
    assert pred.run() is None and "not an affinity model" in errors[-1]  # nuclei-fluo is a U-Net
    errors.clear()
    pred.model.value = "nuclei-affinity"
    with qtbot.waitSignal(pred.run().finished, timeout=120_000):
        pass
    assert not errors
    shown = viewer.layers["crop affinities"]
    affs = shown.data  # a channel per offset, first: the frames lie on the image's (audit 20)
    offsets = shown.metadata["hemd_offsets"]
    assert affs.shape == (len(offsets), 2, 96, 96) and offsets[:2] == [[-1, 0], [0, -1]]
    inst = viewer.layers["crop mutex instances"]
    assert inst.data.shape == (2, 96, 96) and inst.data.dtype == np.uint32
    # a calibrated stack: its z scale and name on its slices, the offsets unscaled
    layer.scale, layer.axis_labels = (2.0, 0.5, 0.5), ("z", "y", "x")
    with qtbot.waitSignal(pred.run().finished, timeout=120_000):
        pass
    shown = viewer.layers["crop affinities"]
    assert tuple(shown.axis_labels) == ("offset", "z", "y", "x")
    assert tuple(shown.scale) == (1.0, 2.0, 0.5, 0.5)
    assert tuple(viewer.dims.axis_labels)[-3:] == ("z", "y", "x")
    assert not errors


def test_cancel_predict_of_a_big_movie_is_quick_and_says_so(
    make_napari_viewer, qtbot, errors, monkeypatch
):
    """The issue's case: Cancel pressed during a real Predict of a big movie takes effect at
    the next batch of tiles, not the next frame (frames of 2500 x 2500 run as 9 tiles each;
    at most the batch in flight when Cancel is pressed still starts), says so, and adds no
    layer."""
    import napari_hemd._widgets._common as common
    from napari_hemd.models import prediction

    infos: list[str] = []
    monkeypatch.setattr(common, "show_info", infos.append)
    calls: list[bool] = []  # per batch of tiles: whether Cancel had been pressed when it began
    pressed = [False]
    real = prediction._run_tiles

    def counted(*args, **kwargs):
        calls.append(pressed[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(prediction, "_run_tiles", counted)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    layer = viewer.add_image(rng.integers(90, 400, (2, 2500, 2500), dtype=np.uint16), name="big")
    _, pred = viewer.window.add_plugin_dock_widget("napari-hemd", "Predict")
    pred.image.value = layer
    pred.run_button.native.click()
    worker = pred._worker
    with qtbot.waitSignal(worker.finished, timeout=300_000):
        qtbot.waitUntil(lambda: len(calls) >= 1, timeout=120_000)  # a batch is running
        pressed[0] = True
        pred.cancel_button.native.click()
    assert sum(calls) <= 1 and len(calls) < 9  # not the rest of the frame's tiles
    assert "big probability" not in viewer.layers and not errors
    assert any("cancelled" in m for m in infos)
    assert pred.run_button.enabled


def test_movie_too_large_for_memory_is_refused_with_the_large_data_path(
    viewer, qtbot, errors, monkeypatch
):
    import napari_hemd._memory as memory

    monkeypatch.setenv(memory.ENV, "1")
    monkeypatch.setattr(memory, "available_memory", lambda: 2**16)  # 64 KiB free
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.run()
    qtbot.waitUntil(lambda: bool(errors), timeout=60_000)
    assert "Segment failed: segment (hemd): prob of shape" in errors[-1]
    assert "Plugins > napari-hemd > Large data" in errors[-1]
    assert "nuclei video labels" not in viewer.layers
    # Predict keeps the maps it returns: refused too, pointing to maps written to disk
    from napari_hemd._widgets import PredictWidget

    pred = PredictWidget(viewer)
    pred.image.value = viewer.layers["nuclei video image"]
    pred.model.value = "nuclei-fluo"
    pred.run()
    qtbot.waitUntil(lambda: errors[-1].startswith("Predict failed"), timeout=60_000)
    assert "predict: image of shape" in errors[-1] and "for the maps it returns" in errors[-1]
    assert "-o maps.zarr" in errors[-1]
    assert "nuclei video image probability" not in viewer.layers


def test_predict_names_the_shapes_it_takes(viewer, errors):
    """A (T, Z, Y, X) layer is predicted stack by stack (tests/_widgets/test_segment_model.py);
    a 5D layer is refused naming what Predict takes and what it got."""
    from napari_hemd._widgets import PredictWidget

    movie = viewer.layers["nuclei video image"].data
    layer = viewer.add_image(np.stack([np.stack([movie[:3]] * 6, axis=1)] * 2), name="5d")
    pred = PredictWidget(viewer)
    pred.image.value = layer
    assert pred.run() is None
    assert "or a (T, Z, Y, X) time-lapse of stacks; got 5D" in errors[-1]


def test_a_runtime_error_of_the_work_is_shown_and_the_widget_is_ready_again(
    viewer, qtbot, errors, monkeypatch
):
    """superqt takes a RuntimeError from the work (most torch errors: shapes, memory) for a
    deleted worker and emitted neither errored nor finished: the widget stayed running, Run
    disabled, with no message (a Fine-tune from a file whose weights do not fit hung)."""
    import napari_hemd._widgets.segment as segment_module

    def failing(*args, **kwargs):
        yield ("segment", 0, 1)
        raise RuntimeError("not enough memory: you tried to allocate 80 GB")

    monkeypatch.setattr(segment_module, "segment_workflow", failing)
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    worker = seg.run()
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        pass
    assert errors and errors[-1] == "Segment failed: not enough memory: you tried to allocate 80 GB"
    assert seg.run_button.enabled and not seg.cancel_button.enabled


def test_split_follows_the_labels_probability(viewer, errors, monkeypatch):
    """The seeds' split gets the frame of the probability the labels were segmented from."""
    import napari_hemd._widgets.proofread as proofread

    lab = np.zeros((2, 10, 20), np.uint32)
    lab[:, 2:8, 2:18] = 5
    prob = np.random.default_rng(0).random((2, 10, 20)).astype(np.float32)
    viewer.add_image(prob, name="p")
    layer = viewer.add_labels(lab, name="blob", metadata={"hemd_params": {"hemd_source": "p"}})
    seeds = viewer.add_points(np.array([[1, 5, 4], [1, 5, 15]]), name="seeds")
    got = []
    real = proofread.split_by_seeds
    monkeypatch.setattr(
        proofread, "split_by_seeds", lambda *a, **k: got.append(k["prob"]) or real(*a, **k)
    )
    pr = ProofreadWidget(viewer)
    pr.labels.value, pr.seeds.value = layer, seeds
    viewer.dims.current_step = (1, 0, 0)
    assert pr.split() and not errors
    np.testing.assert_array_equal(got[0], prob[1])


def test_segment_says_an_rgb_image_is_colours(viewer, errors):
    """An RGB layer with a model was refused as a probability map's channels ("an ilastik or
    multi-class export ... segment the foreground probability", audit 20): it is colours."""
    from napari_hemd._widgets import SegmentWidget

    grey = viewer.layers["nuclei video image"].data[0, :64, :64]
    rgb = viewer.add_image(np.stack([grey] * 3, axis=-1), name="colour", rgb=True)
    seg = SegmentWidget(viewer)
    seg.prob.value = rgb
    seg.model.value = "nuclei-fluo"
    assert seg.run() is None
    assert errors[-1] == (
        "Segment: 'colour' is an RGB image: split the colours (right-click the layer > Split "
        "RGB) and segment the nuclear channel with a model"
    )
