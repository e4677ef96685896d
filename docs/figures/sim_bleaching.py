"""Figure of docs/models.md: Fluo-N2DH-SIM+/02 fades; nuclei-fluo's scores follow its contrast.

python docs/figures/sim_bleaching.py [--data ../shared/data] [--json OUT.json]

Every frame of the sequence is segmented as ``napari-hemd segment --model nuclei-fluo`` does
(H-EMD over the whole movie, whole cells) and scored against the gold truth, frame by frame. A
nucleus' contrast is its mean intensity (3 px inside its gold-truth mask) above the background's
mean (10 px or more away from every nucleus), in units of the background's standard deviation:
the noise stays the same along the sequence (3.4 grey levels), the nuclei fade (bleaching), from
a median of about 10 noise levels at t000 to 1-2 on the held-out block t040-t049. Frames
t000-t039 are the model's training frames; the held-out block is shaded. Needs the CTC data of
``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import tifffile
from scipy import ndimage as ndi

from napari_hemd import segment_image
from napari_hemd.core.metrics import evaluate_sequence
from napari_hemd.io.ctc import read_ctc_labels

HERE = Path(__file__).parent
HELD_OUT = (40, 50)


def nucleus_contrast(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Per nucleus: (mean 3 px inside - background mean) / background std; and that std."""
    image = image.astype(np.float64)
    background = ~ndi.binary_dilation(labels > 0, iterations=10)
    mu, sd = image[background].mean(), image[background].std()
    inner = ndi.binary_erosion(labels > 0, iterations=3)
    ids = np.unique(labels[inner])
    ids = ids[ids > 0]
    means = ndi.mean(image, labels * inner, ids)
    return (np.asarray(means) - mu) / sd, float(sd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--model", default="nuclei-fluo")
    ap.add_argument("--json", type=Path, help="also write the per-frame numbers as JSON")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "sim-bleaching.png")
    args = ap.parse_args()

    folder = args.data / "ctc" / "Fluo-N2DH-SIM+" / "02"
    gt = read_ctc_labels(folder.parent / "02_GT" / "SEG")
    frames = sorted(int(p.stem[1:]) for p in folder.glob("t*.tif"))
    movie = np.stack([tifffile.imread(folder / f"t{t:03d}.tif") for t in frames])
    seg = segment_image(movie, model=args.model)
    scores = evaluate_sequence(
        {i: gt[t] for i, t in enumerate(frames)}, {i: seg.labels[i] for i in range(len(frames))}
    )
    rows = []
    for i, t in enumerate(frames):
        contrast, noise = nucleus_contrast(movie[i], gt[t])
        per = scores["frames"][i]
        rows.append(
            {
                "frame": t,
                "contrast_median": float(np.median(contrast)),
                "contrast_min": float(contrast.min()),
                "noise": noise,
                "F1": per["F1"],
                "AJI": per["AJI"],
            }
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))

    t = np.array([r["frame"] for r in rows])
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax in (a0, a1):
        ax.axvspan(HELD_OUT[0] - 0.5, HELD_OUT[1] - 0.5, color="0.85", lw=0)
        ax.set_xlabel("frame")
    a0.plot(t, [r["contrast_median"] for r in rows], "k-", label="median nucleus")
    a0.plot(t, [r["contrast_min"] for r in rows], "k:", label="dimmest nucleus")
    a0.set_ylabel("contrast (noise levels)")
    a0.set_ylim(bottom=0)
    a0.legend(fontsize=8)
    a0.set_title("nuclei fade, the noise stays (shaded: held out)", fontsize=9)
    a1.plot(t, [r["F1"] for r in rows], "C0-", label="F1")
    a1.plot(t, [r["AJI"] for r in rows], "C3-", label="AJI")
    a1.axhline(0.95, color="C0", ls="--", lw=0.8)
    a1.axhline(0.80, color="C3", ls="--", lw=0.8)
    a1.set_ylim(0.5, 1.02)
    a1.legend(fontsize=8, loc="lower left")
    a1.set_title(f"{args.model} + H-EMD per frame (dashed: the floor)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
