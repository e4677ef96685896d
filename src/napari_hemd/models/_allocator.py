"""Keep freed C-heap memory for the next frame during CPU inference (glibc only).

A whole-frame forward pass allocates activations of tens to hundreds of megabytes. glibc serves
every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and unmaps it when
it is freed, so every layer of every frame faults its output's pages in again and the kernel zeroes
them: on a 700 x 1100 Fluo-N2DL-HeLa frame, one thread, about half of a depth-4 U-Net's forward
pass is that system time (docs/benchmarks.md). Inside :func:`heap_allocation` large blocks come
from the heap and freed ones stay there for the next batch; when the last user leaves, the free
heap is handed back to the system (``malloc_trim``) and the parameters are set to glibc's steady
state in a process that has handled large arrays (blocks above 32 MB mapped, the heap trimmed
beyond 64 MB free), so memory is held only while predicting.

In the main thread every block comes from the heap; a worker thread's arena still maps blocks
larger than 64 MB (glibc's per-thread heap size), so there the gain is smaller. Elsewhere (macOS,
Windows, musl) or with ``NAPARI_HEMD_MALLOC_TUNING=0`` this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["heap_allocation"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
#: glibc's values after its dynamic threshold has adapted to large arrays (mmap threshold at its
#: ceiling, 32 MB on 64-bit systems; trim threshold twice that; its default mmap count limit).
_STEADY = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 64 << 20, _M_MMAP_MAX: 65536}
#: While predicting: no mmap for large blocks, nothing trimmed (mallopt takes a C int).
_KEEP = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1}

_lock = threading.Lock()
_users = 0


def _load_glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: the C library malloc comes from
        libc.gnu_get_libc_version  # noqa: B018 -- glibc only (musl has mallopt as a stub)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):
        return None
    return libc


_libc = _load_glibc()


def _enabled() -> bool:
    return _libc is not None and os.environ.get("NAPARI_HEMD_MALLOC_TUNING", "1") != "0"


@contextlib.contextmanager
def heap_allocation(device=None) -> Iterator[None]:
    """Serve large blocks from the heap and keep freed memory until the last user leaves.

    Reentrant and thread-safe (a count of users); on leaving, the heap's free memory goes back to
    the system. ``device``: the torch device computed on; nothing is changed unless it is the CPU
    (None: the CPU).
    """
    global _users
    if not _enabled() or (device is not None and device.type != "cpu"):
        yield
        return
    with _lock:
        _users += 1
        if _users == 1:
            for param, value in _KEEP.items():
                _libc.mallopt(param, value)
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for param, value in _STEADY.items():
                    _libc.mallopt(param, value)
                _libc.malloc_trim(0)
