"""The Tracks layer of labels linked over time, kept to their lineage as they are edited."""

from __future__ import annotations

import logging
import weakref

import numpy as np
from napari.layers import Labels, Tracks

from napari_hemd._widgets._common import bare_layer, placed_like
from napari_hemd._widgets._layer_state import (
    HISTORY_KEY,
    PARAMS_KEY,
    RESULT_KEY,
    edited_event,
    is_one_stack,
)

log = logging.getLogger(__name__)

#: Edits come in bursts (a brush stroke, undo pressed again and again): the lineage is redrawn
#: once they pause this long (milliseconds).
REFRESH_MS = 400

#: Each labels layer's Tracks layer (napari's layers, unwrapped from a docked widget's proxies).
_TRACKS: weakref.WeakKeyDictionary[Labels, weakref.ref] = weakref.WeakKeyDictionary()
#: Labels layers whose edits redraw their Tracks layer (:func:`follow_edits`).
_FOLLOWED: weakref.WeakSet[Labels] = weakref.WeakSet()
#: Each followed labels layer's count of edits: a redraw started before the last one is stale.
_STAMP: weakref.WeakKeyDictionary[Labels, int] = weakref.WeakKeyDictionary()


def lineage_of(layer: Labels, data) -> tuple[object, np.ndarray | None]:
    """``(labels, tracks)``: the lineage of a linked H-EMD run on ``layer``, if any.

    A Segment run is itself a step of the undo history: where the last step is the run that
    made the layer's result (a re-run with other parameters, say), its tracks are as the run
    made them (less the objects the run dropped after linking, a 3D model's small fragments).
    After edits (a merge, a swap, a brush stroke) the tracks are the edited labels' own, the
    run's divisions kept where they still hold
    (:func:`napari_hemd.core.linking.lineage_after_edits`; a label back after a gap is renamed
    in the copy returned). No linked run: ``(data, None)``. What Export writes and the Tracks
    layer shows.
    """
    tracks, edited = run_lineage(layer)
    return with_lineage(data, None if tracks is None else (tracks, edited))


def with_lineage(data, lineage: tuple[np.ndarray, bool] | None) -> tuple[object, np.ndarray | None]:
    """:func:`lineage_of` from what :func:`run_lineage` read (no napari: a worker runs it)."""
    if lineage is None:
        return data, None
    return _lineage(data, *lineage)


def run_lineage(layer: Labels) -> tuple[np.ndarray | None, bool]:
    """``(the run's tracks or None, edited since)``: what :func:`lineage_of` reads of the layer."""
    res = layer.metadata.get(RESULT_KEY)
    tracks = getattr(res, "tracks", None)
    if tracks is None or not len(tracks):
        return None, False
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    hist = layer.metadata.get(HISTORY_KEY)
    edited = False
    if hist is not None and hist.undo_stack:
        last = hist.undo_stack[-1]
        made = last.name.startswith("segment (") and last.state is not None
        edited = not (made and last.state[1].get(RESULT_KEY) is res)  # edited since linking
    return tracks, edited


def _lineage(data, tracks: np.ndarray, edited: bool) -> tuple[object, np.ndarray]:
    """:func:`lineage_of` once the layer is read (no napari: runs in a thread)."""
    from napari_hemd.core.linking import frame_ids, lineage_after_edits

    ids = [frame_ids(frame) for frame in np.asarray(data)]  # each frame's, once
    if edited or _spans_a_gap(ids, tracks):
        return lineage_after_edits(np.asarray(data), tracks, ids)
    # objects the run dropped after linking (a 3D model's small fragments) leave the lineage
    present = np.isin(tracks[:, 0], np.concatenate([np.zeros(0, np.int64), *ids]))
    if present.all():
        return data, tracks
    tracks = tracks[present].copy()
    tracks[~np.isin(tracks[:, 3], tracks[:, 0]), 3] = 0  # a dropped parent: no parent
    return data, tracks


def _spans_a_gap(ids: list[np.ndarray], tracks: np.ndarray) -> bool:
    """Whether a label is absent from a frame between its track's first and last.

    ``ids``: each frame's labels (:func:`napari_hemd.core.linking.frame_ids`).

    A re-run keeps the ids of the checked frames as the user left them: a cell named alike in
    two of them, not in one between, is one track across the gap (``_layer_state._kept_ids``),
    which the Cell Tracking Challenge's format cannot hold: its later frames are renamed in
    the lineage's copy, as after an edit.
    """
    count: dict[int, int] = {}
    for frame in ids:
        for v in frame.tolist():
            count[v] = count.get(v, 0) + 1
    for lab, begin, end, _ in tracks.tolist():
        frames = count.get(int(lab))
        if frames is not None and frames != end - begin + 1:
            return True
    return False


def _over_time(labels: Labels, one_stack: bool = False) -> bool:
    """Whether ``labels`` are frames over time (not a 2D image, not one stack of 3D objects)."""
    names = [str(a).lower() for a in labels.axis_labels]
    return labels.ndim >= 3 and not one_stack and not (labels.ndim == 3 and names[0] == "z")


def show_tracks(viewer, labels: Labels, tracks, *, one_stack: bool = False):
    """The cells' tracks of ``labels`` linked over time, as a ``Tracks`` layer on them.

    Each cell's centre in each frame, a division drawn from the mother to her daughters
    (:func:`napari_hemd.core.linking.track_points`); none (``None`` returned) for labels not
    linked over time (``tracks`` None) or one stack (its slices linked into 3D objects). The
    layer then follows the labels' edits (:func:`follow_edits`), as Export's lineage does.
    """
    if tracks is None or not _over_time(labels, one_stack):
        return None
    from napari_hemd.core.linking import track_points

    return _add_layer(viewer, labels, *track_points(labels.data, tracks))


def _add_layer(viewer, labels: Labels, points: np.ndarray, graph: dict) -> Tracks | None:
    """``labels``' Tracks layer of ``points`` and ``graph`` (a re-run's replaced)."""
    if not len(points):
        return None
    name = f"{labels.name} tracks"
    # on the labels: their pixel size, units and axis names, and where they start
    place = {**placed_like(labels, labels.ndim), "translate": tuple(labels.translate)}
    old = viewer.layers[name] if name in viewer.layers else None
    if isinstance(old, Tracks) and "hemd_tracks" in old.metadata:  # a re-run's: replaced
        viewer.layers.remove(old)  # (a user's layer of that name stays; napari numbers ours)
    shown = viewer.add_tracks(
        points, graph=graph, name=name, tail_length=10, metadata={"hemd_tracks": True}, **place
    )
    _TRACKS[bare_layer(labels)] = weakref.ref(bare_layer(shown))
    follow_edits(viewer, labels)
    return shown


def tracks_layer(viewer, labels: Labels) -> Tracks | None:
    """The Tracks layer :func:`show_tracks` made for ``labels``, if it is still in the viewer."""
    ref = _TRACKS.get(bare_layer(labels))
    shown = ref() if ref is not None else None
    inside = {id(bare_layer(ly)) for ly in viewer.layers}
    return shown if shown is not None and id(shown) in inside else None


def refresh_tracks(viewer, labels: Labels, *, create: bool = False):
    """Redraw ``labels``' Tracks layer from their lineage (:func:`lineage_of`), in a thread.

    After edits it shows the edited lineage, as Export writes it: a deleted cell's path ends, a
    split's new object has its own. The lineage of a long movie takes a second or two: it is
    worked out off napari's thread and drawn when done, unless the labels were edited again
    meanwhile (that edit's redraw follows). ``create``: add the layer where there is none (a
    reopened project, once its result is rebuilt). Returns the worker (``None``: nothing to do).
    """
    if tracks_layer(viewer, labels) is None and not create:
        return None
    one_stack = is_one_stack(labels)
    linked = (labels.metadata.get(PARAMS_KEY) or {}).get("link")
    if not _over_time(labels, one_stack) or not linked:
        return None
    tracks, edited = run_lineage(labels)
    bare, data = bare_layer(labels), labels.data
    asked = _STAMP.get(bare, 0)

    def work():
        if tracks is None:
            return np.zeros((0, 4)), {}
        from napari_hemd.core.linking import track_points

        return track_points(*_lineage(data, tracks, edited))

    def draw(got) -> None:
        if _STAMP.get(bare, 0) != asked:  # edited meanwhile: that edit's redraw follows
            return
        points, graph = got
        shown = tracks_layer(viewer, labels)
        if shown is None:
            if create:
                _add_layer(viewer, labels, points, graph)
            return
        if not len(points):  # nothing left to draw (every cell deleted)
            viewer.layers.remove(shown)
            return
        shown.graph = {}  # the old graph may name tracks the new data lacks
        shown.data = points
        shown.graph = graph

    from superqt.utils import create_worker

    worker = create_worker(work, _start_thread=False)
    worker.returned.connect(draw)
    worker.errored.connect(
        lambda e: log.warning("could not redraw %s's tracks: %s", labels.name, e)
    )
    worker.start()
    return worker


def follow_edits(viewer, labels: Labels) -> None:
    """Redraw ``labels``' Tracks layer once a burst of edits pauses (:data:`REFRESH_MS`).

    Every recorded edit, undo and redo (Proofread, the inspector, a re-run) and every brush
    stroke. Idempotent.
    """
    bare = bare_layer(labels)
    if bare in _FOLLOWED:
        return
    _FOLLOWED.add(bare)
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.setSingleShot(True)
    timer.setInterval(REFRESH_MS)
    timer.timeout.connect(lambda: refresh_tracks(viewer, labels))

    def later(_event=None) -> None:
        _STAMP[bare] = _STAMP.get(bare, 0) + 1  # a redraw under way is stale
        timer.start()

    edited_event(bare).connect(later)
    bare.events.paint.connect(later)
