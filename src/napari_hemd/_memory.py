"""Will a whole-movie run fit in memory? Checked before the work starts.

``segment`` (with or without a model), the API and the Segment widget hold a whole movie's
probability maps, candidate forests and labels in memory. A movie too large for that used to run
for as long as prediction took and then be killed by the operating system (in napari: the viewer
with it, and any unsaved proofreading). Now the run is refused before the first frame, with the
size it needs, the memory available, and the command that does fit (``napari-hemd stream``:
windows of frames, bounded memory, the same labels).

The costs per pixel of the movie are measured, not derived (``benchmarks/bench_memory_estimate.py``
prints the measured slope of peak RSS against frames beside these constants). Below every layer
but :mod:`psutil`; the core does not import it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

__all__ = [
    "ENV",
    "MAPS_BYTES_PER_PIXEL",
    "MODEL_BYTES_PER_PIXEL",
    "NotEnoughMemory",
    "available_memory",
    "check_fits_in_memory",
    "memory_check_off",
]

#: ``segment --model`` on a raw uint16 movie read from disk: the frames, two float32 maps, the
#: method's labels and candidate forests, the whole-cell growth and the written labels. Measured
#: 2026-12-07 (H-EMD, ``nuclei-fluo``, one view): 25.7-27.4 bytes per pixel between 64 and 128
#: frames of Fluo-N2DL-HeLa (700 x 1100), 24.0 between 192 and 384 synthetic frames of 512 x 512
#: (the same pixels): the peak is prediction's or H-EMD's, whichever is higher; shorter runs
#: scatter with the heap (docs/benchmarks.md).
MODEL_BYTES_PER_PIXEL = 26
#: ``segment`` on a float32 probability stack read from disk: H-EMD 16.8 / 17.2 / 17.0 bytes per
#: pixel on the same three movies, threshold and watershed 15.9-16.0; 4 of them are the stack.
MAPS_BYTES_PER_PIXEL = 17
#: ``NAPARI_HEMD_MEMORY_CHECK=0`` turns the check off (``segment --no-memory-check``).
ENV = "NAPARI_HEMD_MEMORY_CHECK"


@contextlib.contextmanager
def memory_check_off() -> Iterator[None]:
    """Turn the check off inside the block (``segment --no-memory-check``), then restore it."""
    old = os.environ.get(ENV)
    os.environ[ENV] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


class NotEnoughMemory(MemoryError):
    """A run that would not fit in the memory available, refused before it starts."""


def available_memory() -> int:
    """Bytes the operating system can give this process now without swapping."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits_in_memory(
    shape: tuple[int, ...],
    bytes_per_pixel: float,
    *,
    what: str,
    argument: str = "image",
    model: bool = False,
    predict_only: bool = False,
) -> None:
    """Raise :class:`NotEnoughMemory` if ``shape`` at ``bytes_per_pixel`` needs more than is free.

    Parameters
    ----------
    shape : tuple of int
        The movie's shape, frames (or slices) first.
    bytes_per_pixel : float
        What the run needs per pixel of the movie (:data:`MODEL_BYTES_PER_PIXEL` ...).
    what : str
        The run, for the message (``"segment with a model"``).
    argument : str
        The argument holding the movie, for the message.
    model : bool
        The movie is raw (a model predicts its maps): the ``stream`` command to suggest.
    predict_only : bool
        The run predicts maps and keeps them (Predict): its cost is the maps' own arrays, and
        the way out is to write them to disk as they are predicted.
    """
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return
    need = math.prod(int(s) for s in shape) * float(bytes_per_pixel)
    free = available_memory()
    if need <= free:
        return
    frames = int(shape[0]) if len(shape) >= 3 else 1
    held = "the probability maps, the method's working arrays and the labels"
    retry = f"`segment --no-memory-check` (or {ENV}=0)"
    if predict_only:
        held, retry = "the maps it returns", f"{ENV}=0"
        instead = (
            "Write the maps to disk as they are predicted instead: `napari-hemd predict MOVIE "
            "--model NAME -o maps.zarr` (or maps.tif); or segment in bounded memory without "
            "keeping them: `napari-hemd stream MOVIE --model NAME -o OUT.zarr` (in napari: "
            "Plugins > napari-hemd > Large data)"
        )
    elif model and len(shape) == 4:  # stream: one stack in memory at a time
        instead = (
            "Segment it stack by stack instead, one stack in memory (about "
            f"{_gb(need / frames)}) and the same labels: `napari-hemd stream MOVIE --model NAME "
            "-o OUT.zarr` (in napari: Plugins > napari-hemd > Large data)"
        )
    elif frames > 1:
        command = "stream MOVIE --model NAME -o OUT.zarr" if model else "stream PROB -o OUT.zarr"
        instead = (
            "A time-lapse: segment it in windows of frames instead, in bounded memory and with the "
            f"same labels: `napari-hemd {command}` (in napari: Plugins > napari-hemd > Large "
            "data), or a range of frames at a time; one 3D stack: segment it in parts"
        )
    else:
        instead = "Segment it in parts (crop the image) or on a machine with more memory"
    raise NotEnoughMemory(
        f"{what}: {argument} of shape {tuple(int(s) for s in shape)} needs about "
        f"{_gb(need)} of memory (~{bytes_per_pixel:g} bytes per pixel for {held}), more than "
        f"the {_gb(free)} available now. {instead}. To try anyway: {retry}"
    )


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"
