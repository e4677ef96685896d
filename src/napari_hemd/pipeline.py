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

__all__ = [
    "default_prob_output",
    "open_input",
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


def open_input(path: str | os.PathLike):
    """A lazy, picklable array of a stack on disk (zarr array / OME-Zarr group, TIFF, folder, npy).

    Grey TIFF stacks are read frame by frame through tifffile's zarr interface
    (:func:`napari_hemd.io.tiff.tiff_frames`), everything else (colour or big-endian TIFFs
    too, converted) by :func:`napari_hemd.io.read_stack` with ``lazy=True``.
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
    return read_stack(path, lazy=True)


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
    **kwargs,
) -> Path:
    """A ``(T, Z, Y, X)`` time-lapse of stacks with a model, one stack in memory at a time.

    Each stack is segmented exactly as :func:`napari_hemd.image_segmentation.segment_image`
    segments it alone (a 3D model: three planes, H-EMD across its slices); where the stacks'
    objects are linked (the model's ``link``, e.g. ``nuclei-3d``) each stack is linked to the
    previous one as it is finished (:class:`napari_hemd.core.linking.FrameLinker`), so the
    labels equal the in-memory ``segment_image`` of the whole time-lapse. Memory: one stack's
    maps, forests and labels, whatever the number of time points.

    Written like :func:`napari_hemd.core.streaming.hemd_stream`: into a hidden sibling
    ``.NAME.partial`` (a zarr of chunks ``(1, 1, Y, X)``, the stacks done and the linking state
    recorded after each), renamed onto ``output`` when complete; a killed run restarted with the
    same arguments continues after the last finished stack and writes the same labels. The
    store's attributes record the run's parameters, ``model`` and, with linking, ``tracks``
    (``L B E P`` rows).

    Parameters
    ----------
    source : path-like or (T, Z, Y, X) array-like
        Raw stacks, time on axis 0 (a path is opened lazily with :func:`open_input`).
    output : path-like
        ``*.zarr`` label store to create.
    model : str, path-like or HemdModel
        As for ``segment_image``.
    method : str
        H-EMD or a baseline, as for ``segment_image``.
    overwrite, resume : bool
        Replace an existing ``output``; continue a partial run of the same arguments.
    progress : callable, optional
        ``progress("stacks", done, total)``.
    on_stack : callable, optional
        Called with each stack's index once it is recorded (tests use it to interrupt).
    **kwargs
        Options of ``segment_image`` (``tile``, ``tta``, ``scale``, ``planes``, ``z_scale``,
        ``exclude_border``, H-EMD parameters ...).

    Returns
    -------
    Path
        ``output``.
    """
    import hashlib
    import shutil

    import numpy as np
    import zarr

    from napari_hemd._atomic import check_output_path, output_lock
    from napari_hemd.core.linking import FrameLinker
    from napari_hemd.core.streaming import (
        _jsonable,
        _partial_path,
        _source_id,
        announce_resume,
        publish,
    )
    from napari_hemd.image_segmentation import segment_image
    from napari_hemd.models.prediction import _resolve_model
    from napari_hemd.models.streaming import _model_key

    output = _check_zarr_path(output, "output")
    src_path = source if isinstance(source, (str, os.PathLike)) else None
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
        n = int(data.shape[0])
        blob = json.dumps(
            {
                "shape": list(data.shape),
                "source": _source_id(data),
                # a model object in memory is never resumed: nothing proves it is the same one
                "model": list(_model_key(model))
                if isinstance(model, (str, os.PathLike))
                else os.urandom(8).hex(),
                "method": method,
                "kwargs": {k: kwargs[k] for k in sorted(kwargs)},
            },
            sort_keys=True,
            default=str,
        )
        sig = hashlib.sha256(blob.encode()).hexdigest()[:16]
        partial = _partial_path(output)
        store = partial / f"labels-{sig}.zarr"
        state_file = partial / "progress.json"
        done, linker, linked, params = 0, None, None, {}
        if resume and store.exists() and state_file.exists():
            try:
                state = json.loads(state_file.read_text())
                if state.get("signature") == sig:
                    done, linked = int(state["done"]), state["linked"]
                    params = dict(state["params"])
                    if linked:
                        prev = np.load(partial / state["prev"])
                        linker = FrameLinker.from_state(state["linker"], prev)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                log.warning("%s is damaged (%s): starting over", state_file, exc)
                done, linker, linked = 0, None, None
        if done == 0:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            zarr.create_array(
                str(store),
                shape=tuple(data.shape),
                chunks=(1, 1, *tuple(data.shape[2:])),
                dtype=np.uint32,
                fill_value=0,
            )
        else:
            announce_resume(output, "run", done, n, "stacks", done)
        z = zarr.open_array(str(store), mode="r+")
        for t in range(done, n):
            res = segment_image(np.asarray(data[t]), loaded, method, **kwargs)
            params = _jsonable(res.params)
            if linked is None:
                linked = bool(res.params.get("link"))
                linker = FrameLinker() if linked else None
            labels = linker.push(res.labels) if linked else res.labels
            z[t] = labels
            record = {"signature": sig, "done": t + 1, "linked": linked, "params": params}
            if linked:  # the raw labels of this stack, which the next one is linked to
                record["linker"], record["prev"] = linker.state(), f"prev-{t}.npy"
                np.save(partial / f"prev-{t}.npy", np.asarray(res.labels))
            tmp = partial / "progress.tmp"  # the record names its own stack's file: a kill
            tmp.write_text(json.dumps(record))  # between the two writes resumes consistently
            os.replace(tmp, state_file)
            (partial / f"prev-{t - 1}.npy").unlink(missing_ok=True)
            if progress:
                progress("stacks", t + 1, n)
            if on_stack:
                on_stack(t)
        attrs = {**params, "stack_by_stack": True}
        if isinstance(model, (str, os.PathLike)):
            attrs["model"] = str(model)
        if linked:
            attrs["link_time"] = True
            attrs["tracks"] = linker.tracks().tolist()
        z.attrs.update(attrs)
        return publish(store, output, partial)


def _check_zarr_path(path, name: str) -> Path:
    path = Path(path)
    if path.suffix != ".zarr":
        raise ValueError(f"{name} must be a .zarr store; got {str(path)!r}")
    return path


def _prediction_id(data, model) -> dict:
    """What a finished prediction must match to be reused: the input and the model file."""
    from napari_hemd.core.streaming import _source_id
    from napari_hemd.models.streaming import _model_key

    return {
        "model": str(model),
        "model_key": list(_model_key(model)),
        "source": _source_id(data),
        "shape": list(data.shape),
    }


#: Identity keys newer than some finished predictions, and the value those were made with.
_IDENT_DEFAULTS = {"tta": 1, "scale": 1.0}


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
        (:func:`stream_stacks`; no Dask, no ``prob_output``).
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
        Continue partial runs with the same arguments.
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
    from napari_hemd._atomic import check_output_path
    from napari_hemd.core.streaming import hemd_stream
    from napari_hemd.distributed import dask_client

    output = _check_zarr_path(output, "output")
    src_path = source if isinstance(source, (str, os.PathLike)) else None
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
    tried = None
    from napari_hemd._atomic import output_lock

    with output_lock(output):  # a second run on this output fails at once
        data = open_input(source) if isinstance(source, (str, os.PathLike)) else source
        if model is not None and len(data.shape) == 4:  # a time-lapse of stacks
            if workers is not None or scheduler is not None or prob_output_given:
                raise ValueError(
                    "a (T, Z, Y, X) time-lapse of stacks is segmented stack by stack in this "
                    "process (stream_stacks), its maps not kept: no workers, scheduler or "
                    "prob_output"
                )
            return stream_stacks(
                data, output, model, tile=tile, threads=threads, tta=tta, scale=scale,
                overwrite=overwrite, resume=resume, progress=progress, **params,
            )  # fmt: skip
        if model is not None and len(data.shape) != 3:
            raise ValueError(
                f"prediction needs (T, Y, X) raw frames or (T, Z, Y, X) stacks; source has shape "
                f"{tuple(data.shape)}"
            )
        if progress and (workers is not None or scheduler is not None):
            progress("cluster", 0, 0)
        grow, outputs = 0, ("foreground",)
        if model is not None:
            from napari_hemd.image_segmentation import whole_cell_growth, with_model_defaults
            from napari_hemd.models import load_model

            # whole cells, as segment --model: the U-Net's background map is predicted too
            loaded = load_model(model)
            from napari_hemd.image_segmentation import scaled_defaults
            from napari_hemd.models.prediction import _check_scale, _check_tta

            tta = _check_tta(tta, loaded)
            if scale == "auto":
                scale, tried = _auto_scale(loaded, data, tile, threads, progress)
            scale = _check_scale(scale, loaded)
            grow = whole_cell_growth(loaded, scale)
            if grow:
                outputs = ("foreground", "background")
            # the model's own defaults (min size ...), as segment --model applies them; linking
            # and 3D fragment removal are segment's, not the stream's
            defaults = {
                k: v
                for k, v in scaled_defaults(
                    loaded.metadata.get("segment_defaults", {}), scale
                ).items()
                if k not in ("link", "min_volume")
            }
            params = with_model_defaults(defaults, params)
        with dask_client(workers=workers, scheduler=scheduler) as client:
            if model is not None:
                # maps with flips never stand in for maps without, nor the other way round
                ident = {**_prediction_id(data, model), "outputs": outputs, "tta": tta}
                ident["scale"] = scale  # nor maps at another zoom
                ident = json.loads(json.dumps(ident))
                if _finished_prediction(prob_output, ident):
                    log.info("%s is a finished prediction by %s: reusing it", prob_output, model)
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
    return output


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
