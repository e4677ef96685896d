"""Atomic writes.

A failed run never leaves a half-written file or folder, and never overwrites silently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "check_output_path"]


def check_output_path(path: str | os.PathLike, *, overwrite: bool, name: str = "output") -> Path:
    """Refuse an existing output unless ``overwrite``; refuse an unwritable parent folder."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{name} {str(path)!r} already exists; pass overwrite=True (--overwrite)"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise FileNotFoundError(f"{name} folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{name} folder {str(parent)!r} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success move it onto ``path`` in one step.

    Works for files and folders (zarr stores, CTC result folders). On error the temporary is
    removed and ``path`` is untouched.
    """
    path = check_output_path(path, overwrite=overwrite)
    tmp_dir = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_dir) / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            # os.replace cannot replace a non-empty folder: move the old one aside first.
            old = Path(tmp_dir) / (path.name + ".old")
            os.replace(path, old)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
