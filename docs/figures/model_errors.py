"""Figure of docs/models.md: where the shipped nuclei-fluo still errs, on its held-out blocks.

python docs/figures/model_errors.py [--data ../shared/data]

Row 1: Fluo-N2DH-SIM+/02 t049 (held out): the nuclei whose masks stay below IoU 0.5 are dim
nuclei in the sequence's noisiest frames; the gold truth is the whole simulated nucleus, the
foreground probability only its brighter parts. Row 2: Fluo-N2DL-HeLa/01 (t060, a training
frame, and t085, held out): the foreground sinks in the middle of isolated nuclei (where the
network hedges between "foreground" and "contact": touching nuclei often meet with no dip in
the image, so depth inside a bright blob is all it has to go by), and two touching nuclei with
no dip between them stay one object. Needs the CTC data of ``../shared/data``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import tifffile

from napari_hemd import segment_image
from napari_hemd.core.metrics import overlap_table

HERE = Path(__file__).parent


def _crop(centre, shape, half=45):
    y, x = (round(float(c)) for c in centre)
    y0 = min(max(0, y - half), shape[0] - 2 * half)
    x0 = min(max(0, x - half), shape[1] - 2 * half)
    return slice(y0, y0 + 2 * half), slice(x0, x0 + 2 * half)


def _panel(axes, image, reference, seg, sl, title):
    lo, hi = np.percentile(image, [1, 99.8])
    axes[0].imshow(image[sl], cmap="gray", vmin=lo, vmax=hi)
    axes[0].contour(reference[sl] > 0, [0.5], colors="r", linewidths=0.8)
    axes[0].set_title(f"{title}\nimage, reference (red)", fontsize=8)
    axes[1].imshow(seg.maps["foreground"][0][sl], cmap="magma", vmin=0, vmax=1)
    axes[1].contour(reference[sl] > 0, [0.5], colors="c", linewidths=0.6)
    axes[1].set_title("foreground probability", fontsize=8)
    lab = seg.labels[0][sl]
    axes[2].imshow(np.ma.masked_equal(lab, 0) % 20, cmap="tab20", vmin=0, vmax=19)
    axes[2].contour(reference[sl] > 0, [0.5], colors="k", linewidths=0.6)
    axes[2].set_title("H-EMD whole-cell masks", fontsize=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--model", default="nuclei-fluo")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "model-errors.png")
    args = ap.parse_args()
    ctc = args.data / "ctc"
    cases = [
        # (sequence, reference folder, frame, crop centre (y, x) or how to find it, title)
        ("Fluo-N2DH-SIM+/02", "02_GT/SEG", 49, "worst", "SIM+ t049 (held out): dim nuclei"),
        ("Fluo-N2DL-HeLa/01", "01_ST/SEG", 60, (420, 600), "HeLa t060: dips inside nuclei"),
        ("Fluo-N2DL-HeLa/01", "01_ST/SEG", 85, "merge", "HeLa t085 (held out): a merge"),
    ]
    fig, axes = plt.subplots(len(cases), 3, figsize=(9, 3.1 * len(cases)))
    for row, (seq, ref_dir, t, centre, title) in zip(axes, cases, strict=True):
        folder = ctc / seq
        image = tifffile.imread(folder / f"t{t:03d}.tif")
        reference = tifffile.imread(folder.parent / ref_dir / f"man_seg{t:03d}.tif")
        seg = segment_image(image[None], model=args.model)
        if centre == "worst":
            centre = _worst(reference, seg.labels[0])
        elif centre == "merge":
            centre = _merged(reference, seg.labels[0])
        _panel(row, image, reference, seg, _crop(centre, image.shape), title)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


def _worst(reference: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Centre of the reference object (100 px or more) worst matched (lowest best IoU)."""
    t = overlap_table(reference, labels)
    r, _, inter, union = t.object_pairs()
    best = np.zeros(t.n_gt + 1)
    np.maximum.at(best, r, inter / union)
    best[(t.gt_sizes < 100) | (np.arange(t.n_gt + 1) == 0)] = np.inf
    return tuple(np.argwhere(reference == t.gt_labels[np.argmin(best)]).mean(0))


def _merged(reference: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Centre of the mask that holds the most reference objects (each more than half inside)."""
    t = overlap_table(reference, labels)
    r, c, inter, _ = t.object_pairs()
    held = np.bincount(c[inter > 0.5 * t.gt_sizes[r]], minlength=t.n_pred + 1)
    return tuple(np.argwhere(labels == t.pred_labels[np.argmax(held)]).mean(0))


if __name__ == "__main__":
    main()
