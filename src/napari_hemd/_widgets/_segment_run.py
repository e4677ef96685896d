"""What a Segment run leaves in the viewer: its labels, its probability layer, its record.

The Segment widget (:mod:`napari_hemd._widgets.segment`) reads its fields into a
:class:`SegmentRun` and starts the workflow; :func:`show_result` turns the workflow's result
into the labels layer (one more edit of a layer that can take it), the predicted probability
layer of a run with a model, the parameters a rebuild or re-run needs, and the message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_info

from napari_hemd._widgets._common import add_or_update, bare_layer, placement
from napari_hemd._widgets._layer_state import (
    BACKGROUND_KEY,
    DEFAULTS_KEY,
    GROW_KEY,
    HISTORY_KEY,
    IMAGE_KEY,
    LOCKED_KEY,
    MODEL_KEY,
    PARAMS_KEY,
    PER_STACK_KEY,
    RESULT_KEY,
    SOURCE_KEY,
    apply_edit,
    checked_frames,
    frame_ranges,
    ids_are_tracks,
    is_one_stack,
    keep_checked_after,
    keep_checked_frames,
    kept_earlier,
    snapshot_checked,
    track_paint,
    with_tracks,
)
from napari_hemd._widgets._tracks import show_tracks
from napari_hemd.core.linking import frame_ids
from napari_hemd.core.segment import HEMDResult, _restore_axis
from napari_hemd.workflows import locked_choices, selection_choices, stack_rebuild_params

log = logging.getLogger(__name__)


@dataclass
class SegmentRun:
    """One Segment run: its input, its settings and where its result goes."""

    layer: Image  #: the layer segmented (a raw image with a model, else a probability map)
    data: object  #: its data, the frame range applied
    method: str
    params: dict  #: the widget's fields (without ``method``)
    name: str  #: the labels layer the result goes to
    saved: dict  #: what the labels layer records (``hemd_params``)
    translate: tuple | None = None  #: where a frame range's layers sit
    model: str | None = None  #: the model that predicts (a raw image); None on a map
    prob_name: str | None = None  #: the probability layer a run with a model adds
    locked: dict | None = None  #: the inspector's locked candidates (a re-run)
    grow: int = 0  #: whole-cell growth of a plain map's labels (Predict's background)
    background: object = None  #: the background map that growth reads
    grow_threshold: float = 0.5
    from_model: bool = False  #: the result is an ImageSegmentation (a model's run or maps)
    kept: tuple | None = None  #: (checked frames kept, ids carried) once written
    #: the checked frames kept in the worker (``_layer_state.keep_checked_after``): (the
    #: checked frames they were kept from, the settings they were kept with, (labels, tracks))
    prekept: tuple | None = None
    #: the labels layer a re-run writes into (the inspector's): that layer, whatever its name
    #: by the end (renamed meanwhile, the result went to a new layer of the old name: audit 36)
    target: Labels | None = None

    @property
    def ndim(self) -> int:
        return self.layer.ndim


def target_layer(viewer, run: SegmentRun):
    """The layer ``run``'s labels go into: its ``target`` while open, else the layer named so."""
    if run.target is not None:
        target = bare_layer(run.target)
        if any(bare_layer(ly) is target for ly in viewer.layers):
            run.name = target.name  # (messages and a new layer name it as it is now)
            return run.target
    return viewer.layers[run.name] if run.name in viewer.layers else None


def stacks_maps_workflow(layer: Image, data, method: str, kwargs: dict, span):
    """A model's ``(T, Z, Y, X)`` maps (Predict made them) segmented as the model segments them.

    Each stack alone, then its objects linked over time
    (:func:`napari_hemd.model_maps.model_maps_workflow`, as ``segment maps.zarr``); H-EMD over
    the time axis with 3D frames would find other objects. None for any other layer (or a
    model that cannot be loaded: its maps are then segmented as plain maps).
    """
    name = layer.metadata.get(MODEL_KEY)
    if layer.ndim != 4 or not name or kwargs.get("locked"):
        return None
    from napari_hemd.model_maps import model_maps_workflow
    from napari_hemd.models import load_model

    try:
        model = load_model(name)
    except Exception as e:  # a file moved since: plain maps, said in the log
        log.warning("maps of %s, which cannot be loaded (%s): segmented as plain maps", name, e)
        return None
    maps = {"foreground": data}
    background = layer.metadata.get(BACKGROUND_KEY)
    if background is not None and tuple(background.shape) == tuple(layer.data.shape):
        maps["background"] = background if span is None else background[span[0] : span[1]]
    planes = int((layer.metadata.get(DEFAULTS_KEY) or {}).get("planes") or 1)
    params = {k: v for k, v in kwargs.items() if k not in ("locked", "axis")}
    scale = float(layer.metadata.get("hemd_scale", 1.0))
    return model_maps_workflow(
        maps, model, method, scale=scale, planes=planes, name=str(name), **params
    )


def show_result(viewer, run: SegmentRun, result) -> None:
    """Put ``result`` (the workflow's return value) into the viewer and say what it holds."""
    saved = run.saved
    if run.model is not None:
        saved[SOURCE_KEY] = _probability_layer(viewer, run, result).name  # what a re-run reads
        saved[IMAGE_KEY] = run.layer.name  # its name now (renamed while it ran)
        res, labels = result.result, result.labels
    elif run.from_model:  # a model's stacks' maps, segmented as that model's run
        res, labels = result.result, result.labels
    else:
        res, labels = _map_labels(viewer, run, result)
    _record(run, result, res)
    meta = {PARAMS_KEY: saved, RESULT_KEY: res, LOCKED_KEY: dict(run.locked or {})}
    out = _write_labels(viewer, run, np.ascontiguousarray(labels, dtype=np.uint32), meta)
    track_paint(out)  # brush strokes join the undo history
    how = f", whole cells (grown {saved['grow']} px)" if saved["grow"] else ""
    advice = getattr(result, "advice", None) if run.model is not None else None
    if run.model is not None and "scale_tried" in result.params:
        from napari_hemd.image_segmentation import found_zoom

        how += f", {found_zoom(result.params['scale'], result.params['scale_tried'])}"
    count = _count(out, saved, res)
    tracks = getattr(result if run.model is not None or run.from_model else res, "tracks", None)
    if run.kept is not None and tracks is not None:  # in the kept labels' ids
        tracks = getattr(out.metadata.get(RESULT_KEY), "tracks", None)
    # one stack's slices are no time (a time-lapse of stacks records planes too: its tracks
    # were never shown, audit 26)
    shown = show_tracks(viewer, out, tracks, one_stack=is_one_stack(out))
    how += f"; their tracks in {shown.name!r}" if shown is not None else ""
    kept = getattr(run, "kept", None)
    if kept is not None:
        frames, relinked = kept
        ids = ", linked over time with the others" if relinked else ""
        how += (
            f"; the checked frames {frame_ranges(frames)} kept as you corrected them{ids} (uncheck "
            "them in Proofread to segment them again)"
        )
    show_info(f"Segment: {count} in {out.name!r}{how}" + (f". Note: {advice}" if advice else ""))


def _probability_layer(viewer, run: SegmentRun, result) -> Image:
    """The probability a run with a model predicted, as a layer beside the labels."""
    return add_or_update(  # beside a layer of the user's of that name
        viewer,
        result.maps["foreground"],
        run.prob_name,
        like=run.layer,
        translate=run.translate,
        colormap="magma",
        contrast_limits=(0.0, 1.0),
        opacity=0.6,
        blending="additive",
        metadata={
            MODEL_KEY: run.model,
            SOURCE_KEY: run.layer.name,
            GROW_KEY: result.grow,
            BACKGROUND_KEY: result.maps.get("background"),
            # a locked re-run segments it the same way (a stack: as a stack)
            DEFAULTS_KEY: {
                **result.defaults,
                **({"planes": 3} if result.params.get("planes") == 3 else {}),  # its maps' kind
            },
        },
    )


def map_run_workflow(run: SegmentRun, gen):
    """The run ``gen`` on a plain probability map, then its labels as whole cells.

    The growth into the map's background (and a 3D model's smallest volume) run in the worker
    with the segmentation, not on napari's thread (on the whole HeLa movie the growth alone took
    5 s, a frozen window after the progress bar said done). Returns ``(result, labels)``.
    """
    result = yield from gen
    if run.grow:
        yield ("whole cells", 0, 1)
    labels = _grown_map_labels(run, result)
    if run.grow:
        yield ("whole cells", 1, 1)
    return result, labels


def _grown_map_labels(run: SegmentRun, result) -> np.ndarray:
    """The labels of a run on a plain map in the map's axis order, grown to whole cells."""
    res = result if isinstance(result, HEMDResult) else None
    labels = res.labels if res is not None else result
    if res is not None:
        labels = _restore_axis(labels, run.ndim, run.params["axis"])
    if run.grow:
        from napari_hemd.core.cells import grow_to_cells

        labels = grow_to_cells(
            labels,
            run.background,
            run.grow,
            threshold=run.grow_threshold,
            frame_axis=run.ndim == 3,
        )
    if run.saved.get("min_volume") and res is not None:  # as the model's own run does
        from napari_hemd.image_segmentation import _drop_small_objects

        labels, _ = _drop_small_objects(
            np.asarray(labels), res.tracks, int(run.saved["min_volume"])
        )
    return labels


def _map_labels(viewer, run: SegmentRun, result):
    """``(H-EMD result or None, labels)`` of a run on a plain map, the inspector's choices kept."""
    result, labels = result
    res = result if isinstance(result, HEMDResult) else None
    prev = target_layer(viewer, run)
    if run.locked and res is not None and isinstance(prev, Labels) and run.ndim == 3:
        from napari_hemd.workflows import keep_locked_objects

        # a chosen child keeps the parent's pixels the inspector gave it
        labels = keep_locked_objects(
            np.asarray(labels), np.asarray(prev.data), res.forests, run.locked,
            np.asarray(run.data),
        )  # fmt: skip
    return res, labels


def _record(run: SegmentRun, result, res) -> None:
    """What the labels layer records of the run: a rebuild or re-run repeats it from this."""
    saved, from_model = run.saved, run.from_model
    saved["grow"] = result.grow if from_model else run.grow
    # as the run records them (the zoom auto found; planes: 3 for a stack seen from three
    # sides, which Export measures as one 3D stack)
    for key in ("scale", "tta", "planes"):
        if from_model and key in result.params:
            saved[key] = result.params[key]
    if from_model:  # the values used: fields left at their defaults gave way to the
        for key in run.params:  # model's own (delta, link, min size ...)
            if key in result.params:
                saved[key] = result.params[key]
    if from_model and run.ndim == 4:  # forests per stack: never rebuilt from 4D maps
        # (the inspector rebuilds one stack's from its slices with these, when reopened)
        saved[PER_STACK_KEY] = stack_rebuild_params(res) if res is not None else True
        # and re-runs a stack with locked candidates as the run made its whole cells
        for key in ("grow_threshold", "min_volume"):
            if key in result.params:
                saved[key] = result.params[key]
    saved.update(selection_choices(res))  # a rebuild (inspector, project) selects alike
    if run.method == "hemd":  # the locks the selection was made with ({}: none): a rebuild
        # (project, undo) selects alike, and a locked re-run's parameters differ
        saved["locked"] = locked_choices(run.locked)


def _links(params: dict) -> tuple[bool, float]:
    """``(link, delta)`` of a run as it records them (a model's own where its fields gave way)."""
    return bool(params.get("link")), float(params.get("delta", 0.5))


def keep_checked_in_worker(viewer, run: SegmentRun, gen):
    """``gen``, then the checked frames of the labels it replaces kept in the worker.

    What :func:`_write_labels` does on napari's thread (the movie linked again with them: 5 s
    frozen on the 92-frame HeLa movie), done where the run computes, on a copy of the checked
    frames taken now (:func:`keep_checked_after`). ``gen`` as it is where there is nothing to
    keep or the labels are made on napari's thread (a locked run on a plain map).
    """
    old = target_layer(viewer, run)
    snap = snapshot_checked(old)
    if snap is None or (run.locked and not run.from_model and run.model is None):
        return gen

    def how(result):
        if run.model is not None or run.from_model:
            labels, params = result.labels, {**run.saved, **result.params}
        else:
            labels, params = result[1], run.saved
        return (labels, np.uint32, *_links(params))

    return keep_checked_after(gen, snap, how, run)


def _write_labels(viewer, run: SegmentRun, labels: np.ndarray, meta: dict) -> Labels:
    """The labels into the layer of that name (one more edit), or a new layer beside it."""
    old = target_layer(viewer, run)
    editable = isinstance(old, Labels) and isinstance(old.data, np.ndarray)
    if editable and old.data.shape == labels.shape:
        if old.data.dtype != labels.dtype:  # painted (uint8) or read (int32): its labels
            old.data = old.data.astype(np.uint32)  # stay one Undo away
        checked = checked_frames(old) if labels.ndim >= 3 else []
        if checked:  # the user's corrected frames stay theirs (audit 17: replaced, still
            # marked checked: taught as truth); linked ids (or one stack's slices) carried
            params, stack = meta[PARAMS_KEY], is_one_stack(old)
            linked, delta = _links(params)
            kept = kept_earlier(run, old, checked, linked, delta)  # in the worker, as they are
            if kept is None:  # checked or edited since the run began: kept here
                kept = keep_checked_frames(
                    old.data, labels.copy(), checked, linked=linked, delta=delta, stack=stack,
                    tracked=ids_are_tracks(old),  # its ids are tracks: the checked frames' stay
                )  # fmt: skip
            labels, tracks = kept
            meta[RESULT_KEY] = with_tracks(meta[RESULT_KEY], tracks)
            run.kept = (checked, linked and not stack)
        # a re-run is one more edit: Undo brings the previous labels, parameters, locks and
        # H-EMD result back together
        apply_edit(old, f"segment ({run.method})", labels, state=meta)
        # where its image lies now (moved since the last run: it kept the old place, review 33)
        if run.layer is not None:
            place = placement(run.layer, labels.ndim)
            if run.translate is not None:  # a frame range: at its frames
                place["translate"] = tuple(run.translate)
            for key in ("translate", "scale"):
                if not np.allclose(np.asarray(getattr(old, key), float), place[key]):
                    setattr(old, key, place[key])
            if [str(u) for u in old.units] != [str(u) for u in place["units"]]:  # (review 33c)
                old.units = place["units"]
        return old
    # a user's layer that cannot take it (another shape, on disk) is kept: the result goes
    # beside it (add_or_update)
    meta[HISTORY_KEY] = None  # a new layer starts a fresh undo history
    return add_or_update(
        viewer, labels, run.name, kind="labels", metadata=meta, translate=run.translate,
        like=run.layer,
    )  # fmt: skip


def _count(out: Labels, saved: dict, res) -> str:
    """The objects of the labels, as a user checks them (per frame when ids are not tracks)."""
    shown = np.asarray(out.data)
    # ids per frame, once: the movie's ids are their union
    ids = [frame_ids(f) for f in shown] if shown.ndim >= 3 else [frame_ids(shown)]
    n = len(np.unique(np.concatenate(ids)))
    linked = bool(saved.get("link")) or getattr(res, "tracks", None) is not None
    if len(ids) > 1 and not linked:
        # ids are not the same object from frame to frame: the count a user checks
        per = max(len(i) for i in ids)
        unit = "slice" if is_one_stack(out) else "time point" if shown.ndim == 4 else "frame"
        return f"up to {per} objects a {unit} ({n} ids)"
    if len(ids) > 1:
        return f"{n} objects (one id each throughout)"
    return f"{n} objects"
