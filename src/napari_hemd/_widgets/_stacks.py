"""The inspector on a time-lapse of stacks: each stack's forests rebuilt, its locks re-run."""

from __future__ import annotations

import logging

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from napari_hemd._widgets._layer_state import (
    BACKGROUND_KEY,
    DEFAULTS_KEY,
    LOCKED_KEY,
    PARAMS_KEY,
    PER_STACK_KEY,
    RESULT_KEY,
    SOURCE_KEY,
    apply_edit,
    history_of,
    run_locks,
)
from napari_hemd.core.segment import HEMDResult
from napari_hemd.image_segmentation import StackResults
from napari_hemd.workflows import (
    StackRerun,
    locked_choices,
    rebuild_workflow,
    rerun_stacks_workflow,
)

log = logging.getLogger(__name__)

#: What the inspector says when asked to re-run H-EMD on a time-lapse of stacks whose stacks'
#: H-EMD parameters the labels do not hold (a baseline's run, or one saved before they were).
_STACKS_NO_RERUN = (
    "Inspector: Lock choices and re-run H-EMD needs the H-EMD parameters of each stack, which "
    "{name!r} does not hold (segmented with a baseline, or by an older version). Segment the "
    "time-lapse again with H-EMD and a model to re-run its stacks with your choices"
)


class StacksMixin:
    """The :class:`~napari_hemd._widgets.inspector.InspectorWidget`'s work on stacks over time.

    Each stack of a ``(T, Z, Y, X)`` labels layer has its own H-EMD result
    (:class:`~napari_hemd.image_segmentation.StackResults`): rebuilt on demand after reopening
    a project, re-run with the stack's locked candidates.
    """

    def _rebuild_stack(self, layer: Labels, stacks: StackResults, t: int):
        """Rebuild stack ``t``'s forests from its slices of the probability layer, in a thread.

        Exactly those of the run (the stacks' own H-EMD parameters, saved with the labels), with
        the stack's locked candidates (as a re-run selected them); when done, the last click in
        that stack is inspected. Returns the worker (``None``: refused, or already under way).
        """
        if self._rebuilding == (id(stacks), t):
            return None
        params = layer.metadata[PARAMS_KEY]
        src = params.get(SOURCE_KEY)
        prob = self.viewer.layers[src] if src in self.viewer.layers else None
        if not isinstance(prob, Image) or tuple(prob.data.shape) != tuple(layer.data.shape):
            show_error(
                f"Inspector: cannot rebuild the candidate forests of time {t}: the probability "
                f"layer {src!r} is gone"
            )
            return None
        data = prob.data[0] if prob.multiscale else prob.data
        mine = run_locks(layer).get(t)  # those the stack's result selected with
        locked = mine if isinstance(mine, dict) else None
        gen = rebuild_workflow(np.asarray(data[t]), params[PER_STACK_KEY], locked)
        self._rebuilding = (id(stacks), t)
        show_info(f"Inspector: rebuilding the candidate forests of time {t}")

        def done(res: HEMDResult) -> None:
            if layer.metadata.get(RESULT_KEY) is not stacks:
                log.info("discarded rebuilt forests: %s was segmented again", layer.name)
                return
            stacks.results[t] = res
            if self.labels.value is layer and self.stack == t and self._asked is not None:
                self.inspect(*self._asked)  # the click that asked for them

        worker = self.run_workflow(gen, done, None, None, f"Rebuild the forests of time {t}")
        # failed or cancelled too: a later click may try again
        worker.finished.connect(lambda: setattr(self, "_rebuilding", None))
        return worker

    def _rerun_stacks(self, layer: Labels):
        """Re-run H-EMD on the stacks of a time-lapse of stacks that hold locked candidates.

        Each from its slices of the probability layer, with the stacks' own H-EMD parameters,
        grown to whole cells as the run was (:func:`napari_hemd.workflows.rerun_stacks_workflow`);
        the objects keep their ids, so they stay linked over time, and the other stacks are not
        touched. One undoable edit (labels, and the stacks' results). Returns the worker.
        """
        params = layer.metadata.get(PARAMS_KEY) or {}
        per = params.get(PER_STACK_KEY)
        if not isinstance(per, dict):
            show_error(_STACKS_NO_RERUN.format(name=layer.name))
            return None
        locked = locked_choices(layer.metadata.get(LOCKED_KEY))
        todo = {
            t: {z: ns for z, ns in slices.items() if ns}
            for t, slices in locked.items()
            if isinstance(slices, dict) and any(slices.values()) and 0 <= t < layer.data.shape[0]
        }
        if not todo:
            show_info("Inspector: no candidate chosen yet; nothing to lock")
            return None
        src = params.get(SOURCE_KEY)
        prob = self.viewer.layers[src] if src in self.viewer.layers else None
        if not isinstance(prob, Image):
            show_error(f"Inspector: the probability layer {src!r} is gone")
            return None
        data = prob.data[0] if prob.multiscale else prob.data
        if tuple(data.shape) != tuple(layer.data.shape):
            show_error(
                f"Inspector: the probability layer {src!r} is {tuple(data.shape)}, the labels "
                f"{layer.name!r} {tuple(layer.data.shape)}: not the map they were segmented from"
            )
            return None
        grow = int(params.get("grow") or 0)
        background = prob.metadata.get(BACKGROUND_KEY)
        if grow and (background is None or tuple(background.shape) != tuple(data.shape)):
            show_error(
                f"Inspector: cannot re-run H-EMD as the run did: the objects were grown {grow} px "
                f"to whole cells, and the probability layer {src!r} holds no background "
                "probability for that (a project saved before 2026-12-06 keeps only the "
                "foreground). Predict "
                "with the run's model on the raw layer to bring it back"
            )
            return None
        defaults = prob.metadata.get(DEFAULTS_KEY) or {}  # the model's, if not recorded
        grow_threshold = float(params.get("grow_threshold", defaults.get("grow_threshold", 0.5)))
        min_volume = int(params.get("min_volume", defaults.get("min_volume", 0)) or 0)
        stacks = layer.metadata.get(RESULT_KEY)
        if not isinstance(stacks, StackResults):  # reopened: no stack's forests built yet
            stacks = layer.metadata[RESULT_KEY] = StackResults([None] * int(layer.data.shape[0]))
        hist = history_of(layer)
        n_edits, last = len(hist.undo_stack), hist.undo_stack[-1] if hist.undo_stack else None
        gen = rerun_stacks_workflow(
            data, layer.data, per, todo, background=background if grow else None, grow=grow,
            grow_threshold=grow_threshold, min_volume=min_volume,
        )  # fmt: skip
        n_locked = sum(len(ns) for slices in todo.values() for ns in slices.values())

        def done(out: dict[int, StackRerun]) -> None:
            if layer not in self.viewer.layers:  # removed while it ran: nothing to write into
                show_error(f"Inspector: {layer.name!r} was removed while H-EMD re-ran")
                return
            edited = len(hist.undo_stack) != n_edits or (
                n_edits and hist.undo_stack[-1] is not last
            )
            if layer.metadata.get(RESULT_KEY) is not stacks or edited:
                show_error(
                    f"Inspector: {layer.name!r} changed while H-EMD re-ran; nothing was "
                    "changed. Lock choices and re-run H-EMD again"
                )
                return
            span = slice(min(out), max(out) + 1)
            new = np.array(layer.data[span])
            results = list(stacks.results)
            for t, r in out.items():
                new[t - span.start] = r.labels
                results[t] = r.result
            times = ", ".join(str(t) for t in sorted(out))
            # one edit: Undo brings back the labels, the stacks' results and the locks together
            state = {
                RESULT_KEY: StackResults(results, stacks.tracks),
                LOCKED_KEY: locked,
                # every stack with locks is re-run with them: a rebuild (undo after reopening a
                # project) selects as this re-run did
                PARAMS_KEY: {**params, "locked": locked_choices(locked)},
            }
            apply_edit(layer, f"lock and re-run H-EMD (time {times})", new, span, state=state)
            kept = sum(r.kept for r in out.values())
            fresh = sum(r.fresh for r in out.values())
            which = "stack of time" if len(out) == 1 else "stacks of times"
            ids = "1 object keeps its id" if kept == 1 else f"{kept} objects keep their ids"
            show_info(
                f"Inspector: re-ran H-EMD on the {which} {times} with {n_locked} locked "
                f"candidate{'s' if n_locked != 1 else ''}; {ids} (still linked over time)"
                + (f", {fresh} new" if fresh else "")
            )
            if self.labels.value is layer and self.frame is not None:  # the new result's path
                self._drop_preview(layer)
                if self.stack in out:
                    self.inspect(self.frame, self.pixel)

        return self.run_workflow(gen, done, self.lock_button, None, "Re-run H-EMD")
