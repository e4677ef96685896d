"""Project widget: a session saved, layers closed, reopened exactly (labels, locks, undo, forest)."""

from __future__ import annotations

import numpy as np

from napari_hemd._widgets import InspectorWidget, ProjectWidget, ProofreadWidget, SegmentWidget


def test_save_close_reopen(viewer, qtbot, tmp_path, errors):
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
    proj.confirm_overwrite = lambda p: False
    assert proj.save(out) is None  # never over an existing project without asking

    viewer.layers.clear()
    with qtbot.waitSignal(proj.open(out).finished, timeout=120_000):
        pass
    back = viewer.layers["session labels"]
    np.testing.assert_array_equal(back.data, edited)
    assert back.metadata["hemd_locked"] == {2: [0]}
    assert back.metadata["hemd_result"] is not None
    assert "nuclei video probability" in viewer.layers
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
