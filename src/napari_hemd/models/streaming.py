"""Out-of-core prediction: chunks of frames as (Dask) tasks, zarr out, resumable.

:func:`predict_stream` cuts a ``(T, Y, X)`` image into chunks of frames. Each chunk is one task:
it reads its frames one at a time, predicts them with :func:`~napari_hemd.models.iter_predict` and
writes them into a hidden partial zarr group (one array per output, chunks of one frame, so tasks
never write the same chunk). A ``progress.json`` next to it records finished chunks (atomic
replace); a killed run restarted with the same arguments skips them, and the group is renamed onto
the output only when every chunk is done.

On a Dask cluster the model is loaded **once per worker process** (:func:`worker_model` caches it
by name or by file path, size and modification time) and every task runs torch with ``threads``
intra-op threads (default 1), so ``N`` single-threaded workers on ``N`` cores do not oversubscribe
them. Frames are predicted independently (tiles of one chunk are batched together, which does not
change the numbers), so the output equals the single-process prediction with the same torch
thread count bit for bit; other thread counts differ by float rounding only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_hemd.core.streaming import (
    _FrameRange,
    _partial_path,
    _Progress,
    _source_id,
    absolute_zarr,
    announce_resume,
    dropped_unless_begun,
)
from napari_hemd.models.affinity import make_offsets
from napari_hemd.models.prediction import (
    _check_outputs,
    _check_scale,
    _check_tta,
    _resolve_model,
    iter_predict,
    model_scale,
    tta_recorded,
)
from napari_hemd.models.weights import HemdModel

__all__ = ["predict_stream", "worker_model"]

log = logging.getLogger(__name__)

_CACHE: dict[tuple, HemdModel] = {}
_CACHE_LOCK = threading.Lock()
#: In this process: models loaded by :func:`worker_model`, chunks predicted, and the torch threads
#: the last chunk ran with (``client.run`` reads them on the workers: tests, diagnostics).
STATS = {"loads": 0, "chunks": 0, "threads": None}


def _model_key(spec: str | os.PathLike) -> tuple:
    from napari_hemd.models.registry import SHIPPED_MODELS

    if str(spec) in SHIPPED_MODELS:
        return ("shipped", str(spec))
    path = Path(spec).resolve()
    st = path.stat()  # a retrained file at the same path is a different model
    return ("file", str(path), st.st_size, st.st_mtime_ns)


def worker_model(spec: str | os.PathLike) -> HemdModel:
    """The model ``spec`` (shipped name or file), loaded once per process and then reused.

    Parameters
    ----------
    spec : str or path-like
        A shipped model name or a model file readable in this process.
    """
    from napari_hemd.models.registry import load_model

    key = _model_key(spec)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_model(spec)
            _CACHE[key].network.eval()
            STATS["loads"] += 1
            log.info("loaded model %s in process %d", spec, os.getpid())
        return _CACHE[key]


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    if int(n) < 1:
        raise ValueError(f"threads must be >= 1; got {n}")
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _output_specs(
    model: HemdModel, frame_shape: tuple[int, int], outputs: Sequence[str], options: dict
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-frame shape and dtype of each output (see :data:`napari_hemd.models.OUTPUTS`)."""
    specs = {}
    for name in outputs:
        if name == "affinities":
            offsets = make_offsets(
                options.get("ranges") or model.metadata.get("ranges", (1, 3, 5, 9, 27)),
                options.get("neighbourhood") or model.metadata.get("neighbourhood", 4),
            )
            specs[name] = ((len(offsets), *frame_shape), "float32")
        elif name == "embeddings":
            dim = int(model.metadata.get("architecture", {}).get("embedding_dim", 16))
            specs[name] = ((dim, *frame_shape), "float32")
        elif name == "instances":
            specs[name] = (frame_shape, "int32")
        else:
            specs[name] = (frame_shape, "float32")
    return specs


def _predict_chunk(
    model, image, index: int, start: int, stop: int, store: str, outputs, options, threads
) -> int:
    """Predict frames ``start .. stop - 1`` and write them into the partial group (one task)."""
    import zarr

    if isinstance(model, (str, os.PathLike)):
        model = worker_model(model)
    group = zarr.open_group(store, mode="r+")
    arrays = {name: group[name] for name in outputs}
    meta = Path(store) / "zarr.json"
    with _torch_threads(threads):
        STATS["chunks"] += 1
        STATS["threads"] = torch.get_num_threads()
        for t, res in iter_predict(
            model, _FrameRange(image, start, stop), outputs=outputs, **options
        ):
            if not meta.exists():  # the run gave this store up (stopped before any chunk
                return index  # was done: removed): writing would make stray chunk files
            for name, arr in res.items():
                z = arrays[name]
                if arr.shape != z.shape[1:]:
                    raise ValueError(
                        f"output {name!r} of frame {start + t} has shape {arr.shape}; the store "
                        f"expects {z.shape[1:]}"
                    )
                z[start + t] = arr
    return index


def _signature(image, model, outputs, options: dict, chunk: int) -> str:
    if isinstance(model, HemdModel):
        h = hashlib.sha256()
        for k, v in sorted(model.network.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
        model_id = ["object", h.hexdigest()]
    else:
        model_id = list(_model_key(model))
    blob = json.dumps(
        {
            "shape": list(image.shape),
            "dtype": str(image.dtype),
            "source": _source_id(image),
            "model": model_id,
            "outputs": list(outputs),
            "options": options,
            "chunk": chunk,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def predict_stream(
    model: HemdModel | str | os.PathLike,
    image,
    output: str | os.PathLike,
    *,
    outputs: Sequence[str] = ("foreground",),
    chunk: int = 8,
    tile: int | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
    ranges: Sequence[int] | None = None,
    neighbourhood: int | None = None,
    min_size: int = 30,
    threshold: float = 0.5,
    tta: int | None = None,
    scale: float | None = None,
    threads: int | None = None,
    client=None,
    overwrite: bool = False,
    resume: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    on_chunk: Callable[[int], None] | None = None,
    metadata: dict | None = None,
) -> Path:
    """Predict a time-lapse chunk by chunk into a zarr group; resumable; Dask tasks with a client.

    Parameters
    ----------
    model : HemdModel, str or path-like
        A shipped model name or a model file (with a ``client``: readable by the workers, which
        load it once each), or a model object (sent to every worker once).
    image : (T, Y, X) array-like
        Raw intensities, time on axis 0; numpy, zarr, dask or
        :class:`napari_hemd.io.tiff.TiffFrames`. Only one frame is read at a time. With a
        ``client`` a numpy array is scattered to the workers once; anything else must pickle
        cheaply and be readable there (a zarr array on shared storage).
    output : path-like
        ``*.zarr`` group to create: one ``(T, ...)`` array per output, chunks of one frame.
    outputs : sequence of str
        Subset of :data:`napari_hemd.models.OUTPUTS`.
    chunk : int
        Frames per task (>= 1).
    tile, halo, batch_size, ranges, neighbourhood, min_size, threshold, tta, scale
        See :func:`napari_hemd.models.predict`.
    threads : int, optional
        torch intra-op threads while a task runs. Default: 1 with a ``client`` (one per worker
        thread); unchanged without.
    client : dask.distributed.Client, optional
        Run the chunks as Dask tasks on this client.
    overwrite : bool
        Replace an existing ``output``.
    resume : bool
        Continue a previous partial run with the same signature (else start over).
    progress : callable, optional
        ``progress("predict", chunks_done, chunks_total)``; raising from it stops the run
        (pending tasks are cancelled; finished chunks stay recorded for a resume).
    on_chunk : callable, optional
        Called with the chunk index after it is recorded as complete.
    metadata : dict, optional
        JSON-able attributes stored on the output group.

    Returns
    -------
    Path
        ``output``.
    """
    import zarr

    from napari_hemd._atomic import check_output_path, restore_published

    restore_published(output)  # a run killed while publishing: its old output first
    output = check_output_path(output, overwrite=overwrite)
    if not hasattr(image, "shape") or len(image.shape) != 3:
        raise ValueError(
            "image must be a (T, Y, X) array with time on axis 0; got shape "
            f"{getattr(image, 'shape', None)}"
        )
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1 frame; got {chunk!r}")
    chunk = int(chunk)
    loaded = _resolve_model(model)  # validates the name / file here, not on a worker
    outputs = _check_outputs(loaded, outputs)
    options = dict(
        tile=tile,
        halo=halo,
        batch_size=batch_size,
        ranges=list(ranges) if ranges else None,
        neighbourhood=neighbourhood,
        min_size=min_size,
        threshold=threshold,
    )
    # only then: runs without flips keep their signature; a model used with other flips than
    # its own (None: its own, resolved here) hands the workers those flips
    tta = _check_tta(tta, loaded)
    if tta_recorded(tta, loaded):
        options["tta"] = tta
    # likewise (None: the model's own zoom, resolved here); a model used at another zoom than
    # its own hands the workers that zoom
    scale = _check_scale(scale, loaded)
    if scale != 1.0 or model_scale(loaded) != 1.0:
        options["scale"] = scale
    n = int(image.shape[0])
    if n == 0 or 0 in tuple(image.shape):
        raise ValueError(f"image is empty (shape {tuple(image.shape)}): no frame to predict")
    starts = list(range(0, n, chunk))
    partial = _partial_path(output)
    sig = _signature(image, model, outputs, options, chunk)
    store = partial / f"predictions-{sig}.zarr"  # see hemd_stream: stale tasks write elsewhere
    prog = _Progress(partial / "progress.json", sig)
    if not (resume and prog.load() and store.exists()):
        prog.done = set()
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        group = zarr.open_group(str(store), mode="w")
        for name, (shape, dtype) in _output_specs(
            loaded, tuple(image.shape[1:]), outputs, options
        ).items():
            group.create_array(
                name, shape=(n, *shape), chunks=(1, *shape), dtype=dtype, fill_value=0
            )
        prog.mark(-1)
    # a failure before any chunk is done (a crash on the first) leaves no partial folder
    with dropped_unless_begun(partial, lambda: bool(prog.done - {-1})):
        todo = [i for i in range(len(starts)) if i not in prog.done]
        if len(todo) < len(starts):
            first = starts[min(todo)] if todo else n
            announce_resume(
                output, "prediction", len(starts) - len(todo), len(starts), "chunks", first
            )

        def finished(index: int) -> None:
            prog.mark(index)
            if progress:
                progress("predict", len(prog.done - {-1}), len(starts))
            if on_chunk:
                on_chunk(index)

        args = (str(store), outputs, options)
        if client is None:
            for i in todo:
                finished(
                    _predict_chunk(
                        loaded, image, i, starts[i], min(starts[i] + chunk, n), *args, threads
                    )
                )
        else:
            from napari_hemd.core.streaming import _gather_as_completed

            threads = 1 if threads is None else threads
            # absolute paths: a remote worker's working directory is not ours
            args = (str(store.resolve()), outputs, options)
            task_model = model
            if isinstance(model, HemdModel):
                task_model = client.scatter(model, broadcast=True)
            elif _model_key(model)[0] == "file":
                task_model = str(Path(model).resolve())
            image = absolute_zarr(image)  # the workers' working directory is not ours
            if isinstance(image, np.ndarray):
                image = client.scatter(image, broadcast=True)
            futures = [
                client.submit(
                    _predict_chunk,
                    task_model,
                    image,
                    i,
                    starts[i],
                    min(starts[i] + chunk, n),
                    *args,
                    threads,
                    pure=False,
                )
                for i in todo
            ]
            _gather_as_completed(client, futures, finished)
        group = zarr.open_group(str(store), mode="r+")
        group.attrs.update(
            json.loads(
                json.dumps(
                    {**(metadata or {}), "predicted": {"chunk": chunk, **options}}, default=str
                )
            )
        )
        from napari_hemd.core.streaming import publish

        return publish(store, output, partial)
