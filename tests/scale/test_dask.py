"""Windows as Dask tasks on a 2-worker local cluster (loopback) give the single-process output."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_hemd.core.segment import hemd
from napari_hemd.core.streaming import hemd_stream

pytest.importorskip("dask.distributed")


@pytest.fixture
def client(dask_cluster_client):
    return dask_cluster_client


def test_local_cluster_equals_single_process(video, tmp_path, client):
    z = zarr.create_array(
        str(tmp_path / "prob.zarr"), shape=video.shape, chunks=(1, 96, 96), dtype=np.float32
    )
    z[:] = video
    prob = zarr.open_array(str(tmp_path / "prob.zarr"), mode="r")
    single = hemd_stream(prob, tmp_path / "single.zarr", chunk=5, iterations=3)
    done = []
    out = hemd_stream(
        prob, tmp_path / "dask.zarr", chunk=5, iterations=3, client=client, on_window=done.append
    )
    assert sorted(done) == [0, 1, 2, 3]
    assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], zarr.open_array(str(single))[:])


def test_a_relative_zarr_input_is_read_by_workers_elsewhere(video, tmp_path, client, monkeypatch):
    """Audit 31: a zarr array opened by a relative path went to the workers as that path; in
    their own working directory zarr found no chunks and gave zeros: empty labels, exit 0."""
    import os

    monkeypatch.chdir(tmp_path)
    zarr.create_array("prob.zarr", shape=video.shape, chunks=(1, 96, 96), dtype=np.float32)[:] = (
        video
    )
    prob = zarr.open_array("prob.zarr", mode="r")  # relative, as a user's script opens it
    here = client.run(os.getcwd)
    client.run(os.chdir, "/")  # the workers elsewhere (another machine's directory)
    try:
        out = hemd_stream(prob, "lab.zarr", chunk=7, iterations=2, client=client)
    finally:
        for cwd in set(here.values()):
            client.run(os.chdir, cwd)
    labels = zarr.open_array(str(out))[:]
    assert labels.max() > 0
    np.testing.assert_array_equal(labels, hemd(video, iterations=2).labels)


def test_local_cluster_numpy_input(video, tmp_path, client):
    out = hemd_stream(video, tmp_path / "lab.zarr", chunk=7, iterations=2, client=client)
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], hemd(video, iterations=2).labels)


def test_a_scheduler_address_where_no_scheduler_answers_is_said(client):
    """Audit 31: an address answered by another program (a dashboard's port) hung the run for
    good, a closed port was said only after 30 s. Both are said in seconds; a scheduler's own
    address connects."""
    import socket
    import threading
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    from napari_hemd.distributed import dask_client

    web = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        with pytest.raises(OSError, match="something answers there, but no Dask scheduler"):
            with dask_client(scheduler=f"tcp://127.0.0.1:{web.server_address[1]}"):
                pass
    finally:
        web.shutdown()
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(OSError, match=r"cannot connect .*is the scheduler running there"):
        with dask_client(scheduler=f"tcp://127.0.0.1:{closed}"):
            pass
    with dask_client(scheduler=client.scheduler.address) as other:
        assert len(other.scheduler_info()["workers"]) == 2


def test_dask_client_arguments():
    from napari_hemd.distributed import dask_client

    with pytest.raises(ValueError, match="not both"), dask_client(workers=1, scheduler="tcp://x"):
        pass
    with dask_client() as c:
        assert c is None


def test_local_workers_keep_glibc_dynamic_mmap_threshold(client):
    """No MALLOC_TRIM_THRESHOLD_ on our local workers (see distributed._worker_environ)."""
    import os

    env = client.run(
        lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS"))
    )
    assert set(env.values()) == {(None, "1")}


def test_local_workers_leave_ctrl_c_to_the_run():
    """Ctrl-C during stream --workers N printed each worker's KeyboardInterrupt traceback and
    its lost connection to the stopped scheduler (about 70 lines) before "interrupted": the
    workers ignore SIGINT (the run stops them) and log Dask's messages only with -v."""
    import os
    import signal

    pytest.importorskip("distributed")
    from napari_hemd.distributed import dask_client

    def state() -> tuple[bool, int]:
        import logging

        with open(f"/proc/{os.getpid()}/status") as f:
            ign = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn"))
        return bool(ign & (1 << (signal.SIGINT - 1))), logging.getLogger("distributed").level

    if not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux's /proc")
    with dask_client(workers=1) as client:
        ((ignored, level),) = client.run(state).values()
    assert ignored and level == 50  # CRITICAL: quiet unless the run is verbose
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the run's own


def _busy(seconds: float) -> int:
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:  # holds the worker's thread (no sleep to wake)
        sum(range(1000))
    return 0


def test_a_stopped_run_does_not_warn_of_the_workers_it_kills(caplog):
    """Ctrl-C (or an error) with a task running: the nanny waited 4 s for the busy worker and
    warned "Worker process still alive after 4.0 seconds, killing" under the run's
    "interrupted". Expected when the run stops, so not said; the level is restored after."""
    import logging

    from napari_hemd.distributed import dask_client

    nanny = logging.getLogger("distributed.nanny")
    before = nanny.level
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        with dask_client(workers=1) as client:
            future = client.submit(_busy, 60.0)
            client.run(lambda: None)  # the worker is up; the task starts
            import time

            time.sleep(1.0)
            assert future.status == "pending"  # running, not finished
            raise KeyboardInterrupt
    assert not [r for r in caplog.records if "still alive" in r.getMessage()]
    assert nanny.level == before


def test_local_cluster_leaves_port_8787_alone():
    """The scheduler's web server (started even without a dashboard) took Dask's 8787, or when
    another run held it another port with a three-line warning: now a free port, silently."""
    import socket
    import warnings

    from napari_hemd.distributed import dask_client

    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    except OSError:  # someone else holds it: the case itself
        pass
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask_client(workers=1) as client:
                port = client.run_on_scheduler(
                    lambda dask_scheduler: dask_scheduler.http_server.port
                )
        assert port != 8787
        assert not [w for w in caught if "already in use" in str(w.message)]
    finally:
        holder.close()


def test_finished_windows_are_let_go(client):
    """Every future was held until the end of the run: when a worker died (pre-empted, out of
    memory) Dask recomputed all the windows it had finished, though their frames were written.
    A task once recorded is released: the scheduler keeps nothing of it."""
    import time

    from napari_hemd.core.streaming import _gather_as_completed

    futures = [client.submit(lambda i: i, i, pure=False) for i in range(6)]
    seen: list[int] = []
    _gather_as_completed(client, futures, seen.append)
    assert sorted(seen) == list(range(6))

    def held(dask_scheduler) -> int:
        return len(dask_scheduler.tasks)

    deadline = time.monotonic() + 10
    while client.run_on_scheduler(held) and time.monotonic() < deadline:
        time.sleep(0.1)  # releases reach the scheduler asynchronously
    assert client.run_on_scheduler(held) == 0


def test_a_run_whose_workers_all_left_stops(monkeypatch):
    """Audit 31: when every worker died mid-run, Dask kept the tasks for workers that might
    join and the run waited for good. With none for ``WORKERS_GONE_S`` it stops, saying so;
    what finished is recorded."""
    import re
    import threading
    import time

    from dask.distributed import Client, LocalCluster

    import napari_hemd.core.streaming as streaming

    monkeypatch.setattr(streaming, "WORKERS_GONE_S", 1.0)

    def slow(i):
        time.sleep(0.2)
        return i

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        futures = [client.submit(slow, i, pure=False) for i in range(20)]
        seen: list[int] = []

        def finished(i):
            seen.append(i)
            if len(seen) == 2:  # the only worker stops
                client.sync(next(iter(cluster.workers.values())).close)

        raised: list[BaseException] = []

        def run():  # in a thread: the old code waited for good, which must fail, not hang
            try:
                streaming._gather_as_completed(client, futures, finished)
            except BaseException as exc:
                raised.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the run still waits for a worker"
        assert len(raised) == 1 and isinstance(raised[0], streaming.WorkersLost), raised
        assert re.search(r"no worker for 1 s .* task\(s\) left", str(raised[0]))
        assert 2 <= len(seen) < 20 and not futures


def test_the_client_s_reconnect_traceback_is_not_printed():
    """Audit 32: a scheduler killed mid-run printed the client's ERROR with three chained
    tracebacks (34 lines) before the run's own one line; without -v the client's log is quiet
    while a run holds it, and as it was afterwards."""
    import logging

    import distributed  # noqa: F401  (its import sets its loggers' levels)

    from napari_hemd.distributed import _quiet_dask

    client_log, dist_log = logging.getLogger("distributed.client"), logging.getLogger("distributed")
    before, dist_before = client_log.level, dist_log.level
    with _quiet_dask():
        assert not client_log.isEnabledFor(logging.ERROR)
        assert logging.getLogger("distributed").isEnabledFor(logging.WARNING)
    assert client_log.level == before
    with pytest.raises(ValueError), _quiet_dask():  # an error: as it was
        raise ValueError("x")
    assert client_log.level == before
    try:  # Ctrl-C: left quiet for the cluster closed at exit (its INFO lines followed
        with _quiet_dask():  # "interrupted")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        assert not logging.getLogger("distributed").isEnabledFor(logging.INFO)
    finally:
        client_log.setLevel(before)
        dist_log.setLevel(dist_before)


def test_a_run_waits_for_workers_that_have_not_joined_yet(monkeypatch):
    """Review 32: a run on a cluster whose workers were still on their way (queued by a job
    scheduler) stopped after ``WORKERS_GONE_S`` saying they "died or were stopped"; it waits
    for them, and finishes once one joins."""
    import threading
    import time

    from dask.distributed import Client, LocalCluster

    import napari_hemd.core.streaming as streaming

    monkeypatch.setattr(streaming, "WORKERS_GONE_S", 1.0)
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        futures = [client.submit(lambda i: i, i, pure=False) for i in range(4)]
        seen: list[int] = []
        raised: list[BaseException] = []

        def run():
            try:
                streaming._gather_as_completed(client, futures, seen.append)
            except BaseException as exc:
                raised.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(3.5)  # three times the wait for workers that left
        assert thread.is_alive() and not raised
        cluster.scale(1)  # the worker arrives
        thread.join(60)
        assert not thread.is_alive() and not raised and sorted(seen) == [0, 1, 2, 3]


def test_workers_that_leave_before_any_task_finished_stop_the_run(monkeypatch):
    """Review 32b: workers there at the start that all left before a task finished counted as
    "not joined yet", and the run waited for good."""
    import threading
    import time

    from dask.distributed import Client, LocalCluster

    import napari_hemd.core.streaming as streaming

    monkeypatch.setattr(streaming, "WORKERS_GONE_S", 1.0)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        futures = [client.submit(time.sleep, 30, pure=False) for _ in range(2)]
        raised: list[BaseException] = []

        def run():
            try:
                streaming._gather_as_completed(client, futures, lambda r: None)
            except BaseException as exc:
                raised.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(0.2)
        cluster.scale(0)  # before the first look at the workers (1 s)
        thread.join(30)
        assert not thread.is_alive() and [type(e) for e in raised] == [streaming.WorkersLost]


def test_a_cluster_interrupted_while_it_starts_is_not_closed_again_at_exit():
    """Audit 32: Ctrl-C while ``--workers N`` started its cluster printed Dask's exit hook
    failing to close it (``AssertionError: Status.init``, 29 lines after "interrupted"). The
    cluster made in the interrupted start is left out of that hook; others are not touched."""
    from distributed.deploy.spec import SpecCluster

    from napari_hemd.distributed import _unstarted

    class Half:  # a cluster as Dask registers it before it has started
        shutdown_on_close = True

    other, half = Half(), Half()
    SpecCluster._instances.add(other)
    try:
        with pytest.raises(KeyboardInterrupt), _unstarted():
            SpecCluster._instances.add(half)
            raise KeyboardInterrupt
        assert half.shutdown_on_close is False and other.shutdown_on_close is True
        with _unstarted():  # started: nothing changed
            SpecCluster._instances.add(Half())
        assert all(c.shutdown_on_close for c in SpecCluster._instances if c is not half)
    finally:
        SpecCluster._instances.discard(other)
        SpecCluster._instances.discard(half)
