"""H-EMD speed, as ratios against baselines measured in the same run.

    python benchmarks/bench_hemd.py [--data ../shared/data] [--frames 50] [--repeat 5]

1. Forest build per frame vs ``scipy.ndimage.label(prob >= tau)`` on the same frame (target <= 3x).
2. Forest build vs a naive forest: one ``ndimage.label`` per threshold level plus containment.
3. Whole H-EMD on a 50-frame sequence vs the watershed baseline on the same maps (target <= 1.5x).

Probability maps are derived from real Cell Tracking Challenge reference masks (when ``../shared``
is present; otherwise from the package's synthetic video at 512x512) with
``napari_hemd.data.synthetic.probability_from_labels``; ``--maps`` adds the shipped models'
predictions.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

import napari_hemd as nh
from napari_hemd.core.forest import build_candidate_forest, quantize
from napari_hemd.data.synthetic import nuclei_video, probability_from_labels

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEQS = [
    ("Fluo-N2DH-SIM+", "02_GT/SEG", "man_seg*.tif"),
    ("Fluo-N2DL-HeLa", "01_ST/SEG", "man_seg*.tif"),
    ("PhC-C2DL-PSC", "01_ST/SEG", "man_seg*.tif"),
    ("DIC-C2DH-HeLa", "01_ST/SEG", "man_seg*.tif"),
]


def load_sequences(data: Path, n_frames: int):
    import tifffile

    out = {}
    for name, sub, pat in SEQS:
        files = sorted((data / "ctc" / name / sub).glob(pat))[:n_frames]
        if not files:
            continue
        gt = np.stack([tifffile.imread(f) for f in files])
        prob = np.stack(
            [
                probability_from_labels(m, rng=i, contact_dip=0.3, noise=0.03)
                for i, m in enumerate(gt)
            ]
        )
        out[name] = prob
    if not out:
        v = nuclei_video(n_frames=n_frames, shape=(512, 512), n_cells=60)
        out["synthetic 512x512"] = v["prob"]
    return out


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def best_of_pair(fa, fb, repeat):
    """Best-of-``repeat`` times of two functions run alternately (drift hits both alike)."""
    ta, tb = [], []
    for _ in range(repeat):
        for fn, out in ((fa, ta), (fb, tb)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return min(ta), min(tb)


def naive_forest(prob, tau=0.5):
    """One labelling per distinct level, parents from the labels one level down."""
    q = quantize(prob)
    levels = np.unique(q[q >= round(tau * 100)])
    prev = None
    nodes = 0
    for v in levels:
        lab, n = ndi.label(q >= v)
        if prev is not None:
            # parent of each component: the previous level's label at its first pixel
            flat = lab.ravel()
            first = np.zeros(n + 1, np.int64)
            first[flat[::-1]] = np.arange(flat.size - 1, -1, -1)
            _ = prev.ravel()[first[1:]]
        prev = lab
        nodes += n
    return nodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--maps",
        type=Path,
        nargs="*",
        default=[],
        help="also: .npz files of model predictions ('foreground', (T, Y, X)), e.g. the cache "
        "that benchmarks/divisions.py writes to /tmp/hemd-maps",
    )
    args = ap.parse_args()
    print(
        f"# napari-hemd {nh.__version__} | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} CPUs | python {platform.python_version()}"
    )
    seqs = load_sequences(args.data, args.frames)
    for f in args.maps:
        seqs[f"{f.stem} (model prediction)"] = np.load(f)["foreground"][: args.frames]
    build_candidate_forest(next(iter(seqs.values()))[0])  # JIT warm-up (cached on disk after)
    print("\n## Forest build per frame (median over frames of best-of-repeat)")
    print(
        "| sequence | frame | nodes | label(p>=tau) ms | forest ms | ratio | worst frame | naive ms "
        "| naive/forest |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, prob in seqs.items():
        r_l, r_f, r_n, nodes = [], [], [], []
        for p in prob[:: max(1, len(prob) // 5)]:
            tl, tf = best_of_pair(
                lambda p=p: ndi.label(p >= 0.5), lambda p=p: build_candidate_forest(p), args.repeat
            )
            r_l.append(tl)
            r_f.append(tf)
            r_n.append(best_of(lambda p=p: naive_forest(p), 1))
            nodes.append(build_candidate_forest(p).n_nodes)
        ml, mf, mn = (float(np.median(x)) * 1e3 for x in (r_l, r_f, r_n))
        worst = max(f / lab for f, lab in zip(r_f, r_l, strict=True))
        print(
            f"| {name} | {prob.shape[1]}x{prob.shape[2]} | {int(np.median(nodes))} | {ml:.2f} | "
            f"{mf:.2f} | {mf / ml:.1f}x | {worst:.1f}x | {mn:.1f} | {mn / mf:.0f}x |"
        )
    print(f"\n## Whole sequence ({args.frames} frames): H-EMD vs watershed baseline, same maps")
    print("| sequence | frames | watershed s | H-EMD s | ratio | threshold s |")
    print("|---|---|---|---|---|---|")
    for name, prob in seqs.items():
        tw = best_of(lambda prob=prob: nh.segment(prob, "watershed"), 1)
        th = best_of(lambda prob=prob: nh.segment(prob, "hemd"), 1)
        tt = best_of(lambda prob=prob: nh.segment(prob, "threshold"), 1)
        print(f"| {name} | {len(prob)} | {tw:.2f} | {th:.2f} | {th / tw:.2f}x | {tt:.2f} |")


if __name__ == "__main__":
    main()
