"""Out-of-core H-EMD: windowed selection, zarr streaming with resume, online mode.

Why windows reproduce the global run exactly
---------------------------------------------
:func:`~napari_hemd.core.selection.select_instances` is synchronous: the state of frame ``w`` after
iteration ``t`` is a deterministic function of the states of frames ``w - 1, w, w + 1`` after
iteration ``t - 1`` (the matching of a pair depends only on the two forests and the two states).
The initial state and the padding of a frame depend on that frame alone. Hence, by induction, the
state of ``w`` after ``t`` iterations depends only on frames ``w - t .. w + t``.

In a window ``[lo, hi)`` only the edge frames differ from the global run: frame ``lo`` misses its
left neighbour, so its state may be wrong after iteration 1, frame ``lo + k`` after iteration
``k + 1``. A frame at distance ``>= T`` from both window edges (or at a true sequence edge) has the
global state after every iteration ``<= T``, so the same nodes selected in the same order (labels
``1..k`` follow the selection order), and the same padding. A halo of ``H = T`` frames is enough;
the issue's ``T + 1`` is one frame of margin.

Early stopping does not break this: a run that stops when an iteration selects nothing equals the
run with all ``T`` iterations (states are then fixed points), for the window as for the whole video.
One caveat: a CP-SAT component that hits its wall-clock ``time_limit`` (logged as a warning) is not
deterministic, in any mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "Window",
    "check_window_keywords",
    "follow_zarr",
    "hemd_follow",
    "hemd_online",
    "hemd_stream",
    "hemd_window",
    "hemd_windowed",
    "plan_windows",
]

log = logging.getLogger(__name__)

#: ``hemd`` parameters a window run accepts (``link`` is global and is refused).
_PARAMS = (
    "tau",
    "delta",
    "iterations",
    "connectivity",
    "min_size",
    "variant",
    "seed_min_peak",
    "lone_growth",
    "split_coverage",
    "split_size",
    "time_limit",
    "max_candidates",
)


@dataclass(frozen=True)
class Window:
    """Frames ``lo .. hi - 1`` are segmented; frames ``start .. stop - 1`` are kept."""

    index: int
    lo: int
    start: int
    stop: int
    hi: int


def plan_windows(n_frames: int, chunk: int, halo: int) -> list[Window]:
    """Split ``n_frames`` into chunks of ``chunk`` frames, each with ``halo`` frames either side.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    chunk : int
        Frames kept per window (>= 1).
    halo : int
        Extra frames each side (>= 0), clipped at the sequence ends.

    Returns
    -------
    list of Window

    Examples
    --------
    >>> [(w.lo, w.start, w.stop, w.hi) for w in plan_windows(5, 2, 1)]
    [(0, 0, 2, 3), (1, 2, 4, 5), (3, 4, 5, 5)]
    """
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1 frame; got {chunk!r}")
    if int(halo) < 0:
        raise ValueError(f"halo must be >= 0 frames; got {halo!r}")
    out = []
    for i, start in enumerate(range(0, int(n_frames), int(chunk))):
        stop = min(start + int(chunk), int(n_frames))
        out.append(Window(i, max(0, start - halo), start, stop, min(int(n_frames), stop + halo)))
    return out


class _FrameRange:
    """Lazy view of frames ``lo .. hi - 1`` of ``prob`` (axis 0): reads a frame when indexed."""

    #: A window of a movie :func:`_check` judged: not read again as a possibly raw image.
    probability_checked = True

    def __init__(self, prob, lo: int, hi: int) -> None:
        self.prob, self.lo, self.hi = prob, lo, hi
        self.shape = (hi - lo, *tuple(prob.shape[1:]))
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            t, rest = key[0], key[1:]
        else:
            t, rest = key, ()
        if not isinstance(t, (int, np.integer)):
            raise TypeError(f"_FrameRange reads one frame at a time; got index {key!r}")
        return np.asarray(self.prob[(self.lo + int(t), *rest)])


def check_window_keywords(params, extra: tuple[str, ...] = ()) -> None:
    """Refuse keywords that neither a window run nor the caller (``extra``) takes: a typo.

    Called first by the streaming entry points, before any input is opened or predicted.
    """
    unknown = set(params) - set(_PARAMS) - {"halo", "locked", "link"} - set(extra)
    if unknown:
        expected = tuple(dict.fromkeys(_PARAMS + tuple(extra)))
        raise TypeError(f"unexpected parameter(s) {sorted(unknown)}; expected some of {expected}")


def _check(prob, params: dict) -> tuple[int, int]:
    """Validate inputs; return (n_frames, halo)."""
    if params.get("link"):
        raise ValueError(
            "link=True needs the whole video; run napari_hemd.core.linking.link_labels on the output"
        )
    check_window_keywords(params)
    if not hasattr(prob, "shape") or len(prob.shape) not in (3, 4):
        raise ValueError(
            "prob must be a (T, Y, X) or (T, Z, Y, X) array with time on axis 0; got "
            f"shape {getattr(prob, 'shape', None)}"
        )
    if 0 in tuple(prob.shape):
        raise ValueError(f"prob is empty (shape {tuple(prob.shape)}): no frame to segment")
    from napari_hemd.core.validation import refuse_raw_image

    refuse_raw_image(prob)  # once for the movie (its windows say they were checked)
    iterations = int(params.get("iterations", 10))
    halo = params.get("halo")
    halo = iterations if halo is None else int(halo)
    if halo < iterations:
        log.warning(
            "halo %d < iterations %d: windowed labels may differ from the global run",
            halo,
            iterations,
        )
    return int(prob.shape[0]), halo


def hemd_window(prob, window: Window, **params) -> np.ndarray:
    """H-EMD labels of the kept frames of one window.

    Parameters
    ----------
    prob : (T, Y, X) or (T, Z, Y, X) array-like
        Probabilities, time on axis 0; numpy, zarr or dask (only ``window.lo .. window.hi - 1``
        are read, one frame at a time).
    window : Window
        From :func:`plan_windows`.
    **params
        :func:`napari_hemd.core.segment.hemd` parameters (``tau``, ``delta``, ``iterations``,
        ``connectivity``, ``min_size``, ``variant``, ``time_limit``, ``max_candidates``) and
        ``locked`` (global frame indices).

    Returns
    -------
    labels : (window.stop - window.start, ...) uint32 ndarray
    """
    from napari_hemd.core.segment import hemd

    params = {k: v for k, v in params.items() if k not in ("halo", "link")}
    locked = params.pop("locked", None)
    if locked:
        locked = {
            int(w) - window.lo: list(n) for w, n in locked.items() if window.lo <= w < window.hi
        }
    view = _FrameRange(prob, window.lo, window.hi)
    res = hemd(view, locked=locked or None, first_frame=window.lo, **params)
    a, b = window.start - window.lo, window.stop - window.lo
    return res.labels[a:b]


def hemd_windowed(
    prob,
    *,
    chunk: int = 16,
    halo: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    **params,
) -> np.ndarray:
    """H-EMD in overlapping windows, in memory; equal to ``hemd(prob).labels`` when ``halo >= T``.

    Parameters
    ----------
    prob : (T, Y, X) or (T, Z, Y, X) array-like
        Probabilities, time on axis 0.
    chunk : int
        Frames kept per window.
    halo : int, optional
        Frames added each side of a chunk; default ``iterations`` (the exact bound, see the module
        docstring).
    progress : callable, optional
        ``progress("windows", done, total)``.
    **params
        See :func:`hemd_window`.

    Returns
    -------
    labels : (T, ...) uint32 ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from napari_hemd.core.segment import hemd
    >>> p = np.zeros((6, 32, 32), np.float32)
    >>> p[:, 8:24, 8:24] = 0.9
    >>> bool((hemd_windowed(p, chunk=2, iterations=2) == hemd(p, iterations=2).labels).all())
    True
    """
    n, halo = _check(prob, {**params, "halo": halo})
    windows = plan_windows(n, chunk, halo)
    out = np.zeros(tuple(prob.shape), np.uint32)
    for k, w in enumerate(windows):
        out[w.start : w.stop] = hemd_window(prob, w, **params)
        if progress:
            progress("windows", k + 1, len(windows))
    return out


# --------------------------------------------------------------------------------------------
# Streaming zarr -> zarr with resume


def _partial_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.partial")


@contextlib.contextmanager
def dropped_unless_begun(partial: Path, begun: Callable[[], bool]) -> Iterator[None]:
    """Remove a run's ``partial`` folder when the run fails before ``begun()`` is true.

    A refused input (values above 1, NaN found in the first window) or a crash before any work
    was finished leaves nothing beside the user's output; a partial run with finished work is
    kept, to be resumed.
    """
    try:
        yield
    except BaseException:
        from napari_hemd._atomic import settle_writes

        settle_writes()  # zarr's writes still in flight would make it again (audit 28)
        if not begun():
            shutil.rmtree(partial, ignore_errors=True)
        raise


def _source_id(arr) -> str:
    """What identifies the input of a resumable run: its location, or its content when in memory.

    A zarr array is named by its store root and path, a TIFF reader by its path, a dask array by
    its (content-derived) name, a numpy array by a hash of its bytes: two different in-memory
    arrays of one shape must never resume each other's output.
    """
    if isinstance(arr, np.memmap) and getattr(arr, "filename", None):
        stamp = path_stamp(arr.filename)
        return f"file:{arr.filename}:{arr.offset}:{stamp}:{_content_sample(arr)}"
    if isinstance(arr, np.ndarray):
        return "sha256:" + hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()
    # A location alone does not prove the same data: an input regenerated at the same path
    # must not resume the old run, so a sample of the content (first, middle, last frame) joins.
    root = getattr(getattr(arr, "store", None), "root", None)
    if root is not None:
        inner = getattr(arr, "path", "")
        stamp = path_stamp(Path(str(root)) / inner)
        return f"zarr:{root}:{inner}:{stamp}:{_content_sample(arr)}"
    if isinstance(getattr(arr, "path", None), str):  # a TIFF file read frame by frame
        stamp = path_stamp(getattr(arr, "file", None) or arr.path)  # an HDF5 dataset's file
        return f"file:{arr.path}:{stamp}:{_content_sample(arr)}"
    name = getattr(arr, "name", None)
    if isinstance(name, str) and type(arr).__module__.startswith("dask"):
        return f"dask:{name}:{_content_sample(arr)}"
    # Unknown array type: nothing proves a rerun sees the same data, so never resume it.
    return f"{type(arr).__name__}:{os.urandom(8).hex()}"


def announce_resume(output, what: str, done: int, total: int, unit: str, frame: int) -> None:
    """Say, always (a warning: stderr in the CLI), that a run resumes and from which frame.

    ``frame`` is a stack's index where ``unit`` is ``"stacks"`` (audit 32: "frame 2").
    """
    log.warning(
        "%s: resuming an interrupted %s of the same input and parameters: %d of %d %s done, "
        "continuing from %s %d",
        output,
        what,
        done,
        total,
        unit,
        "stack" if unit == "stacks" else "frame",
        frame,
    )


def path_stamp(path) -> str:
    """Size and modification time of a file, or of each file under a folder, as 16 hex digits.

    A file rewritten in place (a TIFF, a zarr store's chunks, a folder's frames) changes it.
    The content sample of :func:`_source_id` reads three frames only; a frame changed between
    them went unnoticed (a rerun reused the old predictions). One ``stat`` per file: a store
    of many chunks on a network file system takes a moment. Empty for a path that is gone.
    """
    path = Path(path)
    h = hashlib.sha256()
    try:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    st = os.stat(os.path.join(root, name))
                    rel = os.path.relpath(os.path.join(root, name), path)
                    h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns};".encode())
        else:
            st = path.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    except OSError:
        return ""
    return h.hexdigest()[:16]


def _content_sample(arr) -> str:
    """SHA-256 (16 hex digits) of the first, middle and last frame: a cheap content signature."""
    n = int(arr.shape[0]) if len(arr.shape) else 0
    h = hashlib.sha256(str(tuple(arr.shape)).encode())
    for i in sorted({0, n // 2, n - 1}) if n else []:
        h.update(np.ascontiguousarray(np.asarray(arr[i])).tobytes())
    return h.hexdigest()[:16]


def _signature(prob, params: dict, chunk: int, halo: int) -> str:
    """What a resumed run must share with the run it continues."""
    blob = json.dumps(
        {
            "shape": list(prob.shape),
            "dtype": str(prob.dtype),
            "source": _source_id(prob),
            "params": {k: params[k] for k in sorted(params)},
            "chunk": chunk,
            "halo": halo,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Progress:
    """Completed windows, recorded in a JSON file next to the partial zarr (atomic replace)."""

    def __init__(self, path: Path, signature: str) -> None:
        self.path = path
        self.signature = signature
        self.done: set[int] = set()

    def load(self) -> bool:
        """Read a previous run's progress; False when absent or from different inputs."""
        if not self.path.exists():
            return False
        try:
            data = json.loads(self.path.read_text())
            done = {int(i) for i in data["done"]}
        except (ValueError, KeyError, TypeError, OSError) as exc:
            log.warning("%s is damaged (%s): starting over", self.path, exc)
            return False
        if not isinstance(data, dict) or data.get("signature") != self.signature:
            log.warning(
                "%s is from a run with other inputs or parameters: starting over", self.path
            )
            return False
        self.done = done
        return True

    def mark(self, index: int) -> None:
        self.done.add(int(index))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"signature": self.signature, "done": sorted(self.done)}))
        os.replace(tmp, self.path)


def _write_window(
    prob,
    window: Window,
    store: str,
    params: dict,
    background=None,
    grow: int = 0,
    grow_threshold: float = 0.5,
    exclude_border: bool = False,
) -> int:
    """Segment one window and write its kept frames into the partial zarr (one task).

    With ``grow`` the kept frames' instances are grown to whole cells into pixels whose
    ``background`` probability is below ``grow_threshold``
    (:func:`napari_hemd.core.cells.grow_to_cells`); with ``exclude_border`` the instances that
    touch the edge of their frame are removed (:func:`napari_hemd.core.cells.clear_border_objects`).
    """
    import zarr

    labels = hemd_window(prob, window, **params)
    if grow:
        from napari_hemd.core.cells import grow_to_cells

        bg = np.asarray(background[window.start : window.stop])
        labels = grow_to_cells(labels, bg, int(grow), threshold=grow_threshold, frame_axis=True)
    if exclude_border:
        from napari_hemd.core.cells import clear_border_objects

        labels = clear_border_objects(labels, frame_axis=True)
    z = zarr.open_array(store, mode="r+")
    z[window.start : window.stop] = labels
    return window.index


def hemd_stream(prob, output: str | os.PathLike, **kwargs) -> Path:  # noqa: D103 (below)
    from napari_hemd._atomic import output_lock

    path = Path(output)
    if path.suffix != ".zarr" or not path.parent.is_dir():  # its own checks say what is wrong
        return _hemd_stream(prob, output, **kwargs)
    with output_lock(path):
        return _hemd_stream(prob, output, **kwargs)


def _hemd_stream(
    prob,
    output: str | os.PathLike,
    *,
    chunk: int = 16,
    halo: int | None = None,
    overwrite: bool = False,
    resume: bool = True,
    client=None,
    progress: Callable[[str, int, int], None] | None = None,
    on_window: Callable[[int], None] | None = None,
    background=None,
    grow: int = 0,
    grow_threshold: float = 0.5,
    exclude_border: bool = False,
    **params,
) -> Path:
    """H-EMD from an array (zarr, dask, numpy) into a zarr label store, window by window.

    Memory is bounded by one window (``chunk + 2 * halo`` frames of forests), independent of the
    number of frames. Output frames are written as each window finishes into a hidden sibling
    ``.NAME.partial`` (chunks ``(1, Y, X)``), together with ``progress.json`` listing completed
    windows; on success the partial store is renamed onto ``output`` in one step. A killed run
    restarted with the same inputs continues from the completed windows and writes the same labels.
    The output's lock (:func:`napari_hemd._atomic.output_lock`) is held while it runs: a second
    run on the same output, in this or another process, fails at once (two runs with other
    parameters removed each other's resumable work).

    Parameters
    ----------
    prob : (T, Y, X) or (T, Z, Y, X) array-like
        Probabilities, time on axis 0. With a ``client``, a numpy array is scattered to the
        workers once; anything else must pickle cheaply and be readable there (a zarr array on
        shared storage, ``napari_hemd.io.tiff.TiffFrames``).
    output : path
        ``*.zarr`` label store to create.
    chunk, halo : int
        See :func:`hemd_windowed`.
    overwrite : bool
        Replace an existing ``output``.
    resume : bool
        Continue a previous partial run with the same signature (else start over).
    client : dask.distributed.Client, optional
        Run windows as Dask tasks on this client (workers write their frames directly).
    progress : callable, optional
        ``progress("windows", done, total)``.
    on_window : callable, optional
        Called with the window index after it is recorded as complete (tests use it to interrupt).
    background : array-like, optional
        Background probability shaped like ``prob`` (needed when ``grow > 0``).
    grow : int
        Grow the instances to whole cells by up to this many pixels
        (:func:`napari_hemd.core.cells.grow_to_cells`; what ``segment --model`` does).
    grow_threshold : float
        Pixels whose background probability is below this may be taken (a model's
        ``segment_defaults["grow_threshold"]``, else 0.5).
    exclude_border : bool
        Remove the instances that touch the edge of their frame (a ``(T, Z, Y, X)`` input: any
        face of their volume), after the growth (:func:`napari_hemd.core.cells.clear_border_objects`).
    **params
        See :func:`hemd_window`.

    Returns
    -------
    Path
        ``output``.
    """
    import zarr

    from napari_hemd._atomic import check_output_path, restore_published

    if isinstance(prob, (str, os.PathLike)):
        raise TypeError(
            f"prob must be an array (zarr, dask or numpy); got the path {str(prob)!r}: open it "
            "with zarr.open_array, or give the path to napari_hemd.pipeline.stream_segment"
        )
    if Path(output).suffix != ".zarr":
        raise ValueError(f"output must be a .zarr store; got {str(output)!r}")
    if client is not None and not hasattr(client, "submit"):
        raise TypeError(
            f"client must be a dask.distributed.Client; got {type(client).__name__} (for a "
            "scheduler's address use napari_hemd.pipeline.stream_segment(..., scheduler=ADDRESS))"
        )
    restore_published(output)  # a run killed while publishing: its old output first
    output = check_output_path(output, overwrite=overwrite)
    n, halo = _check(prob, {**params, "halo": halo})
    if grow:
        if background is None or tuple(background.shape) != tuple(prob.shape):
            raise ValueError(
                f"grow={grow} needs background shaped like prob {tuple(prob.shape)}; got "
                f"{None if background is None else tuple(background.shape)}"
            )
    windows = plan_windows(n, chunk, halo)
    partial = _partial_path(output)
    sig_params = {**params, "grow": int(grow)}
    if grow:
        sig_params["background"] = _source_id(background)
        if grow_threshold != 0.5:  # (signatures of earlier runs stay valid)
            sig_params["grow_threshold"] = float(grow_threshold)
    if exclude_border:
        sig_params["exclude_border"] = True
    sig = _signature(prob, sig_params, chunk, halo)
    # Named by the signature: a task of an abandoned run with other parameters (still running on
    # a cluster) can never write into this run's store.
    store = partial / f"labels-{sig}.zarr"
    prog = _Progress(partial / "progress.json", sig)
    # A previous run that died after publishing left progress but no store: start over.
    if not (resume and prog.load() and store.exists()):
        prog.done = set()
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        zarr.create_array(
            str(store),
            shape=tuple(prob.shape),
            chunks=(1, *tuple(prob.shape[1:])),
            dtype=np.uint32,
            fill_value=0,
        )
        prog.mark(-1)  # the store exists
    # a refused input (NaN, values above 1, found in the first window) leaves no partial folder
    with dropped_unless_begun(partial, lambda: bool(prog.done - {-1})):
        todo = [w for w in windows if w.index not in prog.done]
        if len(todo) < len(windows):
            first = min(w.start for w in todo) if todo else n
            announce_resume(output, "run", len(windows) - len(todo), len(windows), "windows", first)
        total = len(windows)

        def finished(index: int) -> None:
            prog.mark(index)
            if progress:
                progress("windows", len(prog.done - {-1}), total)
            if on_window:
                on_window(index)

        if client is None:
            for w in todo:
                finished(
                    _write_window(
                        prob,
                        w,
                        str(store),
                        params,
                        background,
                        grow,
                        grow_threshold,
                        exclude_border,
                    )
                )
        else:
            # a zarr array opened by a relative path is read by its path on the workers, from
            # their own working directory: zarr found no chunks there and gave zeros (audit 31:
            # empty labels, exit 0)
            prob, background = absolute_zarr(prob), absolute_zarr(background)
            if isinstance(prob, np.ndarray):
                # Send an in-memory array once to every worker, not once per task.
                prob = client.scatter(prob, broadcast=True)
            if isinstance(background, np.ndarray):
                background = client.scatter(background, broadcast=True)
            futures = [
                # absolute: a remote worker's working directory is not ours
                client.submit(
                    _write_window,
                    prob,
                    w,
                    str(store.resolve()),
                    params,
                    background,
                    grow,
                    grow_threshold,
                    exclude_border,
                    pure=False,
                )
                for w in todo
            ]
            _gather_as_completed(client, futures, finished)
        from napari_hemd._atomic import LABELS_KEY

        z = zarr.open_array(str(store), mode="r+")
        z.attrs.update(
            {
                LABELS_KEY: True,  # napari's reader opens it as labels, whatever its name
                "method": "hemd",
                "windowed": {"chunk": chunk, "halo": halo},
                "grow": int(grow),
                **({"grow_threshold": float(grow_threshold)} if grow else {}),
                **({"exclude_border": True} if exclude_border else {}),
                **_jsonable(params),
            }
        )
        return publish(store, output, partial)


hemd_stream.__doc__ = _hemd_stream.__doc__  # the one function users call: its whole story
hemd_stream.__signature__ = inspect.signature(_hemd_stream)


def publish(store: Path, output: Path, partial: Path) -> Path:
    """Publish a finished store of a partial run onto ``output`` in one rename.

    The store is marked as ours, an older ``output`` moved into ``partial`` first, then
    ``partial`` removed.
    """
    from napari_hemd._atomic import mark_output, restore_published

    mark_output(store)
    if output.exists():
        os.replace(output, partial / "old")
    try:
        os.replace(store, output)
    finally:  # interrupted between the renames: the old output back (audit 28; nothing
        restore_published(output)  # else touched: another run's temporary is its own)
    shutil.rmtree(partial, ignore_errors=True)
    return output


def absolute_zarr(arr):
    """``arr``, or the same zarr array or group opened by its absolute path if by a relative one.

    What Dask workers get is the array's store path, which they open from their own working
    directory.
    """
    root = getattr(getattr(arr, "store", None), "root", None)
    if root is None or Path(str(root)).is_absolute():
        return arr
    import zarr

    where = {"store": str(Path(str(root)).absolute()), "path": arr.path or None, "mode": "r"}
    if isinstance(arr, zarr.Group):  # (stream_stacks' maps group; audit 32: a bare KeyError)
        return zarr.open_group(**where)
    return zarr.open_array(**where)


#: How long a cluster run waits when its scheduler has no worker left (seconds): Dask keeps the
#: tasks for workers that may join, and the run waited for good (audit 31).
WORKERS_GONE_S = 60.0


class WorkersLost(ConnectionError):
    """Every worker of the cluster left during a run, and none joined within ``WORKERS_GONE_S``."""


def _gather_as_completed(client, futures: list, finished: Callable[[object], None]) -> None:
    """Call ``finished(result)`` as each task completes; on any error cancel the others.

    Cancelling stops pending tasks; a task already running finishes (Dask cannot interrupt it) and
    may still write its own frames, which a resumed run recomputes identically. A task once
    recorded is released (its frames are on disk): held until the end, the results of a worker
    that died (pre-empted, out of memory) were computed again, every window it had finished.
    ``futures`` is emptied. When the scheduler, which had workers during the run, has had none
    for ``WORKERS_GONE_S`` seconds (all died, or were stopped) :class:`WorkersLost` is raised:
    the work finished so far is kept. Before the first worker joins it waits, as Dask does.
    """
    import time

    from dask.distributed import as_completed

    pending = set(futures)
    futures.clear()  # the caller's list held every future until the end
    checked = time.monotonic()
    gone_since, seen = None, False
    try:
        # workers still on their way are not gone (review 32); those there at the start are
        # (review 32b: all leaving in the first second waited for good)
        seen = bool(client.nthreads())
        with client.as_current():  # the client need not be the process-wide default
            completed = as_completed(list(pending))
        while pending:
            batch = completed.next_batch(block=False)
            for fut in batch:
                result = fut.result()
                pending.discard(fut)
                fut.release()
                finished(result)
            now = time.monotonic()
            if batch:  # (a finished task had a worker)
                gone_since, seen = None, True
                continue
            if now - checked >= 1.0:  # (a question to the scheduler: not on every poll)
                checked = now
                if client.nthreads():
                    gone_since, seen = None, True
                elif not seen:
                    pass  # none joined yet: Dask waits for them, and so does the run
                elif gone_since is None:
                    gone_since = now
                elif now - gone_since >= WORKERS_GONE_S:
                    raise WorkersLost(
                        f"the Dask scheduler has had no worker for {WORKERS_GONE_S:g} s (they "
                        f"died or were stopped) with {len(pending)} task(s) left; start workers "
                        "and run the same command again"
                    )
            time.sleep(0.05)  # (as_completed's own iteration polls every 0.1 s)
    except BaseException:
        client.cancel(list(pending))
        raise


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str))


# --------------------------------------------------------------------------------------------
# Online


def hemd_online(
    frames: Iterable[np.ndarray], *, chunk: int = 1, halo: int | None = None, **params
) -> Iterator[tuple[int, np.ndarray]]:
    """H-EMD on frames arriving one at a time; yields ``(t, labels_t)`` with a lag of ``halo``.

    Frame ``t`` is emitted once frames up to ``t + halo`` (or the end of the stream) arrived, and
    equals frame ``t`` of the global run. Only ``chunk + 2 * halo`` frames are held.

    Parameters
    ----------
    frames : iterable of (Y, X) or (Z, Y, X) ndarray
        Probability frames in order (e.g. a generator polling a zarr that a microscope writes).
    chunk : int
        Frames emitted together (the lag is ``chunk - 1 + halo`` for the first of them).
    halo : int, optional
        Default ``iterations``.
    **params
        See :func:`hemd_window`.

    Yields
    ------
    t : int
        Frame index.
    labels : (Y, X) or (Z, Y, X) uint32 ndarray
    """
    if params.get("locked"):
        raise ValueError("locked candidates are not supported in online mode; got locked=...")
    iterations = int(params.get("iterations", 10))
    halo = iterations if halo is None else int(halo)
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1 frame; got {chunk!r}")
    buf: list[np.ndarray] = []  # frames base .. base + len(buf) - 1
    base = 0
    start = 0  # next frame to emit

    def run(stop: int, hi: int):
        lo = max(0, start - halo)
        stack = np.stack(buf[lo - base : hi - base])
        w = Window(0, 0, start - lo, stop - lo, hi - lo)
        labels = hemd_window(stack, w, **params)
        return [(start + i, labels[i]) for i in range(stop - start)]

    n = 0
    for frame in frames:
        buf.append(np.asarray(frame))
        n += 1
        while n >= start + chunk + halo:
            stop = start + chunk
            yield from run(stop, min(n, stop + halo))
            start = stop
            drop = max(0, start - halo) - base
            if drop > 0:
                del buf[:drop]
                base += drop
    while start < n:
        stop = min(start + chunk, n)
        yield from run(stop, min(n, stop + halo))
        start = stop


def follow_zarr(
    path: str | os.PathLike,
    *,
    poll: float = 1.0,
    idle_timeout: float = 60.0,
    available: Callable[[object], int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[np.ndarray]:
    """Yield the frames of a zarr array that another process grows along axis 0.

    Feed it to :func:`hemd_online` to segment while a microscope writes.

    Parameters
    ----------
    path : path-like
        Zarr array, frames on axis 0.
    poll : float
        Seconds between checks for new frames.
    idle_timeout : float
        Stop after this many seconds without a new frame.
    available : callable, optional
        ``available(array) -> n``: how many frames are complete. Default: the count the writer
        publishes in ``array.attrs["frames_written"]`` (what :func:`hemd_follow` writes), else
        all frames but the last until the array stops growing: a writer that resizes before
        it writes (``zarr.Array.append`` does) has not written its last frame yet, which reads
        back as zeros (such frames were segmented as empty, silently). A frame is therefore
        segmented once the next one appears, the last one after ``idle_timeout`` seconds
        without growth.
    sleep : callable
        Waits ``poll`` seconds (tests pass a fake).

    Yields
    ------
    frame : (Y, X) or (Z, Y, X) ndarray
    """
    import zarr

    t, idle = 0, 0.0
    while True:
        z = zarr.open_array(str(path), mode="r")
        n, exact = _frames_complete(z, available)
        if t < n:
            for k in range(t, n):
                yield np.asarray(z[k])
            t, idle = n, 0.0
            continue
        if idle >= idle_timeout:
            if not exact:  # the writer stopped: its last frame is written
                for k in range(t, int(z.shape[0])):
                    yield np.asarray(z[k])
                t = max(t, int(z.shape[0]))
            log.info("follow_zarr: no new frame for %.0f s after %d frame(s); stopping", idle, t)
            return
        sleep(poll)
        idle += poll


def _frames_complete(z, available) -> tuple[int, bool]:
    """``(frames complete, exact)`` of a growing array (see :func:`follow_zarr`)."""
    if available is not None:
        return int(available(z)), True
    written = z.attrs.get("frames_written")
    if isinstance(written, int) and not isinstance(written, bool):
        return min(written, int(z.shape[0])), True
    return max(int(z.shape[0]) - 1, 0), False


def hemd_follow(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    chunk: int = 1,
    halo: int | None = None,
    poll: float = 1.0,
    idle_timeout: float = 60.0,
    overwrite: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str, int, int], None] | None = None,
    exclude_border: bool = False,
    **params,
) -> Path:
    """Online H-EMD from a growing zarr into a growing zarr (lag ``halo`` frames).

    Unlike :func:`hemd_stream` the output is written in place as frames are final, so viewers can
    follow it: ``output.attrs["frames_written"]`` counts the finished frames (pass
    ``available=lambda z: z.attrs.get("frames_written", 0)`` to :func:`follow_zarr` to chain).

    Parameters
    ----------
    source : path-like
        Zarr array that another process grows along axis 0.
    output : path-like
        ``*.zarr`` label store to create (uint32, chunks one frame).
    chunk, halo, **params
        See :func:`hemd_online`.
    poll, idle_timeout, sleep
        See :func:`follow_zarr`.
    overwrite : bool
        Replace an existing ``output``.
    progress : callable, optional
        ``progress("frames", done, done)`` after each frame.
    exclude_border : bool
        Remove the instances that touch the edge of their frame (or volume) before writing it.

    Returns
    -------
    Path
    """
    import zarr

    from napari_hemd._atomic import check_output_path

    output = check_output_path(output, overwrite=overwrite, inputs=[source])

    def checked(frames):  # a raw movie is refused at its first frame, as hemd_stream does
        from napari_hemd.core.validation import not_a_probability_map

        for i, frame in enumerate(frames):
            why = not_a_probability_map(np.asarray(frame)) if i == 0 else None
            if why:
                raise ValueError(
                    f"source {str(source)!r} does not look like a probability map ({why}). "
                    "Predict its probabilities first (napari-hemd predict ... -o PROB.zarr)"
                )
            yield frame

    frames = checked(follow_zarr(source, poll=poll, idle_timeout=idle_timeout, sleep=sleep))
    z = None
    for t, lab in hemd_online(frames, chunk=chunk, halo=halo, **params):
        if exclude_border:
            from napari_hemd.core.cells import clear_border_objects

            lab = clear_border_objects(lab)
        if z is None:
            # an existing output is replaced once the input gave its first labels (a refused
            # input, a typo, leaves it as it was)
            if output.exists():
                shutil.rmtree(output)
            z = zarr.create_array(
                str(output), shape=(0, *lab.shape), chunks=(1, *lab.shape), dtype=np.uint32
            )
            from napari_hemd._atomic import LABELS_KEY, marker_attrs

            extra = {"exclude_border": True} if exclude_border else {}
            # the mark goes in through ``z``: zarr rewrites the attributes from the copy it holds
            z.attrs.update(
                {
                    LABELS_KEY: True,
                    "method": "hemd",
                    "online": {"chunk": chunk},
                    **extra,
                    **_jsonable(params),
                    **marker_attrs(),
                }
            )
        z.resize((t + 1, *lab.shape))
        z[t] = lab
        z.attrs["frames_written"] = t + 1
        if progress:
            progress("frames", t + 1, t + 1)
    if z is None:
        raise ValueError(f"source {str(source)!r} gave no frame within {idle_timeout} s")
    return output
