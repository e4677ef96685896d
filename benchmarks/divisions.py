"""Cell divisions: is the mother one object in her last frame, and are the daughters two?

    python benchmarks/divisions.py [--data ../shared/data] [--cache /tmp/hemd-maps]

The H-EMD paper's selection has a known weak spot at divisions: eq. 14 compares a candidate's size
with its reference only, so a freshly divided daughter selects a daughter-sized core of her undivided
mother in the previous frame. This script counts, for every
division of the reference tracks (``man_track.txt``: a daughter's parent ``P`` ends in frame ``e``,
the daughters begin in ``e + 1``):

* mother correct: one predicted instance has IoU >= 0.5 with the mother's reference mask in ``e``;
* mother split: two or more predicted instances each cover >= 15 % of the mother's mask;
* daughter correct: a predicted instance has IoU >= 0.5 with a daughter's reference mask in ``e+1``;

plus F1 / SEG over the whole sequence. Maps are the shipped models' predictions of the whole
sequence (training frames included: this counts division events, the held-out scores are in
``compare_variants.py``). Reference masks: silver truth (every frame), with tracking markers to find
the mother and daughters in them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile
from compare_variants import grown_labels

import napari_hemd as nh

CASES = [
    ("nuclei-fluo", "Fluo-N2DL-HeLa/01", "01_ST/SEG", "01_GT/TRA"),
    ("cells-phc", "PhC-C2DL-PSC/01", "01_ST/SEG", "01_GT/TRA"),
    ("cells-dic", "DIC-C2DH-HeLa/01", "01_ST/SEG", "01_GT/TRA"),
]
METHODS = [
    ("threshold", {"method": "threshold"}),
    ("hemd paper", {"method": "hemd", "variant": "paper"}),
    ("hemd refined, lone growth 1", {"method": "hemd", "lone_growth": 1.0}),
    ("hemd refined, lone growth 1.5, no split", {"method": "hemd", "split_coverage": 0.0}),
    ("hemd refined (default: lone growth 1.5, split 0.8)", {"method": "hemd"}),
    ("hemd refined, lone growth 2", {"method": "hemd", "lone_growth": 2.0}),
    ("hemd refined, lone growth 3", {"method": "hemd", "lone_growth": 3.0}),
]


def predicted_maps(model: str, raw: np.ndarray, cache: Path, key: str) -> dict[str, np.ndarray]:
    path = cache / f"{key.replace('/', '_')}-{model}.npz"
    if path.exists():
        return dict(np.load(path))
    from napari_hemd.models import load_model, predict

    maps = predict(load_model(model), raw, outputs=("foreground", "boundary", "background"), tta=1)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v, np.float32) for k, v in maps.items()})
    return maps


def reference_region(seg: np.ndarray, marker: np.ndarray, track: int) -> np.ndarray | None:
    """The silver-truth object under a tracking marker (largest overlap), as a mask."""
    m = marker == track
    if not m.any():
        return None
    ids, counts = np.unique(seg[m], return_counts=True)
    counts[ids == 0] = 0
    if counts.max() == 0:
        return None
    return seg == ids[np.argmax(counts)]


def division_events(folder: Path, ref: str, tra: str, n_frames: int):
    """(frame e, mother mask in e, [daughter masks in e + 1]) for every division."""
    table = np.loadtxt(folder.parent / tra / "man_track.txt", dtype=np.int64, ndmin=2)
    events = []
    for mother in np.unique(table[table[:, 3] > 0, 3]):
        daughters = table[table[:, 3] == mother]
        e = int(table[table[:, 0] == mother, 2][0])
        if e + 1 >= n_frames or len(daughters) < 2:
            continue
        seg_e = tifffile.imread(folder.parent / ref / f"man_seg{e:03d}.tif")
        seg_b = tifffile.imread(folder.parent / ref / f"man_seg{e + 1:03d}.tif")
        mk_e = tifffile.imread(folder.parent / tra / f"man_track{e:03d}.tif")
        mk_b = tifffile.imread(folder.parent / tra / f"man_track{e + 1:03d}.tif")
        mom = reference_region(seg_e, mk_e, int(mother))
        kids = [reference_region(seg_b, mk_b, int(d)) for d in daughters[:, 0]]
        if mom is None or any(k is None for k in kids):
            continue
        events.append((e, mom, kids))
    return events


def best_iou(labels: np.ndarray, mask: np.ndarray) -> float:
    ids, inter = np.unique(labels[mask], return_counts=True)
    best = 0.0
    for i, n in zip(ids, inter, strict=True):
        if i:
            best = max(best, n / (mask.sum() + (labels == i).sum() - n))
    return best


def is_split(labels: np.ndarray, mask: np.ndarray, frac: float = 0.15) -> bool:
    ids, inter = np.unique(labels[mask], return_counts=True)
    return int(((inter >= frac * mask.sum()) & (ids > 0)).sum()) >= 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    ap.add_argument("--cache", type=Path, default=Path("/tmp/hemd-maps"))
    ap.add_argument("--min-size", type=int, default=20)
    args = ap.parse_args()
    print(
        "| model | sequence | divisions | method | mother correct | mother split | "
        "daughters correct | F1 | SEG | s/frame |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model, seq, ref, tra in CASES:
        folder = args.data / "ctc" / seq
        # the contiguous run from frame 0 (PhC-C2DL-PSC 01 here has t000-t100, then t150-t250)
        frames = [f for i, f in enumerate(sorted(folder.glob("t*.tif"))) if int(f.stem[1:]) == i]
        raw = np.stack([tifffile.imread(f) for f in frames])
        gt = np.stack(
            [tifffile.imread(folder.parent / ref / f"man_seg{t:03d}.tif") for t in range(len(raw))]
        )
        maps = predicted_maps(model, raw, args.cache, seq)
        events = division_events(folder, ref, tra, len(raw))
        for label, kw in METHODS:
            lab, dt = grown_labels(maps, args.min_size, **kw)
            mom_ok = sum(best_iou(lab[e], mom) >= 0.5 for e, mom, _ in events)
            mom_split = sum(is_split(lab[e], mom) for e, mom, _ in events)
            kids = [(e, k) for e, _, ks in events for k in ks]
            kid_ok = sum(best_iou(lab[e + 1], k) >= 0.5 for e, k in kids)
            m = nh.evaluate_sequence(gt, lab)
            print(
                f"| {model} | {seq} | {len(events)} | {label} | {mom_ok} | {mom_split} | "
                f"{kid_ok}/{len(kids)} | {m['F1']:.3f} | {m['SEG']:.3f} | {dt:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
