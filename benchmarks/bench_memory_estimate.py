"""Is ``segment``'s memory check honest? Peak RSS per pixel, measured, against its constants.

    python benchmarks/bench_memory_estimate.py                      # synthetic 512^2, 32/64 frames
    python benchmarks/bench_memory_estimate.py --stack ../shared/data/ctc/Fluo-N2DL-HeLa/01 \
        --frames 64                                                 # the constants' own run

``segment`` refuses a movie whose maps, forests and labels would not fit in the memory free
(:mod:`napari_hemd._memory`), from a cost per pixel: ``MODEL_BYTES_PER_PIXEL`` for ``segment
--model`` on a raw movie, ``MAPS_BYTES_PER_PIXEL`` for ``segment`` on a float32 probability
stack. This script measures them: each run is a fresh process (``napari-hemd segment`` through
``napari_hemd.cli.main``, peak RSS: ``VmHWM``, Linux) on the first N and 2N frames; the slope
(RSS(2N) - RSS(N)) / (N more frames' pixels) is the cost per pixel, printed beside the constant
as measured / constant (about 1: the check refuses what would not fit and nothing that would;
well above 1: it lets runs through that the system will kill).

``--stack``: a TIFF stack or a CTC sequence folder (its ``t*.tif`` frames) of raw frames; the
probability stack is predicted from it (``nuclei-fluo``, one view). Default: the package's
synthetic nuclei video tiled to ``--size``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# VmHWM: this process's own peak (ru_maxrss survives exec: a child of a large parent would
# report the parent's size)
CHILD = """
import json, re, sys
from pathlib import Path
from napari_hemd.cli import main
rc = main(sys.argv[1:] + ["--no-progress", "--no-memory-check"])
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
print(json.dumps({"rc": rc, "rss": int(hwm.group(1)) * 1024}))
"""


def raw_frames(args) -> np.ndarray:
    """``2 * frames`` raw frames (uint16) from ``--stack`` or the synthetic video."""
    n = 2 * args.frames
    if args.stack is None:
        from napari_hemd.data.synthetic import nuclei_video

        base = nuclei_video(n_frames=min(n, 40), shape=(256, 256), n_cells=24, seed=0)["image"]
        reps = -(-args.size // 256)
        idx = [t % len(base) for t in range(n)]
        return np.stack([np.tile(base[k], (reps, reps))[: args.size, : args.size] for k in idx])
    import tifffile

    path = Path(args.stack)
    if path.is_dir():
        files = sorted(path.glob("t*.tif"))
        frames = [tifffile.imread(f) for f in files[:n]]
    else:
        frames = list(tifffile.imread(path)[:n])
    if len(frames) < n:
        frames += frames[::-1][: n - len(frames)]  # ping-pong to 2N frames
    return np.stack(frames[:n])


def peak_rss(argv: list[str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=False
    )
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    res = json.loads(line) if line.startswith("{") else {"rc": -1}
    if res["rc"] != 0:
        raise SystemExit(f"segment {argv} failed:\n{out.stderr[-2000:]}")
    return int(res["rss"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stack", default=None, help="raw TIFF stack or CTC sequence folder")
    p.add_argument("--frames", type=int, default=32, help="N: runs on N and 2N frames (32)")
    p.add_argument("--size", type=int, default=512, help="synthetic frame size (512)")
    args = p.parse_args()
    import tifffile

    from napari_hemd._memory import MAPS_BYTES_PER_PIXEL, MODEL_BYTES_PER_PIXEL

    raw = raw_frames(args)
    n = args.frames
    px = n * raw.shape[1] * raw.shape[2]  # the N more frames' pixels
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        tifffile.imwrite(d / "raw_n.tif", raw[:n])
        tifffile.imwrite(d / "raw_2n.tif", raw)
        from napari_hemd.cli import main as cli

        argv = ["predict", str(d / "raw_2n.tif"), "--model", "nuclei-fluo", "--tta", "1"]
        assert cli([*argv, "-o", str(d / "prob.tif"), "--no-progress"]) == 0
        prob = tifffile.imread(d / "prob.tif")
        tifffile.imwrite(d / "prob_n.tif", prob[:n])
        tifffile.imwrite(d / "prob_2n.tif", prob)
        rows = [
            ("segment --model (hemd)", "raw", ["--model", "nuclei-fluo", "--tta", "1"], "model"),
            ("segment PROB (hemd)", "prob", [], "maps"),
            ("segment PROB (threshold)", "prob", ["--method", "threshold"], "maps"),
            ("segment PROB (watershed)", "prob", ["--method", "watershed"], "maps"),
        ]
        const = {"model": MODEL_BYTES_PER_PIXEL, "maps": MAPS_BYTES_PER_PIXEL}
        print(
            f"frames {n} and {2 * n} of {raw.shape[1]} x {raw.shape[2]} ({args.stack or 'synthetic'})"
        )
        print(
            f"{'run':28s} {'RSS N MB':>9s} {'RSS 2N MB':>10s} {'B/px':>6s} {'const':>6s} {'ratio':>6s}"
        )
        for name, kind, extra, which in rows:
            rss = []
            for tag in ("n", "2n"):
                out = d / f"out_{tag}.tif"
                rss.append(
                    peak_rss(
                        [
                            "segment",
                            str(d / f"{kind}_{tag}.tif"),
                            *extra,
                            "-o",
                            str(out),
                            "--overwrite",
                        ]
                    )
                )
            bpp = (rss[1] - rss[0]) / px
            c = const[which]
            print(
                f"{name:28s} {rss[0] / 2**20:9.0f} {rss[1] / 2**20:10.0f} {bpp:6.1f} {c:6d} "
                f"{bpp / c:6.2f}"
            )


if __name__ == "__main__":
    main()
