"""Export widget: OME-Zarr label images (standalone or under an image's labels/), read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from napari_hemd._napari_io import get_reader
from napari_hemd._widgets import ExportWidget


def _segmented_linked(viewer, qtbot):
    """The sample's probability segmented with *link across frames*: its labels layer."""
    from napari_hemd._widgets import SegmentWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.link.value = True
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    return viewer.layers["nuclei video labels"]


def test_export_ome_zarr_standalone(viewer, tmp_path, errors):
    gt = viewer.layers["nuclei video ground truth"]
    gt.metadata["hemd_params"] = {"tau": 0.45, "hemd_model": "nuclei-fluo"}
    exp = ExportWidget(viewer)
    exp.labels.value = gt
    exp.format.value = "OME-Zarr"
    out = exp.export(tmp_path / "masks")
    assert out == tmp_path / "masks.ome.zarr"
    attrs = json.loads((out / ".zattrs").read_text())
    assert attrs["image-label"]["version"] == "0.4"
    assert attrs["napari_hemd"]["tau"] == 0.45 and attrs["napari_hemd"]["model"] == "nuclei-fluo"
    ((data, meta, kind),) = get_reader(str(out))(str(out))
    assert kind == "labels" and meta["name"] == "masks"
    np.testing.assert_array_equal(data[...], gt.data)
    assert not errors


def test_export_ome_zarr_into_image(viewer, tmp_path, errors):
    gt = viewer.layers["nuclei video ground truth"]
    img = tmp_path / "movie.ome.zarr"
    root = zarr.open_group(str(img), mode="w", zarr_format=2)
    root.create_array("0", data=np.asarray(viewer.layers["nuclei video image"].data))
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "time" if a == "t" else "space"} for a in "tyx"],
            "datasets": [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}],
        }
    ]  # fmt: skip
    exp = ExportWidget(viewer)
    exp.labels.value = gt
    exp.format.value = "OME-Zarr"
    out = exp.export(img)
    assert out == img / "labels" / "nuclei_video_ground_truth"
    layers = get_reader(str(img))(str(img))
    assert [k for _, _, k in layers] == ["image", "labels"]
    np.testing.assert_array_equal(layers[1][0][...], gt.data)
    exp.confirm_overwrite = lambda p: False  # the same label name again: asked, refused
    assert exp.export(img) is None
    assert json.loads((img / "labels" / ".zattrs").read_text()) == {
        "labels": ["nuclei_video_ground_truth"]
    }
    assert not errors


def test_export_measurements_of_a_segmented_movie(viewer, qtbot, tmp_path, errors):
    """Segment (linked), then Export > Measurements (CSV) with the raw movie's intensities: one
    row per object per frame, the same table as measure_objects, parents from the linking."""
    import csv

    from napari_hemd.core.measure import measure_objects

    labels = _segmented_linked(viewer, qtbot)
    labels.scale = (1.0, 0.2, 0.2)
    exp = ExportWidget(viewer)
    exp.labels.value = labels
    exp.format.value = "Measurements (CSV)"
    shown = [not w.native.isHidden() for w in (exp.intensity, exp.volume)]
    assert shown == [True, True] and not exp.volume.value
    raw = viewer.layers["nuclei video image"]
    assert raw in [c[1] if isinstance(c, tuple) else c for c in exp.intensity.choices]
    exp.intensity.value = raw
    out = exp.export(tmp_path / "cells.csv")
    assert out == tmp_path / "cells.csv"
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    res = labels.metadata["hemd_result"]
    want = measure_objects(labels.data, raw.data, spacing=(0.2, 0.2), tracks=res.tracks)
    assert len(rows) == len(want["label"]) > 20
    assert [int(r["label"]) for r in rows] == want["label"].tolist()
    assert rows[0]["area_units2"] and float(rows[3]["mean_intensity"]) == pytest.approx(
        want["mean_intensity"][3], rel=1e-5
    )
    assert any(int(r["parent"]) for r in rows)  # the video's divisions
    assert not errors
    exp.format.value = "TIFF stack"
    assert exp.intensity.native.isHidden()


def test_a_table_measures_every_chosen_channel(viewer, tmp_path, errors):
    """Export's table measured one image layer: a second channel meant a second table (session
    29's note). Every chosen layer now gives its own intensity columns, named after it."""
    import csv

    from napari_hemd.core.measure import measure_objects

    raw = viewer.layers["nuclei video image"]
    truth = np.asarray(viewer.layers["nuclei video ground truth"].data).astype(np.uint32)
    labels = viewer.add_labels(truth, name="cells")
    other = viewer.add_image(np.asarray(raw.data)[:, ::-1] * 2.0, name="reporter (GFP)")
    exp = ExportWidget(viewer)
    exp.labels.value = labels
    exp.format.value = "Measurements (CSV)"
    choices = [c[1] if isinstance(c, tuple) else c for c in exp.intensity.choices]
    assert raw in choices and other in choices
    exp.intensity.value = [raw, other]
    out = exp.export(tmp_path / "two.csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    for layer, suffix in ((raw, "nuclei_video_image"), (other, "reporter_GFP")):
        want = measure_objects(truth, np.asarray(layer.data))
        got = [float(r[f"mean_intensity_{suffix}"]) for r in rows]
        np.testing.assert_allclose(got, want["mean_intensity"], rtol=1e-5)
    # names that make no column name, or the same one, numbered (review 30: refused)
    alike = viewer.add_image(np.asarray(raw.data) + 1.0, name="reporter [GFP]")
    blank = viewer.add_image(np.asarray(raw.data) + 2.0, name="(!)")
    exp.intensity.value = [other, alike, blank]
    with open(exp.export(tmp_path / "alike.csv"), newline="") as f:
        header = next(csv.reader(f))
    for suffix in ("reporter_GFP", "reporter_GFP_2", "image3"):
        assert f"mean_intensity_{suffix}" in header
    exp.intensity.value = []
    with open(exp.export(tmp_path / "none.csv"), newline="") as f:
        assert not any("intensity" in k for k in next(csv.DictReader(f)))
    assert not errors


def test_a_frame_ranges_table_takes_intensities_from_the_movie(viewer, tmp_path, errors):
    """Labels of frames 2-4 (Segment's frame range, placed at frame 2) could only be measured
    against a map of their own shape, not the raw movie (audit 17): the movie's frames under
    them are measured, and the CLI does the same for a CTC folder of those frames."""
    import csv

    import tifffile

    from napari_hemd.cli import main
    from napari_hemd.core.measure import measure_objects

    raw = viewer.layers["nuclei video image"]
    truth = np.asarray(viewer.layers["nuclei video ground truth"].data)
    part = viewer.add_labels(truth[2:5].astype(np.uint32), name="part", translate=(2, 0, 0))
    exp = ExportWidget(viewer)
    exp.labels.value = part
    exp.format.value = "Measurements (CSV)"
    assert raw in [c[1] if isinstance(c, tuple) else c for c in exp.intensity.choices]
    exp.intensity.value = raw
    out = exp.export(tmp_path / "part.csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    want = measure_objects(truth[2:5], np.asarray(raw.data)[2:5])
    assert [int(r["frame"]) for r in rows] == (want["frame"] + 2).tolist()  # the movie's
    got = [float(r["mean_intensity"]) for r in rows]
    np.testing.assert_allclose(got, want["mean_intensity"], rtol=1e-5)
    exp.format.value = "CTC result folder"
    ctc = exp.export(tmp_path / "part")  # mask002-mask004
    tifffile.imwrite(tmp_path / "movie.tif", np.asarray(raw.data))
    table = tmp_path / "cli.csv"
    assert (
        main(["measure", str(ctc), "--image", str(tmp_path / "movie.tif"), "-o", str(table)]) == 0
    )
    with open(table, newline="") as f:
        cli = list(csv.DictReader(f))
    np.testing.assert_allclose([float(r["mean_intensity"]) for r in cli], got, rtol=1e-5)
    assert not errors


def test_a_stack_exports_as_one_3d_frame(make_napari_viewer, tmp_path, errors):
    """A labels layer of one (Z, Y, X) stack (a 3D model's run: three planes) goes into a CTC
    folder as one 3D mask with no lineage, into a TIFF as ZYX; unticked, slices are frames."""
    import tifffile

    from napari_hemd.data.synthetic import nuclei_volume

    labels = nuclei_volume((16, 48, 48), n_cells=4, seed=2)["labels"]
    viewer = make_napari_viewer()
    layer = viewer.add_labels(labels, name="stack", metadata={"hemd_params": {"planes": 3}})
    exp = ExportWidget(viewer)
    exp.labels.value = layer
    assert exp.volume.value and not exp.volume.native.isHidden()  # guessed from the run
    out = exp.export(tmp_path / "res")
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tif") == ["mask000.tif"]
    np.testing.assert_array_equal(tifffile.imread(out / "mask000.tif"), labels)
    tracks = np.loadtxt(out / "res_track.txt", dtype=np.int64, ndmin=2)
    assert (tracks[:, 1:] == 0).all() and len(tracks) == len(np.unique(labels)) - 1
    exp.format.value = "TIFF stack"
    tif = exp.export(tmp_path / "stack.tif")
    with tifffile.TiffFile(tif) as f:
        assert f.series[0].axes == "ZYX"
    # an OME-Zarr of the stack names its first axis z (it was t): measured as one volume
    from napari_hemd.cli import main
    from napari_hemd.io.channels import input_axes

    exp.format.value = "OME-Zarr"
    assert not exp.volume.native.isHidden() and exp.volume.value
    ome = exp.export(tmp_path / "stack.ome.zarr")
    assert input_axes(ome) == "ZYX"
    n = len(np.unique(labels)) - 1
    for written in (ome, tif):  # and the TIFF (its record sits under "napari_hemd")
        assert main(["measure", str(written), "-o", str(tmp_path / f"{written.name}.csv")]) == 0
        with open(tmp_path / f"{written.name}.csv") as f:
            assert len(f.read().strip().splitlines()) == n + 1  # one row per nucleus
    exp.format.value = "CTC result folder"
    exp.volume.value = False  # the user says: a movie
    out = exp.export(tmp_path / "movie")
    assert len(list(out.glob("mask*.tif"))) == labels.shape[0]
    assert not errors


def test_a_ctc_export_keeps_the_layers_voxel_size(make_napari_viewer, tmp_path, errors):
    """The CTC folder of a calibrated (T, Z, Y, X) layer reopened at scale 1, off the image
    (audit 26): its masks record the voxel size, and napari places them there again."""
    from napari_hemd.io.calibration import PixelSize, read_pixel_size

    lab = np.zeros((2, 4, 24, 24), np.uint16)
    lab[:, 1:3, 4:12, 4:10] = 1
    viewer = make_napari_viewer()
    scale, units = (1.0, 2.0, 0.5, 0.5), ("pixel", "um", "um", "um")
    layer = viewer.add_labels(lab, name="cells", scale=scale, units=units)
    exp = ExportWidget(viewer)
    exp.labels.value = layer
    exp.format.value = "CTC result folder"
    out = exp.export(tmp_path / "res")
    assert read_pixel_size(out) == PixelSize({"z": 2.0, "y": 0.5, "x": 0.5}, "um")
    reopened = viewer.open(str(out), plugin="napari-hemd")[0]  # (no tracks: one cell)
    assert tuple(reopened.scale) == scale
    np.testing.assert_array_equal(reopened.data, lab)
    assert not errors


def test_a_re_run_keeps_its_lineage_an_edit_keeps_what_holds(viewer, qtbot, tmp_path, errors):
    """A linked Segment run again with another tau (no hand edit) exported no parents: the run
    is a step of the undo history and was taken for an edit. Any edit then dropped every
    division, also those it did not touch: they are kept where they still hold."""
    from napari_hemd._widgets import ProofreadWidget, SegmentWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.link.value = True

    def parents(folder) -> int:
        tracks = np.loadtxt(folder / "res_track.txt", dtype=np.int64, ndmin=2)
        return int((tracks[:, 3] > 0).sum())

    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    exp = ExportWidget(viewer)
    exp.labels.value = labels
    assert parents(exp.export(tmp_path / "one")) > 0  # the video's divisions
    seg.tau.value = 0.55
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    assert parents(exp.export(tmp_path / "two")) > 0
    proof = ProofreadWidget(viewer)
    proof.labels.value = labels
    proof.scope.value = "all frames"
    tracks = np.loadtxt(tmp_path / "two" / "res_track.txt", dtype=np.int64, ndmin=2)
    divided = {int(p) for p in tracks[tracks[:, 3] > 0, 3]}
    daughters = tracks[np.isin(tracks[:, 3], sorted(divided))]
    # an edit elsewhere (two objects of frame 0 with no division merged) keeps the divisions
    ids = [int(i) for i in np.unique(labels.data[0])[1:] if int(i) not in divided][:2]
    assert proof.merge(ids)
    assert parents(exp.export(tmp_path / "three")) == parents(tmp_path / "two")
    # a daughter deleted: its division goes, its sister's stays
    proof.scope.value = "all frames"
    assert proof.delete([int(daughters[0, 0])])
    after = np.loadtxt(exp.export(tmp_path / "four") / "res_track.txt", dtype=np.int64, ndmin=2)
    assert parents(tmp_path / "four") == parents(tmp_path / "two") - 1
    assert int(daughters[0, 0]) not in after[:, 0]
    assert not errors


def test_a_ctc_export_named_dot_ctc_and_unlinked_labels_said(
    viewer, qtbot, tmp_path, errors, monkeypatch
):
    """A CTC folder chosen as ``res.ctc`` (what the guide tells File > Save Layers) is written as
    ``res`` (it was refused for its suffix); labels of a run not linked over time are exported
    with a warning that res_track.txt follows ids, not cells; a linked run's without one."""
    from napari_hemd._widgets import SegmentWidget
    from napari_hemd._widgets import export as export_widget

    warned = []
    monkeypatch.setattr(export_widget, "show_warning", warned.append)
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    exp = ExportWidget(viewer)
    exp.labels.value = viewer.layers["nuclei video labels"]
    out = exp.export(tmp_path / "res.ctc")
    assert out == tmp_path / "res" and (out / "res_track.txt").is_file()
    assert len(warned) == 1 and "not linked over time" in warned[0]
    seg.link.value = True
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    assert exp.export(tmp_path / "linked.ctc") == tmp_path / "linked"
    assert len(warned) == 1
    assert not errors


def test_a_linked_run_shows_its_tracks_with_the_divisions(viewer, qtbot, errors):
    """Segment with *link across frames* adds a Tracks layer on the labels: each cell's centre
    per frame under its id, the divisions of the exported lineage as edges; a re-run replaces
    it; an unlinked run adds none."""
    from napari.layers import Tracks

    from napari_hemd._widgets import SegmentWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    assert not [ly for ly in viewer.layers if isinstance(ly, Tracks)]
    seg.link.value = True
    for _ in range(2):
        with qtbot.waitSignal(seg.run().finished, timeout=120_000):
            pass
        tracks = [ly for ly in viewer.layers if isinstance(ly, Tracks)]
        assert [ly.name for ly in tracks] == ["nuclei video labels tracks"]
    labels = viewer.layers["nuclei video labels"]
    layer = tracks[0]
    t, ids = 3, np.unique(labels.data[3])[1:]
    in_frame = layer.data[layer.data[:, 1] == t]
    assert sorted(in_frame[:, 0].astype(int)) == sorted(ids.astype(int))
    k = int(ids[0])
    yx = np.argwhere(labels.data[t] == k).mean(axis=0)
    np.testing.assert_allclose(in_frame[in_frame[:, 0] == k][0, 2:], yx)
    lineage = labels.metadata["hemd_result"].tracks
    divided = {int(c): [int(p)] for c, _, _, p in lineage if p > 0}
    assert divided and layer.graph == divided
    assert tuple(layer.scale) == tuple(labels.scale)
    assert not errors


def test_the_tracks_layer_follows_edits_and_comes_back_with_the_project(
    viewer, qtbot, tmp_path, errors
):
    """The Tracks layer was drawn once from the run: a deleted cell kept its path, and a
    reopened project had none (audit 19). It is redrawn from the edited lineage (Export's)."""
    from napari.layers import Tracks

    from napari_hemd._widgets import ProjectWidget, ProofreadWidget
    from napari_hemd._widgets._tracks import lineage_of

    labels = _segmented_linked(viewer, qtbot)
    shown = viewer.layers["nuclei video labels tracks"]
    t = 3
    gone = int(np.unique(labels.data[t])[1])
    pr = ProofreadWidget(viewer)
    pr.labels.value = labels
    viewer.dims.set_current_step(0, t)
    assert pr.delete([gone])  # in frame 3 only

    def points_at(frame):
        return sorted(shown.data[shown.data[:, 1] == frame][:, 0].astype(int))

    qtbot.waitUntil(lambda: gone not in points_at(t), timeout=5_000)
    data, _ = lineage_of(labels, labels.data)
    assert points_at(t) == sorted(np.unique(data[t])[1:].astype(int))
    assert viewer.layers["nuclei video labels tracks"] is shown  # redrawn in place
    pr.undo()
    qtbot.waitUntil(lambda: gone in points_at(t), timeout=5_000)

    proj = ProjectWidget(viewer, restore=False)
    proj.labels.value = labels
    out = proj.save(tmp_path / "session")
    viewer.layers.clear()
    with qtbot.waitSignal(proj.open(out).finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "nuclei video labels tracks" in viewer.layers, timeout=5_000)
    back = viewer.layers["nuclei video labels tracks"]
    assert isinstance(back, Tracks)
    np.testing.assert_allclose(np.sort(back.data, axis=0), np.sort(shown.data, axis=0))
    assert not errors


def test_the_export_button_writes_in_the_background(viewer, qtbot, tmp_path, errors):
    """Export froze napari while it wrote (a table of 6,000 objects: 5-7 s); the button now
    writes in a worker the labels as they were when it was pressed, and says when done."""
    import tifffile

    from napari_hemd._widgets import SegmentWidget

    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    with qtbot.waitSignal(seg.run().finished, timeout=120_000):
        pass
    labels = viewer.layers["nuclei video labels"]
    exp = ExportWidget(viewer)
    exp.labels.value = labels
    exp.format.value = "TIFF stack"
    exp.path.value = tmp_path / "bg.tif"
    before = np.asarray(labels.data).copy()
    with qtbot.waitSignal(exp.export_button.native.clicked, timeout=5_000):
        exp.export_button.native.click()
    labels.data[...] = 0  # edited while it writes: the export keeps what was pressed on
    qtbot.waitUntil(lambda: exp.export_button.enabled, timeout=60_000)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "bg.tif"), before)
    exp.format.value = "Measurements (CSV)"
    labels.data[...] = before
    worker = exp.export(tmp_path / "objects.csv", background=True)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert (tmp_path / "objects.csv").read_text().count("\n") > 10
    assert not errors


@pytest.mark.parametrize("fmt", ["CTC result folder", "Measurements (CSV)"])
def test_the_lineage_is_worked_out_in_the_background(viewer, qtbot, tmp_path, errors, fmt):
    """The lineage of an edited linked run was worked out on napari's thread before the write
    began (audit 25: 0.7-1.4 s frozen on a 92-frame movie): it is the worker's now."""
    import threading

    from napari_hemd._widgets import ProofreadWidget, _tracks

    labels = _segmented_linked(viewer, qtbot)
    pr = ProofreadWidget(viewer)
    pr.labels.value = labels
    assert pr.delete([int(np.unique(labels.data[0])[1])])  # edited: the lineage is worked out
    threads = []
    work = _tracks._lineage

    def watched(*args):
        threads.append(threading.current_thread())
        return work(*args)

    _tracks._lineage = watched
    try:
        exp = ExportWidget(viewer)
        exp.labels.value = labels
        exp.format.value = fmt
        worker = exp.export(tmp_path / "out", background=True)
        with qtbot.waitSignal(worker.finished, timeout=60_000):
            pass
    finally:
        _tracks._lineage = work
    # (the Tracks layer's redraw after the delete works it out in a thread of its own too)
    assert threads and all(t is not threading.main_thread() for t in threads)
    written = exp.target()
    assert (written / "res_track.txt").is_file() if written.is_dir() else written.is_file()
    assert not errors


def test_objects_dropped_after_linking_leave_the_exported_lineage(make_napari_viewer):
    """A run that dropped small linked objects after H-EMD (a 3D model's min_volume) kept them
    in the result's tracks: Export listed objects the masks no longer hold."""
    from types import SimpleNamespace

    from napari_hemd._widgets._tracks import lineage_of

    data = np.zeros((3, 16, 16), np.uint32)
    data[:, 2:6, 2:6] = 1
    data[2, 8:12, 8:12] = 3  # daughter of 2, which was dropped
    viewer = make_napari_viewer()
    tracks = np.array([[1, 0, 2, 0], [2, 0, 1, 0], [3, 2, 2, 2]])
    layer = viewer.add_labels(data, metadata={"hemd_result": SimpleNamespace(tracks=tracks)})
    np.testing.assert_array_equal(lineage_of(layer, data)[1], [[1, 0, 2, 0], [3, 2, 2, 0]])


def test_a_frame_range_exports_numbered_as_its_frames_and_reopens_as_labels(
    viewer, tmp_path, errors
):
    """A layer of frames 2-4 (Segment's frame range, placed at those frames) was written to a
    CTC folder as mask000-mask002 with tracks from 0, so a score against the challenge's
    reference compared other frames; and a TIFF Export wrote opened again as an image unless
    its name held "label", "mask" or "seg"."""
    gt = viewer.layers["nuclei video ground truth"]
    part = np.asarray(gt.data[2:5])
    layer = viewer.add_labels(part, name="cells (frames 2-4)", translate=(2, 0, 0))
    exp = ExportWidget(viewer)
    exp.labels.value = layer
    exp.format.value = "CTC result folder"
    out = exp.export(tmp_path / "res")
    assert sorted(p.name for p in out.glob("mask*.tif")) == [f"mask00{t}.tif" for t in (2, 3, 4)]
    tracks = np.loadtxt(out / "res_track.txt", dtype=int, ndmin=2)
    assert tracks[:, 1].min() == 2 and tracks[:, 2].max() == 4
    exp.format.value = "TIFF stack"
    tif = exp.export(tmp_path / "day1_corrected.tif")
    ((data, meta, kind),) = get_reader(str(tif))(str(tif))
    assert kind == "labels"
    np.testing.assert_array_equal(data, part)
    assert meta["translate"] == (2.0, 0.0, 0.0)  # at its frames again (it opened at frame 0)
    # maps an older predict made of a numbered folder (its first frame, not "placed") stay
    # at frame 0, where that folder then opened (review 29)
    import tifffile

    from napari_hemd.io.stacks import write_labels

    maps = tmp_path / "prob.tif"
    tifffile.imwrite(maps, part.astype(np.float32), metadata={"first_frame": 50, "frames": 3})
    ((_, meta, kind),) = get_reader(str(maps))(str(maps))
    assert kind == "image" and "translate" not in meta
    assert write_labels(part, tmp_path / "l.zarr", first_frame=2).is_dir()
    ((_, meta, _),) = get_reader(str(tmp_path / "l.zarr"))(str(tmp_path / "l.zarr"))
    assert meta["translate"] == (2.0, 0.0, 0.0)
    # OME-Zarr: an NGFF translation on t (Export's opened at frame 0; noticed in session 31),
    # in the t axis's own units (a frame interval of 60 s: frame 2 at 120 s)
    exp.format.value = "OME-Zarr"
    ome = exp.export(tmp_path / "cells.ome.zarr")
    ((data, meta, kind),) = get_reader(str(ome))(str(ome))
    assert kind == "labels" and list(meta["translate"]) == [2.0, 0.0, 0.0]
    np.testing.assert_array_equal(np.asarray(data), part)
    step = write_labels(part, tmp_path / "s.ome.zarr", first_frame=2, time_step=(60.0, "second"))
    ((_, meta, _),) = get_reader(str(step))(str(step))
    assert list(meta["translate"]) == [120.0, 0.0, 0.0] and meta["scale"][0] == 60.0
    # the table numbers them alike (it wrote frames 0-2), as measure on the CTC folder or the
    # TIFF does; link numbers the TIFF's masks so too
    import csv

    from napari_hemd.cli import main

    exp.format.value = "Measurements (CSV)"
    table = exp.export(tmp_path / "cells.csv")
    assert main(["measure", str(out), "-o", str(tmp_path / "ctc.csv")]) == 0
    assert main(["measure", str(tif), "-o", str(tmp_path / "tif.csv")]) == 0
    assert main(["link", str(tif), "-o", str(tmp_path / "linked"), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "linked").glob("mask*.tif")) == [
        f"mask00{t}.tif" for t in (2, 3, 4)
    ]
    for written in (table, tmp_path / "ctc.csv", tmp_path / "tif.csv"):
        with open(written, newline="") as f:
            assert {int(r["frame"]) for r in csv.DictReader(f)} == {2, 3, 4}
    assert not errors
