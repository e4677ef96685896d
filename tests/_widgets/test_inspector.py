"""Inspector details: a click fills the table, uncertain objects, shortcuts on the edited layer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from napari_hemd._widgets import InspectorWidget, ProofreadWidget, SegmentWidget
from napari_hemd._widgets.inspector import uncertain_objects


def _segmented(viewer, qtbot):
    seg = SegmentWidget(viewer)
    seg.prob.value = viewer.layers["nuclei video probability"]
    seg.variant.value = "paper"
    worker = seg.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    return viewer.layers["nuclei video labels"]


def test_click_next_uncertain_and_shortcuts(viewer, qtbot, errors):
    labels = _segmented(viewer, qtbot)
    res = labels.metadata["hemd_result"]
    insp = InspectorWidget(viewer)
    insp.labels.value = labels
    assert insp._on_click in labels.mouse_drag_callbacks
    t, y, x = np.argwhere(labels.data > 0)[0]
    insp._on_click(labels, SimpleNamespace(position=(t, y, x)))
    assert insp.frame == t and insp.table.rowCount() >= 1
    assert "object" in insp.where.value

    todo = uncertain_objects(res, margin=1.01)  # every matched object counts
    assert todo
    got = insp.next_uncertain(margin=1.01)
    assert got == todo[0] and viewer.dims.current_step[0] == got[0]
    assert insp.table.selectionModel().selectedRows()[0].row() == [r.node for r in insp.rows].index(
        got[1]
    )

    pr = ProofreadWidget(viewer)
    pr.labels.value = labels
    bound = {str(k) for k in labels.keymap}
    assert {"Alt+Z", "Alt+M", "Alt+N"} <= bound
    before = labels.data.copy()
    pr.scope.value = "all frames"
    assert pr.delete([int(labels.data.max())])
    labels.keymap[next(k for k in labels.keymap if str(k) == "Alt+Z")](labels)  # Alt-Z: undo
    np.testing.assert_array_equal(labels.data, before)
    assert not errors
