"""Cell Tracking Challenge folders: write ``maskTTT.tif`` + ``res_track.txt`` results."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["write_ctc_result"]


def write_ctc_result(
    labels, folder: str | os.PathLike, *, tracks: np.ndarray | None = None
) -> Path:
    """Write a CTC result folder (``maskTTT.tif`` per frame, ``res_track.txt``).

    This writes into ``folder`` directly; wrap it in :func:`napari_hemd.io.stacks.write_labels` (or
    :func:`napari_hemd.io._atomic.atomic_path`) for an atomic, non-overwriting write.

    Parameters
    ----------
    labels : (T, Y, X) or (T, Z, Y, X) integer array
        Instance labels per frame (uint16 in the files, as the CTC tools expect).
    folder : path-like
        Output folder (created).
    tracks : (K, 4) int array, optional
        Rows ``L B E P``. Without it, every label is its own track, present in the frames where it
        appears, with no parent (valid only when labels are already consistent across frames).
    """
    import tifffile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = labels.shape[0]
    digits = max(3, len(str(n - 1)))
    first_last: dict[int, list[int]] = {}
    for t in range(n):
        frame = np.asarray(labels[t])
        if frame.size and int(frame.max()) >= 2**16:
            raise ValueError(f"labels: frame {t} has label {int(frame.max())}; CTC needs < 65536")
        tifffile.imwrite(folder / f"mask{t:0{digits}d}.tif", frame.astype(np.uint16))
        if tracks is None:
            for lab in np.unique(frame):
                if lab:
                    fl = first_last.setdefault(int(lab), [t, t])
                    fl[1] = t
    if tracks is None:
        tracks = np.array([[lab, b, e, 0] for lab, (b, e) in sorted(first_last.items())], dtype=int)
    tracks = np.asarray(tracks, dtype=int).reshape(-1, 4)
    lines = "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in tracks)
    (folder / "res_track.txt").write_text(lines)
    return folder
