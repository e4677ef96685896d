"""Large data end to end: (prediction ->) streaming H-EMD, zarr in -> zarr out, on one machine or Dask.

:func:`stream_segment` is the headless function behind ``napari-hemd stream`` and the *Large data*
dock widget; :func:`stream_workflow` is the same run as a generator of progress events (the widget
drives it in a ``thread_worker``; closing it cancels the run, which stays resumable).

Both stages are resumable and publish their output atomically: prediction writes
``prob_output`` (:func:`napari_hemd.models.predict_stream`, chunks of frames as tasks), H-EMD
reads it and writes ``output`` (:func:`napari_hemd.core.streaming.hemd_stream`, windows as
tasks). A rerun with the same arguments after a crash or a Cancel skips a finished prediction
(``prob_output`` exists and records the same model) and the finished windows.

Imports no Qt; torch only when ``model`` is given.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used: the CLI's --help stays quick
    import numpy as np

__all__ = [
    "default_prob_output",
    "link_stack",
    "link_stack_workflow",
    "open_input",
    "record_pixel_size",
    "stream_segment",
    "stream_size_advice",
    "stream_stacks",
    "stream_workflow",
]

log = logging.getLogger(__name__)


def default_prob_output(output: str | os.PathLike) -> Path:
    """Where predicted probabilities go by default: ``NAME.prob.zarr`` next to ``NAME.zarr``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.prob.zarr")


def open_input(path: str | os.PathLike, array: str | None = None):
    """A lazy, picklable array of a stack on disk (zarr array / OME-Zarr group, TIFF, folder, npy).

    Grey TIFF stacks are read frame by frame through tifffile's zarr interface
    (:func:`napari_hemd.io.tiff.tiff_frames`), everything else (colour or big-endian TIFFs
    too, converted) by :func:`napari_hemd.io.read_stack` with ``lazy=True``. ``array``: the
    array wanted from a zarr group of several (``"foreground"`` of a maps group).
    """
    from napari_hemd.io import read_stack

    path = Path(path).resolve()  # workers elsewhere do not share our working directory
    if path.suffix.lower() in (".tif", ".tiff"):
        from napari_hemd.io.tiff import tiff_frames

        if not Path(path).is_file():
            raise FileNotFoundError(f"input {str(path)!r} does not exist")
        frames = tiff_frames(path)  # None: colour or big-endian, read whole and converted
        if frames is not None:
            return frames
    return read_stack(path, lazy=True, array=array)


def stream_stacks(
    source,
    output: str | os.PathLike,
    model,
    *,
    method: str = "hemd",
    overwrite: bool = False,
    resume: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    on_stack: Callable[[int], None] | None = None,
    client=None,
    maps_group=None,
    **kwargs,
) -> Path:
    """A ``(T, Z, Y, X)`` time-lapse of stacks with a model, one stack in memory at a time.

    Each stack is segmented exactly as :func:`napari_hemd.image_segmentation.segment_image`
    segments it alone (a 3D model: three planes, H-EMD across its slices); where the stacks'
    objects are linked (the model's ``link``, e.g. ``nuclei-3d``) the stacks are then linked in
    time order (:class:`napari_hemd.core.linking.FrameLinker`), so the labels equal the
    in-memory ``segment_image`` of the whole time-lapse. Memory: one stack's maps, forests and
    labels per process, whatever the number of time points. With a Dask ``client`` the stacks
    are segmented as tasks on its workers, in parallel (each worker loads the model once); the
    linking, which needs the stacks in order and little time, runs here.

    Written like :func:`napari_hemd.core.streaming.hemd_stream`: into a hidden sibling
    ``.NAME.partial`` (each stack's own labels in a zarr of chunks ``(1, 1, Y, X)``, the stacks
    segmented and linked recorded as they finish), renamed onto ``output`` when complete; a
    killed run restarted with the same arguments continues with the stacks not yet done and
    writes the same labels. The store's attributes record the run's parameters, ``model`` and,
    with linking, ``tracks`` (``L B E P`` rows).

    Parameters
    ----------
    source : path-like or (T, Z, Y, X) array-like
        Raw stacks, time on axis 0 (a path is opened lazily with :func:`open_input`; with a
        client, an in-memory array is sent to the workers once).
    output : path-like
        ``*.zarr`` label store to create.
    model : str, path-like or HemdModel
        As for ``segment_image`` (with a client: a shipped name or a file the workers can read,
        or a model object, sent to them).
    method : str
        H-EMD or a baseline, as for ``segment_image``.
    overwrite, resume : bool
        Replace an existing ``output``; continue a partial run of the same arguments.
    progress : callable, optional
        ``progress("stacks", done, total)`` as stacks are segmented, then ``progress("link",
        done, total)`` as they are linked.
    on_stack : callable, optional
        Called with each stack's index once it is recorded (tests use it to interrupt).
    client : dask.distributed.Client, optional
        Segment the stacks as tasks on this client's workers (a shared filesystem holds the
        partial store). ``threads`` (torch threads per task) defaults to 1 there.
    maps_group : zarr.Group, optional
        ``source`` is the ``foreground`` of this group of maps that ``model`` predicted
        (``predict`` wrote it): nothing is predicted, each stack's maps are segmented as
        ``segment_image`` segments the model's own (:func:`napari_hemd.model_maps.model_maps_workflow`
        with the group's ``background``, ``scale`` and ``planes``); ``kwargs`` are then the
        method's parameters only.
    **kwargs
        Options of ``segment_image`` (``tile``, ``tta``, ``scale``, ``planes``, ``z_scale``,
        ``threads``, ``exclude_border``, H-EMD parameters ...).

    Returns
    -------
    Path
        ``output``.
    """
    import hashlib
    import shutil

    import numpy as np
    import zarr

    from napari_hemd._atomic import check_output_path, output_lock, restore_published
    from napari_hemd.core.linking import FrameLinker
    from napari_hemd.core.segment import check_params
    from napari_hemd.core.streaming import (
        _gather_as_completed,
        _partial_path,
        _source_id,
        absolute_zarr,
        announce_resume,
        dropped_unless_begun,
        publish,
    )
    from napari_hemd.models.prediction import _resolve_model
    from napari_hemd.models.streaming import _model_key

    check_params(**kwargs)  # before any prediction
    output = _check_zarr_path(output, "output")
    src_path = source if isinstance(source, (str, os.PathLike)) else None
    restore_published(output)  # a run killed while publishing: its old output first
    check_output_path(output, overwrite=overwrite, name="output", inputs=[src_path])
    with output_lock(output):
        data = open_input(source) if src_path is not None else source
        if len(data.shape) != 4:
            raise ValueError(
                f"source must be a (T, Z, Y, X) time-lapse of stacks; got shape {tuple(data.shape)}"
            )
        if isinstance(kwargs.get("scale"), str):
            raise ValueError(
                "scale='auto' is not available for a time-lapse of stacks: give a zoom"
            )
        loaded = _resolve_model(model)
        n, shape = int(data.shape[0]), tuple(int(v) for v in data.shape)
        blob = json.dumps(
            {
                "shape": list(shape),
                "source": _source_id(data),
                # a model object in memory is never resumed: nothing proves it is the same one
                "model": list(_model_key(model))
                if isinstance(model, (str, os.PathLike))
                else os.urandom(8).hex(),
                "method": method,
                "maps": maps_group is not None,
                "kwargs": {k: kwargs[k] for k in sorted(kwargs) if k != "threads"},
            },
            sort_keys=True,
            default=str,
        )
        sig = hashlib.sha256(blob.encode()).hexdigest()[:16]
        partial = _partial_path(output)
        raw = partial / f"stacks-{sig}.zarr"  # each stack's own labels
        state = _StacksState(partial / "progress.json", sig)
        if not (resume and raw.exists() and state.load()):
            state = _StacksState(partial / "progress.json", sig)
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            chunks = (1, 1, *shape[2:])
            zarr.create_array(str(raw), shape=shape, chunks=chunks, dtype=np.uint32, fill_value=0)
            state.save()
        elif state.segmented:
            announce_resume(output, "run", len(state.segmented), n, "stacks", state.first_todo(n))

        def finished(done: tuple[int, dict]) -> None:
            t, params = done
            state.segmented.add(int(t))
            state.params = params
            state.save()
            if progress:
                progress("stacks", len(state.segmented), n)
            if on_stack:
                on_stack(int(t))

        # a failure before any stack is done leaves no partial folder
        with dropped_unless_begun(partial, lambda: bool(state.segmented)):
            todo = [t for t in range(n) if t not in state.segmented]
            task, task_data = _segment_stack, data
            if maps_group is not None:  # the maps a model predicted: segmented, not predicted
                task, task_data = _segment_maps_stack, maps_group
            if client is None:
                for t in todo:
                    finished(task(loaded, task_data, t, str(raw), method, kwargs))
            else:
                # a zarr array or group opened by a relative path: the workers opened it in their
                # own working directory and read zeros (audit 32: empty labels, no error)
                task_data = absolute_zarr(task_data)
                task_model = model
                if not isinstance(model, (str, os.PathLike)):
                    task_model = client.scatter(loaded, broadcast=True)
                elif _model_key(model)[0] == "file":  # a remote worker's directory is not ours
                    task_model = str(Path(model).resolve())
                if isinstance(task_data, np.ndarray):  # (the stacks; a maps group is sent whole)
                    task_data = client.scatter(task_data, broadcast=True)
                task_kwargs = dict(kwargs)
                if maps_group is None:
                    task_kwargs["threads"] = kwargs.get("threads") or 1
                futures = [
                    client.submit(
                        task, task_model, task_data, t, str(raw.resolve()), method, task_kwargs,
                        pure=False,
                    )
                    for t in todo
                ]  # fmt: skip
                _gather_as_completed(client, futures, finished)
            params = dict(state.params)
            from napari_hemd._atomic import LABELS_KEY

            attrs = {**params, "stack_by_stack": True, LABELS_KEY: True}
            if isinstance(model, (str, os.PathLike)):
                attrs["model"] = str(model)
            store = raw
            if params.get("link"):  # the same object keeps its id over time: link in order
                store = partial / f"labels-{sig}.zarr"
                stacks = zarr.open_array(str(raw), mode="r")
                if state.linked == 0 or not store.exists():
                    zarr.create_array(
                        str(store), shape=shape, chunks=(1, 1, *shape[2:]), dtype=np.uint32,
                        fill_value=0,
                    )  # fmt: skip
                    state.linked, state.linker = 0, None
                z = zarr.open_array(str(store), mode="r+")
                linker = FrameLinker()
                if state.linked:
                    linker = FrameLinker.from_state(state.linker, stacks[state.linked - 1])
                for t in range(state.linked, n):
                    z[t] = linker.push(stacks[t])
                    state.linked, state.linker = t + 1, linker.state()
                    state.save()
                    if progress:
                        progress("link", t + 1, n)
                attrs["link_time"] = True
                attrs["tracks"] = linker.tracks().tolist()
            zarr.open_array(str(store), mode="r+").attrs.update(attrs)
            return publish(store, output, partial)


class _StacksState:
    """What a :func:`stream_stacks` run has done: stacks segmented, stacks linked (resumable).

    One JSON file, replaced atomically after each step by the process that drives the run.
    """

    def __init__(self, path: Path, signature: str) -> None:
        self.path, self.signature = path, signature
        self.segmented: set[int] = set()
        self.params: dict = {}
        self.linked = 0
        self.linker: dict | None = None

    def load(self) -> bool:
        """Read the record; False (and nothing read) if it is missing, damaged or another run's."""
        try:
            record = json.loads(self.path.read_text())
            if record.get("signature") != self.signature:
                return False
            self.segmented = {int(t) for t in record["segmented"]}
            self.params = dict(record["params"])
            self.linked, self.linker = int(record["linked"]), record.get("linker")
        except FileNotFoundError:
            return False
        except (ValueError, KeyError, TypeError, OSError) as exc:
            log.warning("%s is damaged (%s): starting over", self.path, exc)
            self.segmented, self.params, self.linked, self.linker = set(), {}, 0, None
            return False
        return True

    def save(self) -> None:
        record = {
            "signature": self.signature,
            "segmented": sorted(self.segmented),
            "params": self.params,
            "linked": self.linked,
            "linker": self.linker,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, default=str))
        os.replace(tmp, self.path)

    def first_todo(self, n: int) -> int:
        return next((t for t in range(n) if t not in self.segmented), n)


def _segment_stack(model, data, t: int, store: str, method: str, kwargs: dict):
    """Segment stack ``t`` alone and write its labels into ``store`` (one task of a run)."""
    import numpy as np
    import zarr

    from napari_hemd.core.streaming import _jsonable
    from napari_hemd.image_segmentation import segment_image

    if isinstance(model, (str, os.PathLike)):
        from napari_hemd.models.streaming import worker_model

        model = worker_model(model)
    res = segment_image(np.asarray(data[t]), model, method, **kwargs)
    zarr.open_array(store, mode="r+")[t] = res.labels
    return t, _jsonable(res.params)


def _segment_maps_stack(model, group, t: int, store: str, method: str, kwargs: dict):
    """Segment stack ``t`` of a group of maps ``model`` predicted; its labels into ``store``."""
    import zarr

    from napari_hemd.core.streaming import _jsonable
    from napari_hemd.model_maps import model_maps_workflow
    from napari_hemd.workflows import run_workflow

    if isinstance(model, (str, os.PathLike)):
        from napari_hemd.models.streaming import worker_model

        model = worker_model(model)
    maps = {k: group[k][t] for k in ("foreground", "background") if k in group}
    attrs = group.attrs
    res = run_workflow(
        model_maps_workflow(
            maps,
            model,
            method,
            scale=float(attrs.get("scale") or 1.0),
            planes=int(attrs.get("planes") or 1),
            name=str(attrs["model"]),
            **kwargs,
        )
    )
    zarr.open_array(store, mode="r+")[t] = res.labels
    return t, _jsonable(res.params)


def _check_zarr_path(path, name: str) -> Path:
    path = Path(path)
    if path.suffix != ".zarr":
        raise ValueError(f"{name} must be a .zarr store; got {str(path)!r}")
    return path


def _prediction_id(data, model) -> dict:
    """What a finished prediction must match to be reused: the input and the model file.

    The input's identity (:func:`napari_hemd.core.streaming._source_id`) holds its location
    with the size and modification time of its files, and a sample of its content.
    """
    from napari_hemd.core.streaming import _source_id
    from napari_hemd.models.streaming import _model_key

    return {
        "model": str(model),
        "model_key": list(_model_key(model)),
        "source": _source_id(data),
        "shape": list(data.shape),
    }


#: Identity keys newer than some finished predictions, and the value those were made with.
_IDENT_DEFAULTS = {"tta": 1, "scale": 1.0, "tile": None}


def _finished_prediction(prob_output: Path, ident: dict) -> bool:
    """Whether ``prob_output`` is a finished prediction of this input, model and flips."""
    attrs = prob_output / "zarr.json"
    if not attrs.is_file():
        return False
    try:
        meta = json.loads(attrs.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return "predicted" in meta and all(
        meta.get(k, _IDENT_DEFAULTS.get(k)) == v for k, v in ident.items()
    )


def stream_segment(
    source,
    output: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    prob_output: str | os.PathLike | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk: int = 16,
    halo: int | None = None,
    predict_chunk: int = 8,
    tile: int | None = None,
    threads: int | None = None,
    tta: int | None = None,
    scale: float | str | None = None,
    overwrite: bool = False,
    resume: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    **params,
) -> Path:
    """Segment a long time-lapse with bounded memory; optionally predict its probabilities first.

    Parameters
    ----------
    source : path-like or (T, Y, X) / (T, Z, Y, X) array-like
        Probabilities (``model=None``) or raw frames (``model`` given), time on axis 0. A path is
        opened lazily with :func:`open_input`.
    output : path-like
        ``*.zarr`` label store (uint32, chunks of one frame).
    model : str or path-like, optional
        Shipped model name or model file: predict foreground probabilities first. A raw
        ``(T, Z, Y, X)`` time-lapse of stacks is segmented stack by stack instead
        (:func:`stream_stacks`; stacks as Dask tasks with ``workers`` / ``scheduler``; no
        ``prob_output``).
    prob_output : path-like, optional
        ``*.zarr`` group for the predictions (array ``foreground``); default
        :func:`default_prob_output`. Kept after the run (a rerun reuses it).
    workers : int, optional
        Run on a local Dask cluster of this many processes (127.0.0.1).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); excludes ``workers``.
    chunk, halo : int
        H-EMD frames kept per window and halo; see :func:`napari_hemd.core.streaming.hemd_stream`.
    predict_chunk, tile, threads, tta, scale
        Frames per prediction task, tile side, torch threads per task, test-time flips, zoom of
        the frames before the network; see :func:`napari_hemd.models.predict_stream`
        (``tta`` default: the model's own, :func:`napari_hemd.models.prediction.model_tta`).
        ``scale="auto"``: found first on 3 frames as ``segment_image(scale="auto")`` finds it
        (:func:`napari_hemd.image_segmentation.choose_scale_workflow`; progress stage
        ``"zoom"``). Default (None): the model's own zoom, 1 but for a model trained or
        fine-tuned at another (:func:`napari_hemd.models.prediction.model_scale`). With a model
        the labels' attributes record ``model``, the ``scale`` and ``tta`` used (and
        ``scale_tried`` with auto).
    overwrite : bool
        Replace an existing ``output`` (and a ``prob_output`` that is not a finished prediction of
        this input by this model; such a one is reused).
    resume : bool
        Continue partial runs with the same arguments, and reuse a finished ``prob_output`` of
        the same input (file size and modification time too), model, flips and zoom (said as a
        warning). False: predict again (an existing ``prob_output`` then needs ``overwrite``).
    progress : callable, optional
        ``progress(stage, done, total)`` with stages ``"cluster"`` (0, 0 while it starts),
        ``"predict"`` (chunks) and ``"windows"``. Raising from it stops the run.
    **params
        H-EMD parameters (``tau``, ``delta``, ``iterations``, ...); see
        :func:`napari_hemd.core.streaming.hemd_window`.

    Returns
    -------
    Path
        ``output``.
    """
    from napari_hemd._atomic import check_output_path, restore_published
    from napari_hemd.core.segment import check_params
    from napari_hemd.core.streaming import check_window_keywords, hemd_stream
    from napari_hemd.distributed import dask_client
    from napari_hemd.image_segmentation import image_keywords

    # a typo first, before the input is opened or looked at (a time-lapse of stacks takes
    # segment_image's keywords, the windows H-EMD's, whole-cell growth and the border)
    check_window_keywords(params, extra=image_keywords())
    check_params(**params)  # before any prediction or window
    output = _check_zarr_path(output, "output")
    src_path = source if isinstance(source, (str, os.PathLike)) else None
    restore_published(output)  # a run killed while publishing: its old output first
    check_output_path(output, overwrite=overwrite, name="output", inputs=[src_path])
    prob_output_given = prob_output is not None
    if model is not None:
        prob_output = _check_zarr_path(
            prob_output if prob_output is not None else default_prob_output(output), "prob_output"
        )
        if prob_output.resolve() == output.resolve():
            raise ValueError(f"prob_output and output must differ; both are {str(output)!r}")
    elif prob_output is not None:
        raise ValueError("prob_output is only used with a model; got model=None")
    elif tta not in (None, 1):
        raise ValueError(f"tta is only used with a model; got tta={tta!r} and model=None")
    elif scale not in (None, 1):
        raise ValueError(f"scale is only used with a model; got scale={scale!r} and model=None")
    tried, made_by = None, None
    from napari_hemd._atomic import output_lock

    with output_lock(output):  # a second run on this output fails at once
        if isinstance(source, (str, os.PathLike)):  # maps: H-EMD takes a group's foreground
            data = open_input(source, array=None if model is not None else "foreground")
        else:
            data = source
        if model is None:
            from napari_hemd.core.validation import not_a_probability_map

            if len(data.shape) not in (3, 4):  # before its values are read (one 2D image)
                raise ValueError(
                    "source must be a (T, Y, X) or (T, Z, Y, X) array with time on axis 0; got "
                    f"shape {tuple(data.shape)} (one 2D image: napari-hemd segment)"
                )
            why = not_a_probability_map(data)
            if why:
                name = f"source {str(src_path)!r}" if src_path is not None else "source"
                raise ValueError(
                    f"{name} does not look like a probability map ({why}). For a raw movie give "
                    "a model (CLI: --model NAME; napari-hemd models lists them)"
                )
        if model is None and len(data.shape) == 4 and not {"grow", "background"} & set(params):
            found = _model_maps_group(data)  # a model's (T, Z, Y, X) maps: stack by stack
            if found is not None:
                group, loaded = found
                log.warning(
                    "maps of %s: segmented stack by stack as with the model", group.attrs["model"]
                )
                if progress and (workers is not None or scheduler is not None):
                    progress("cluster", 0, 0)
                with dask_client(workers=workers, scheduler=scheduler) as client:
                    return record_pixel_size(stream_stacks(
                        data, output, group.attrs["model"], overwrite=overwrite, resume=resume,
                        progress=progress, client=client, maps_group=group, **params,
                    ), src_path)  # fmt: skip
        if model is None and len(data.shape) == 3 and not {"grow", "background"} & set(params):
            # maps predict wrote: as --model segments them, recorded as made by that model
            params, made_by = _as_model_maps(data, params)
        if model is not None and len(data.shape) == 4:  # a time-lapse of stacks
            if prob_output_given:
                raise ValueError(
                    "a (T, Z, Y, X) time-lapse of stacks is segmented stack by stack "
                    "(stream_stacks), its maps not kept: no prob_output"
                )
            if progress and (workers is not None or scheduler is not None):
                progress("cluster", 0, 0)
            with dask_client(workers=workers, scheduler=scheduler) as client:
                return record_pixel_size(stream_stacks(
                    data, output, model, tile=tile, threads=threads, tta=tta, scale=scale,
                    overwrite=overwrite, resume=resume, progress=progress, client=client,
                    **params,
                ), src_path)  # fmt: skip
        if model is not None and len(data.shape) != 3:
            raise ValueError(
                f"prediction needs (T, Y, X) raw frames or (T, Z, Y, X) stacks; source has shape "
                f"{tuple(data.shape)}"
            )
        if progress and (workers is not None or scheduler is not None):
            progress("cluster", 0, 0)
        grow, outputs = 0, ("foreground",)
        if model is not None:
            from napari_hemd.models import load_model

            # whole cells, as segment --model: the U-Net's background map is predicted too
            loaded = load_model(model)
            from napari_hemd.models.prediction import _check_scale, _check_tta

            tta = _check_tta(tta, loaded)
            if scale == "auto":
                scale, tried = _auto_scale(loaded, data, tile, threads, progress)
            scale = _check_scale(scale, loaded)
            params, grow = _stream_model_params(loaded, scale, params)
            if grow:
                outputs = ("foreground", "background")
        with dask_client(workers=workers, scheduler=scheduler) as client:
            if model is not None:
                # maps with flips never stand in for maps without, nor the other way round
                ident = {**_prediction_id(data, model), "outputs": outputs, "tta": tta}
                ident["scale"] = scale  # nor maps at another zoom, or with other tiles
                ident["tile"] = tile
                ident = json.loads(json.dumps(ident))
                if resume and _finished_prediction(prob_output, ident):
                    log.warning(  # said always: the labels come from maps made before
                        "%s: reusing its finished prediction of this input by %s (same file, "
                        "flips, zoom and tiles); resume=False (CLI: --no-resume) predicts again",
                        prob_output,
                        model,
                    )
                else:
                    from napari_hemd.models.streaming import predict_stream

                    predict_stream(
                        model,
                        data,
                        prob_output,
                        outputs=outputs,
                        chunk=predict_chunk,
                        tile=tile,
                        tta=tta,
                        scale=scale,
                        threads=threads,
                        client=client,
                        overwrite=overwrite,
                        resume=resume,
                        progress=progress,
                        metadata=ident,
                    )
                import zarr

                group = zarr.open_group(str(prob_output), mode="r")
                data = group["foreground"]
                if grow:
                    params = {**params, "background": group["background"], "grow": grow}
            hemd_stream(
                data,
                output,
                chunk=chunk,
                halo=halo,
                overwrite=overwrite,
                resume=resume,
                client=client,
                progress=progress,
                **params,
            )
        if model is not None:  # which model and zoom made these labels
            import zarr

            extra = {"scale_tried": tried} if tried is not None else {}
            z = zarr.open_array(str(output), mode="r+")
            z.attrs.update({"model": str(model), "scale": scale, "tta": tta, **extra})
        elif made_by is not None:  # a model's maps: the same record, from their attributes
            import zarr

            z = zarr.open_array(str(output), mode="r+")
            z.attrs.update(json.loads(json.dumps(made_by, default=str)))
        record_pixel_size(output, src_path)
    return output


def record_pixel_size(output: str | os.PathLike, source) -> Path:
    """A pixel size into the labels' attributes (``read_pixel_size`` finds it there).

    ``source``: a path, whose recorded size (Fiji's, the microscope's) is taken, or a
    ``PixelSize`` (a layer's); None: nothing recorded. Returns ``output``.
    """
    from napari_hemd.io.calibration import PIXEL_SIZE_KEY, PixelSize, read_pixel_size

    size = source if source is None or isinstance(source, PixelSize) else read_pixel_size(source)
    if size is not None:
        import zarr

        zarr.open_array(str(output), mode="r+").attrs[PIXEL_SIZE_KEY] = size.to_json()
    return Path(output)


def _stream_model_params(loaded, scale: float, params: dict) -> tuple[dict, int]:
    """``params`` over a model's own defaults at ``scale``, and its whole-cell growth.

    As segment --model applies them (min size ...); linking and 3D fragment removal are
    segment's, not the stream's.
    """
    from napari_hemd.image_segmentation import (
        scaled_defaults,
        whole_cell_growth,
        with_model_defaults,
    )

    defaults = scaled_defaults(loaded.metadata.get("segment_defaults", {}), scale)
    defaults = {k: v for k, v in defaults.items() if k not in ("link", "min_volume")}
    return with_model_defaults(defaults, params), whole_cell_growth(loaded, scale)


def _model_maps_group(data):
    """``(group, model)``: the group of maps ``data`` belongs to and the model that predicted them.

    None for anything else, or when that model cannot be loaded (said: plain maps then).
    """
    from napari_hemd.io.stacks import maps_group

    group = maps_group(data)
    if group is None:  # plain maps: no model, no torch needed (an install without [torch])
        return None
    from napari_hemd.models import load_model

    name = group.attrs["model"]
    try:
        return group, load_model(name)
    except Exception as e:
        log.warning("maps of %s, which cannot be loaded (%s): segmented as plain maps", name, e)
        return None


def _as_model_maps(data, params: dict) -> tuple[dict, dict | None]:
    """H-EMD ``params`` for maps a model predicted, as :func:`stream_segment` with that model.

    ``data`` the ``foreground`` of a maps group whose attributes name the model
    (:func:`napari_hemd.io.stacks.maps_group`): the model's defaults (``params`` given win) and
    its whole-cell growth into the group's ``background``, with what the labels record of the
    maps (model, zoom, flips) as :func:`stream_segment` with the model records it. Anything
    else: ``params`` as they are, and None.
    """
    found = _model_maps_group(data)
    if found is None:
        return params, None
    group, loaded = found
    name = group.attrs["model"]
    if group.attrs.get("planes") == 3 and not group.attrs.get("stacks"):
        # one stack's maps, from three planes: streamed as a movie of slices (audit 32: exit
        # 0, 6 objects where segment finds 8), as the stack itself with the model is refused
        raise ValueError(
            f"source holds the maps {name}, a 3D model, predicted of one (Z, Y, X) stack from "
            "three planes: napari-hemd segment (napari_hemd.segment) segments them as one "
            "volume, linked across its slices; stream takes (T, Y, X) movies and (T, Z, Y, X) "
            "time-lapses of stacks"
        )
    params, grow = _stream_model_params(loaded, float(group.attrs.get("scale") or 1.0), params)
    if grow and "background" in group:
        params = {**params, "background": group["background"], "grow": grow}
        log.warning("maps of %s: segmented as with the model (whole cells, its defaults)", name)
    elif grow:
        log.warning(
            "maps of %s hold no background map: instances not grown to whole cells (predict "
            "with --outputs foreground,background)", name,
        )  # fmt: skip
    made_by = {
        "model": name,
        "scale": float(group.attrs.get("scale") or 1.0),  # predict records a zoom other than 1
        "tta": int(group.attrs.get("tta") or 1),
    }
    return params, made_by


def _auto_scale(model, data, tile, threads, progress) -> tuple[float, list[float]]:
    """``scale="auto"`` of :func:`stream_segment`: the zoom found on a few of ``data``'s frames."""
    from napari_hemd.image_segmentation import choose_scale_workflow
    from napari_hemd.workflows import run_workflow

    gen = choose_scale_workflow(model, data, tile=tile, threads=threads)
    found, tried = run_workflow(gen, progress)
    log.info("scale auto: zoom %g (tried %s)", found, tried)
    return found, tried


def stream_size_advice(model, output, scale: float | None = None) -> str | None:
    """The size advice of ``segment --model`` for a finished :func:`stream_segment` output.

    :func:`napari_hemd.image_segmentation.size_advice` on 5 evenly spaced frames of the labels
    zarr ``output`` (only those are read), segmented with ``model`` (a name, file or loaded
    model) at zoom ``scale`` (None: the zoom the output records, 1 if none): a sentence naming
    the zoom that suits the objects found, or None.
    """
    import zarr

    from napari_hemd.image_segmentation import size_advice
    from napari_hemd.models import HemdModel, load_model

    labels = zarr.open_array(str(output), mode="r")
    if labels.attrs.get("stack_by_stack"):  # stacks, as segment_image gives no advice for them
        return None
    loaded = model if isinstance(model, HemdModel) else load_model(model)
    if scale is None:
        scale = float(labels.attrs.get("scale", 1.0))
    return size_advice(loaded, labels, scale)


def stream_workflow(source, output, **kwargs) -> Generator[tuple[str, int, int], None, Path]:
    """:func:`stream_segment` as a workflow: yields ``(stage, done, total)``, returns ``output``.

    Closing the generator stops the run at its next progress report (a finished chunk or window;
    pending Dask tasks are cancelled, a local cluster is shut down); rerunning resumes.
    """
    from napari_hemd.workflows import _drive

    return (yield from _drive(stream_segment, source, output, **kwargs))


def link_stack(
    labels,
    output: str | os.PathLike,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    **kwargs,
) -> tuple[Path, np.ndarray]:
    """Link a label movie over time and write it with its tracks (see :func:`link_stack_workflow`).

    ``progress("link", t, n)`` after each frame. Returns ``(output, tracks)``.
    """
    from napari_hemd.workflows import run_workflow

    return run_workflow(link_stack_workflow(labels, output, **kwargs), progress)


def link_stack_workflow(
    labels,
    output: str | os.PathLike,
    *,
    delta: float = 0.5,
    overwrite: bool = False,
    first_frame: int = 0,
    metadata: dict | None = None,
    pixel_size=None,
    time_step: tuple[float, str | None] | None = None,
) -> Generator[tuple[str, int, int], None, tuple[Path, np.ndarray]]:
    """Link a label movie over time, two frames in memory at a time, and write it with its tracks.

    The same cell gets the same id in every frame, divisions are found
    (:class:`napari_hemd.core.linking.FrameLinker`, what ``link_labels`` does in memory), and
    the result is written to ``output`` as :func:`napari_hemd.io.write_labels` writes labels:
    a CTC result folder (``res_track.txt`` the lineage), a ``.zarr`` (the lineage in its
    attributes' ``tracks``, as ``stream`` writes linked stacks) or a ``.tif``. For a movie
    ``stream`` segmented (each window's ids its own): ``napari-hemd link labels.zarr -o res/``.

    Parameters
    ----------
    labels : (T, Y, X) or (T, Z, Y, X) integer array-like
        Instance labels per frame (numpy, zarr, a lazy TIFF: read a frame at a time).
    output : path-like
        Where to write (``.zarr``, ``.tif``, or a folder without suffix: a CTC result).
    delta : float
        Size-change tolerance of the matching between consecutive frames.
    first_frame : int
        The movie's number of ``labels[0]`` (a CTC folder's masks are numbered from it).
    metadata : dict, optional
        Stored with the labels (as by ``write_labels``).
    pixel_size : napari_hemd.io.calibration.PixelSize, optional
        The labels' pixel size (the input's), written with them as ``write_labels`` does.
    time_step : (float, str or None), optional
        The frame interval and its unit, for an OME-Zarr ``output`` (``write_labels``).

    Yields ``("link", t, n)`` after each frame; returns ``(output, tracks)``: the CTC lineage
    (``L B E P`` rows) written with it.
    """
    import tempfile

    import numpy as np
    import zarr

    from napari_hemd.core.linking import FrameLinker
    from napari_hemd.core.validation import check_label_ids, not_instance_labels
    from napari_hemd.io import write_labels
    from napari_hemd.io.stacks import check_labels_path

    shape = tuple(labels.shape)
    if len(shape) not in (3, 4) or shape[0] < 1:
        raise ValueError(
            f"labels must be a (T, Y, X) or (T, Z, Y, X) movie, frames on axis 0; got shape {shape}"
        )
    if not float(delta) > 0:
        raise ValueError(f"delta must be > 0; got {delta!r}")
    why = not_instance_labels(labels)
    if why:
        raise ValueError(
            f"labels does not look like instance labels: {why}. Give a segmentation's labels, "
            "not the raw movie or its probability"
        )
    output = Path(output)
    check_labels_path(output)
    from napari_hemd._atomic import check_output_path

    check_output_path(output, overwrite=overwrite)  # refused before any work
    linker = FrameLinker(delta=delta)
    with tempfile.TemporaryDirectory(prefix=".link-", dir=output.parent) as tmp:
        linked = zarr.create_array(
            str(Path(tmp) / "linked.zarr"), shape=shape, chunks=(1, *shape[1:]), dtype=np.uint32,
            fill_value=0,
        )  # fmt: skip
        for t in range(shape[0]):
            frame = np.asarray(labels[t])
            if not np.issubdtype(frame.dtype, np.integer) and frame.dtype != bool:
                raise TypeError(
                    f"labels must be integer instance labels; got dtype {frame.dtype} (frame {t})"
                )
            check_label_ids(frame, t)  # a negative id failed inside numpy, naming nothing
            linked[t] = linker.push(frame)
            yield ("link", t + 1, shape[0])
        tracks = linker.tracks()
        meta = {**(metadata or {}), "link_time": True}
        out = write_labels(
            linked, output, overwrite=overwrite, tracks=tracks, metadata=meta,
            first_frame=first_frame, pixel_size=pixel_size, time_step=time_step,
        )  # fmt: skip
    return out, tracks
