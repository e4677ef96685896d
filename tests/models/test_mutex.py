from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("elf")

from napari_hemd.models import make_offsets, merge_small_instances, mutex_watershed_labels


def _ideal_affinities(labels, offsets):
    h, w = labels.shape
    affs = np.zeros((len(offsets), h, w), np.float32)
    for c, (dy, dx) in enumerate(offsets):
        for y in range(h):
            for x in range(w):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w:
                    affs[c, y, x] = float(labels[y, x] == labels[yy, xx])
    return affs


def test_mutex_separates_touching_instances():
    labels = np.zeros((20, 30), np.int32)
    labels[4:16, 3:14] = 1
    labels[4:16, 14:26] = 2  # touches instance 1
    offsets = make_offsets((1, 3, 9))
    affs = _ideal_affinities(labels, offsets)
    seg = mutex_watershed_labels(affs, offsets, foreground=(labels > 0).astype(float), min_size=5)
    assert seg.max() == 2
    assert np.array_equal(seg > 0, labels > 0)
    for lab in (1, 2):
        assert len(np.unique(seg[labels == lab])) == 1


def test_mutex_refuses_values_that_are_no_probabilities():
    """A NaN affinity gave 4 objects for 2, shifted ones 16, a NaN threshold none: refused."""
    labels = np.zeros((16, 16), np.int32)
    labels[2:8, 2:14], labels[9:15, 2:14] = 1, 2
    offsets = make_offsets((1, 4))
    affs = _ideal_affinities(labels, offsets)
    fg = (labels > 0).astype(float)
    assert mutex_watershed_labels(affs, offsets, foreground=fg, min_size=1).max() == 2
    nan = affs.copy()
    nan[1, 5, 5] = np.nan
    with pytest.raises(ValueError, match=r"affinities must be finite.*1 NaN/inf.*\(1, 5, 5\)"):
        mutex_watershed_labels(nan, offsets, foreground=fg)
    with pytest.raises(ValueError, match=r"affinities must be probabilities in .0, 1.; got values"):
        mutex_watershed_labels(affs - 1, offsets, foreground=fg)
    with pytest.raises(ValueError, match="foreground must be finite"):
        mutex_watershed_labels(affs, offsets, foreground=fg * np.nan)
    with pytest.raises(ValueError, match="threshold must be a foreground probability"):
        mutex_watershed_labels(affs, offsets, foreground=fg, threshold=float("nan"))
    with pytest.raises(ValueError, match="min_size must be >= 0"):
        mutex_watershed_labels(affs, offsets, foreground=fg, min_size=-1)
    with pytest.raises(ValueError, match="ranges must be a sequence of positive integers"):
        make_offsets("1,3")


def test_mutex_checks_offsets():
    with pytest.raises(ValueError, match="unit offsets"):
        mutex_watershed_labels(np.zeros((2, 5, 5)), [(-3, 0), (0, -3)])
    with pytest.raises(ValueError, match="shape"):
        mutex_watershed_labels(np.zeros((3, 5, 5)), [(-1, 0), (0, -1)])


def test_merge_small_instances():
    labels = np.zeros((10, 10), np.int32)
    labels[:, :6] = 1
    labels[:2, 6:8] = 2  # small, touches 1 and 3
    labels[:, 8:] = 3
    labels[6:8, 6:8] = 0
    labels[9, 6] = 4  # small and touches 1 only
    out = merge_small_instances(labels, 5)
    assert out.max() == 2
    assert len(np.unique(out[labels == 4])) == 1 and out[9, 6] == out[0, 0]
    isolated = np.zeros((6, 6), np.int32)
    isolated[1:3, 1:3] = 1
    assert merge_small_instances(isolated, 5).max() == 0


def test_mutex_bias_separates_nuclei_whose_long_range_affinities_stay_high():
    """Across the contact the long-range affinities are 0.7 (a network that has not pulled the two
    embeddings apart): the plain Mutex watershed merges the pair, a bias of 0.5 separates it."""
    labels = np.zeros((20, 30), np.int32)
    labels[4:16, 3:14] = 1
    labels[4:16, 14:26] = 2
    offsets = make_offsets((1, 3, 9))
    affs = _ideal_affinities(labels, offsets)
    units = np.zeros_like(affs, bool)
    units[:2] = True
    affs[(affs == 0) & ~units] = 0.7  # repulsive edges across the contact: weak
    affs[:2][affs[:2] == 0] = 0.3  # the unit edges across the contact: a soft cut
    fg = (labels > 0).astype(float)
    merged = mutex_watershed_labels(affs, offsets, foreground=fg, min_size=5)
    assert merged.max() == 1
    split = mutex_watershed_labels(affs, offsets, foreground=fg, min_size=5, bias=0.5)
    assert split.max() == 2
    for lab in (1, 2):
        assert len(np.unique(split[labels == lab])) == 1
    with pytest.raises(ValueError, match=r"bias must be in \[0, 1\); got 1.0"):
        mutex_watershed_labels(affs, offsets, foreground=fg, bias=1.0)
