"""Large blocks stay on the C heap while predicting on a CPU (glibc), and go back afterwards."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_hemd.models import _allocator  # noqa: E402
from napari_hemd.models._allocator import heap_allocation  # noqa: E402

BLOCK = 96 << 20  # above glibc's largest mmap threshold (32 MB): mapped afresh by default


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> _MallInfo2:
    fn = _allocator._libc.mallinfo2  # glibc >= 2.33
    fn.restype = _MallInfo2
    return fn()


glibc = pytest.mark.skipif(
    _allocator._libc is None or not hasattr(_allocator._libc, "mallinfo2"),
    reason="glibc's mallopt and mallinfo2 only",
)


@pytest.fixture(autouse=True)
def _no_prediction_in_another_thread():
    """The allocator's settings are process-wide: a prediction an earlier test left running in a
    worker thread (it finishes on its own) would move these blocks to the heap. Wait it out, and
    say so if it does not end."""
    deadline = time.monotonic() + 120
    while _allocator._users and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _allocator._users == 0, "a prediction started by an earlier test is still running"


def _block() -> int:
    """A block size glibc cannot serve from free heap memory.

    malloc maps a block above its mmap threshold only when no free chunk of the heap holds it:
    after a suite of predictions the heap may keep free chunks of 100 MB and more (their pages
    handed back by ``malloc_trim``, the address range still the heap's) under a small live block.
    A block larger than all free heap memory together has to be mapped, or the heap extended.
    """
    return max(BLOCK, _mallinfo().fordblks + BLOCK)


def _where(n_bytes: int) -> tuple[int, int]:
    """(growth of the mapped blocks, growth of the heap) while one large block is held."""
    before = _mallinfo()
    block = np.empty(n_bytes, np.uint8)
    held = _mallinfo()
    del block
    return held.hblkhd - before.hblkhd, held.arena - before.arena


def _free_chunk_under_a_live_block() -> list:
    """The heap a prediction can leave: a large free chunk that trimming cannot return to the
    system's address space, because small blocks allocated after it are still alive."""
    with heap_allocation():
        large = np.ones(200 << 20, np.uint8)
        end = large.ctypes.data + large.nbytes
        live = [np.empty(1 << 16, np.uint8) for _ in range(64)]
        while live[-1].ctypes.data < end:  # until one lies above the large block
            live.append(np.empty(1 << 16, np.uint8))
        del large
    assert _mallinfo().fordblks >= 200 << 20
    return live


@glibc
@pytest.mark.parametrize("heap", ["as it is", "with a free chunk of 200 MB"])
def test_large_blocks_come_from_the_heap_inside_and_go_back_after(heap):
    """Measured in a fresh process: a test process that predicted a lot (a pytest-xdist worker
    after the heavy files) can hold 2 GB of free heap, and a block larger than all of it is
    larger than the trim threshold kept while predicting (2**31 - 1 bytes: mallopt takes a C
    int), so glibc rightly trims it on free and the test would measure that instead."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    script = f"import runpy; runpy.run_path({__file__!r})['_large_blocks']({heap!r})"
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _large_blocks(heap: str) -> None:
    """The checks of the test above, in the process that runs them."""
    live = _free_chunk_under_a_live_block() if heap != "as it is" else []
    size = _block()
    mapped, _ = _where(size)
    assert mapped >= size  # glibc's default: a block this large is mapped on its own
    with heap_allocation():
        size = _block()
        mapped, heap = _where(size)
        assert mapped == 0  # from the heap instead
        mapped, heap = _where(size)
        assert heap == 0  # the freed block was kept and is reused: no new memory
        held = _mallinfo().arena
    assert _mallinfo().arena < held - size // 2  # trimmed: the memory went back
    size = _block()
    mapped, _ = _where(size)
    assert mapped >= size  # mapped again, as before
    assert _allocator._users == 0
    del live


@glibc
def test_opt_out_by_environment(monkeypatch):
    monkeypatch.setenv("NAPARI_HEMD_MALLOC_TUNING", "0")
    with heap_allocation():
        size = _block()
        mapped, _ = _where(size)
        assert mapped >= size
        assert _allocator._users == 0


def test_only_for_the_cpu():
    with heap_allocation(torch.device("meta")):  # a GPU's activations are not the C heap's
        assert _allocator._users == 0
    with heap_allocation(torch.device("cpu")):
        assert _allocator._users == (0 if _allocator._libc is None else 1)
    assert _allocator._users == 0


def test_reentrant_and_shared_between_threads():
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(20):
                with heap_allocation(), heap_allocation():
                    np.ones(1000).sum()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _allocator._users == 0


def test_prediction_releases_the_heap_when_closed_early(blobs):
    """A generator suspended mid-movie holds the heap; closing it (a Cancel) lets it go."""
    from napari_hemd.models import HemdModel, iter_predict

    torch.manual_seed(0)
    model = HemdModel.create("unet", base_channels=4, depth=3)
    frames = np.stack([blobs[0]] * 3)
    gen = iter_predict(model, frames, batch_size=1)
    next(gen)
    if _allocator._libc is not None:
        assert _allocator._users == 1
    gen.close()
    assert _allocator._users == 0
    list(iter_predict(model, frames))
    assert _allocator._users == 0
