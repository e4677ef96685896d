"""Atomic writes, and what an output may replace.

A failed run never leaves a half-written file or folder, and never overwrites silently. A folder
output (CTC result, zarr store, project) is marked as ours just before it is published: a zarr
store in its root attributes (:data:`MARKER_ATTR`; a stray file inside a store makes zarr warn
whoever lists it), any other folder with a marker file, :data:`MARKER` (zarr stores of earlier
versions carry that file too). ``overwrite`` replaces only such a folder, never one napari-hemd
did not write (a user's data folder), never a folder or file that holds the run's input, and never
a file where a folder belongs or the other way round.

Below every layer (it imports nothing of napari-hemd but the version): the core's streaming, io,
workflows and the CLI all write through it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "MARKER",
    "MARKER_ATTR",
    "atomic_path",
    "check_output_path",
    "has_marker",
    "is_our_output",
    "mark_output",
    "marker_attrs",
    "output_lock",
]

#: File inside every non-zarr folder output napari-hemd writes (and zarr outputs of versions
#: before :data:`MARKER_ATTR`); ``overwrite`` replaces only folders napari-hemd marked.
MARKER = ".napari-hemd-output"

#: Root attribute that marks a zarr output as napari-hemd's (instead of a :data:`MARKER` file,
#: which zarr reports as "not recognized as a component of a Zarr hierarchy").
MARKER_ATTR = "napari-hemd-output"

#: Attribute (zarr) / JSON key (TIFF) marking a file napari-hemd wrote as instance labels: napari's
#: reader opens it as labels whatever its name (``io.stacks.LABELS_TIFF_KEY``).
LABELS_KEY = "napari_hemd_labels"

#: Output suffixes that are single files (everything else is written as a folder).
FILE_SUFFIXES = (".tif", ".tiff", ".npy", ".pt", ".json", ".csv")


def marker_attrs(kind: str = "output") -> dict:
    """The root attributes that mark a zarr store as napari-hemd's (:data:`MARKER_ATTR`).

    For a writer that still holds the store open: zarr rewrites its attributes from the copy it
    holds, so such a writer adds these itself instead of calling :func:`mark_output`.
    """
    from napari_hemd import __version__

    return {MARKER_ATTR: {"writer": "napari-hemd", "version": __version__, "kind": kind}}


def _zarr_attributes_file(folder: Path) -> Path | None:
    """The file holding the root attributes when ``folder`` is a zarr store, else ``None``."""
    if (folder / "zarr.json").is_file():  # zarr v3: ``attributes`` inside the node's metadata
        return folder / "zarr.json"
    if (folder / ".zgroup").is_file() or (folder / ".zarray").is_file():  # zarr v2
        return folder / ".zattrs"
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def mark_output(folder: str | os.PathLike, kind: str = "output") -> None:
    """Record in ``folder`` that napari-hemd wrote it (so a later ``overwrite`` may replace it).

    A zarr store gets :data:`MARKER_ATTR` in its root attributes (written straight into its JSON
    metadata, so this layer needs no zarr; call it once no zarr handle will write the store's
    metadata again), any other folder the file :data:`MARKER`.
    """
    folder = Path(folder)
    attrs_file = _zarr_attributes_file(folder)
    if attrs_file is None:
        text = json.dumps(marker_attrs(kind)[MARKER_ATTR])
        (folder / MARKER).write_text(text + "\n")
        return
    meta = _read_json(attrs_file)
    if attrs_file.name == "zarr.json":
        meta.setdefault("attributes", {}).update(marker_attrs(kind))
    else:
        meta.update(marker_attrs(kind))
    attrs_file.write_text(json.dumps(meta, indent=2) + "\n")
    (folder / MARKER).unlink(missing_ok=True)  # one a copied older store brought along


def has_marker(folder: str | os.PathLike) -> bool:
    """True when ``folder`` carries napari-hemd's mark (:data:`MARKER` or :data:`MARKER_ATTR`).

    Stricter than :func:`is_our_output`: the mark is written last, so a store that has it is
    complete.
    """
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return True
    attrs_file = _zarr_attributes_file(folder)
    if attrs_file is None:
        return False
    meta = _read_json(attrs_file)
    attrs = meta.get("attributes", {}) if attrs_file.name == "zarr.json" else meta
    return isinstance(attrs, dict) and MARKER_ATTR in attrs


def is_our_output(folder: str | os.PathLike) -> bool:
    """True when ``folder`` is a folder napari-hemd wrote.

    It carries the mark (:func:`has_marker`), or it is an output of a version from before the
    mark: a CTC result with our ``hemd-params.json``, or a zarr store whose attributes name
    napari-hemd (projects, label stores, predictions).
    """
    folder = Path(folder)
    if has_marker(folder) or (folder / "hemd-params.json").is_file():
        return True
    attrs_file = _zarr_attributes_file(folder)
    if attrs_file is None:
        return False
    meta = _read_json(attrs_file)
    attrs = meta.get("attributes", {}) if attrs_file.name == "zarr.json" else meta
    if not isinstance(attrs, dict):
        return False
    # the root attributes those versions wrote, as keys and values (a text search took a
    # user's store whose attributes held the word "predicted" or "napari-hemd", audit 28)
    return (
        any(k in attrs for k in _OUR_KEYS)
        or attrs.get("method") == "hemd"
        or str(attrs.get("format", "")).startswith("napari-hemd")
    )


#: Root attributes of the zarr outputs napari-hemd wrote before :data:`MARKER_ATTR`: labels'
#: parameters, predictions' options, OME-Zarr labels' parameters, the labels mark.
_OUR_KEYS = ("hemd_params", "predicted", "napari_hemd", LABELS_KEY)


def _is_file_output(path: Path) -> bool:
    return path.suffix.lower() in FILE_SUFFIXES


def check_output_path(
    path: str | os.PathLike,
    *,
    overwrite: bool,
    name: str = "output",
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Refuse an output that exists (unless ``overwrite``) or that may not be replaced.

    Parameters
    ----------
    path : path-like
        The output. A name ending in one of :data:`FILE_SUFFIXES` is a file, anything else a
        folder (zarr store, CTC result, project).
    overwrite : bool
        Replace an existing output, but only one napari-hemd wrote (a folder with
        :func:`is_our_output`), an empty folder or a file, and never one that holds an input.
    name : str
        How to call the output in messages (``"output"``, ``"--prob-output"`` ...).
    inputs : iterable of path-like
        The run's input paths (``None`` entries are skipped).

    Raises
    ------
    FileExistsError
        It exists and ``overwrite`` is false, or it is a folder napari-hemd did not write.
    ValueError
        It is, or is inside, or holds an input; or it names no file or folder (``"."``).
    IsADirectoryError, NotADirectoryError
        A folder where a file output belongs, or a file where a folder belongs.
    FileNotFoundError, PermissionError
        The parent folder is missing (or is a file) or is not writable.
    """
    path = Path(path)
    if path.name in ("", ".", "..") or path.resolve() == Path(path.anchor or "/").resolve():
        raise ValueError(f"{name} must name a new file or folder; got {str(path)!r}")
    for inp in inputs:
        if inp is None:
            continue
        ip, op = Path(inp).resolve(), path.resolve()
        if ip == op or op in ip.parents or ip in op.parents:
            raise ValueError(
                f"{name} {str(path)!r} would replace the input {str(inp)!r}; choose another output"
            )
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"{name} {str(path)!r} already exists; pass overwrite=True (--overwrite)"
            )
        if path.is_dir() and not path.is_symlink():
            if _is_file_output(path):
                raise IsADirectoryError(
                    f"{name} {str(path)!r} is a folder, but a {path.suffix} output is a file; "
                    "choose another output"
                )
            if not is_our_output(path) and any(path.iterdir()):  # an empty folder loses nothing
                raise FileExistsError(
                    f"{name} {str(path)!r} is a folder napari-hemd did not write (no "
                    f"{MARKER} file or {MARKER_ATTR!r} attribute); "
                    "refusing to replace it: choose a new output or remove it yourself"
                )
        elif not _is_file_output(path):
            raise NotADirectoryError(
                f"{name} {str(path)!r} is a file, but this output is a folder; choose another "
                "output"
            )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise FileNotFoundError(f"{name} folder {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"{name} folder {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{name} folder {str(parent)!r} is not writable")
    return path


_HELD: dict[str, int] = {}  # lock files this process holds -> nesting depth


#: This machine, recorded in lock files: a process id means nothing on another host.
_HOST = socket.gethostname() or "localhost"


def _lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed one its parent has not reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:  # Linux: a zombie ("Z") still answers kill(pid, 0) but writes nothing any more
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS, Windows): the signal's answer
        return True


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, name: str = "output") -> Iterator[Path]:
    """Hold ``.NAME.lock`` next to ``path`` while a run writes it; a second writer fails at once.

    The lock file records the process id and the host name; a lock whose process on this host
    is gone (a killed run) is stale and taken over, one of another host (a shared disk) is
    held. Re-entrant within one process (a run that locks its output and then writes it
    through :func:`atomic_path`).

    Raises
    ------
    FileExistsError
        Another live process holds the lock.
    """
    path = Path(path)
    lock = _lock_path(path)
    key = str(lock.resolve())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield lock
        finally:
            _HELD[key] -= 1
        return
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                words = lock.read_text().split()
                pid, host = int(words[0]), (words[1] if len(words) > 1 else _HOST)
            except (OSError, ValueError, IndexError):
                pid, host = -1, _HOST  # being written this instant, or garbage: held if fresh
            # a process of another machine (a cluster's shared disk) cannot be checked: held
            if pid > 0 and host == _HOST and not _alive(pid):
                lock.unlink(missing_ok=True)  # stale: its run was killed
                continue
            where = "" if host == _HOST else f" on {host}"
            gone = (
                ""
                if host == _HOST
                else f"; if that run is gone (its machine stopped), remove {str(lock)!r}"
            )
            raise FileExistsError(
                f"{name} {str(path)!r} is being written by another napari-hemd run "
                f"(process {pid if pid > 0 else '?'}{where}, lock {str(lock)!r}); wait for it to "
                f"finish or choose another output{gone}"
            ) from None
        except OSError as e:  # the bare error named the hidden lock file
            _refuse_unwritable(e, path, name)
            raise
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {_HOST}\n")
        break
    else:  # pragma: no cover - two stale takeovers raced
        raise FileExistsError(f"{name} {str(path)!r}: could not take {str(lock)!r}")
    _HELD[key] = 1
    try:
        yield lock
    finally:
        _HELD.pop(key, None)
        lock.unlink(missing_ok=True)


def _refuse_unwritable(e: OSError, path: Path, name: str) -> None:
    """Raise a ``PermissionError`` naming ``name`` and its folder where ``e`` says it is read-only."""
    import errno

    if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return
    why = "is on a read-only drive" if e.errno == errno.EROFS else "is not writable"
    raise PermissionError(
        f"{name} {str(path)!r}: its folder {str(path.parent)!r} {why}; choose an output in a "
        "folder you can write to"
    ) from e


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Iterator[Path]:
    """Yield a temporary sibling path; on success move it onto ``path`` in one step.

    Works for files and folders (zarr stores, CTC result folders); a folder is marked
    (:func:`mark_output`) before it is published. On error the temporary is removed and ``path`` is
    untouched. ``overwrite`` and ``inputs`` as for :func:`check_output_path`.
    """
    path = check_output_path(path, overwrite=overwrite, inputs=inputs)
    with output_lock(path):
        recover_output(path)
        # again under the lock: another run may have published it since the first check
        check_output_path(path, overwrite=overwrite, inputs=inputs)
        yield from _atomic_path(path)


def recover_output(path: str | os.PathLike) -> str | None:
    """Clean up after a run killed while writing ``path`` (call with its lock held).

    A run killed in the middle of replacing a folder leaves the output missing and the complete
    new one (it carries the mark, :func:`has_marker`) or the old one inside a hidden ``.NAME.*.tmp`` folder:
    the swap is finished (new) or undone (old). Then every such leftover (half-written files
    included) is removed. A resumable run's old output moved into its ``.NAME.partial`` folder
    is put back (the partial run itself is kept, to be resumed).

    Returns
    -------
    str or None
        ``"finished"`` or ``"restored"`` when the output was brought back, else ``None``.
    """
    import logging

    path = Path(path)
    done = "restored" if restore_published(path) else None
    for d in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")):
        if not d.is_dir():
            continue
        new, old = d / path.name, d / (path.name + ".old")
        if not path.exists() and done is None:
            if new.is_dir() and has_marker(new) and old.exists():
                os.replace(new, path)  # killed between the two renames: finish the swap
                done = "finished"
            elif old.exists():
                os.replace(old, path)
                done = "restored"
        shutil.rmtree(d, ignore_errors=True)
    if done:
        logging.getLogger(__name__).warning(
            "%s: a killed run had left it half replaced; the swap was %s", path, done
        )
    return done


def settle_writes(timeout: float = 5.0) -> None:
    """Wait for the writes zarr still has in flight on its own IO thread (if zarr is in use).

    When one chunk's write fails (a full disk) or the run is interrupted, zarr's other chunk
    writes of that call go on in its event loop: a clean-up that removes the temporary output
    at once saw them create it again (audit 28: a ``.NAME.*.tmp`` or ``.NAME.partial`` left,
    and asyncio's "Task was destroyed but it is pending" on exit). Their exceptions are
    retrieved here (a full disk is said once, by the run). Called when a write failed (its
    loop is shared: a successful write does not wait for others' reads).
    """
    import sys
    import threading

    zsync = sys.modules.get("zarr.core.sync")
    loop = getattr(zsync, "loop", [None])[0] if zsync is not None else None
    if loop is None or not loop.is_running():
        return
    if threading.current_thread() is getattr(zsync, "iothread", [None])[0]:
        return  # called from zarr's own loop: it would wait for itself
    import asyncio

    async def pending() -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        if tasks:
            done, _ = await asyncio.wait(tasks, timeout=timeout)
            for t in done:
                if not t.cancelled():
                    t.exception()

    try:
        asyncio.run_coroutine_threadsafe(pending(), loop).result(timeout + 1)
    except Exception:  # a clean-up: never worse than not waiting
        pass


def restore_published(path: str | os.PathLike) -> bool:
    """Put back the old output a resumable run killed while publishing left aside; True if so.

    ``stream`` and ``predict`` move an older output into their ``.NAME.partial`` folder before
    the new one takes its place (:func:`napari_hemd.core.streaming.publish`); a run with other
    settings removes that folder. Touches nothing else (a run writing ``path`` now keeps its
    temporary files): safe before the output's lock is taken.
    """
    path = Path(path)
    aside = path.parent / f".{path.name}.partial" / "old"
    if not aside.is_dir() or path.exists() or path.is_symlink():
        return False
    os.replace(aside, path)
    import logging

    logging.getLogger(__name__).warning(
        "%s: a killed run had left it half replaced; the old output was put back", path
    )
    return True


def _atomic_path(path: Path) -> Iterator[Path]:
    tmp_dir = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_dir) / path.name
    try:
        yield tmp
        if tmp.is_dir():
            mark_output(tmp)
        if path.is_dir() and not path.is_symlink():
            # os.replace cannot replace a non-empty folder: move the old one aside first.
            old = Path(tmp_dir) / (path.name + ".old")
            os.replace(path, old)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        settle_writes()  # zarr's writes still in flight would make the temporary again
        raise
    finally:
        # interrupted between the two renames (Ctrl-C, SIGTERM): the old output back first, as
        # the folder below is removed (it took the old output with it, audit 28)
        old = Path(tmp_dir) / (path.name + ".old")
        if old.exists() and not (path.exists() or path.is_symlink()):
            os.replace(old, path)
        shutil.rmtree(tmp_dir, ignore_errors=True)
