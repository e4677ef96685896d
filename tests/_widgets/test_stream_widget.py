"""Large data widget: zarr in -> zarr out on a Dask scheduler with progress, Cancel, resume."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr

from napari_hemd.core.segment import hemd
from napari_hemd.data.synthetic import nuclei_video


@pytest.fixture
def shown(monkeypatch) -> list[str]:
    from napari_hemd._widgets import stream

    got: list[str] = []
    monkeypatch.setattr(stream, "show_error", got.append)
    monkeypatch.setattr("napari_hemd._widgets._common.show_error", got.append)
    return got


@pytest.fixture
def prob_zarr(tmp_path):
    prob = nuclei_video(n_frames=12, shape=(96, 96), n_cells=8, seed=1)["prob"]
    path = tmp_path / "prob.zarr"
    z = zarr.create_array(str(path), shape=prob.shape, chunks=(1, 96, 96), dtype=np.float32)
    z[:] = prob
    return path, prob


def _widget(viewer, src, out):
    from napari_hemd._widgets import StreamWidget

    w = StreamWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.source.value = src
    w.output.value = out
    w.iterations.value = 2
    w.chunk.value = 3
    return w


def test_stream_widget_on_a_scheduler(
    make_napari_viewer, qtbot, dask_cluster_client, prob_zarr, tmp_path, shown
):
    viewer = make_napari_viewer()
    src, prob = prob_zarr
    out = tmp_path / "lab.zarr"
    w = _widget(viewer, src, out)
    w.scheduler.value = dask_cluster_client.scheduler.address
    assert w.run() is not None
    qtbot.waitUntil(lambda: "lab labels" in viewer.layers, timeout=120_000)
    layer = viewer.layers["lab labels"]
    assert isinstance(layer.data, zarr.Array)  # opened lazily from the store
    np.testing.assert_array_equal(layer.data[:], hemd(prob, iterations=2).labels)
    # per-window progress came back from the cluster
    assert w.events[0] == ("cluster", 0, 0)
    assert [e for e in w.events if e[0] == "windows"] == [("windows", k, 4) for k in range(1, 5)]
    qtbot.waitUntil(lambda: w.run_button.enabled)
    assert w.status.value.startswith("done")
    assert shown == []
    # a rerun refused (the output exists) does not leave the last run's "done" on show
    assert w.run() is None
    assert w.status.value == "not started (see the message)"
    assert shown == [f"Large data: output {str(out)!r} exists; tick 'overwrite output'"]


def test_stream_widget_cancel_then_resume(make_napari_viewer, qtbot, prob_zarr, tmp_path, shown):
    viewer = make_napari_viewer()
    src, prob = prob_zarr
    out = tmp_path / "lab.zarr"
    w = _widget(viewer, src, out)
    w.chunk.value = 1  # 12 windows
    worker = w.run()
    qtbot.waitUntil(lambda: len(w.events) >= 1, timeout=60_000)
    w.cancel_button.clicked()
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=60_000)
    # Run is back only when the cancelled run has stopped: a Run at once ran beside it, in the
    # same output, and said "failed: '.lab.zarr.lock'" (audit 32)
    assert not [t for t in threading.enumerate() if t.name == "hemd-stream_segment"]
    assert w.status.value.startswith("cancelled")
    assert not out.exists() and "lab labels" not in viewer.layers
    done_before = len(w.events)
    assert done_before < 12
    assert worker is not None
    w.run()  # resumes: only the missing windows run
    qtbot.waitUntil(lambda: "lab labels" in viewer.layers, timeout=120_000)
    resumed = [e[1] for e in w.events]
    assert resumed[-1] == 12 and resumed[0] > 1
    np.testing.assert_array_equal(
        viewer.layers["lab labels"].data[:], hemd(prob, iterations=2).labels
    )
    assert shown == []


def test_stream_widget_errors_name_the_field(make_napari_viewer, prob_zarr, tmp_path, shown):
    viewer = make_napari_viewer()
    src, _ = prob_zarr
    w = _widget(viewer, tmp_path / "missing.zarr", tmp_path / "lab.zarr")
    assert w.run() is None
    w.source.value = src
    w.output.value = tmp_path / "lab.tif"
    assert w.run() is None
    w.output.value = src
    assert w.run() is None
    w.output.value = tmp_path / "lab.zarr"
    w.workers.value, w.scheduler.value = 2, "tcp://127.0.0.1:1"
    assert w.run() is None
    assert shown == [
        f"Large data: input {str(tmp_path / 'missing.zarr')!r} does not exist",
        f"Large data: output must be a .zarr store; got {str(tmp_path / 'lab.tif')!r}",
        f"Large data: output {str(src)!r} exists; tick 'overwrite output'",
        (
            "Large data: give local workers or a scheduler address, not both; got 2 workers "
            "and 'tcp://127.0.0.1:1'"
        ),
    ]


def test_stream_widget_from_a_lazy_layer(make_napari_viewer, qtbot, prob_zarr, tmp_path, shown):
    """A zarr opened lazily as a layer (as the reader does) streams without loading it."""
    viewer = make_napari_viewer()
    src, prob = prob_zarr
    viewer.add_image(zarr.open_array(str(src), mode="r"), name="big probability")
    w = _widget(viewer, "", tmp_path / "lab.zarr")
    w.input_from.value = "layer"
    assert not w.image.native.isHidden() and w.source.native.isHidden()
    w.image.value = viewer.layers["big probability"]
    assert w.run() is not None
    qtbot.waitUntil(lambda: "lab labels" in viewer.layers, timeout=120_000)
    np.testing.assert_array_equal(
        viewer.layers["lab labels"].data[:], hemd(prob, iterations=2).labels
    )
    # the edge-cut cells removed, as stream --exclude-border
    from napari_hemd.core.cells import clear_border_objects

    cut = np.ascontiguousarray(prob[:, 10:80, 10:80])  # the frame's edge cuts cells
    # a calibrated layer: its result lies on it, and the labels keep its pixel size
    viewer.add_image(cut, name="cut probability", scale=(1, 0.5, 0.5), units=("pixel", "um", "um"))
    w.image.value = viewer.layers["cut probability"]
    w.output.value = tmp_path / "inside.zarr"
    w.exclude_border.value = True
    assert w.run() is not None
    qtbot.waitUntil(lambda: "inside labels" in viewer.layers, timeout=120_000)
    full = hemd(cut, iterations=2).labels
    expected = clear_border_objects(full, frame_axis=True)
    assert (expected != full).any()
    np.testing.assert_array_equal(viewer.layers["inside labels"].data[:], expected)
    from napari_hemd.io.calibration import PixelSize, read_pixel_size

    assert list(viewer.layers["inside labels"].scale) == [1.0, 0.5, 0.5]
    assert read_pixel_size(tmp_path / "inside.zarr") == PixelSize({"y": 0.5, "x": 0.5}, "um")
    viewer.add_image(np.zeros((8, 8), np.float32), name="flat")
    w.image.value = viewer.layers["flat"]
    assert w.run() is None
    assert shown == ["Large data: 'flat' must be a (T, Y, X) or (T, Z, Y, X) stack; got 2D"]


def test_stream_widget_predicts_with_test_time_flips(
    make_napari_viewer, qtbot, tmp_path, shown, monkeypatch
):
    """With a model, the widget's "test-time flips" and zoom reach the prediction (as
    stream_segment(tta=4)), and a zoom that makes the objects too small gets the size note."""
    pytest.importorskip("torch")
    from napari_hemd._widgets import stream
    from napari_hemd.pipeline import stream_segment, stream_size_advice

    raw = nuclei_video(n_frames=6, shape=(96, 96), n_cells=6, seed=3)["image"]
    viewer = make_napari_viewer()
    viewer.add_image(raw, name="raw")
    w = _widget(viewer, "", tmp_path / "lab.zarr")
    w.input_from.value = "layer"
    w.image.value = viewer.layers["raw"]
    assert w.tta.native.isHidden()  # no model: the input is probabilities
    w.model.value = "nuclei-fluo"
    assert not w.tta.native.isHidden()
    w.tta.value = 4
    assert w.run() is not None
    qtbot.waitUntil(lambda: "lab labels" in viewer.layers, timeout=120_000)
    ref = tmp_path / "ref.zarr"
    stream_segment(raw, ref, model="nuclei-fluo", tta=4, chunk=3, iterations=2)
    np.testing.assert_array_equal(viewer.layers["lab labels"].data[:], zarr.open_array(str(ref))[:])
    prob = zarr.open_group(str(tmp_path / "lab.prob.zarr"))
    assert prob.attrs["tta"] == 4
    assert shown == []
    # linked over time: the linked labels open beside the run's probabilities (lab.prob.zarr)
    w.link.value, w.overwrite.value = True, True
    assert w.run() is not None
    qtbot.waitUntil(lambda: "lab-linked labels" in viewer.layers, timeout=120_000)
    assert "lab-linked labels tracks" in viewer.layers and "lab probability" in viewer.layers
    w.link.value, w.overwrite.value = False, False
    assert shown == []
    assert w.advice is None  # the objects suit the model: no size note
    assert not w.scale.native.isHidden()  # the zoom is passed on too
    w.scale.value = 0.5
    w.overwrite.value = True  # the run above wrote the output
    assert w._arguments()["scale"] == 0.5
    # zoomed by 0.5 the nuclei are too small for the network: the size note of segment --model
    infos: list[str] = []
    monkeypatch.setattr(stream, "show_info", infos.append)
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.status.value.startswith("done"), timeout=120_000)
    out = tmp_path / "lab.zarr"
    assert w.advice is not None and w.advice == stream_size_advice("nuclei-fluo", out, 0.5)
    import re

    asked = re.search(r"--scale ([0-9.]+) \(zoom for the model \1\)", w.advice)
    assert asked and 0.5 < float(asked.group(1)) < 1.2  # back up towards the model's sizes
    assert infos[-1].endswith(f"Note: {w.advice}") and "see the note" in w.status.value
    # the zoom's lowest value is auto: found on a few frames, as segment --scale auto finds it
    w.scale.value = 0.0
    assert w.scale.native.text() == "auto" and w._arguments()["scale"] == "auto"
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.status.value.startswith("done"), timeout=120_000)
    labels = viewer.layers["lab labels"]
    found = zarr.open_array(str(out)).attrs["scale"]
    assert labels.metadata["hemd_stream"]["scale"] == found and w.advice is None
    assert f"zoom {found:g} (found; tried 1" in infos[-1]
    from napari_hemd._widgets.stream import NO_MODEL

    w.model.value = NO_MODEL
    assert w.scale.native.isHidden() and w._arguments()["scale"] == 1.0


def test_stream_widget_segments_a_time_lapse_of_stacks(make_napari_viewer, qtbot, tmp_path, shown):
    """A (T, Z, Y, X) layer with nuclei-3d: stack by stack, the labels of segment_image."""
    pytest.importorskip("torch")
    from napari_hemd.data.synthetic import nuclei_volume
    from napari_hemd.image_segmentation import segment_image

    vol = nuclei_volume()["image"][:24, :96]
    stacks = np.stack([vol[..., s : s + 96] for s in (0, 1)])
    viewer = make_napari_viewer()
    viewer.add_image(stacks, name="embryo")
    w = _widget(viewer, "", tmp_path / "emb.zarr")
    w.input_from.value = "layer"
    w.image.value = viewer.layers["embryo"]
    w.model.value = "nuclei-3d"
    w.tta.value = 1
    assert w.run() is not None
    qtbot.waitUntil(lambda: "emb labels" in viewer.layers, timeout=180_000)
    expected = segment_image(stacks, "nuclei-3d", tta=1, iterations=2).labels  # the widget's T
    np.testing.assert_array_equal(viewer.layers["emb labels"].data[:], expected)
    assert "emb probability" not in viewer.layers  # stack by stack: no maps kept
    assert ("stacks", 2, 2) in w.events
    assert shown == []


def test_the_input_picker_opens_files_or_folders_as_chosen(make_napari_viewer):
    """A file dialog picks a file or a folder, never both: a TIFF stack needs the file picker
    (it was a folder picker only, so a TIFF had to be typed)."""
    from magicgui.types import FileDialogMode

    from napari_hemd._widgets.stream import FROM_FILE, FROM_FOLDER, StreamWidget

    w = StreamWidget(make_napari_viewer())
    assert w.input_from.value == FROM_FOLDER and w.source.mode == FileDialogMode.EXISTING_DIRECTORY
    w.input_from.value = FROM_FILE
    assert w.source.mode == FileDialogMode.EXISTING_FILE
    w.input_from.value = FROM_FOLDER
    assert w.source.mode == FileDialogMode.EXISTING_DIRECTORY


def test_stream_widget_says_when_a_run_failed(make_napari_viewer, qtbot, tmp_path, shown):
    """A run that fails in its worker (maps that are no probabilities) says so on its line."""
    bad = tmp_path / "bad.zarr"
    z = zarr.create_array(str(bad), shape=(4, 32, 32), chunks=(1, 32, 32), dtype=np.float32)
    z[:] = 5.0
    viewer = make_napari_viewer()
    w = _widget(viewer, bad, tmp_path / "lab.zarr")
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=60_000)
    assert w.status.value.startswith("failed: ") and len(shown) == 1
    assert shown[0].startswith("Large data failed: ")
    assert w.status.value[len("failed: ") :] == shown[0][len("Large data failed: ") :]


def test_a_layer_of_the_users_name_is_kept(make_napari_viewer, qtbot, prob_zarr, tmp_path, shown):
    """A run whose output is lab.zarr removed the user's own 'lab labels' layer (proofread,
    unsaved) without a word; only its own earlier output is replaced."""
    viewer = make_napari_viewer()
    src, prob = prob_zarr
    mine = viewer.add_labels(np.ones(prob.shape, np.uint32), name="lab labels")
    w = _widget(viewer, src, tmp_path / "lab.zarr")
    for run in range(2):
        w.overwrite.value = run == 1
        worker = w.run()
        with qtbot.waitSignal(worker.finished, timeout=120_000):
            pass
        qtbot.waitUntil(lambda: "lab labels [1]" in viewer.layers, timeout=10_000)
    assert mine in viewer.layers and (mine.data == 1).all()
    names = [ly.name for ly in viewer.layers]
    assert names.count("lab labels [1]") == 1 and len(names) == 2, names  # replaced, not added
    np.testing.assert_array_equal(
        viewer.layers["lab labels [1]"].data[:], hemd(prob, iterations=2).labels
    )


def test_link_over_time_gives_the_movie_its_tracks(
    make_napari_viewer, qtbot, prob_zarr, tmp_path, shown
):
    """*link over time*: the streamed movie's labels linked into ``lab-linked.zarr`` (the same
    labels and lineage as H-EMD with link=True on the whole movie), opened with a Tracks layer."""
    from napari.layers import Tracks

    from napari_hemd.core.linking import link_labels

    viewer = make_napari_viewer()
    src, prob = prob_zarr
    w = _widget(viewer, src, tmp_path / "lab.zarr")
    w.link.value = True
    assert w.run() is not None
    qtbot.waitUntil(lambda: "lab-linked labels" in viewer.layers, timeout=120_000)
    want, tracks = link_labels(hemd(prob, iterations=2).labels, delta=0.35)
    np.testing.assert_array_equal(viewer.layers["lab-linked labels"].data[:], want)
    stored = zarr.open_array(str(tmp_path / "lab-linked.zarr"), mode="r")
    np.testing.assert_array_equal(np.asarray(stored.attrs["tracks"]), tracks)
    layers = [ly for ly in viewer.layers if isinstance(ly, Tracks)]
    assert [ly.name for ly in layers] == ["lab-linked labels tracks"]
    assert ("link", 12, 12) in w.events
    # linked labels already there are not replaced without 'overwrite output'
    (tmp_path / "new-linked.zarr").mkdir()
    w.output.value = tmp_path / "new.zarr"
    assert w.run() is None and "new-linked.zarr" in shown[-1] and "overwrite" in shown[-1]


def test_stream_widget_reads_a_dataset_of_an_hdf5_file(
    make_napari_viewer, qtbot, prob_zarr, tmp_path, shown
):
    """*file (TIFF, HDF5)*: a dataset typed after the file's name (``maps.h5/prob``) was
    refused as a path that does not exist."""
    h5py = pytest.importorskip("h5py")
    from napari_hemd._widgets.stream import FROM_FILE

    _, prob = prob_zarr
    path = tmp_path / "maps.h5"
    with h5py.File(path, "w") as f:
        f["prob"], f["raw"] = prob, (prob * 1000).astype(np.uint16)
    viewer = make_napari_viewer()
    w = _widget(viewer, tmp_path / "x", tmp_path / "lab.zarr")
    w.input_from.value = FROM_FILE
    w.source.value = path / "prob"
    w.run()
    qtbot.waitUntil(lambda: "lab labels" in viewer.layers, timeout=120_000)
    np.testing.assert_array_equal(
        viewer.layers["lab labels"].data[:], hemd(prob, iterations=2).labels
    )
    assert shown == []


def test_a_cluster_failure_is_said_in_a_user_s_words():
    """Audit 32: a scheduler lost mid-run showed Dask's "... cancelled for reason:
    scheduler-connection-lost ..." in the status; the widget says what the command line does."""
    from napari_hemd._widgets.stream import _failed

    class FutureCancelledError(Exception):  # distributed.client's, by name
        pass

    lost = FutureCancelledError(
        "_write_window-638b cancelled for reason: scheduler-connection-lost. Client lost the "
        "connection to the scheduler. Please check your connection and re-run your work."
    )
    assert _failed(lost) == (
        "failed: the connection to the Dask scheduler was lost (it stopped, or its machine); "
        "the finished work is kept, and Run with the same settings resumes"
    )
    assert _failed(ValueError("tau must be in [0, 1]")) == "failed: tau must be in [0, 1]"
