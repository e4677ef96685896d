"""Dask clusters for streaming H-EMD: a local cluster on loopback or a running scheduler.

Kept out of :mod:`napari_hemd.core` so that the core imports no ``dask.distributed``.

SLURM via ``dask-jobqueue`` (start a scheduler yourself, pass its address)::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=4, processes=1, memory="16GB", walltime="02:00:00")
    cluster.scale(jobs=8)
    print(cluster.scheduler_address)  # -> napari-hemd stream ... --scheduler tcp://...
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["cluster_failure", "dask_client"]

log = logging.getLogger(__name__)


def _worker_environ() -> dict:
    """Dask's environment for new worker processes, without ``MALLOC_TRIM_THRESHOLD_``.

    With the workers' Dask log level (:mod:`napari_hemd._dask_worker`).

    Dask sets it to return freed memory to the OS sooner; but setting any glibc trim threshold
    also switches off glibc's dynamic mmap threshold, so every frame-sized temporary (H-EMD makes
    many) is mmap'd and page-faulted afresh. Measured on 1024x1024 windows: a task took 1.3-1.9x
    its in-process time with it, 1.0-1.2x without. ``OMP_NUM_THREADS=1`` and friends stay (one
    thread per worker process is what we want).
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    from napari_hemd._dask_worker import LOG_ENV

    # the workers' own Dask logs (a stopped scheduler's lost connections on Ctrl-C): with -v
    env[LOG_ENV] = "INFO" if log.isEnabledFor(logging.INFO) else "CRITICAL"
    return env


@contextlib.contextmanager
def dask_client(
    *, workers: int | None = None, scheduler: str | None = None, threads_per_worker: int = 1
) -> Iterator[object | None]:
    """Yield a ``dask.distributed.Client`` (or ``None`` for a single process).

    Parameters
    ----------
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes, listening on 127.0.0.1 only.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``). Excludes ``workers``.
    threads_per_worker : int
        Threads of each local worker (windows are mostly single-threaded numpy/numba).
    """
    if workers is not None and scheduler is not None:
        raise ValueError(f"give workers or scheduler, not both; got {workers=} {scheduler=}")
    if workers is None and scheduler is None:
        yield None
        return
    try:
        import distributed  # noqa: F401
    except ImportError as e:  # the optional extra
        raise ValueError(
            f"{'workers' if workers is not None else 'scheduler'} (--workers / --scheduler) needs "
            "Dask's distributed "
            "scheduler, which is not installed: pip install 'napari-hemd[distributed]' (or "
            f"bash scripts/setup.sh --napari); {e}"
        ) from e
    with _quiet_dask():
        yield from _client(workers, scheduler, threads_per_worker)


def cluster_failure(exc: BaseException) -> str | None:
    """Why a cluster run failed, in a user's words, for Dask's own errors; None for others.

    The command line and the Large data widget say it (audit 31: 40 lines of traceback; audit
    32: the widget showed "... cancelled for reason: scheduler-connection-lost ...").
    """
    name = type(exc).__name__
    if name == "KilledWorker":
        return (
            "Dask workers died running the same task (the usual cause: a window needs more "
            "memory than a worker has); a smaller --chunk (or workers with more memory) fits"
        )
    text = str(exc).lower()
    if name == "CommClosedError" or (
        name in ("FutureCancelledError", "CancelledError")
        and ("connection" in text or "scheduler" in text)
    ):
        return "the connection to the Dask scheduler was lost (it stopped, or its machine)"
    return None


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Show Dask's own INFO lines only when ours are shown too (``napari-hemd -v``).

    They are 30 for one run (scheduler, nanny, workers coming and going). The client's error
    when the scheduler goes (three chained tracebacks, 34 lines: audit 32) likewise: the run
    then fails with :func:`cluster_failure`'s one line.
    """
    import distributed  # noqa: F401  (its import sets the level: first)

    dist, client = logging.getLogger("distributed"), logging.getLogger("distributed.client")
    old = dist.level, client.level
    if not log.isEnabledFor(logging.INFO):
        dist.setLevel(logging.WARNING)
        client.setLevel(logging.CRITICAL)
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:  # (Ctrl-C, SIGTERM) left quiet: a cluster interrupted while it
        interrupted = True  # started is closed at exit, and its 15 INFO lines came after
        raise  # "interrupted"
    finally:
        if not interrupted:
            dist.setLevel(old[0])
            client.setLevel(old[1])


def _client(workers, scheduler, threads_per_worker) -> Iterator[object]:
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        _check_address(scheduler)  # a malformed one hung 60 s in Client's shutdown
        _probe_scheduler(scheduler)  # another program's port hung Client for good (audit 31)
        with Client(scheduler, set_as_default=False) as client:
            log.info("connected to %s", scheduler)
            if not client.scheduler_info().get("workers"):
                try:
                    client.wait_for_workers(1, timeout=WORKERS_WAIT_S)
                except TimeoutError:
                    raise OSError(
                        f"scheduler {scheduler!r}: no Dask worker joined it in "
                        f"{WORKERS_WAIT_S:g} s; start some (`dask worker {scheduler}`)"
                    ) from None
            yield client
        return
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1; got {workers!r}")
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ": _worker_environ()}), _unstarted():
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=int(threads_per_worker),
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # the scheduler's web server (Dask starts one even without a dashboard): on a free
            # port of the loopback, not 8787 (a second run, or a user's own cluster, holds it,
            # and Dask then printed a three-line warning)
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            preload=["napari_hemd._dask_worker"],  # the workers leave Ctrl-C to this process
        )
        # A run stopped by Ctrl-C or an error closes the cluster with tasks still running: the
        # nannies (in this process) wait 4 s for each busy worker and warn "Worker process
        # still alive after 4.0 seconds, killing". Expected then, so not said (the run says why
        # it stopped); a run that ends normally keeps the warning (a worker that does not close).
        nanny = logging.getLogger("distributed.nanny")
        level = nanny.level
        try:
            with cluster, Client(cluster, set_as_default=False) as client:
                log.info("local cluster: %d workers at %s", workers, cluster.scheduler_address)
                try:
                    yield client
                except BaseException:
                    if not log.isEnabledFor(logging.INFO):
                        nanny.setLevel(max(level, logging.ERROR))
                    raise
        finally:
            nanny.setLevel(level)


@contextlib.contextmanager
def _unstarted() -> Iterator[None]:
    """A local cluster interrupted while it starts is not closed again at exit.

    Dask's exit hook closed it and failed (``AssertionError: Status.init``, 29 lines after
    "interrupted": audit 32); its processes end with this one all the same.
    """
    from distributed.deploy.spec import SpecCluster

    before = set(SpecCluster._instances)
    try:
        yield
    except KeyboardInterrupt:
        try:  # (the one made here: half started, its workers not yet running)
            for cluster in set(SpecCluster._instances) - before:
                cluster.shutdown_on_close = False
        except Exception:  # (Dask's internals moved: its traceback then, nothing worse)
            pass
        raise


#: How long a run waits for a first worker of a scheduler that has none (seconds).
WORKERS_WAIT_S = 60.0

#: How long a scheduler has to greet a new connection (seconds): Dask's does at once.
GREETING_S = 5.0


def _probe_scheduler(scheduler: str) -> None:
    """Refuse an address where no Dask scheduler answers, in a few seconds, not never.

    A Dask scheduler greets each connection at once (its handshake); a dashboard's port or
    another program's waits for the client to speak, and ``Client`` waited for good (audit 31:
    a dashboard's port hung the run until it was killed). A refused connection is said at
    once, not after the 30 s of Dask's retries. Only ``tcp://`` addresses are probed.
    """
    import socket

    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    scheme, location = parse_address(str(scheduler))
    if scheme != "tcp":
        return
    host, port = parse_host_port(location)
    where = f"scheduler {scheduler!r}"
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.settimeout(GREETING_S)
            try:
                greeted = bool(sock.recv(1))
            except TimeoutError:
                greeted = False
    except OSError as e:
        raise OSError(
            f"{where}: cannot connect ({e.strerror or e}); is the scheduler running there? "
            "(`dask scheduler` prints its address)"
        ) from None
    if not greeted:
        raise OSError(
            f"{where}: something answers there, but no Dask scheduler (a dashboard's port? "
            "the scheduler's is the tcp:// address `dask scheduler` prints, 8786 by default)"
        )


def _check_address(scheduler: str) -> None:
    """Refuse a scheduler address of the wrong form before a ``Client`` is made."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(str(scheduler))
        _host, port = parse_host_port(location)
        ok = scheme in ("tcp", "tls", "ws", "wss", "ucx") and 0 < int(port) < 65536
        why = f"protocol {scheme!r}, port {port}"
    except (ValueError, TypeError) as e:
        ok, why = False, str(e)
    if not ok:
        raise ValueError(
            f"scheduler: expected an address like tcp://HOST:PORT (`dask scheduler` prints it); "
            f"got {scheduler!r} ({why})"
        )
