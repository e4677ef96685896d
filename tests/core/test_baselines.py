"""The baselines of ``napari_hemd.core.baselines`` on small generated maps."""

from __future__ import annotations

import numpy as np

from napari_hemd.core.baselines import watershed_labels


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def test_watershed_keeps_a_cell_with_a_dip_in_its_middle_whole():
    # A nucleus whose probability sinks below tau in its middle (as a network's does where it
    # hesitates): the distance transform of the unfilled mask is a ring with several maxima.
    shape = (60, 60)
    prob = np.where(_disc(shape, (30, 30), 15), 0.95, 0.02).astype(np.float32)
    hole = _disc(shape, (30, 30), 4)
    prob[hole] = 0.2
    lab = watershed_labels(prob)
    assert lab.max() == 1
    assert np.array_equal(lab > 0, _disc(shape, (30, 30), 15))  # the dip belongs to the cell


def test_watershed_still_splits_two_touching_cells():
    shape = (50, 80)
    both = _disc(shape, (25, 25), 14) | _disc(shape, (25, 52), 14)
    prob = np.where(both, 0.95, 0.02).astype(np.float32)
    lab = watershed_labels(prob)
    assert lab.max() == 2
    assert lab[25, 25] != lab[25, 52]


def test_watershed_fills_only_holes_the_connectivity_closes():
    # The outline of a diamond, one pixel wide, is made of diagonal steps: 8-connected objects
    # close it (its inside is a hole, filled), 4-connected ones do not (the inside reaches the
    # outside between two diagonal neighbours, so it stays background).
    yy, xx = np.mgrid[:41, :41]
    prob = np.where(np.abs(yy - 20) + np.abs(xx - 20) == 12, 0.95, 0.02).astype(np.float32)
    closed = watershed_labels(prob, connectivity=2)
    opened = watershed_labels(prob, connectivity=1)
    assert closed[20, 20] > 0
    assert closed.max() == 1
    assert opened[20, 20] == 0
    assert np.array_equal(opened > 0, prob > 0.5)
