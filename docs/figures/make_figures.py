"""Generate the algorithm figures of docs/algorithm.md.

python docs/figures/make_figures.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from skimage.segmentation import find_boundaries

import napari_hemd as nh
from napari_hemd.core.selection import HOW_NAMES

HERE = Path(__file__).parent


def two_cells(contact):
    p = np.zeros((40, 60), np.float32)
    yy, xx = np.mgrid[:40, :60]
    for cx in (20, 40):
        d = np.hypot(yy - 20, xx - cx)
        p = np.maximum(p, np.clip(1.0 - d / 13, 0, 1) * 0.5 + 0.5 * (d < 11))
    p[:, 30] = np.minimum(p[:, 30], contact)
    return np.clip(p, 0, 1)


def forest_figure(prob, path):
    f = nh.build_candidate_forest(prob)
    levels = [0.5, 0.6, 0.8]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
    axes[0].imshow(prob, cmap="magma", vmin=0, vmax=1)
    axes[0].set_title("probability map")
    for ax, v in zip(axes[1:], levels, strict=True):
        cut = f.cut(v)
        ax.imshow(prob, cmap="gray", vmin=0, vmax=1)
        ax.imshow(np.ma.masked_equal(cut, 0) % 10, cmap="tab10", alpha=0.6, vmin=0, vmax=9)
        ax.contour(find_boundaries(cut), [0.5], colors="w", linewidths=0.6)
        ids = np.unique(cut[cut > 0]) - 1
        ax.set_title(f"cut at {v:.2f}: candidates {ids.tolist()}")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    lines = [
        f"node {n}: level {f.level[n]:.2f}, area {f.area[n]}, parent {f.parent[n]}"
        for n in range(f.n_nodes)
    ]
    return lines


def selection_figure(prob, path):
    res = nh.hemd(prob, variant="paper")
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.6))
    colours = {
        "initial": "tab:green",
        "left": "tab:blue",
        "right": "tab:orange",
        "padding": "tab:red",
        "locked": "k",
    }
    for w in range(3):
        th = nh.segment(prob[w : w + 1], "threshold")[0]
        axes[0, w].imshow(prob[w], cmap="gray", vmin=0, vmax=1)
        axes[0, w].contour(find_boundaries(th), [0.5], colors="yellow", linewidths=0.8)
        axes[0, w].set_title(f"frame {w}: 0.5-threshold, {th.max()} object(s)")
        axes[1, w].imshow(prob[w], cmap="gray", vmin=0, vmax=1)
        f, s = res.forests[w], res.selections[w]
        for n, how in zip(s.nodes, s.how, strict=True):
            name = HOW_NAMES[int(how)]
            axes[1, w].contour(f.mask(int(n)), [0.5], colors=colours[name], linewidths=1.5)
            cy, cx = np.argwhere(f.mask(int(n))).mean(0)
            axes[1, w].text(
                cx,
                cy,
                f"{name}\nnode {n}",
                color=colours[name],
                ha="center",
                va="center",
                fontsize=8,
                backgroundcolor="white",
            )
        axes[1, w].set_title(f"frame {w}: H-EMD, {len(s.nodes)} object(s)")
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    lines = forest_figure(two_cells(0.62), HERE / "forest.png")
    print("\n".join(lines))
    selection_figure(
        np.stack([two_cells(0.3), two_cells(0.62), two_cells(0.3)]), HERE / "selection.png"
    )
