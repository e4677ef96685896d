"""H-EMD and the baselines on real Cell Tracking Challenge masks (skips without ../shared)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_hemd as nh
from napari_hemd.data.synthetic import probability_from_labels

pytestmark = pytest.mark.shared


def f1_at_half(gt, pred):
    tp = fp = fn = 0
    for g, p in zip(gt, pred, strict=True):
        g, p = g.astype(np.int64), p.astype(np.int64)
        both = (g > 0) & (p > 0)
        key = g[both] * (p.max() + 1) + p[both]
        k, inter = np.unique(key, return_counts=True)
        gi, pi = k // (p.max() + 1), k % (p.max() + 1)
        ag, ap = np.bincount(g.ravel()), np.bincount(p.ravel())
        iou = inter / (ag[gi] + ap[pi] - inter)
        m = int((iou > 0.5).sum())
        tp += m
        fp += int((ap[1:] > 0).sum()) - m
        fn += int((ag[1:] > 0).sum()) - m
    return 2 * tp / (2 * tp + fp + fn)


def test_hemd_on_fluo_sim_masks(shared_data):
    seg = sorted((shared_data / "ctc/Fluo-N2DH-SIM+/02_GT/SEG").glob("man_seg*.tif"))[:12]
    gt = np.stack([tifffile.imread(f) for f in seg])
    # Touching nuclei get a weak contact: thresholding merges some, H-EMD should split them.
    prob = np.stack(
        [probability_from_labels(m, rng=i, contact_dip=0.3, noise=0.03) for i, m in enumerate(gt)]
    )
    hemd = nh.segment(prob, "hemd")
    th = nh.segment(prob, "threshold")
    assert hemd.shape == gt.shape
    f_h, f_t = f1_at_half(gt, hemd), f1_at_half(gt, th)
    assert f_h >= f_t
    assert f_h > 0.9
