"""Raw movie -> whole-cell labels in one click (Segment with a model), and Predict -> Segment."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")


def _wait(qtbot, worker, timeout=120_000):
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=timeout):
        pass


def test_segment_with_model_from_plugins_menu(make_napari_viewer, qtbot, errors):
    from napari_hemd import segment_image
    from napari_hemd.data.synthetic import nuclei_video

    movie = nuclei_video(n_frames=4, shape=(128, 128), n_cells=8, seed=4)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(movie, name="movie")  # only the raw movie is open
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["movie"]
    seg.model.value = "nuclei-fluo"
    seg.run_button.native.click()  # as a user would
    _wait(qtbot, seg._worker)
    labels = viewer.layers["movie labels"]
    expected = segment_image(movie, "nuclei-fluo").labels  # the CLI/API implementation
    assert np.array_equal(labels.data, expected)
    assert labels.metadata["hemd_params"]["grow"] > 0
    assert labels.metadata["hemd_result"] is not None  # the inspector has the forests
    prob = viewer.layers["movie probability"]  # what H-EMD segmented, for the inspector
    assert prob.data.shape == movie.shape and prob.data.max() <= 1.0
    assert not errors


def test_predict_then_segment_gives_whole_cells(viewer, qtbot, errors):
    from napari_hemd import segment_image
    from napari_hemd._widgets import PredictWidget, SegmentWidget

    image = viewer.layers["nuclei video image"]
    pred = PredictWidget(viewer)
    pred.image.value = image
    pred.model.value = "nuclei-fluo"
    _wait(qtbot, pred.run())
    prob = viewer.layers["nuclei video image probability"]
    seg = SegmentWidget(viewer)
    seg.prob.value = prob
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei video image labels"].data
    expected = segment_image(image.data, "nuclei-fluo").labels
    assert np.array_equal(labels, expected)  # two widgets, same masks as one command
    assert not errors


def test_segment_refuses_a_raw_movie_without_a_model(viewer, errors):
    from napari_hemd._widgets import SegmentWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video image"]  # raw uint16, no model chosen
    assert seg.run() is None
    assert len(errors) == 1 and "does not look like a probability map" in errors[0]
    assert "choose a model" in errors[0]
    assert "nuclei video image labels" not in viewer.layers


def test_default_layer_choices_are_plausible(viewer):
    """On the sample (raw image, then its probability map, newest last): Predict offers the raw
    image first, Segment the probability map."""
    from napari_hemd._widgets import PredictWidget, SegmentWidget

    assert PredictWidget(viewer).image.value.name == "nuclei video image"
    assert SegmentWidget(viewer).prob.value.name == "nuclei video probability"


def test_about_the_model_is_a_paragraph_under_the_model(make_napari_viewer, qtbot):
    """The model's description spans the dock from its left edge, wrapped if need be: beside a
    caption column its longest line widened the docks (~490 px, the other fields need ~410)."""
    from qtpy.QtCore import QPoint

    from napari_hemd._widgets import PredictWidget, SegmentWidget, StreamWidget

    viewer = make_napari_viewer(show=True)  # laid out: positions and widths are real
    for cls in (PredictWidget, SegmentWidget, StreamWidget):
        w = cls(viewer)
        w.model.value = "nuclei-fluo"
        viewer.window.add_dock_widget(w, name=cls.__name__)
        qtbot.waitUntil(lambda w=w: w.model_info.native.isVisible())
        info, combo = w.model_info.native, w.model.native

        def left(widget, w=w):
            return widget.mapTo(w.native, QPoint(0, 0)).x()

        assert info.wordWrap() and "held out, " in w.model_info.value
        assert left(info) < left(combo), cls.__name__  # where the captions start, not after
        assert info.width() >= combo.width(), cls.__name__


def test_segment_a_frame_range_first(viewer, qtbot, errors):
    """Try settings on a few frames before the whole movie: a layer placed at those frames."""
    from napari_hemd._widgets import SegmentWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.frames.value = "range"
    assert not seg.first.native.isHidden() and not seg.last.native.isHidden()
    seg.first.value, seg.last.value = 3, 5
    _wait(qtbot, seg.run())
    part = viewer.layers["nuclei video labels (frames 3-5)"]
    assert part.data.shape[0] == 3 and part.translate[0] == 3
    whole = SegmentWidget(viewer)
    whole.prob.value = viewer.layers["nuclei video probability"]
    viewer.dims.set_current_step(0, 7)
    whole.frames.value = "current frame"
    _wait(qtbot, whole.run())
    one = viewer.layers["nuclei video labels (frame 7)"]
    assert one.data.shape[0] == 1 and one.data.max() > 0
    assert "nuclei video labels" not in viewer.layers  # the whole movie was not segmented
    assert not errors


def test_a_quick_job_cannot_finish_before_its_caller_listens(viewer, qtbot, errors):
    """run() returns its worker unstarted until the event loop runs (as in napari), so waiting on
    `finished` works however quick the job and however late the caller connects."""
    import time

    from napari_hemd._widgets import SegmentWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.frames.value = "current frame"
    worker = seg.run()
    time.sleep(2.0)  # a one-frame job started at once would be over by now
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        pass
    assert any(layer.name.startswith("nuclei video labels") for layer in viewer.layers)
    assert not errors


def test_progress_shows_in_the_dock(viewer, qtbot, errors):
    """Frames done, rate and time left inside the dock (not only napari's activity panel)."""
    from napari_hemd._widgets import PredictWidget

    pred = PredictWidget(viewer)
    pred.image.value = viewer.layers["nuclei video image"]
    seen = []
    worker = pred.run()
    worker.yielded.connect(lambda _e: seen.append((pred._bar.value, pred._status.value)))
    _wait(qtbot, worker)
    assert any("predict" in text and "/12" in text for _, text in seen)
    assert any("left)" in text for _, text in seen)  # rate and time left once frames are done
    assert pred._bar.native.isHidden()  # hidden again when finished
    assert not errors


def test_rerun_on_the_predicted_layer_uses_the_model_defaults(make_napari_viewer, qtbot, errors):
    """Lock-and-re-run segments the probability layer Segment-with-a-model made: same settings
    (the model's minimum size included), so an unchanged re-run gives the same labels."""
    from napari_hemd.data.synthetic import nuclei_video

    movie = nuclei_video(n_frames=4, shape=(128, 128), n_cells=8, seed=4)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(movie, name="movie")
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["movie"]
    seg.model.value = "nuclei-fluo"
    _wait(qtbot, seg.run())
    first = viewer.layers["movie labels"].data.copy()
    _wait(qtbot, seg.run(locked={}, prob_layer=viewer.layers["movie probability"]))
    assert np.array_equal(viewer.layers["movie labels"].data, first)
    assert not errors


def test_segment_a_3d_stack_with_its_voxel_size(make_napari_viewer, qtbot, errors):
    """nuclei-3d predicts a stack on three planes; the widget's z step reaches the prediction."""
    from napari_hemd import segment_image
    from napari_hemd.data.synthetic import nuclei_video

    stack = nuclei_video(n_frames=6, shape=(64, 80), n_cells=6, seed=2)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack")
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    assert seg.z_scale.native.isHidden()  # only with a model
    seg.prob.value = viewer.layers["stack"]
    seg.model.value = "nuclei-fluo"  # a time-lapse model: no z step
    assert seg.z_scale.native.isHidden()
    seg.model.value = "nuclei-3d"
    assert not seg.z_scale.native.isHidden()
    seg.z_scale.value = 3.0
    seg.run_button.native.click()
    _wait(qtbot, seg._worker)
    labels = viewer.layers["stack labels"]
    expected = segment_image(stack, "nuclei-3d", z_scale=3.0)
    assert np.array_equal(labels.data, expected.labels)
    np.testing.assert_allclose(
        viewer.layers["stack probability"].data, expected.maps["foreground"], atol=1e-6
    )
    assert labels.metadata["hemd_params"]["z_scale"] == 3.0
    assert labels.metadata["hemd_params"]["planes"] == 3
    from napari_hemd._widgets import ExportWidget

    export = ExportWidget(viewer)  # measured as one 3D stack without being told
    export.labels.value = labels
    assert export.volume.value
    from napari_hemd._widgets import InspectorWidget

    insp = InspectorWidget(viewer)  # a stack's slices are named so, not frames (audit 15)
    insp.labels.value = labels
    z, y, x = np.argwhere(labels.data > 0)[0]
    assert insp.inspect(int(z), (int(y), int(x)))
    assert insp.where.value.startswith(f"slice {z}, object ")
    assert not errors


def test_test_time_flips_in_the_widgets(make_napari_viewer, qtbot, errors):
    """The "test-time flips" choice of Segment (with a model) and Predict reaches the prediction:
    the same masks and maps as ``segment_image(..., tta=4)``, and *off* as ``tta=1`` whatever the
    model's own flips (the choice they show when the model is chosen); refused for an affinity
    model."""
    from napari_hemd import segment_image
    from napari_hemd._widgets import PredictWidget
    from napari_hemd.data.synthetic import nuclei_video
    from napari_hemd.models import load_model
    from napari_hemd.models.prediction import model_tta

    movie = nuclei_video(n_frames=4, shape=(128, 128), n_cells=8, seed=4)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(movie, name="movie")
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    assert seg.tta.native.isHidden()  # no model: the layer is a probability map
    seg.prob.value = viewer.layers["movie"]
    seg.model.value = "nuclei-affinity"
    assert seg.tta.native.isHidden()  # flips are for U-Nets
    seg.model.value = "nuclei-fluo"
    assert not seg.tta.native.isHidden()
    own = model_tta(load_model("nuclei-fluo"))
    assert seg.tta.value == own  # the model's own flips (its calibration's)
    seg.tta.value = 1  # off, also where the model's own are more
    _wait(qtbot, seg.run())
    off = segment_image(movie, "nuclei-fluo", tta=1)
    assert np.array_equal(viewer.layers["movie labels"].data, off.labels)
    assert viewer.layers["movie labels"].metadata["hemd_params"].get("tta", 1) == 1
    viewer.layers.remove("movie labels")
    seg.tta.value = 4
    _wait(qtbot, seg.run())
    expected = segment_image(movie, "nuclei-fluo", tta=4)
    assert np.array_equal(viewer.layers["movie labels"].data, expected.labels)
    assert viewer.layers["movie labels"].metadata["hemd_params"]["tta"] == 4
    seg.model.value = "nuclei-affinity"  # its own: none (the hidden field keeps no U-Net's)
    assert seg.tta.native.isHidden() and seg.tta.value == 1 and seg.scale.value == 1.0
    pred = PredictWidget(viewer)
    pred.image.value = viewer.layers["movie"]
    pred.model.value = "nuclei-fluo"
    assert pred.tta.value == own
    pred.tta.value = 4
    _wait(qtbot, pred.run())
    prob = viewer.layers["movie probability"]
    # (float sums in another thread may differ in the last bit)
    np.testing.assert_allclose(prob.data, expected.maps["foreground"], atol=1e-6)
    assert prob.metadata["hemd_tta"] == 4
    assert not errors
    pred.model.value = "nuclei-affinity"
    assert pred.tta.value == 1  # an affinity network's own: none
    pred.tta.value = 4
    assert pred.run() is None
    assert len(errors) == 1 and "test-time flips need a U-Net model" in errors[0]


def test_restore_parameters_repeats_a_run_with_a_model(
    make_napari_viewer, qtbot, errors, monkeypatch
):
    """Restore parameters brings back a model run as it was (image, model, flips, H-EMD fields),
    so Segment repeats it exactly; without its image it falls back to the maps, saying why."""
    from napari_hemd._widgets import SegmentWidget, segment
    from napari_hemd.data.synthetic import nuclei_video

    infos: list[str] = []
    monkeypatch.setattr(segment, "show_info", infos.append)
    movie = nuclei_video(n_frames=3, shape=(96, 96), n_cells=6, seed=5)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(movie, name="movie")
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["movie"]
    seg.model.value = "nuclei-fluo"
    seg.tta.value = 2
    seg.min_size.value = 25
    _wait(qtbot, seg.run())
    first = viewer.layers["movie labels"]
    first_labels = first.data.copy()
    assert first.metadata["hemd_params"]["tta"] == 2

    other = SegmentWidget(viewer)  # a fresh widget pointed elsewhere
    other.prob.value = viewer.layers["movie probability"]
    assert other.model.value != "nuclei-fluo" and other.tta.value == 1
    other.restore(first)
    assert other.model.value == "nuclei-fluo" and other.tta.value == 2
    assert other.prob.value is viewer.layers["movie"] and other.min_size.value == 25
    viewer.layers.remove(first)
    _wait(qtbot, other.run())
    assert np.array_equal(viewer.layers["movie labels"].data, first_labels)
    assert viewer.layers["movie labels"].metadata["hemd_params"]["tta"] == 2

    # the image is gone: the H-EMD settings on the probability layer the run made, no model
    viewer.layers.remove(viewer.layers["movie"])
    infos.clear()
    again = SegmentWidget(viewer)
    again.model.value = "nuclei-fluo"
    again.restore(viewer.layers["movie labels"])
    assert again.model.value == segment.NO_MODEL
    assert again.prob.value is viewer.layers["movie probability"]
    assert again.min_size.value == 25
    assert len(infos) == 1 and "'movie' is not open" in infos[0] and "without a model" in infos[0]
    assert not errors


def test_zoom_for_the_model_in_segment_and_predict(viewer, qtbot, errors):
    """The "zoom for the model" field reaches the prediction, and the model's sizes are converted:
    Segment with a model, and Predict then Segment on its maps, both give segment_image(scale=).
    With one view (flips *off*): the zoom is tested here, the model's own flips in
    test_test_time_flips_in_the_widgets."""
    from napari_hemd import segment_image
    from napari_hemd._widgets import PredictWidget, SegmentWidget

    image = viewer.layers["nuclei video image"]
    expected = segment_image(image.data, "nuclei-fluo", scale=0.5, tta=1).labels
    seg = SegmentWidget(viewer)
    seg.prob.value = image
    assert seg.scale.native.isHidden()
    seg.model.value = "nuclei-fluo"
    assert not seg.scale.native.isHidden()
    seg.scale.value, seg.tta.value = 0.5, 1
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei video image labels"]
    assert np.array_equal(labels.data, expected)
    assert labels.metadata["hemd_params"]["scale"] == 0.5
    viewer.layers.remove(labels)
    viewer.layers.remove(viewer.layers["nuclei video image probability"])

    pred = PredictWidget(viewer)
    pred.image.value = image
    pred.model.value = "nuclei-fluo"
    pred.scale.value, pred.tta.value = 0.5, 1
    _wait(qtbot, pred.run())
    prob = viewer.layers["nuclei video image probability"]
    assert prob.metadata["hemd_scale"] == 0.5 and prob.metadata["hemd_grow"] == 4
    assert prob.metadata["hemd_segment_defaults"]["min_size"] == 400  # 100 of the model's px
    seg2 = SegmentWidget(viewer)
    seg2.prob.value = prob
    _wait(qtbot, seg2.run())
    assert np.array_equal(viewer.layers["nuclei video image labels"].data, expected)

    # auto (the field's lowest value): the zoom segment_image(scale="auto") finds
    seg.scale.value = 0
    assert seg.scale.native.text() == "auto"
    _wait(qtbot, seg.run())
    auto = segment_image(image.data, "nuclei-fluo", scale="auto", tta=1)
    labels = viewer.layers["nuclei video image labels"]
    assert np.array_equal(labels.data, auto.labels)
    assert labels.metadata["hemd_params"]["scale"] == auto.params["scale"] != 1.0
    fresh = SegmentWidget(viewer)
    fresh.restore(labels)  # the zoom found comes back as a number
    assert fresh.scale.value == pytest.approx(auto.params["scale"])
    # Predict's auto finds the same zoom; Segment on its maps then gives the same labels
    viewer.layers.remove(labels)
    pred.scale.value = 0
    assert pred.scale.native.text() == "auto"
    _wait(qtbot, pred.run())
    assert pred.zoom == auto.params["scale"] and pred.zoom_tried == auto.params["scale_tried"]
    prob = viewer.layers["nuclei video image probability"]
    assert prob.metadata["hemd_scale"] == pred.zoom
    assert prob.metadata["hemd_grow"] == round(2 / pred.zoom)  # the model's 2 px, zoomed
    seg3 = SegmentWidget(viewer)
    seg3.prob.value = prob
    _wait(qtbot, seg3.run())
    assert np.array_equal(viewer.layers["nuclei video image labels"].data, auto.labels)

    pred.model.value = "nuclei-affinity"
    assert pred.scale.value == 1.0  # the zoom field takes the model's own zoom
    pred.scale.value = 0
    assert pred.run() is None
    why = "a zoom other than 1 needs a U-Net model; 'nuclei-affinity' is an affinity model"
    assert errors == [f"Predict: {why}"]


def test_a_two_channel_hyperstack_opens_as_channels_to_segment(
    make_napari_viewer, qtbot, errors, tmp_path
):
    """File > Open of an ImageJ (T, C, Y, X) hyperstack: one layer per channel; Segment with a
    model on the nuclear channel gives the masks of that channel alone."""
    import tifffile

    from napari_hemd import segment_image
    from napari_hemd.data.synthetic import nuclei_video

    nuclei = nuclei_video(n_frames=3, shape=(96, 96), n_cells=6, seed=5)["image"]
    other = np.random.default_rng(2).integers(0, 3000, nuclei.shape).astype(nuclei.dtype)
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, np.stack([other, nuclei], 1), imagej=True, metadata={"axes": "TCYX"})
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-hemd")
    assert [ly.name for ly in viewer.layers] == ["two channel 0", "two channel 1"]
    assert all(ly.data.shape == nuclei.shape for ly in viewer.layers)
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["two channel 1"]
    seg.model.value = "nuclei-fluo"
    seg.tta.value = 1
    _wait(qtbot, seg.run())
    labels = viewer.layers["two channel 1 labels"].data
    np.testing.assert_array_equal(labels, segment_image(nuclei, "nuclei-fluo", tta=1).labels)
    assert not errors


def test_segment_a_time_lapse_of_stacks(make_napari_viewer, qtbot, errors, tmp_path):
    """A (T, Z, Y, X) layer with nuclei-3d: each stack segmented, objects linked over time."""
    from napari_hemd import segment_image
    from napari_hemd.data.synthetic import nuclei_volume

    vol = nuclei_volume()["image"][:24, :96]
    movie = np.stack([vol[..., s : s + 96] for s in (0, 2)])
    viewer = make_napari_viewer()
    viewer.add_image(movie, name="embryo")
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["embryo"]
    seg.model.value = "nuclei-3d"
    seg.tta.value = 1
    _wait(qtbot, seg.run())
    labels = viewer.layers["embryo labels"]
    expected = segment_image(movie, "nuclei-3d", tta=1)
    np.testing.assert_array_equal(labels.data, expected.labels)
    assert labels.data.shape == movie.shape and labels.metadata["hemd_params"]["grow"] > 0
    assert all(len(np.unique(stack)) > 5 for stack in labels.data)
    assert viewer.layers["embryo probability"].data.shape == movie.shape
    # each stack's forests are kept: the inspector shows why each object, stack by stack; no
    # forest is ever rebuilt from the 4D maps (they would not be the labels' own)
    from napari_hemd._widgets import InspectorWidget
    from napari_hemd._widgets._layer_state import needs_rebuild

    assert not needs_rebuild(labels)
    stacks = labels.metadata["hemd_result"]
    assert len(stacks.results) == 2 and stacks.tracks is not None
    # their tracks drawn, in 3D (a run on stacks records planes, which was taken for one stack:
    # no Tracks layer, audit 26)
    tracks = viewer.layers["embryo labels tracks"]
    assert tracks.data.shape[1] == 5 and set(tracks.data[:, 1]) == {0, 1}
    inspector = InspectorWidget(viewer)
    inspector.labels.value = labels
    z, y, x = (int(v) for v in np.argwhere(stacks.results[1].labels > 0)[0])
    rows = inspector.inspect(z, (y, x), stack=1)
    assert rows and any(r.chosen for r in rows)
    first = (z, (y, x), [(r.node, r.area, r.chosen, r.how) for r in rows])
    assert inspector.where.value.startswith(f"time 1, slice {z}, object ")
    inspector.preview_row(0)  # one stack's preview, not a movie of zeros
    assert viewer.layers["embryo labels preview"].data.shape == movie.shape[1:]
    # a swap edits that slice of that stack only, and undoes like any edit
    from napari_hemd._widgets._layer_state import step_history

    before = np.array(labels.data)
    # (most objects here are one path of candidates, whose swaps change no pixel, only lock the
    # candidate: undone, and look on for an object with a real alternative)
    swapped = False
    for z2, y2, x2 in np.argwhere(stacks.results[1].labels > 0)[::97]:
        rows = inspector.inspect(int(z2), (int(y2), int(x2)), stack=1)
        for i in [i for i in range(len(rows)) if not rows[i].chosen]:
            if inspector.use_candidate(i) and (labels.data != before).any():
                swapped, z = True, int(z2)
                break
            step_history(labels)
        if swapped:
            break
    assert swapped and set(labels.metadata["hemd_locked"]) == {1}
    changed = np.argwhere(labels.data != before)
    assert len(changed) and {(int(t), int(s)) for t, s, _, _ in changed} == {(1, z)}
    step_history(labels)
    np.testing.assert_array_equal(labels.data, before)
    assert labels.metadata["hemd_locked"] == {}
    # the swap again, locked and re-run: that stack alone, its objects keep their ids
    step_history(labels, redo=True)
    swap = np.array(labels.data)
    _wait(qtbot, inspector.lock_and_rerun())
    rerun = np.array(labels.data)
    assert rerun[0].tobytes() == before[0].tobytes()
    kept = set(np.unique(rerun[1])) & set(np.unique(swap[1]))
    assert len(kept) > 5 and labels.metadata["hemd_result"] is not stacks
    step_history(labels)
    np.testing.assert_array_equal(labels.data, swap)
    step_history(labels)
    np.testing.assert_array_equal(labels.data, before)
    assert labels.metadata["hemd_result"] is stacks and labels.metadata["hemd_locked"] == {}
    found = inspector.next_uncertain()
    assert found is None or inspector.stack in (0, 1)
    from napari_hemd._widgets import ExportWidget

    export = ExportWidget(viewer)  # a CTC folder: a 3D mask per time point and the lineage
    export.labels.value = labels
    out = export.export(tmp_path / "embryo_res")
    tracks = np.loadtxt(out / "res_track.txt", dtype=int, ndmin=2)
    np.testing.assert_array_equal(tracks, stacks.tracks)
    from napari_hemd._widgets import ProjectWidget

    proj = ProjectWidget(viewer, restore=False)  # saved and reopened: labels back
    proj.labels.value = labels
    folder = proj.save(tmp_path / "embryo_session")
    saved = np.array(labels.data)
    viewer.layers.remove(labels)
    assert proj.open(folder) is None  # no forest rebuilt from the 4D maps up front
    back = viewer.layers["embryo labels"]
    np.testing.assert_array_equal(back.data, saved)
    # the inspector rebuilds the clicked stack's forests from its slices, exactly the run's
    inspector.labels.value = back
    z, (y, x), rows = first
    assert inspector.inspect(z, (y, x), stack=1) == []  # under way: inspected when done
    _wait(qtbot, inspector._worker)
    rebuilt = back.metadata["hemd_result"].results
    assert rebuilt[0] is None  # only the stack asked for
    np.testing.assert_array_equal(rebuilt[1].labels, stacks.results[1].labels)
    for a, b in zip(rebuilt[1].selections, stacks.results[1].selections, strict=True):
        np.testing.assert_array_equal(a.nodes, b.nodes)
    assert [(r.node, r.area, r.chosen, r.how) for r in inspector.rows] == rows
    assert inspector.where.value.startswith(f"time 1, slice {z}, object ")
    assert inspector.lock_and_rerun() is None  # nothing locked (the swap was undone)
    # a project saved before the stacks' parameters were: said so, nothing rebuilt
    back.metadata["hemd_params"]["per_stack"] = True
    back.metadata["hemd_result"] = None
    assert inspector.inspect(z, (y, x), stack=1) == []
    assert "cannot be rebuilt" in errors.pop()
    labels = back
    # Predict: each stack's maps exactly as alone; Segment on them: H-EMD on 3D frames over time
    from napari_hemd._widgets import PredictWidget, SegmentWidget

    pred = PredictWidget(viewer)
    pred.image.value = viewer.layers["embryo"]
    pred.model.value = "nuclei-3d"
    pred.tta.value = 1
    _wait(qtbot, pred.run())
    prob = viewer.layers["embryo probability"]
    np.testing.assert_allclose(prob.data, expected.maps["foreground"], atol=1e-6)
    assert prob.metadata["hemd_background"].shape == movie.shape
    seg2 = SegmentWidget(viewer)
    seg2.prob.value = prob
    _wait(qtbot, seg2.run())
    labels = viewer.layers["embryo labels"].data
    assert labels.shape == movie.shape and len(np.unique(labels)) > 5
    assert not errors


def test_channels_in_one_layer_are_not_taken_for_stacks(viewer, errors):
    from napari_hemd._widgets import SegmentWidget

    movie = viewer.layers["nuclei video image"].data
    layer = viewer.add_image(np.stack([movie, movie], axis=1), name="two channels")
    seg = SegmentWidget(viewer)
    seg.prob.value = layer
    seg.model.value = "nuclei-fluo"
    assert seg.run() is None
    assert "channels rather than a time-lapse of 3D stacks" in errors[-1]
    # a way out that splits the channels (napari's Split Stack splits time: audit 22)
    assert "viewer.add_image(viewer.layers['two channels'].data, channel_axis=1)" in errors[-1]
    console = errors[-1].split("console: ")[1].split(");")[0] + ")"
    added = eval(console, {"viewer": viewer})  # as typed into napari's console
    assert [ly.data.shape for ly in added] == [movie.shape, movie.shape]
    from napari_hemd._widgets import PredictWidget

    pred = PredictWidget(viewer)
    pred.image.value = layer
    pred.model.value = "nuclei-fluo"
    assert pred.run() is None
    assert errors[-1].startswith("Predict: 'two channels' has 2 planes on its second axis")


def test_a_stack_predicted_then_segmented_as_the_one_click_run(make_napari_viewer, qtbot, errors):
    """nuclei-3d on one (Z, Y, X) stack: Predict then Segment (no model) gave other objects
    than Segment with the model (the model's 3D fragment size was dropped) and was not recorded
    as a stack; a locked re-run that changes nothing lost ``planes: 3`` (Export then wrote
    slices as frames); the run recorded the widget's delta / link, not the model's it used."""
    from napari_hemd._widgets import ExportWidget
    from napari_hemd.data.synthetic import nuclei_volume

    stack = nuclei_volume((32, 96, 96), n_cells=8, seed=3)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="vol")
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["vol"]
    seg.model.value = "nuclei-3d"
    seg.tta.value = 1
    _wait(qtbot, seg.run())
    labels = viewer.layers["vol labels"]
    one_click, params = labels.data.copy(), labels.metadata["hemd_params"]
    assert params["planes"] == 3 and params["delta"] == 2.0 and params["link"] is True
    # a re-run with the candidate H-EMD chose locked changes nothing and stays a stack
    res = labels.metadata["hemd_result"]
    _wait(qtbot, seg.run(locked={3: [int(res.selections[3].nodes[0])]},
                         prob_layer=viewer.layers["vol probability"], target=labels))  # fmt: skip
    np.testing.assert_array_equal(labels.data, one_click)
    assert labels.metadata["hemd_params"]["planes"] == 3
    # Predict, then Segment on its map without a model
    viewer.layers.remove(labels)
    _, pred = viewer.window.add_plugin_dock_widget("napari-hemd", "Predict")
    pred.image.value = viewer.layers["vol"]
    pred.model.value = "nuclei-3d"
    pred.tta.value = 1
    _wait(qtbot, pred.run())
    seg.prob.value = viewer.layers["vol probability"]
    seg.model.value = seg.model.choices[0]  # no model
    _wait(qtbot, seg.run())
    two_step = viewer.layers["vol labels"]
    np.testing.assert_array_equal(two_step.data, one_click)
    assert two_step.metadata["hemd_params"]["planes"] == 3
    export = ExportWidget(viewer)
    export.labels.value = two_step
    assert export.volume.value and not errors


def test_a_users_layer_named_like_the_map_is_kept(make_napari_viewer, qtbot, errors):
    """Segment with a model and Predict replaced the user's own '<image> probability' layer
    (a labels layer was removed, an image's data overwritten, no undo); Predict recorded the
    flips field's value at the end of the run, not the flips it ran with."""
    from napari_hemd.data.synthetic import nuclei_video

    movie = nuclei_video(n_frames=3, shape=(96, 96), n_cells=5, seed=2)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(movie, name="emb")
    painted = viewer.add_labels(np.ones(movie.shape, np.uint8), name="emb probability")
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["emb"]
    seg.model.value = "nuclei-fluo"
    seg.tta.value = 1
    _wait(qtbot, seg.run())
    assert painted in viewer.layers and (painted.data == 1).all()
    ours = viewer.layers["emb probability [1]"]
    labels = viewer.layers["emb labels"]
    assert labels.metadata["hemd_params"]["hemd_source"] == ours.name  # what a re-run reads
    _, pred = viewer.window.add_plugin_dock_widget("napari-hemd", "Predict")
    pred.image.value = viewer.layers["emb"]
    pred.model.value = "nuclei-fluo"
    pred.tta.value = 1
    worker = pred.run()
    pred.tta.value = 4  # changed while it runs
    _wait(qtbot, worker)
    assert painted in viewer.layers and (painted.data == 1).all()
    assert "hemd_tta" not in ours.metadata  # predicted with one view, as recorded
    assert not errors


def test_an_image_renamed_while_segmenting_is_recorded_by_its_new_name(
    make_napari_viewer, qtbot, errors
):
    """The run recorded the image's old name, which then named no layer: Restore parameters
    could not repeat the run."""
    from napari_hemd.data.synthetic import nuclei_video

    movie = nuclei_video(n_frames=3, shape=(96, 96), n_cells=5, seed=2)["image"]
    viewer = make_napari_viewer()
    image = viewer.add_image(movie, name="emb")
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = image
    seg.model.value = "nuclei-fluo"
    seg.tta.value = 1
    worker = seg.run()
    image.name = "embryo"
    _wait(qtbot, worker)
    labels = viewer.layers["emb labels"]
    assert labels.metadata["hemd_params"]["hemd_image"] == "embryo" and not errors


def test_a_time_lapse_of_stacks_predicted_then_segmented_as_the_one_click_run(
    make_napari_viewer, qtbot, errors
):
    """Predict (nuclei-3d) then Segment on a (T, Z, Y, X) layer ran H-EMD over time with each
    stack one 3D frame: one object per stack where the one-click run found 9 and 8. Each stack
    is now segmented as the model's run segments it, then linked over time."""
    from napari_hemd.data.synthetic import nuclei_volume

    stack = nuclei_volume((20, 72, 72), n_cells=8, seed=5)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([stack, np.roll(stack, 2, axis=2)]), name="tl")
    _, seg = viewer.window.add_plugin_dock_widget("napari-hemd", "Segment (H-EMD)")
    seg.prob.value = viewer.layers["tl"]
    seg.model.value = "nuclei-3d"
    seg.tta.value = 1
    _wait(qtbot, seg.run())
    one_click = viewer.layers["tl labels"].data.copy()
    assert [len(np.unique(s)) - 1 for s in one_click] == [9, 8]
    viewer.layers.remove("tl labels")
    _, pred = viewer.window.add_plugin_dock_widget("napari-hemd", "Predict")
    pred.image.value = viewer.layers["tl"]
    pred.model.value = "nuclei-3d"
    pred.tta.value = 1
    _wait(qtbot, pred.run())
    seg.prob.value = viewer.layers["tl probability"]
    seg.model.value = seg.model.choices[0]  # no model: the map's own
    _wait(qtbot, seg.run())
    two_step = viewer.layers["tl labels"]
    np.testing.assert_array_equal(two_step.data, one_click)
    params = two_step.metadata["hemd_params"]
    assert params["planes"] == 3 and params["grow"] == 2 and params["per_stack"]
    assert len(two_step.metadata["hemd_result"].results) == 2 and not errors


def test_segment_with_a_model_file(viewer, qtbot, errors, tmp_path):
    """Segment offered only the shipped and listed models: a model trained on the command line
    or a colleague's file reached one-click Segment only through Predict. A model file segments
    as the same model by name does, and Restore parameters brings the file back."""
    import shutil

    from napari_hemd._widgets import SegmentWidget
    from napari_hemd._widgets.segment import FROM_FILE
    from napari_hemd.models.registry import model_path

    mine = tmp_path / "colleague.pt"
    shutil.copy(model_path("nuclei-fluo"), mine)
    image = viewer.layers["nuclei video image"]
    seg = SegmentWidget(viewer)
    seg.prob.value = image
    seg.model.value = FROM_FILE
    shown = lambda w: not w.native.isHidden()  # noqa: E731  (the dock itself is not shown)
    assert shown(seg.model_file) and not shown(seg.model_info)  # no file yet
    seg.run_button.native.click()
    assert seg._worker is None and "model file" in errors.pop()
    seg.model_file.value = mine
    assert shown(seg.model_info) and "held out" in seg.model_info.value
    seg.tta.value = 1
    _wait(qtbot, seg.run())
    by_file = viewer.layers["nuclei video image labels"]
    assert by_file.metadata["hemd_params"]["hemd_model"] == str(mine)
    got = by_file.data.copy()
    seg3 = SegmentWidget(viewer)
    seg3.restore(by_file)
    assert seg3.model.value == FROM_FILE and seg3.model_file.value == mine
    assert seg3.prob.value is image
    seg2 = SegmentWidget(viewer)
    seg2.prob.value = image
    seg2.model.value = "nuclei-fluo"
    seg2.tta.value = 1
    _wait(qtbot, seg2.run())
    np.testing.assert_array_equal(got, viewer.layers["nuclei video image labels"].data)
    # an affinity network's file: no flips or zoom offered (its kind read from the file)
    shutil.copy(model_path("nuclei-affinity"), tmp_path / "aff.pt")
    seg.model_file.value = tmp_path / "aff.pt"
    assert seg.tta.native.isHidden() and seg.scale.native.isHidden()
    assert not errors


def test_affinity_model_segments_with_its_mutex_watershed(
    make_napari_viewer, qtbot, errors, shared_data
):
    """Choosing nuclei-affinity sets method mutex (its own, with its held-out scores); the
    labels are its Mutex watershed instances, as predict and the command line give them. A
    single 2D image with a model and H-EMD is segmented too (refused before)."""
    import glob

    import tifffile

    from napari_hemd._widgets import SegmentWidget
    from napari_hemd.models import predict

    images = sorted(glob.glob(str(shared_data / "bbbc039" / "images" / "*.tif")))
    img = tifffile.imread(images[-1])[:192, :192]
    viewer = make_napari_viewer()
    layer = viewer.add_image(img, name="nuclei")
    seg = SegmentWidget(viewer)
    seg.prob.value = layer
    seg.model.value = "nuclei-affinity"
    assert seg.method.value == "mutex"
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei labels"].data
    inst = predict("nuclei-affinity", img, outputs=("instances",))["instances"]
    pairs = np.unique(np.stack([labels.ravel(), inst.ravel()]), axis=1)
    assert labels.max() > 5 and pairs.shape[1] == len(np.unique(labels)) == len(np.unique(inst))
    seg.method.value = "hemd"  # H-EMD on one 2D frame, with the model
    _wait(qtbot, seg.run())
    assert viewer.layers["nuclei labels"].data.max() > 5
    seg.model.value = "nuclei-fluo"
    seg.restore(viewer.layers["nuclei labels"])  # the run comes back as run: H-EMD (choosing
    assert seg.model.value == "nuclei-affinity" and seg.method.value == "hemd"  # the model
    # set its own method, mutex, over it)
    seg.model.value = "nuclei-fluo"  # a U-Net has no Mutex watershed
    assert seg.method.value == "hemd"
    assert not errors
