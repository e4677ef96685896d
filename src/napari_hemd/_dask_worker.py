"""Loaded by the worker processes of ``--workers N`` (Dask's ``preload``): quiet on Ctrl-C.

A terminal's Ctrl-C reaches the whole process group: each worker printed its own
KeyboardInterrupt traceback, then its lost connection to the stopped scheduler (about 70 lines
for two workers) before the run's one-line "interrupted". The workers ignore Ctrl-C (the run,
the driver process, stops them with the cluster) and, unless the run is verbose (``-v``), log
nothing of Dask's own: a task's error reaches the run, which says it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

#: Set by the run for its workers (``distributed._worker_environ``): their Dask log level.
LOG_ENV = "NAPARI_HEMD_WORKER_LOG"


def dask_setup(worker) -> None:  # Dask's preload hook
    """Ignore SIGINT in this worker process (its main thread only can set handlers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    level = os.environ.get(LOG_ENV)
    if level:
        logging.getLogger("distributed").setLevel(level)
