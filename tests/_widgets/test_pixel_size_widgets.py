"""A calibrated image's layers lie on it: Predict, Segment, Export and Project keep its pixel size."""

from __future__ import annotations

import numpy as np
import tifffile

from napari_hemd._widgets import ExportWidget, PredictWidget, ProjectWidget, SegmentWidget
from napari_hemd.io.calibration import PixelSize, read_pixel_size


def _wait(qtbot, worker, timeout=120_000):
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=timeout):
        pass


def _units(layer):
    return [f"{u:~}" for u in layer.units]


def test_calibrated_movie_round_trip(make_napari_viewer, qtbot, tmp_path, errors):
    from napari_hemd.data.synthetic import nuclei_video

    movie = np.asarray(nuclei_video()["image"][:3])
    path = tmp_path / "movie.tif"  # as Fiji saves a calibrated movie
    tifffile.imwrite(
        path, movie.astype(np.uint16), imagej=True, resolution=(1 / 0.65, 1 / 0.65),
        metadata={"axes": "TYX", "unit": "micron"},
    )  # fmt: skip
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="napari-hemd")
    assert list(image.scale) == [1.0, 0.65, 0.65] and _units(image) == ["pixel", "µm", "µm"]

    pred = PredictWidget(viewer)
    pred.image.value = image
    pred.model.value = "nuclei-fluo"
    _wait(qtbot, pred.run())
    prob = viewer.layers["movie probability"]
    assert list(prob.scale) == [1.0, 0.65, 0.65] and _units(prob) == _units(image)

    seg = SegmentWidget(viewer)
    seg.prob.value = prob
    _wait(qtbot, seg.run())
    labels = viewer.layers["movie labels"]
    assert labels.data.max() > 0
    assert list(labels.scale) == [1.0, 0.65, 0.65] and _units(labels) == _units(image)

    from napari_hemd._widgets import InspectorWidget

    insp = InspectorWidget(viewer)  # its preview outline in the image's units too (a layer in
    insp.labels.value = labels  # pixels made napari drop the units of every layer)
    t, y, x = (int(v) for v in np.argwhere(labels.data > 0)[0])
    assert insp.inspect(t, (y, x))
    insp.select_row(0)
    preview = viewer.layers["movie labels preview"]
    assert _units(preview) == _units(image) and list(preview.scale) == [1.0, 0.65, 0.65]
    viewer.layers.remove(preview)

    exp = ExportWidget(viewer)
    exp.labels.value = labels
    for fmt, name in (("TIFF stack", "masks.tif"), ("OME-Zarr", "masks.ome.zarr")):
        exp.format.value = fmt
        out = exp.export(tmp_path / name)
        assert read_pixel_size(out) == PixelSize({"y": 0.65, "x": 0.65}, "um"), fmt
    # and they open on the image again
    (back,) = viewer.open(str(tmp_path / "masks.tif"), plugin="napari-hemd")
    assert back.__class__.__name__ == "Labels" and list(back.scale) == [1.0, 0.65, 0.65]
    np.testing.assert_array_equal(back.data, labels.data)
    viewer.layers.remove(back)

    proj = ProjectWidget(viewer)  # a saved session reopens with its layers on the image
    proj.labels.value = labels
    saved = proj.save(tmp_path / "session")
    viewer.layers.clear()
    _wait(qtbot, proj.open(saved))
    for name in ("movie", "movie probability", "movie labels"):
        layer = viewer.layers[name]
        assert list(layer.scale) == [1.0, 0.65, 0.65], name
        assert _units(layer) == ["pixel", "µm", "µm"], name
        assert tuple(layer.axis_labels) == ("t", "y", "x"), name  # as Fiji's file names them
    assert not errors


def test_3d_sample_segments_into_3d_objects(make_napari_viewer, qtbot, errors):
    """The 3D sample's probability, with Segment's defaults: 3D nuclei (one id per slice before:
    3D F1 0), taken as one stack by Export."""
    from napari_hemd._sample_data import nuclei_volume_sample
    from napari_hemd.core.metrics import f1_score

    viewer = make_napari_viewer()
    for data, meta, kind in nuclei_volume_sample():
        getattr(viewer, f"add_{kind}")(data, **meta)
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei volume probability"]
    _wait(qtbot, seg.run())
    labels = viewer.layers["nuclei volume labels"]
    gt = viewer.layers["nuclei volume ground truth"].data
    assert f1_score(gt, labels.data) > 0.65  # 18 nuclei; measured 0.71
    assert tuple(labels.axis_labels) == ("z", "y", "x")
    exp = ExportWidget(viewer)
    exp.labels.value = labels
    assert exp.volume.value  # one 3D stack, ticked
    assert not errors


def test_a_stack_layers_voxel_size_sets_the_3d_models_z_step(make_napari_viewer, qtbot, errors):
    """Segment with nuclei-3d on a stack layer with a voxel size takes its shape (0.5 / 0.25: 2)
    where the field is left at 0; the field's own value replaces it."""
    from napari_hemd._sample_data import nuclei_volume_sample
    from napari_hemd._widgets.segment import layer_z_scale

    viewer = make_napari_viewer()
    data = nuclei_volume_sample()[0][0][:16, :64, :64]
    image = viewer.add_image(data, name="stack", scale=(0.5, 0.25, 0.25))
    assert layer_z_scale(image) == 2.0
    assert layer_z_scale(viewer.add_image(data, name="plain")) is None
    # a file that gives the pixel width but no z step: z in pixels, x in um: not a voxel shape
    xy_only = viewer.add_image(
        data, name="xy", scale=(1, 0.127, 0.127), units=("pixel", "um", "um")
    )
    assert layer_z_scale(xy_only) is None
    viewer.layers.remove(xy_only)
    seg = SegmentWidget(viewer)
    seg.prob.value = image
    seg.model.value = "nuclei-3d"
    seg.tta.value = 1
    _wait(qtbot, seg.run())
    labels = viewer.layers["stack labels"]
    assert labels.metadata["hemd_params"]["z_scale"] == 2.0
    assert list(labels.scale) == [0.5, 0.25, 0.25]
    seg.z_scale.value = 3.0
    _wait(qtbot, seg.run())
    assert labels.metadata["hemd_params"]["z_scale"] == 3.0
    assert not errors


def test_a_slice_range_of_a_calibrated_stack_lies_at_its_slices(
    make_napari_viewer, qtbot, errors, tmp_path
):
    """Slices 2-4 of a stack at a 2 um z step lie at 4-8 um (they lay at 2-4 um: the translate
    was a slice index under a scale); Proofread's current frame and Export's numbers follow."""
    from napari_hemd._sample_data import nuclei_volume_sample
    from napari_hemd._widgets import ProofreadWidget
    from napari_hemd._widgets._common import placed_like

    viewer = make_napari_viewer()
    prob = np.asarray(nuclei_volume_sample()[1][0])[:8]
    layer = viewer.add_image(
        prob, name="stack probability", scale=(2.0, 0.5, 0.5), units=("um",) * 3
    )
    seg = SegmentWidget(viewer)
    seg.prob.value = layer
    seg.frames.value = "range"
    seg.first.value, seg.last.value = 2, 4
    _wait(qtbot, seg.run())
    labels = viewer.layers["stack labels (frames 2-4)"]
    assert labels.data.shape[0] == 3 and list(labels.translate) == [4.0, 0.0, 0.0]
    np.testing.assert_allclose(labels.extent.world[:, 0], [4.0, 8.0])  # slices 2-4 at 2 um
    viewer.dims.set_point(0, 6.0)  # slice 3 of the stack: the range's second
    pr = ProofreadWidget(viewer)
    pr.labels.value = labels
    assert pr.current_frame() == 1
    exp = ExportWidget(viewer)
    exp.labels.value = labels
    exp.volume.value = False
    exp.format.value = "CTC result folder"
    out = exp.export(tmp_path / "res")
    assert sorted(p.name for p in out.glob("mask*.tif")) == [
        "mask002.tif",
        "mask003.tif",
        "mask004.tif",
    ]
    # a layer of more axes than its source (affinities: channels after time) gets no names
    layer.axis_labels = ("z", "y", "x")
    assert "axis_labels" not in placed_like(layer, 4)
    assert placed_like(layer, 3)["axis_labels"] == ["z", "y", "x"]
    assert not errors


def test_layers_made_from_a_moved_image_lie_on_it(make_napari_viewer, qtbot, errors, tmp_path):
    """Audit 35: Predict and Segment took a calibrated image's pixel size but not its place:
    the maps and masks of a tile of a larger field (translate (100, 50) um) lay at the origin,
    off their cells; a frame range of a movie placed at frame 5 started at frame 0 + its first.
    Every layer they make now lies on its image; a frame range from the image's own place,
    and its re-run (Lock choices and re-run, a rebuilt forest) reads the frames it holds."""
    from napari_hemd._widgets import InspectorWidget, PredictWidget
    from napari_hemd.data.synthetic import nuclei_video

    video = nuclei_video(n_frames=4, shape=(64, 64), n_cells=4, seed=3)
    viewer = make_napari_viewer()
    place = dict(scale=(1.0, 0.5, 0.5), translate=(5.0, 100.0, 50.0))
    raw = viewer.add_image(video["image"], name="tile", **place)
    pred = PredictWidget(viewer)
    pred.image.value = raw
    pred.tta.value = 1
    _wait(qtbot, pred.run())
    maps = viewer.layers["tile probability"]
    assert list(maps.translate) == [5.0, 100.0, 50.0] and list(maps.scale) == [1.0, 0.5, 0.5]
    prob = viewer.add_image(video["prob"], name="p probability", **place)
    seg = SegmentWidget(viewer)
    seg.prob.value = prob
    _wait(qtbot, seg.run())
    labels = viewer.layers["p labels"]
    assert list(labels.translate) == [5.0, 100.0, 50.0]
    seg.frames.value = "range"
    seg.first.value, seg.last.value = 1, 2
    _wait(qtbot, seg.run())
    part = viewer.layers["p labels (frames 1-2)"]
    assert list(part.translate) == [6.0, 100.0, 50.0]  # the image's frames 1-2, where it lies
    whole = labels.data[1:3]
    np.testing.assert_array_equal(part.data > 0, whole > 0)
    # a re-run of the range with a lock reads the image's frames 1-2 (it read 6-7: none)
    insp = InspectorWidget(viewer)
    insp.labels.value = part
    res = part.metadata["hemd_result"]
    node = int(res.selections[0].nodes[0])
    pix = tuple(int(v) for v in np.argwhere(res.forests[0].mask(node))[0])
    rows = insp.inspect(0, pix)
    insp.use_candidate(next(i for i, r in enumerate(rows) if r.chosen))
    before = part.data.copy()
    _wait(qtbot, insp.lock_and_rerun())
    np.testing.assert_array_equal(part.data, before)
    # the image moved back to the origin: the labels updated in place go there too (review 33:
    # a translate of 0 was not passed on, the old one kept)
    prob.translate, prob.scale = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    seg.frames.value = "all"
    _wait(qtbot, seg.run())
    assert viewer.layers["p labels"] is labels
    assert list(labels.translate) == [0.0, 0.0, 0.0] and list(labels.scale) == [1.0] * 3
    prob.scale, prob.units = (1.0, 0.5, 0.5), ("pixel", "um", "um")  # calibrated now: units too
    _wait(qtbot, seg.run())
    assert list(labels.scale) == [1.0, 0.5, 0.5] and _units(labels) == _units(prob)
    assert not errors


def test_predict_takes_a_pyramids_full_resolution(make_napari_viewer, qtbot, errors):
    """Audit 35: Predict on a multiscale layer passed the list of its levels to the model and
    failed ("frame 0 must be 2D (Y, X); got shape (3, 64, 64)"); Segment took level 0. Both
    predict the full resolution now, the same maps as the plain layer's."""
    from napari_hemd.data.synthetic import nuclei_video

    movie = nuclei_video(n_frames=3, shape=(64, 64), n_cells=4, seed=3)["image"]
    viewer = make_napari_viewer()
    viewer.add_image([movie, movie[:, ::2, ::2]], name="ms", multiscale=True)
    viewer.add_image(movie, name="plain")
    pred = PredictWidget(viewer)
    pred.tta.value = 1
    for name in ("ms", "plain"):
        pred.image.value = viewer.layers[name]
        _wait(qtbot, pred.run())
    np.testing.assert_array_equal(
        viewer.layers["ms probability"].data, viewer.layers["plain probability"].data
    )
    assert not errors
