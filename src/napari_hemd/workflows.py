"""Qt-free workflows behind the napari widgets: generators that yield progress, then return results.

Every long-running step is a generator yielding ``(stage, done, total)`` tuples and *returning*
its result (``StopIteration.value``). :func:`run_workflow` drains one headlessly (tests, CLI);
the widgets wrap the same generator in ``napari.qt.threading.thread_worker``. Closing a generator
(``gen.close()``, which ``thread_worker.quit()`` triggers) cancels the work at the next progress
report.

Editing helpers (:func:`choose_candidate`, :func:`merge_labels`, ...) are pure functions on label
arrays; :class:`EditHistory` records their sparse differences for undo/redo.

Imports only numpy and the core at module level: torch is imported when a prediction runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_hemd.core.forest import CandidateForest
from napari_hemd.core.segment import METHODS, SELECTION_KEYS, HEMDResult, hemd, segment
from napari_hemd.core.selection import HOW_NAMES, FrameSelection

__all__ = [
    "Cancelled",
    "EditHistory",
    "Match",
    "StackRerun",
    "best_match",
    "candidate_path",
    "check_maps_fit",
    "choose_candidate",
    "delete_label",
    "jsonable_locked",
    "keep_locked_objects",
    "load_project",
    "locked_choices",
    "match_ids",
    "merge_labels",
    "next_free_id",
    "per_stack",
    "predict_workflow",
    "project_models",
    "rebuild_workflow",
    "relabel",
    "replace_locks",
    "rerun_stacks_workflow",
    "run_workflow",
    "save_project",
    "segment_workflow",
    "split_by_seeds",
    "split_siblings",
    "stack_rebuild_params",
]

log = logging.getLogger(__name__)

Progress = tuple[str, int, int]


class Cancelled(Exception):
    """Raised inside a running computation when its workflow was closed."""


def run_workflow(gen: Generator[Progress, None, object], progress: Callable | None = None):
    """Drain a workflow generator; call ``progress(stage, done, total)`` per event; return result."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(*event)


def _drive(fn: Callable, *args, **kwargs) -> Generator[Progress, None, object]:
    """Run ``fn(*args, progress=cb, **kwargs)`` in a thread and yield what ``cb`` reports.

    Closing the generator makes the next ``cb`` call raise :class:`Cancelled` in the thread.
    Closed from a thread other than the main one (a widget's worker: ``run_workflow``), the
    close waits for the thread to end: the widget's run is over only when its work is (audit
    32: Large data's Run after Cancel started a second run beside the cancelled one, in the
    same output). From the main thread (the command line's Ctrl-C) it does not wait.
    """
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()
    box: dict[str, object] = {}
    done = object()

    def report(stage: str, d: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled(stage)
        events.put((stage, int(d), int(total)))

    def target() -> None:
        try:
            box["result"] = fn(*args, progress=report, **kwargs)
        except BaseException as e:
            box["error"] = e
        finally:
            events.put(done)

    thread = threading.Thread(target=target, name=f"hemd-{fn.__name__}", daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not done:
            yield event
    finally:
        cancel.set()  # no-op when finished; stops the thread at its next report when closed early
        if threading.current_thread() is not threading.main_thread():
            thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]


# ---------------------------------------------------------------------------------- predict
def predict_workflow(
    image,
    model="nuclei-fluo",
    *,
    outputs: Sequence[str] = ("foreground",),
    tile: int | None = None,
    device: str | None = None,
    cancel: Callable[[], bool] | None = None,
    planes: int | None = None,
    z_scale: float | None = None,
    tta: int | None = None,
    scale: float | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
) -> Generator[Progress, None, dict[str, np.ndarray]]:
    """Predict probability maps frame by frame (a stack: tri-planar when the model says so).

    Parameters
    ----------
    image : (Y, X), (T, Y, X) / (Z, Y, X) or (T, Z, Y, X) array-like
        Raw intensities. A ``(T, Z, Y, X)`` time-lapse of stacks is predicted stack by stack,
        each exactly as that stack alone (one stack read at a time; progress stages prefixed
        ``"stack t/T: "``).
    model : str, path or HemdModel
        A shipped model name (``napari_hemd.models.SHIPPED_MODELS``), a model file or a model.
    outputs, tile, device, tta, scale, halo, batch_size
        See :func:`napari_hemd.models.predict` (``scale`` other than 1 not with 3 planes; None:
        the model's own zoom; ``tta`` None: the model's own flips).
    cancel : callable, optional
        Checked between batches of tiles (not only between frames), so a Cancel takes effect
        within a batch: the workflow then yields ``("cancelled", done, total)`` and, if resumed,
        raises :class:`Cancelled`.
    planes, z_scale
        Tri-planar prediction of a ``(Z, Y, X)`` stack (see
        :func:`napari_hemd.image_segmentation.segment_image_workflow`); default: the model's.

    Yields
    ------
    ("predict", done, total)
        Frames; with 3 planes, 2D slices of all three planes.

    Returns
    -------
    dict of str to ndarray
        Each output stacked like ``image`` (``(T, Y, X)`` or ``(Y, X)``; affinities
        ``(T, C, Y, X)``; a time-lapse of stacks gives ``(T, Z, Y, X)``), float32 except integer
        ``instances``.
    """
    from napari_hemd.models.prediction import (
        FrameStacks,
        _resolve_model,
        check_scale_planes,
        iter_predict,
        predict_volume_workflow,
        resolve_planes,
    )

    shape = tuple(image.shape)
    if len(shape) not in (2, 3, 4):
        raise ValueError(f"image must be (Y, X), (T, Y, X) or (T, Z, Y, X); got shape {shape}")
    n = 1 if len(shape) == 2 else shape[0]
    model = _resolve_model(model)  # a name or a file, loaded once
    _check_maps_fit(model, shape, outputs)
    if len(shape) == 4:  # a time-lapse of stacks: each stack as alone
        kw = dict(outputs=outputs, tile=tile, device=device, cancel=cancel, planes=planes)
        kw.update(z_scale=z_scale, tta=tta, scale=scale, halo=halo, batch_size=batch_size)
        stacked, _ = yield from per_stack(predict_workflow, image, model, **kw)
        return stacked
    if resolve_planes(model, planes, shape) == 3:
        check_scale_planes(1.0 if scale is None else scale, 3)
        volume = yield from predict_volume_workflow(
            model,
            image,
            outputs=outputs,
            z_scale=z_scale,
            tile=tile,
            halo=halo,
            batch_size=batch_size,
            device=device,
            tta=tta,
            cancel=cancel,
        )
        if volume is None:
            yield from cancelled(0, n)
        return volume
    yield ("predict", 0, n)
    stacks = FrameStacks(n)
    for t, maps in iter_predict(
        model,
        image,
        outputs=outputs,
        tile=tile,
        halo=halo,
        batch_size=batch_size,
        device=device,
        tta=tta,
        scale=scale,
        cancel=cancel,
    ):
        stacks.put(t, maps)
        yield ("predict", stacks.done, n)
    if stacks.done < n:
        yield from cancelled(stacks.done, n)
    out = stacks.arrays
    if len(shape) == 2:
        out = {k: v[0] for k, v in out.items()}
    return out


def _check_maps_fit(model, shape: tuple, outputs: Sequence[str]) -> None:
    """Refuse, before any work, a prediction whose returned maps would not fit in memory.

    The cost is exact: the bytes of the arrays returned per pixel of the movie
    (:func:`napari_hemd.models.streaming._output_specs`: one float32 per map, a channel each of
    the affinities and embeddings); a frame's working memory is small beside a movie's maps.
    """
    from napari_hemd._memory import check_fits_in_memory
    from napari_hemd.models.streaming import _output_specs

    frame = tuple(int(v) for v in shape[-2:])
    specs = _output_specs(model, frame, outputs, {})
    per_pixel = sum(math.prod(s) * np.dtype(d).itemsize for s, d in specs.values()) / math.prod(
        frame
    )
    check_fits_in_memory(shape, per_pixel, what="predict", argument="image", predict_only=True)


def per_stack(
    workflow, image, *args, arrays: Callable = lambda result: result, **kwargs
) -> Generator[Progress, None, tuple[dict[str, np.ndarray], object]]:
    """Run ``workflow`` on each stack of a ``(T, Z, Y, X)`` movie; its arrays stacked over T.

    One stack is read at a time; ``arrays(result)`` (a dict of arrays; default: the result
    itself) is filled into ``(T, ...)`` arrays stack by stack (no second copy). Events are the
    stacks' own, prefixed ``"stack t/T: "`` (``"cancelled"`` passes unchanged).

    Returns
    -------
    stacked : dict of str to ndarray
    last : the last stack's result
    """
    n = int(image.shape[0])
    out: dict[str, np.ndarray] = {}
    last = None
    for t in range(n):
        inner = workflow(np.asarray(image[t]), *args, **kwargs)
        try:
            event = next(inner)
            while True:
                stage, done, total = event
                if stage != "cancelled":
                    stage = f"stack {t + 1}/{n}: {stage}"
                event = inner.send((yield (stage, done, total)))
        except StopIteration as stop:
            last = stop.value
        parts = arrays(last)
        if not out:
            out = {k: np.empty((n, *v.shape), v.dtype) for k, v in parts.items()}
        for k, v in parts.items():
            out[k][t] = v
    return out, last


def cancelled(done: int, total: int) -> Generator[Progress, None, None]:
    """End a workflow that was cancelled mid-way: one last event, then :class:`Cancelled`.

    A widget's worker stops at the event (its abort was requested); a headless caller gets the
    exception instead of a silently partial result.
    """
    yield ("cancelled", done, total)
    raise Cancelled(f"cancelled after {done} of {total}")


# ---------------------------------------------------------------------------------- segment
def segment_workflow(
    prob, method: str = "hemd", **params
) -> Generator[Progress, None, HEMDResult | np.ndarray]:
    """Segment a probability map with H-EMD or a baseline.

    Parameters
    ----------
    prob : (T, Y, X), (Z, Y, X), (T, Z, Y, X) or (Y, X) array-like
        Foreground probabilities.
    method : str
        One of :data:`napari_hemd.core.segment.METHODS`.
    **params
        ``tau``, ``delta``, ``iterations``, ``axis``, ``min_size``, ``variant``, ``link``,
        ``locked`` ... as for :func:`napari_hemd.core.segment.hemd` / ``segment``.

    Yields
    ------
    (stage, done, total)
        Stages ``"forests"`` and ``"selection"`` for H-EMD, the method name for baselines.

    Returns
    -------
    HEMDResult or uint32 ndarray
        The full H-EMD result (labels with frames on axis 0), or the baseline's labels.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    check_maps_fit(prob, f"segment ({method})")
    if method == "hemd":
        return (yield from _drive(hemd, prob, **params))
    params.pop("variant", None)
    params.pop("locked", None)
    return (yield from _drive(segment, prob, method, **params))


def check_maps_fit(prob, what: str, argument: str = "prob") -> None:
    """Refuse, before any work, a probability stack too large to segment in the memory free.

    Raises :class:`napari_hemd._memory.NotEnoughMemory` naming the size needed, the memory
    available and ``napari-hemd stream`` (bounded memory). A stack already in memory (a numpy
    array) has paid for itself: only what the method adds is counted.
    """
    from napari_hemd._memory import MAPS_BYTES_PER_PIXEL, check_fits_in_memory

    shape = tuple(getattr(prob, "shape", ()))
    if not shape:
        return
    own = prob.dtype.itemsize if isinstance(prob, np.ndarray) else 0
    check_fits_in_memory(shape, max(MAPS_BYTES_PER_PIXEL - own, 1), what=what, argument=argument)


# ---------------------------------------------------------------------------------- inspect
@dataclass(frozen=True)
class Match:
    """The candidate of a neighbouring frame that overlaps one candidate best."""

    node: int
    iou: float
    chosen: bool


@dataclass
class PathRow:
    """One candidate of a leaf-to-root path, as the inspector shows it.

    ``partner``/``score`` are the match H-EMD used to choose it (``-1``/0 if none); ``left`` and
    ``right`` the best-overlapping candidate of the previous and next frame (``None`` at the
    ends of the sequence or with no overlap).
    """

    node: int
    threshold: float
    area: int
    mean_prob: float
    chosen: bool
    how: str
    partner: int
    score: float
    left: Match | None = None
    right: Match | None = None


def best_match(
    forest: CandidateForest,
    node: int,
    other: CandidateForest,
    other_selection: FrameSelection | None = None,
) -> Match | None:
    """Candidate of ``other`` (a neighbouring frame) with the highest IoU with ``node``.

    Every candidate of a forest covers a contiguous range of deepest nodes, so one histogram of
    the deepest nodes under ``node``'s pixels gives the overlap with all of ``other``'s
    candidates at once.

    Parameters
    ----------
    forest : CandidateForest
        The frame holding ``node``.
    node : int
        Candidate id in ``forest``.
    other : CandidateForest
        A frame of the same shape.
    other_selection : FrameSelection, optional
        ``other``'s selection, to tell whether the match was chosen there.

    Returns
    -------
    Match or None
        ``None`` when no candidate of ``other`` overlaps ``node``.
    """
    if forest.shape != other.shape:
        raise ValueError(f"other: expected a frame of shape {forest.shape}; got {other.shape}")
    sl = forest.bbox_slices(int(node))
    deepest = other.node_map[sl][forest.mask(int(node), crop=True)]
    deepest = deepest[deepest >= 0]
    if deepest.size == 0:
        return None
    cum = np.concatenate([[0], np.cumsum(np.bincount(deepest, minlength=other.n_nodes))])
    inter = cum[other.end] - cum[: other.n_nodes]
    iou = inter / (int(forest.area[node]) + other.area - inter)
    best = int(np.argmax(iou))
    chosen = other_selection is not None and best in set(other_selection.nodes.tolist())
    return Match(best, float(iou[best]), bool(chosen))


def candidate_path(
    forest: CandidateForest,
    selection: FrameSelection,
    pixel,
    left: tuple[CandidateForest, FrameSelection] | None = None,
    right: tuple[CandidateForest, FrameSelection] | None = None,
) -> list[PathRow]:
    """Leaf-to-root path of candidates through ``pixel`` (empty below ``tau``).

    Parameters
    ----------
    forest, selection
        One frame of a :class:`HEMDResult`.
    pixel : tuple of int
        Spatial index into the frame.
    left, right : (CandidateForest, FrameSelection), optional
        The previous and next frame: each row then names its best match there
        (:func:`best_match`).
    """
    leaf = int(forest.node_map[tuple(int(i) for i in pixel)])
    if leaf < 0:
        return []
    pos = {int(n): i for i, n in enumerate(selection.nodes)}
    absorbed_by = {int(a): int(n) for n, arr in selection.absorbed.items() for a in arr}
    split = set(selection.split.tolist())
    rows = []
    mean = forest.mean_prob
    for n in forest.ancestors(leaf):
        n = int(n)
        i = pos.get(n)
        how, partner, score = "", -1, 0.0
        if i is not None:
            how = HOW_NAMES.get(int(selection.how[i]), "?")
            partner, score = int(selection.partner[i]), float(selection.score[i])
        elif n in absorbed_by:
            how = f"absorbed into {absorbed_by[n]}"
        elif n in split:
            how = "touching cells"  # splits into cell-sized pieces: never one object
        rows.append(
            PathRow(
                n, float(forest.level[n]), int(forest.area[n]), float(mean[n]), i is not None,
                how, partner, score,
                None if left is None else best_match(forest, n, *left),
                None if right is None else best_match(forest, n, *right),
            )
        )  # fmt: skip
    return rows


def next_free_id(labels) -> int:
    """Smallest id above every label in ``labels``."""
    return int(np.max(labels)) + 1 if np.size(labels) else 1


def split_siblings(forest: CandidateForest, node: int, old: np.ndarray) -> list[int]:
    """The candidates that become new objects when ``node`` is chosen inside object ``old``.

    The siblings of the candidates on the path from ``node`` upward that cover pixels of ``old``
    outside ``node`` (see :func:`choose_candidate`): with ``node``, the regions the user sees
    after choosing it, and so what a locked re-run must keep.
    """
    region = forest.mask(int(node))
    rest = old & ~region
    if not rest.any():
        return []
    path = forest.ancestors(int(node))
    return [
        int(s)
        for a in path[1:]
        for s in forest.children(int(a))
        if s not in path and (rest & forest.mask(int(s))).any()
    ]


def choose_candidate(
    frame: np.ndarray,
    forest: CandidateForest,
    node: int,
    label: int,
    next_id: int,
    *,
    fill: bool = True,
    prob: np.ndarray | None = None,
) -> np.ndarray:
    """Replace object ``label`` of ``frame`` by candidate ``node``; pixels stay exclusive.

    A larger candidate (an ancestor) merges: every pixel of ``node`` becomes ``label``, taking
    them from other objects. A smaller candidate (a descendant) splits: the siblings of the
    candidates on the path from ``node`` upward each become a new object (ids from ``next_id``)
    where they cover the old object. The old object's pixels in none of these candidates (a
    high-threshold child can be a speck of its parent) go to the nearest of the new pieces with
    ``fill`` (a watershed of ``prob`` inside the old object, or geodesic distance without it), so
    choosing a child splits the object instead of erasing most of it; without ``fill`` they
    become background.

    Returns
    -------
    ndarray
        The new frame (``frame`` is not modified).
    """
    out = frame.copy()
    old = frame == label
    region = forest.mask(int(node))
    rest = old & ~region
    out[rest] = 0
    out[region] = label
    if rest.any():
        for s in split_siblings(forest, node, old):
            out[rest & forest.mask(s)] = next_id
            next_id += 1
        left = rest & (out == 0)
        if fill and left.any():
            from skimage.segmentation import watershed

            inside = old | region
            markers = np.where(inside, out, 0)
            surface = -np.asarray(prob, np.float32) if prob is not None else np.zeros(out.shape)
            filled = watershed(surface, markers=markers, mask=inside)
            out[left] = filled[left]
    return out


def keep_locked_objects(
    labels: np.ndarray,
    previous: np.ndarray,
    forests: Sequence[CandidateForest],
    locked: dict[int, Sequence[int]],
    prob: np.ndarray | None = None,
) -> np.ndarray:
    """After a locked re-run, give each locked object back the pixels it had.

    H-EMD re-selects a locked candidate as its own region; when the user had chosen a child (a
    high-threshold speck) the inspector filled the rest of the parent's pixels into the chosen
    pieces (:func:`choose_candidate` with ``fill``). Here, for every locked node, the object that
    covered it in ``previous`` (the labels before the re-run) is looked up, and its pixels that
    the re-run left as background go to the new objects inside it (a watershed of ``prob``), so
    the lock survives the re-run. Pixels another object took are not changed.

    Parameters
    ----------
    labels, previous : (T, Y, X) integer ndarray
        Labels after and before the re-run.
    forests : sequence of CandidateForest
        The re-run's forests (the locked node ids refer to them).
    locked : dict
        Frame -> locked node ids.
    prob : (T, Y, X) float ndarray, optional
        The probability map (the watershed's surface); geodesic distance without it.

    Returns
    -------
    ndarray
        ``labels`` with the lost pixels filled (a copy when anything changed).
    """
    from skimage.segmentation import watershed

    out = labels
    for w, nodes in locked.items():
        w = int(w)
        if not 0 <= w < len(forests) or previous.shape != labels.shape:
            continue
        for n in nodes:
            before = previous[w][forests[w].mask(int(n))]
            before = before[before > 0]
            if before.size == 0:
                continue
            old = previous[w] == np.bincount(before.astype(np.int64)).argmax()
            left = old & (out[w] == 0)
            markers = np.where(old, out[w], 0)
            if not left.any() or not markers.any():
                continue
            if out is labels:
                out = labels.copy()
            surface = -np.asarray(prob[w], np.float32) if prob is not None else np.zeros(old.shape)
            filled = watershed(surface, markers=markers, mask=old)
            out[w][left] = filled[left]
    return out


def replace_locks(
    nodes: Sequence[int], forest: CandidateForest, chosen: Sequence[int]
) -> list[int]:
    """A frame's locked candidates once the user chose ``chosen`` in it.

    A choice locks what the user then sees: the candidate and the pieces it split off
    (:func:`split_siblings`; locking the candidate alone, a re-run let it grow back over its
    unlocked siblings). It replaces the frame's earlier locks ``nodes`` that overlap one of them
    (their ancestors and descendants in ``forest``); the others stay.

    Returns
    -------
    list of int
        The frame's locked node ids: the earlier ones kept, then ``chosen``.
    """
    keep = [
        int(n)
        for n in nodes
        if not any(forest.is_ancestor(c, n) or forest.is_ancestor(n, c) for c in chosen)
    ]
    return [*keep, *(int(c) for c in chosen)]


def locked_choices(locked: dict | None) -> dict:
    """The candidates a user locked, with integer keys and ids (a copy).

    Two forms, as a labels layer and a project keep them: frame -> node ids for a ``(T, Y, X)``
    movie or a ``(Z, Y, X)`` stack; time point -> slice -> node ids for a ``(T, Z, Y, X)``
    time-lapse of stacks (each stack's forests, and so its node ids, are its own). Keys may be
    strings (read from JSON); ``None`` gives ``{}``.
    """
    out: dict = {}
    for k, v in (locked or {}).items():
        if isinstance(v, dict):
            out[int(k)] = {int(z): [int(n) for n in ns] for z, ns in v.items()}
        else:
            out[int(k)] = [int(n) for n in v]
    return out


def jsonable_locked(locked: dict | None) -> dict:
    """:func:`locked_choices` with string keys, as JSON stores them (projects, exports)."""
    return {
        str(k): {str(z): ns for z, ns in v.items()} if isinstance(v, dict) else v
        for k, v in locked_choices(locked).items()
    }


def match_ids(
    new: np.ndarray, old: np.ndarray, next_id: int, *, min_iou: float = 0.5
) -> tuple[np.ndarray, int, int]:
    """Give the objects of ``new`` the ids of the objects of ``old`` they replace.

    Each object of ``new`` takes the id of the object of ``old`` it overlaps with an IoU of at
    least ``min_iou``, one to one (the pairs of largest total IoU,
    :func:`scipy.optimize.linear_sum_assignment`); every other object gets a fresh id, from
    ``next_id`` up in the order of its id in ``new``.

    Parameters
    ----------
    new, old : (...) integer ndarray
        Labels of the same region (one stack of a time-lapse, say) after and before a re-run;
        0 is background.
    next_id : int
        The first id free for new objects (above every id in use, :func:`next_free_id` of the
        whole movie, so that no object of another time point shares it).
    min_iou : float
        The smallest IoU of an object and the one it replaces.

    Returns
    -------
    labels : uint32 ndarray
        ``new`` relabelled.
    kept : int
        Objects that took an id of ``old``.
    fresh : int
        Objects with a new id (``next_id`` to ``next_id + fresh - 1``).
    """
    from scipy.optimize import linear_sum_assignment

    from napari_hemd.core.metrics import overlap_table

    new, old = np.asarray(new), np.asarray(old)
    if new.shape != old.shape:
        raise ValueError(f"new and old must have the same shape; got {new.shape} and {old.shape}")
    table = overlap_table(old, new)
    r, c, inter, union = table.object_pairs()
    ok = inter >= min_iou * union
    r, c, iou = r[ok], c[ok], inter[ok] / union[ok]
    ids = table.pred_labels.astype(np.int64)
    lut = np.zeros(int(ids[-1]) + 1, np.uint32)
    kept = 0
    if r.size:
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        w = np.zeros((ur.size, uc.size))
        w[ri, ci] = iou
        rr, cc = linear_sum_assignment(w, maximize=True)
        pos = w[rr, cc] > 0
        lut[ids[uc[cc[pos]]]] = table.gt_labels[ur[rr[pos]]]
        kept = int(pos.sum())
    fresh = [int(i) for i in ids[1:] if lut[i] == 0]
    lut[fresh] = np.arange(next_id, next_id + len(fresh), dtype=np.uint32)
    return lut[new], kept, len(fresh)


def merge_labels(labels: np.ndarray, ids: Sequence[int], frame: int | None = None) -> np.ndarray:
    """Give every object in ``ids`` the first id (in one frame, or all frames when ``None``)."""
    out = labels.copy()
    view = out if frame is None else out[frame]
    view[np.isin(view, np.asarray(ids[1:]))] = ids[0]
    return out


def delete_label(labels: np.ndarray, label: int, frame: int | None = None) -> np.ndarray:
    """Remove object ``label`` (in one frame, or all frames when ``None``)."""
    out = labels.copy()
    view = out if frame is None else out[frame]
    view[view == label] = 0
    return out


def relabel(labels: np.ndarray, old: int, new: int, frame: int | None = None) -> np.ndarray:
    """Rename object ``old`` to ``new`` (across all frames by default)."""
    out = labels.copy()
    view = out if frame is None else out[frame]
    view[view == old] = new
    return out


#: How much a seed's flood is slowed by its distance from the seed (per object radius), in
#: :func:`split_by_seeds`; measured on the sample's merges (0.05-0.5 alike, 0.15 best).
SPLIT_COMPACTNESS = 0.15


def split_by_seeds(
    frame: np.ndarray,
    seeds,
    next_id: int,
    prob: np.ndarray | None = None,
) -> np.ndarray:
    """Split the object under the first seed into one object per seed (watershed).

    Parameters
    ----------
    frame : (Y, X) or (Z, Y, X) integer ndarray
        Labels of one frame.
    seeds : (S, frame.ndim) array-like of int
        Seed pixels; those outside the first seed's object are ignored.
    next_id : int
        First id given to the new objects (the first seed keeps the object's id).
    prob : ndarray, optional
        Probability of the frame: the split follows its valleys too; without it, the object's
        shape alone (distance to its border: the cut goes along a waist).

    Returns
    -------
    ndarray
        The new frame (``frame`` is not modified).

    Notes
    -----
    A compact watershed (scikit-image's ``compactness``): the height is the distance to the
    object's border (times the probability scaled to the object's range), and a seed's flood
    is slowed by its distance from the seed, ``SPLIT_COMPACTNESS / radius`` per pixel. A seed
    clicked off the object's peak still gets its side of the object: a plain watershed gave
    it only the slope below it (9 px of a 1343 px object in the audit; 5 px of the sample's
    592 px merge, which this splits into 461 + 131 px, the second 102 px of the nucleus
    clicked).
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    raw = np.asarray(seeds, dtype=np.float64).reshape(-1, frame.ndim)
    if not np.isfinite(raw).all():
        raise ValueError(f"seeds: pixel positions must be finite numbers; got {raw.tolist()}")
    seeds = np.round(raw).astype(np.int64)
    if len(seeds) < 2:
        raise ValueError(f"seeds: need at least 2 seeds to split; got {len(seeds)}")
    outside = seeds[((seeds < 0) | (seeds >= np.asarray(frame.shape))).any(axis=1)].tolist()
    if outside:
        raise ValueError(f"seeds: {outside} lie outside the frame (shape {tuple(frame.shape)})")
    label = int(frame[tuple(seeds[0])])
    if label == 0:
        raise ValueError(f"seeds: the first seed {seeds[0].tolist()} is on background")
    mask = frame == label
    inside = [tuple(p) for p in seeds if mask[tuple(p)]]
    if len(inside) < 2:
        raise ValueError(f"seeds: only {len(inside)} seed(s) lie inside object {label}")
    markers = np.zeros(frame.shape, np.int32)
    for i, p in enumerate(inside):
        markers[p] = i + 1
    dist = ndi.distance_transform_edt(mask)
    radius = max(float(dist.max()), 1.0)
    height = dist / radius
    if prob is not None:
        p = np.asarray(prob, dtype=np.float64)
        lo, hi = float(p[mask].min()), float(p[mask].max())
        if hi > lo:
            height = height * (p - lo) / (hi - lo)
    ws = watershed(-height, markers, mask=mask, compactness=SPLIT_COMPACTNESS / radius)
    lut = np.array([0, label, *range(next_id, next_id + len(inside) - 1)], dtype=frame.dtype)
    out = frame.copy()
    out[mask] = lut[ws[mask]]
    return out


# ---------------------------------------------------------------------------------- history
@dataclass
class Edit:
    """Sparse difference between two label arrays of the same shape.

    ``state`` optionally holds what else the edit changed, as ``(before, after)`` dicts (e.g. the
    layer's parameters, locked choices and H-EMD result after a re-run); undo restores
    ``before``, redo ``after``. The history only stores them; the caller applies them.
    """

    name: str
    index: np.ndarray
    before: np.ndarray
    after: np.ndarray
    state: tuple[dict, dict] | None = None


@dataclass
class EditHistory:
    """Undo/redo stacks of sparse label edits."""

    undo_stack: list[Edit] = field(default_factory=list)
    redo_stack: list[Edit] = field(default_factory=list)

    def record(
        self,
        name: str,
        before: np.ndarray,
        after: np.ndarray,
        offset: int = 0,
        state: tuple[dict, dict] | None = None,
    ) -> Edit | None:
        """Store the difference ``before -> after``; clear redo.

        ``offset`` is added to the flat indices: record one frame ``t`` of a stack with
        ``offset=t * frame.size`` and undo on the whole stack. ``state`` is kept on the edit (see
        :class:`Edit`). Returns ``None`` when the labels did not change and no ``state`` is given.
        """
        local = np.flatnonzero(before.ravel() != after.ravel())
        return self.record_pixels(
            name, local + offset, before.ravel()[local], after.ravel()[local], state
        )

    def record_pixels(
        self,
        name: str,
        index: np.ndarray,
        before: np.ndarray,
        after: np.ndarray,
        state: tuple[dict, dict] | None = None,
    ) -> Edit | None:
        """Store an edit given by the pixels it changes; clear redo.

        ``index``: their flat indices, ``before`` / ``after``: their values. Returns ``None``
        when it changes nothing and has no ``state``.
        """
        index, before, after = np.asarray(index), np.asarray(before), np.asarray(after)
        if not (index.shape == before.shape == after.shape):
            raise ValueError(
                f"index, before and after must have one shape; got {index.shape}, "
                f"{before.shape} and {after.shape}"
            )
        if index.size == 0 and state is None:
            return None
        edit = Edit(name, index.copy(), before.copy(), after.copy(), state)
        self.undo_stack.append(edit)
        self.redo_stack.clear()
        log.debug("edit %s: %d pixels", name, index.size)
        return edit

    def undo_edit(self, labels: np.ndarray) -> Edit | None:
        """Revert the last edit in place on ``labels``; return it (``None`` if none)."""
        if not self.undo_stack:
            return None
        e = self.undo_stack.pop()
        labels.flat[e.index] = e.before
        self.redo_stack.append(e)
        return e

    def redo_edit(self, labels: np.ndarray) -> Edit | None:
        """Re-apply the last undone edit in place on ``labels``; return it (``None`` if none)."""
        if not self.redo_stack:
            return None
        e = self.redo_stack.pop()
        labels.flat[e.index] = e.after
        self.undo_stack.append(e)
        return e

    def undo(self, labels: np.ndarray) -> str | None:
        """Revert the last edit in place on ``labels``; return its name (``None`` if none)."""
        e = self.undo_edit(labels)
        return None if e is None else e.name

    def redo(self, labels: np.ndarray) -> str | None:
        """Re-apply the last undone edit in place on ``labels``; return its name."""
        e = self.redo_edit(labels)
        return None if e is None else e.name


# ---------------------------------------------------------------------------------- project
PROJECT_FORMAT = "napari-hemd project 2"
#: Formats :func:`load_project` reads: 1 kept an array per undo step and part (version 2 packs
#: the history into three flat arrays, which version 1's reader does not know: it refuses it).
PROJECT_FORMATS = ("napari-hemd project 1", PROJECT_FORMAT)


def save_project(
    folder: str | os.PathLike,
    *,
    prob: np.ndarray,
    labels: np.ndarray,
    params: dict,
    locked: dict | None = None,
    history: EditHistory | None = None,
    overwrite: bool = False,
    name: str | None = None,
    image: np.ndarray | None = None,
    image_name: str | None = None,
    checked: Sequence[int] = (),
    background: np.ndarray | None = None,
    prob_info: dict | None = None,
    placement: dict | None = None,
    models_from: str | os.PathLike | None = None,
) -> Path:
    """Save a proofreading session into a zarr folder, atomically.

    The candidate forests are not stored: they are rebuilt exactly from ``prob`` and ``params``
    (:func:`rebuild_workflow`), which keeps the folder small.

    Parameters
    ----------
    folder : path-like
        Output ``*.zarr`` folder.
    prob : (T, ...) float ndarray
        The probability map that was segmented.
    labels : (T, ...) integer ndarray
        The (edited) labels.
    params : dict
        Segmentation parameters (JSON-serialisable values are kept).
    locked : dict, optional
        Frame -> candidate ids chosen by the user; time point -> slice -> candidate ids for a
        time-lapse of stacks (see :func:`locked_choices`).
    history : EditHistory, optional
        Undo/redo stacks, restored by :func:`load_project`. Of an edit's ``state`` the
        JSON-serialisable entries are kept (parameters, locked choices), not H-EMD results.
    overwrite : bool
        Replace an existing ``folder`` (atomically: the old one stays until the new one is
        complete).
    name : str, optional
        Name of the labels layer, given back by :func:`load_project`.
    image : ndarray, optional
        The raw image the session is about (shown under the labels when it is reopened).
    image_name : str, optional
        Its layer name.
    checked : sequence of int
        Frames the user marked as corrected (fine-tuning data).
    background : ndarray, optional
        The background probability the model predicted with ``prob`` (same shape): what the
        whole-cell growth of a re-run (Lock choices and re-run H-EMD) needs after reopening.
    prob_info : dict, optional
        How the probability map was made and is grown (the probability layer's model, growth
        and model defaults; JSON-serialisable values are kept), given back as they were.
    placement : dict, optional
        Where the layers sit in the viewer: ``{"labels": {"translate": [...], "scale": [...],
        "units": [...], "axis_labels": [...]}, "prob": {...}, "image": {...}}`` (labels of a
        frame range start at that frame; a calibrated image's layers have its pixel size and
        unit; a stack's its axis names), given back as saved.

    models_from : path-like, optional
        The project folder the session was opened from or last saved to: saved elsewhere
        (*Save as*), its ``models/`` come along.

    Models fine-tuned in the session live in the folder's ``models/`` and are carried over when
    the project is saved again (or, with ``models_from``, into another folder).
    """
    import zarr

    from napari_hemd._atomic import atomic_path

    keep = _plain_params(params)
    with atomic_path(folder, overwrite=overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        arrays = [("prob", np.asarray(prob)), ("labels", np.asarray(labels))]
        if image is not None:
            arrays.append(("image", np.asarray(image)))
        if background is not None:
            background = np.asarray(background)
            if background.shape != np.shape(prob):
                raise ValueError(
                    f"background must have the shape of prob {np.shape(prob)}; got "
                    f"{background.shape}"
                )
            arrays.append(("background", background))
        previous = _previous_project(Path(folder)) if overwrite else None
        digests = {
            key: _write_reusing(root, tmp, key, arr, previous, Path(folder)) for key, arr in arrays
        }
        # the undo history packed into three flat arrays (an array per edit and part made a
        # save of 300 edits take 3 s; appended edits now rewrite the arrays' last chunk)
        edits, packed, start = [], {"index": [], "before": [], "after": []}, 0
        for stack_name, stack in (
            ("undo", history.undo_stack if history else []),
            ("redo", history.redo_stack if history else []),
        ):
            for i, e in enumerate(stack):
                n = len(e.index)
                for part in packed:
                    packed[part].append(np.asarray(getattr(e, part)).ravel())
                kind = np.asarray(e.before).dtype.str
                edits.append([stack_name, i, e.name, _state_json(e.state), start, start + n, kind])
                start += n
        if edits:
            for part, pieces in packed.items():
                flat = np.concatenate(pieces)
                if part != "index" and flat.dtype.kind in "iu":
                    flat = flat.astype(np.int64)  # one type for every edit's values
                key = f"history_{part}"
                digests[key] = _write_reusing(root, tmp, key, flat, previous, Path(folder))
        root.attrs.update(
            {
                "format": PROJECT_FORMAT,
                "params": keep,
                "locked": jsonable_locked(locked),
                "edits": edits,
                "name": name,
                "image_name": image_name if image is not None else None,
                "checked": sorted({int(t) for t in checked}),
                "prob_info": _plain_params(prob_info or {}),
                CHUNK_DIGESTS_KEY: digests,
                "placement": {
                    k: {
                        a: [str(x) if a in ("units", "axis_labels") else float(x) for x in v]
                        for a, v in (place or {}).items()
                    }
                    for k, place in (placement or {}).items()
                },
            }
        )
        _carry_models(Path(folder), tmp)
        if models_from is not None and Path(models_from).resolve() != Path(folder).resolve():
            _carry_models(Path(models_from), tmp)
    return Path(folder)


#: Project attribute holding a digest of each stored chunk (a frame, or a whole 2D array) of
#: its arrays: saving over the folder again links the chunks that did not change.
CHUNK_DIGESTS_KEY = "chunk_digests"


def _previous_project(folder: Path):
    """The project at ``folder`` as a zarr group, if it is one with chunk digests; else None."""
    import zarr

    if not (folder / "zarr.json").is_file():
        return None
    try:
        root = zarr.open_group(str(folder), mode="r")
    except Exception:  # not a zarr group we can read: written anew
        return None
    attrs = dict(root.attrs)
    if attrs.get("format") not in PROJECT_FORMATS or not isinstance(
        attrs.get(CHUNK_DIGESTS_KEY), dict
    ):
        return None
    return root


#: Chunk length of a project's 1D arrays (its packed undo history): a new edit appended to a
#: long history rewrites the last chunk only.
FLAT_CHUNK = 1 << 20


def _chunking(arr: np.ndarray) -> tuple[tuple[int, ...], list[tuple[tuple[int, ...], tuple]]]:
    """How a project stores ``arr``: its chunk shape and each chunk's ``(coords, selection)``.

    A frame per chunk for stacks, one chunk for a 2D array, :data:`FLAT_CHUNK` values for 1D.
    """
    if arr.ndim == 1:
        size = FLAT_CHUNK
        parts = [((i,), (slice(i * size, (i + 1) * size),)) for i in range(-(-len(arr) // size))]
        return (size,), parts
    if arr.ndim > 2:
        lead = (0,) * (arr.ndim - 1)
        return (1, *arr.shape[1:]), [((t, *lead), (t,)) for t in range(arr.shape[0])]
    return arr.shape, [((0,) * arr.ndim, (Ellipsis,))]


def _digest(part: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(part).data).hexdigest()


def _write_reusing(root, at: Path, key: str, arr: np.ndarray, previous, folder: Path) -> list[str]:
    """Write ``arr`` as array ``key`` of ``root`` (the group at ``at``); return its chunks' digests.

    Chunks (:func:`_chunking`) equal to those of the same array in ``previous`` (the project
    being replaced, at ``folder``, stored with the same type, chunks and encoding; its length
    may differ) are hard-linked (else copied) from it instead of compressed and written again:
    saving a session after an edit writes the frames that changed (and the undo history's last
    chunk). Nothing is ever written into a linked file: a linked chunk's path is only created by
    the link.
    """
    import shutil

    chunks, parts = _chunking(arr)
    digests = [_digest(arr[sel]) for _, sel in parts]
    new = root.create_array(key, shape=arr.shape, dtype=arr.dtype, chunks=chunks)
    stored: list = []
    if previous is not None and key in previous:
        old_meta = previous[key].metadata.to_dict()
        new_meta = new.metadata.to_dict()
        old_meta.pop("shape", None)
        new_meta.pop("shape", None)
        listed = dict(previous.attrs)[CHUNK_DIGESTS_KEY].get(key)
        if isinstance(listed, list) and old_meta == new_meta:
            stored = listed
    for i, (coords, sel) in enumerate(parts):
        if i >= len(stored) or digests[i] != stored[i]:
            new[sel] = arr[sel]
            continue
        name = new.metadata.encode_chunk_key(coords)
        src = folder / key / name
        if not src.is_file():  # an empty chunk (all fill value) is not stored
            continue
        dst = at / key / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:  # no hard links here (some network or removable drives)
            shutil.copyfile(src, dst)
    return digests


#: Sub-folder of a project holding the models fine-tuned in it.
PROJECT_MODELS = "models"


def _carry_models(old: Path, new: Path) -> None:
    """Hard-link (else copy) the ``models/`` of project ``old`` into the new one ``new``.

    Files the new one holds already (carried from the folder being replaced) are kept.
    """
    import shutil

    src = old / PROJECT_MODELS
    if not src.is_dir():
        return
    dst = new / PROJECT_MODELS
    dst.mkdir(exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith(".") and not (dst / f.name).exists():
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)


def load_project(folder: str | os.PathLike) -> dict:
    """Read a folder written by :func:`save_project`.

    Returns
    -------
    dict
        ``prob``, ``labels`` (ndarrays), ``params``, ``locked`` (frame -> list of ids, or
        time point -> slice -> list of ids: :func:`locked_choices`),
        ``history`` (:class:`EditHistory`), ``name`` (of the labels layer, or ``None``) and
        ``image`` / ``image_name`` (the raw image, or ``None`` for projects saved without it),
        ``checked`` (sorted frames marked as corrected), ``models`` (the model files
        fine-tuned in the project, oldest first), ``background`` (the background probability,
        or ``None``: saved without one, or before projects kept it) and ``prob_info`` (how
        the probability map was made and is grown; ``{}`` for older projects), ``placement``
        (the layers' ``translate`` / ``scale``; ``{}`` for older projects).
    """
    import zarr

    root = zarr.open_group(str(folder), mode="r")
    attrs = dict(root.attrs)
    if attrs.get("format") not in PROJECT_FORMATS:
        raise ValueError(
            f"{str(folder)!r} is not a napari-hemd project (format {attrs.get('format')!r})"
        )
    history = EditHistory()
    flat = {}
    if "history_index" in root:  # packed (since 2026-12-07): three flat arrays
        flat = {p: np.asarray(root[f"history_{p}"][...]) for p in ("index", "before", "after")}
    for stack_name, i, name, *rest in attrs.get("edits", []):
        if flat and len(rest) >= 4:
            state, a, b, kind = rest[0], int(rest[1]), int(rest[2]), np.dtype(rest[3])
            parts = [flat["index"][a:b], flat["before"][a:b].astype(kind), flat["after"][a:b]]
            parts[2] = parts[2].astype(kind)
        else:  # an array per edit and part (projects saved before)
            state = rest[0] if rest else None
            parts = [
                np.asarray(root[f"{stack_name}_{i}_{p}"][...]) for p in ("index", "before", "after")
            ]
        stack = history.undo_stack if stack_name == "undo" else history.redo_stack
        stack.append(Edit(name, *parts, state=_state_from_json(state)))
    return {
        "prob": np.asarray(root["prob"][...]),
        "labels": np.asarray(root["labels"][...]),
        "params": _params_from_json(attrs.get("params", {})),
        "locked": locked_choices(json.loads(json.dumps(attrs.get("locked", {})))),
        "history": history,
        "name": attrs.get("name"),
        "image": np.asarray(root["image"][...]) if "image" in root else None,
        "image_name": attrs.get("image_name"),
        "checked": sorted(int(t) for t in attrs.get("checked", [])),
        "models": project_models(folder),
        "background": np.asarray(root["background"][...]) if "background" in root else None,
        "prob_info": dict(attrs.get("prob_info", {})),
        "placement": dict(attrs.get("placement", {})),
    }


def project_models(folder: str | os.PathLike) -> list[Path]:
    """Model files fine-tuned in a project (``FOLDER/models/*.pt``), oldest first."""
    d = Path(folder) / PROJECT_MODELS
    if not d.is_dir():
        return []
    files = [f for f in d.glob("*.pt") if not f.name.startswith(".")]
    return sorted(files, key=lambda f: (f.stat().st_mtime, f.name))


def _jsonable_state(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if k.endswith("locked") and isinstance(v, dict):
            out[k] = jsonable_locked(v)
        elif k.endswith("params") and isinstance(v, dict):
            out[k] = _plain_params(v)
    return out


_SCALAR = str | int | float | bool | type(None)


def _plain_params(params: dict) -> dict:
    """The parameters JSON keeps: scalars, dicts of scalars (``per_stack``), and ``locked``.

    ``locked``: the candidates a locked re-run selected with (:func:`jsonable_locked`), so a
    rebuild selects as that run did (:func:`_params_from_json` reads it back).
    """
    out = {
        k: v
        for k, v in params.items()
        if isinstance(v, _SCALAR)
        or (isinstance(v, dict) and all(isinstance(b, _SCALAR) for b in v.values()))
    }
    if isinstance(params.get("locked"), dict):
        out["locked"] = jsonable_locked(params["locked"])
    return out


def _params_from_json(params: dict) -> dict:
    """Run parameters as read from a project: ``locked`` with integer keys again."""
    out = dict(params)
    if isinstance(out.get("locked"), dict):
        out["locked"] = locked_choices(out["locked"])
    return out


def _state_json(state: tuple[dict, dict] | None) -> list[dict] | None:
    """The JSON part of an edit's state: parameters and locked choices (not results)."""
    return None if state is None else [_jsonable_state(state[0]), _jsonable_state(state[1])]


def _state_from_json(state: list[dict] | None) -> tuple[dict, dict] | None:
    if state is None:
        return None
    out = []
    for d in state:
        d = dict(d)
        for k, v in d.items():
            if k.endswith("locked"):
                d[k] = locked_choices(v)
            elif k.endswith("params") and isinstance(v, dict):
                d[k] = _params_from_json(v)
        out.append(d)
    return out[0], out[1]


_HEMD_KEYS = (
    "tau",
    "delta",
    "iterations",
    "axis",
    "connectivity",
    "min_size",
    "variant",
    "seed_min_peak",
    "lone_growth",
    "split_coverage",
    "split_size",
    "link",
)


def selection_choices(result: HEMDResult | None) -> dict:
    """The resolved selection options of an H-EMD result (``{}`` for a baseline's).

    Saved with a result, so that a rebuild selects as the run did even after a default changes.
    """
    if result is None:
        return {}
    return {k: result.params[k] for k in SELECTION_KEYS if k in result.params}


def stack_rebuild_params(result) -> dict:
    """The H-EMD parameters a result ran with, as :func:`rebuild_workflow` takes them.

    For a time-lapse of stacks (``StackResults``) these are each stack's: one stack's forests
    are rebuilt exactly from its ``(Z, Y, X)`` probabilities with them.
    """
    return {
        k: v.item() if isinstance(v, np.generic) else v
        for k, v in result.params.items()
        if k in _HEMD_KEYS
    }


def rebuild_workflow(
    prob, params: dict, locked: dict[int, list[int]] | None = None
) -> Generator[Progress, None, HEMDResult]:
    """Rebuild the H-EMD result (forests, selections) of a saved session for the inspector.

    ``prob`` is what was segmented: the movie or stack, or one stack of a time-lapse of stacks
    (with that run's :func:`stack_rebuild_params`).
    """
    kwargs = _rebuild_kwargs(params)
    return (yield from segment_workflow(prob, "hemd", locked=locked or None, **kwargs))


def _rebuild_kwargs(params: dict) -> dict:
    """The H-EMD keywords that select as the run with the saved ``params`` did."""
    kwargs = {k: params[k] for k in _HEMD_KEYS if k in params}
    if "variant" in params and "split_coverage" not in params:
        # saved before the touching-cell split existed (results since record it: selection_choices)
        kwargs["split_coverage"] = 0.0
    return kwargs


@dataclass
class StackRerun:
    """One stack of a time-lapse of stacks re-run with locked candidates.

    Attributes
    ----------
    labels : (Z, Y, X) uint32 ndarray
        The stack's new whole-cell labels, with the movie's ids (:func:`match_ids`).
    result : HEMDResult
        The stack's forests and locked selection (candidate ids the stack's own).
    kept, fresh : int
        Objects that kept the id of the object they replace, and objects with a new id.
    """

    labels: np.ndarray
    result: HEMDResult
    kept: int
    fresh: int


def rerun_stacks_workflow(
    prob,
    labels,
    params: dict,
    locked: dict[int, dict[int, Sequence[int]]],
    *,
    background=None,
    grow: int = 0,
    grow_threshold: float = 0.5,
    min_volume: int = 0,
) -> Generator[Progress, None, dict[int, StackRerun]]:
    """Re-run H-EMD on the stacks of a time-lapse of stacks where the user locked candidates.

    Each stack ``t`` of ``locked`` is segmented again as the run segmented it, stack by stack
    (:func:`napari_hemd.image_segmentation.labels_from_maps_workflow` with the stacks' own
    H-EMD parameters, as :func:`rebuild_workflow` takes them), with its locked candidates kept
    (``hemd(locked=...)``), so that the stack's other slices follow them; then grown to whole
    cells as the run was, a locked child given back the pixels the inspector gave it
    (:func:`keep_locked_objects`), and the objects given the ids of the objects they replace
    (:func:`match_ids`), so they stay linked over time to the other stacks, which are not
    touched.

    Parameters
    ----------
    prob : (T, Z, Y, X) array-like
        The foreground probability the labels were segmented from (read one stack at a time).
    labels : (T, Z, Y, X) integer array-like
        The labels now (with the user's edits): what the locked candidates were chosen on.
    params : dict
        The stacks' H-EMD parameters (:func:`stack_rebuild_params`).
    locked : dict
        Time point -> slice -> locked node ids of that slice's forest.
    background : (T, Z, Y, X) array-like, optional
        Background probability, for the growth (needed when ``grow > 0``).
    grow : int
        Whole-cell growth in pixels (0: none).
    grow_threshold : float
        Pixels whose background probability is below it may be grown into.
    min_volume : int
        With linked slices (``params["link"]``): smaller objects are dropped, as in the run.

    Yields
    ------
    (stage, done, total)
        H-EMD's stages, prefixed ``"time t (k/n): "``.

    Returns
    -------
    dict of int to StackRerun
        The re-run stacks by time point.
    """
    from napari_hemd.image_segmentation import labels_from_maps_workflow

    if grow and background is None:
        raise ValueError("grow > 0 needs the background probability")
    kwargs = _rebuild_kwargs(params)
    todo = sorted(int(t) for t, slices in locked.items() if any(slices.values()))
    next_id = next_free_id(labels)
    out: dict[int, StackRerun] = {}
    for k, t in enumerate(todo):
        slices = {int(z): [int(n) for n in ns] for z, ns in locked[t].items() if ns}
        p = np.asarray(prob[t])
        maps = {"foreground": p}
        if grow:
            maps["background"] = np.asarray(background[t])
        inner = labels_from_maps_workflow(
            maps, "hemd", grow, grow_threshold=grow_threshold, min_volume=min_volume,
            locked=slices, **kwargs,
        )  # fmt: skip
        new, res, _ = yield from _prefixed(inner, f"time {t} ({k + 1}/{len(todo)}): ")
        previous = np.asarray(labels[t])
        new = keep_locked_objects(new, previous, res.forests, slices, p)
        new, kept, fresh = match_ids(new, previous, next_id)
        next_id += fresh
        out[t] = StackRerun(new, res, kept, fresh)
    return out


def _prefixed(inner: Generator, prefix: str) -> Generator[Progress, None, object]:
    """Pass on ``inner``'s events with ``prefix`` on their stage (not on ``"cancelled"``)."""
    try:
        event = next(inner)
        while True:
            stage, done, total = event
            if stage != "cancelled":
                stage = prefix + stage
            event = inner.send((yield (stage, done, total)))
    except StopIteration as stop:
        return stop.value
