"""Saving a proofreading session again after one edit vs writing it whole, and linking's cost.

Project (``napari_hemd.workflows.save_project``): the session of a whole movie (image, probability,
background, labels; the whole Fluo-N2DL-HeLa 01 movie from ``--data``, else a synthetic movie of
its size) is written once, then one frame is edited and it is saved over the same folder, as
autosave does: the re-save links the chunks that did not change. Both in the same run; the
ratio is what autosave costs against a full write (lower is better). Also a save with a long
undo history (300 edits).

Linking (``napari_hemd.core.linking.link_labels``) of the same movie's silver-truth masks: the
EMD matching alone vs with the overlap links of what it leaves unmatched (the twenty-seventh
session's), same run.

    PYTHONPATH=src python benchmarks/bench_project_save.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_hemd.workflows import EditHistory, save_project


def movie(data: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image uint16, probability float32, labels int32) of the whole HeLa movie, or its size."""
    seq = None if data is None else data / "ctc" / "Fluo-N2DL-HeLa" / "01"
    if seq is not None and seq.is_dir():
        import tifffile

        frames = sorted(seq.glob("t*.tif"))
        image = np.stack([tifffile.imread(f) for f in frames])
        labels = np.stack(
            [tifffile.imread(seq.parent / "01_ST" / "SEG" / f"man_seg{f.stem[1:]}.tif")
             for f in frames]
        ).astype(np.int32)  # fmt: skip
    else:
        from napari_hemd.data.synthetic import nuclei_video

        v = nuclei_video(n_frames=92, shape=(700, 1100), n_cells=70, seed=0)
        image, labels = v["image"], v["labels"].astype(np.int32)
    rng = np.random.default_rng(0)
    prob = (labels > 0).astype(np.float32) * 0.9 + rng.random(labels.shape, dtype=np.float32) * 0.05
    return image, prob, labels


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="../shared/data (else synthetic)")
    args = p.parse_args()
    image, prob, labels = movie(args.data)
    print(f"movie {labels.shape}, {(image.nbytes + 2 * prob.nbytes + labels.nbytes) / 1e9:.2f} GB")
    tmp = Path(tempfile.mkdtemp(prefix="bench-project-"))
    try:
        out = tmp / "s.zarr"
        kw = dict(prob=prob, image=image, background=1 - prob, params={})

        def full() -> None:
            shutil.rmtree(out, ignore_errors=True)
            save_project(out, labels=labels, **kw)

        whole = timed(full)
        edited = labels.copy()
        edited[40, 100:140, 100:140] = 9999
        again = timed(lambda: save_project(out, labels=edited, overwrite=True, **kw))
        print(f"save whole: {whole:.2f} s; again after one edit: {again:.2f} s "
              f"(ratio {again / whole:.2f})")  # fmt: skip
        hist, work = EditHistory(), edited.copy()
        for k in range(300):  # brush strokes: a few hundred pixels each
            before = work[k % 92].copy()
            work[k % 92, 10 + k % 600 : 20 + k % 600, 10:40] = 5000 + k
            hist.record("stroke", before, work[k % 92], offset=(k % 92) * work[0].size)
        t300 = timed(lambda: save_project(out, labels=work, history=hist, overwrite=True, **kw))
        print(f"again with 300 edits in the history: {t300:.2f} s (ratio {t300 / whole:.2f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from napari_hemd.core import linking

    keep = linking._leftover_links
    linking._leftover_links = lambda *a, **k: {}
    try:
        emd_only = timed(lambda: linking.link_labels(labels))
    finally:
        linking._leftover_links = keep
    both = timed(lambda: linking.link_labels(labels))
    print(f"link_labels: EMD alone {emd_only:.2f} s, with overlap links {both:.2f} s "
          f"(ratio {both / emd_only:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
