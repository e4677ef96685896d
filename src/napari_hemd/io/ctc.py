"""Cell Tracking Challenge folders: read sequences and references, write ``maskTTT.tif`` results.

Layout (``SEQ`` is e.g. ``01``)::

    SEQ/tTTT.tif                      raw frames
    SEQ_GT/SEG/man_segTTT.tif         reference masks, on all or some frames
    SEQ_GT/TRA/man_trackTTT.tif       tracking markers, every frame
    SEQ_GT/TRA/man_track.txt          tracks ``L B E P`` (label, begin, end, parent)
    SEQ_ST/SEG/man_segTTT.tif         silver-truth masks
    SEQ_RES/maskTTT.tif + res_track.txt   a result

The frame index ``TTT`` (3 or 4 digits) is the number in the file name, so sparse references
(``man_seg012.tif``, ``man_seg020.tif``, ...) keep their frame. 3D references stored as slices
(``man_seg_TTT_ZZZ.tif``) are not read.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_hemd.core.linking import tracks_from_presence
from napari_hemd.io.calibration import PIXEL_SIZE_KEY, PixelSize, imagej_calibration

__all__ = [
    "CTCSequence",
    "ctc_label_files",
    "read_ctc_labels",
    "read_ctc_sequence",
    "read_ctc_tracks",
    "write_ctc_result",
]

logger = logging.getLogger(__name__)

_FRAME_FILE = re.compile(r"^(?:man_seg|man_track|mask|t)(\d+)\.tiff?$")


def ctc_label_files(folder: str | os.PathLike) -> dict[int, Path]:
    """Map frame index to file in a CTC folder.

    The folder holds ``man_segTTT``, ``man_trackTTT``, ``maskTTT`` or ``tTTT`` TIFFs.

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist.
    ValueError
        It holds no such file, or two files with the same frame index.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"CTC folder {str(folder)!r} does not exist")
    files: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        m = _FRAME_FILE.match(p.name)
        if not m:
            continue
        t = int(m.group(1))
        if t in files:
            raise ValueError(
                f"CTC folder {str(folder)!r}: frame {t} appears twice ({files[t].name}, {p.name})"
            )
        files[t] = p
    if not files:
        raise ValueError(
            f"CTC folder {str(folder)!r}: expected man_segTTT.tif, man_trackTTT.tif, maskTTT.tif "
            f"or tTTT.tif files; found none"
        )
    return files


def read_ctc_labels(folder: str | os.PathLike) -> dict[int, np.ndarray]:
    """Read a CTC label folder (``SEG``, ``TRA`` or a result folder) by frame index.

    Parameters
    ----------
    folder : path-like
        A folder of ``man_segTTT.tif``, ``man_trackTTT.tif`` or ``maskTTT.tif`` files.

    Returns
    -------
    dict of int to (Y, X) or (Z, Y, X) ndarray
        Labels per frame index, for the frames present (sparse references stay sparse).
    """
    import tifffile

    return {t: tifffile.imread(p) for t, p in ctc_label_files(folder).items()}


def read_ctc_tracks(path: str | os.PathLike) -> np.ndarray:
    """Read a ``man_track.txt`` / ``res_track.txt`` table.

    Returns
    -------
    (K, 4) int64 ndarray
        Rows ``L B E P``: label, first frame, last frame, parent label (0 = none).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"track file {str(path)!r} does not exist")
    text = path.read_text().split()
    if len(text) % 4:
        raise ValueError(
            f"track file {str(path)!r}: expected 4 integers per line (L B E P); "
            f"got {len(text)} numbers"
        )
    try:
        return np.array(text, dtype=np.int64).reshape(-1, 4)
    except ValueError as exc:
        raise ValueError(f"track file {str(path)!r}: expected integers; {exc}") from None


@dataclass
class CTCSequence:
    """One Cell Tracking Challenge sequence and whatever references it has.

    Attributes
    ----------
    raw : (T, Y, X) or (T, Z, Y, X) array or None
        Raw frames (a dask array when read lazily), ``None`` when the raw folder is absent.
    gt_seg, gt_tra, st_seg : dict of int to ndarray
        Gold-truth masks, tracking markers and silver-truth masks by frame index (empty when
        absent).
    tracks : (K, 4) int64 ndarray or None
        ``man_track.txt`` of the gold truth.
    path : Path
        The sequence folder.
    """

    path: Path
    raw: object = None
    gt_seg: dict[int, np.ndarray] = field(default_factory=dict)
    gt_tra: dict[int, np.ndarray] = field(default_factory=dict)
    st_seg: dict[int, np.ndarray] = field(default_factory=dict)
    tracks: np.ndarray | None = None


def read_ctc_sequence(
    path: str | os.PathLike, *, lazy: bool = True, tracking: bool = True
) -> CTCSequence:
    """Read a CTC sequence folder ``SEQ`` with its siblings ``SEQ_GT`` and ``SEQ_ST``.

    Parameters
    ----------
    path : path-like
        The raw folder (``.../Fluo-N2DL-HeLa/01``); the references are found next to it. It need
        not exist when a reference folder does.
    lazy : bool
        Read raw frames lazily (dask); references are always read (they are small, compressed).
    tracking : bool
        Read the gold truth's tracking markers and lineage (``GT/TRA``); False leaves
        ``gt_tra`` empty and ``tracks`` None (napari's reader, which shows the masks only).

    Returns
    -------
    CTCSequence
    """
    from napari_hemd.io.tiff import read_tiff_folder

    path = Path(path)
    gt, st = path.parent / f"{path.name}_GT", path.parent / f"{path.name}_ST"
    if not path.is_dir() and not gt.is_dir() and not st.is_dir():
        raise FileNotFoundError(
            f"CTC sequence {str(path)!r}: expected the folder or its {gt.name}/ or {st.name}/ "
            f"sibling; found none"
        )
    seq = CTCSequence(path=path)
    if path.is_dir():
        seq.raw = read_tiff_folder(path, lazy=lazy)
    if (gt / "SEG").is_dir():
        seq.gt_seg = read_ctc_labels(gt / "SEG")
    if tracking and (gt / "TRA").is_dir():
        seq.gt_tra = read_ctc_labels(gt / "TRA")
        if (gt / "TRA" / "man_track.txt").is_file():
            seq.tracks = read_ctc_tracks(gt / "TRA" / "man_track.txt")
    if (st / "SEG").is_dir():
        seq.st_seg = read_ctc_labels(st / "SEG")
    logger.info(
        "CTC %s: raw %s, GT/SEG %d frames, GT/TRA %d frames, ST/SEG %d frames",
        path,
        None if seq.raw is None else tuple(seq.raw.shape),
        len(seq.gt_seg),
        len(seq.gt_tra),
        len(seq.st_seg),
    )
    return seq


def write_ctc_result(
    labels,
    folder: str | os.PathLike,
    *,
    tracks: np.ndarray | None = None,
    first_frame: int = 0,
    pixel_size: PixelSize | None = None,
) -> Path:
    """Write a CTC result folder (``maskTTT.tif`` per frame, ``res_track.txt``).

    This writes into ``folder`` directly; wrap it in :func:`napari_hemd.io.stacks.write_labels` (or
    :func:`napari_hemd._atomic.atomic_path`) for an atomic, non-overwriting write.

    Parameters
    ----------
    labels : (T, Y, X) or (T, Z, Y, X) integer array
        Instance labels per frame (uint16 in the files, as the CTC tools expect).
    folder : path-like
        Output folder (created). Labels of 65536 and above (the files are uint16) renumber
        the folder's labels 1..K in the order of their ids, tracks alike.
    tracks : (K, 4) int array, optional
        Rows ``L B E P``, written as given. Without it, every maximal run of consecutive frames in
        which a label appears is one track with no parent; a label that comes back after a gap
        gets a fresh label for each later run, so the folder always passes the CTC validity check
        (each track's label is present in exactly frames ``B..E``). For segmentation-only results
        (labels not linked over time) this gives valid SEG/DET files; TRA is then meaningless.
    first_frame : int
        The movie's number of ``labels[0]`` (input frames ``t050``-``t059``: 50): masks are
        numbered from it (``mask050.tif`` ...), as are the tracks' begin and end, so the folder
        lines up with the challenge's reference of those frames.
    pixel_size : PixelSize, optional
        The pixels' physical size (:mod:`napari_hemd.io.calibration`): each mask records it as
        Fiji does (ImageJ resolution tags and unit, ``spacing`` for a 3D mask), which
        :func:`napari_hemd.io.calibration.read_pixel_size` reads back for the folder. The masks
        stay uint16 LZW TIFFs, as the CTC tools read them.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    n = labels.shape[0]
    first_frame = int(first_frame)
    if first_frame < 0:
        raise ValueError(f"first_frame must be >= 0; got {first_frame}")
    digits = max(3, len(str(first_frame + n - 1)))
    from napari_hemd.core.validation import check_label_ids

    present = []
    for t in range(n):  # negative or fractional ids were wrapped by the uint16 cast (audit 24)
        frame = np.asarray(labels[t])
        check_label_ids(frame, t)
        present.append(np.unique(frame))
    present = [p[p != 0].astype(np.int64) for p in present]
    remap: dict[int, dict[int, int]] = {}
    if tracks is None:
        tracks, remap = tracks_from_presence(present)
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    top = max([int(p.max()) for p in present if p.size] + [int(tracks[:, 0].max(initial=0))])
    ids = None  # labels renumbered 1..K (index + 1 here) where one is too large for the files
    if top >= 2**16:
        ids = np.unique(tracks[:, 0])
        if len(ids) >= 2**16:
            raise ValueError(f"labels: {len(ids)} tracks; CTC result files hold labels < 65536")
        named = [remap.get(t, {}).get(i, i) for t, p in enumerate(present) for i in p.tolist()]
        lost = np.setdiff1d(np.concatenate([named, tracks[tracks[:, 3] > 0, 3]]), ids)
        if lost.size:
            raise ValueError(
                f"tracks: label {int(lost[0])} has no row (tracks: rows L B E P for every label "
                "of labels)"
            )
        logger.info("labels up to %d renumbered 1-%d for the CTC files", top, len(ids))
        tracks = tracks.copy()
        tracks[:, 0] = np.searchsorted(ids, tracks[:, 0]) + 1
        parent = tracks[:, 3] > 0
        tracks[parent, 3] = np.searchsorted(ids, tracks[parent, 3]) + 1
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        frame = np.asarray(labels[t]).astype(np.uint16 if ids is None else np.int64)
        for old, fresh in remap.get(t, {}).items():  # a later run after a gap: its fresh label
            frame[frame == old] = fresh  # (above every label: never one renamed after)
        if ids is not None:  # renumbered 1..K
            inside = frame != 0
            frame[inside] = np.searchsorted(ids, frame[inside]) + 1
            frame = frame.astype(np.uint16)
        _write_mask(folder / f"mask{first_frame + t:0{digits}d}.tif", frame, pixel_size)
    tracks = tracks + np.array([0, first_frame, first_frame, 0])
    lines = "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in tracks)
    (folder / "res_track.txt").write_text(lines)
    return folder


def _write_mask(path: Path, frame: np.ndarray, pixel_size: PixelSize | None) -> None:
    """One uint16 ``maskTTT.tif``, LZW as the challenge's own files, calibrated where known.

    A calibrated mask is an ImageJ TIFF (``YX`` or ``ZYX``: its resolution, unit and z
    ``spacing``, as Fiji writes them); one ImageJ cannot hold (a 3D mask of one slice, which it
    reads back 2D) records the size in tifffile's JSON description instead.
    """
    import tifffile

    if pixel_size is None:  # (minisblack: a mask of 3 or 4 slices is no RGB image)
        tifffile.imwrite(path, frame, compression="lzw", photometric="minisblack")
        return
    axes = "ZYX" if frame.ndim == 3 else "YX"
    if frame.ndim in (2, 3) and 1 not in frame.shape[:-2]:
        kw, ij = imagej_calibration(pixel_size, axes)
        ij["axes"] = axes
        tifffile.imwrite(path, frame, imagej=True, metadata=ij, compression="lzw", **kw)
        return
    meta = {PIXEL_SIZE_KEY: pixel_size.to_json()}
    tifffile.imwrite(path, frame, metadata=meta, compression="lzw", photometric="minisblack")
