from __future__ import annotations

import numpy as np
import pytest

from napari_hemd.core.cells import grow_to_cells


def _two_interiors():
    """Two cells (8x6 each) touching along x = 6; labels hold only their interiors."""
    cells = np.zeros((12, 14), np.int32)
    cells[2:10, 1:7], cells[2:10, 7:13] = 1, 2
    interior = np.zeros_like(cells)
    interior[4:8, 3:5], interior[4:8, 9:11] = 1, 2
    background = np.where(cells > 0, 0.1, 0.9).astype(np.float32)
    return cells, interior, background


def test_growth_restores_whole_cells_and_stops_at_background():
    cells, interior, background = _two_interiors()
    grown = grow_to_cells(interior, background, 3)
    assert set(np.unique(grown)) == {0, 1, 2}
    assert (grown[cells == 0] == 0).all()  # never into background
    assert (grown[interior > 0] == interior[interior > 0]).all()  # the instances keep their pixels
    # every cell pixel within 3 px of its interior is recovered, with the right id
    assert (grown == cells)[2:10, 1:13].mean() > 0.9


def test_growth_zero_and_frames_are_independent():
    _, interior, background = _two_interiors()
    assert grow_to_cells(interior, background, 0) is interior
    stack = np.stack([interior, np.zeros_like(interior)])
    bg = np.stack([background, np.full_like(background, 0.1)])
    out = grow_to_cells(stack, bg, 3, frame_axis=True)
    assert (out[1] == 0).all()  # nothing grows into frame 1 from frame 0
    assert (out[0] == grow_to_cells(interior, background, 3)).all()


def test_growth_bad_input():
    _, interior, background = _two_interiors()
    with pytest.raises(ValueError, match=r"background must have the shape of labels \(12, 14\)"):
        grow_to_cells(interior, background[:5], 2)
    with pytest.raises(ValueError, match="grow must be >= 0; got -1"):
        grow_to_cells(interior, background, -1)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]; got 1.5"):
        grow_to_cells(interior, background, 2, threshold=1.5)


def test_growth_threshold_takes_uncertain_border_pixels():
    """A higher threshold lets the growth take pixels whose background probability is 0.5-0.8."""
    _, interior, background = _two_interiors()
    background = background.copy()
    background[1, 1:13] = 0.7  # an uncertain row just outside the cells
    plain = grow_to_cells(interior, background, 3)
    wide = grow_to_cells(interior, background, 3, threshold=0.8)
    assert (plain[1] == 0).all()  # 0.7 is background for the network's own decision
    assert (wide[1, [3, 4, 9, 10]] == [1, 1, 2, 2]).all()  # 3 px from the interiors: taken
    assert (wide[background >= 0.8] == 0).all()  # never beyond the threshold
    assert (wide[plain > 0] == plain[plain > 0]).all()


def test_growth_fills_the_holes_an_instance_encloses():
    """A cell whose map sank in its middle (a hole wider than the growth, background 0.9 in it)
    comes out whole; a notch open to the outside and another instance inside a hole stay."""
    yy, xx = np.mgrid[:40, :60]
    disc = np.hypot(yy - 20, xx - 20) <= 12
    hole = np.hypot(yy - 20, xx - 20) <= 6
    labels = np.where(disc & ~hole, 1, 0).astype(np.uint32)
    labels[19:22, 19:22] = 3  # a small instance inside the hole
    c_shape = (np.hypot(yy - 20, xx - 45) <= 10) & ~((np.abs(yy - 20) <= 3) & (xx >= 42))
    labels[c_shape] = 2  # a C: its notch opens to the outside
    background = np.where(labels > 0, 0.1, 0.9).astype(np.float32)
    out = grow_to_cells(labels, background, 2)
    assert (out[disc & ~hole] == 1).all() and (out[19:22, 19:22] == 3).all()
    assert (out[hole & (labels == 0)] == 1).all()  # the hole is the cell's
    assert (out[17:24, 48:55] == 0).all()  # the notch is background
    assert grow_to_cells(labels, background, 0) is labels  # no growth, no filling


def test_filling_holes_in_3d_and_per_frame():
    from napari_hemd.core.cells import fill_instance_holes

    zz, yy, xx = np.mgrid[:16, :16, :16]
    r = np.sqrt((zz - 8) ** 2 + (yy - 8) ** 2 + (xx - 8) ** 2)
    shell = ((r <= 6) & (r > 3)).astype(np.int32)
    filled = fill_instance_holes(shell.copy())
    assert (filled[r <= 6] == 1).all() and (filled[r > 6] == 0).all()
    # a ring in frame 0 does not fill frame 1 (frames are separate images)
    ring = shell[8]
    frames = np.stack([ring, np.zeros_like(ring)])
    bg = np.where(frames > 0, 0.1, 0.9).astype(np.float32)
    out = grow_to_cells(frames, bg, 1, frame_axis=True)
    assert (out[0][r[8] <= 6] == 1).all() and (out[1] == 0).all()


def test_clear_border_removes_cut_cells_by_label():
    from skimage.segmentation import clear_border

    from napari_hemd.core.cells import clear_border_objects

    lab = np.zeros((12, 12), np.uint16)
    lab[0:4, 2:6] = 1  # cut by the top edge
    lab[4:8, 2:6] = 2  # touches 1, not the edge: stays
    lab[8:10, 6:8] = 3  # alone inside
    lab[5:12, 10:12] = 4  # cut by the right and bottom edges
    out = clear_border_objects(lab)
    assert out.dtype == lab.dtype and set(np.unique(out)) == {0, 2, 3}
    assert (out[lab == 2] == 2).all() and (out[lab == 3] == 3).all()
    assert set(np.unique(lab)) == {0, 1, 2, 3, 4}  # a new array: the input is untouched
    assert (out == clear_border(lab)).all()  # scikit-image's, on connected instances
    # an instance in two pieces goes as a whole (scikit-image keeps the piece inside)
    lab[10:12, 0:2] = 3
    assert 3 not in clear_border_objects(lab)
    assert 3 in clear_border(lab)


def test_clear_border_per_frame_and_in_3d():
    from napari_hemd.core.cells import clear_border_objects

    frames = np.zeros((3, 10, 10), np.uint32)
    frames[:, 4:7, 4:7] = 5  # inside in every frame
    frames[0, 0:3, 0:3] = 7  # cut in frame 0 ...
    frames[1, 3:6, 0:2] = 7  # ... and in frame 1
    frames[2, 6:9, 1:4] = 7  # ... inside in frame 2: kept there
    out = clear_border_objects(frames, frame_axis=True)
    assert [sorted(set(np.unique(f)) - {0}) for f in out] == [[5], [5], [5, 7]]
    # one volume: an object on the first slice touches a face of the volume
    vol = frames.copy()
    vol[2, 0:3, 6:9] = 8
    assert set(np.unique(clear_border_objects(vol))) == {0}  # 5 and 8 reach z = 0 / z = 2
    inner = np.zeros((5, 10, 10), np.uint32)
    inner[1:4, 3:6, 3:6] = 2
    inner[0, 3:6, 3:6] = 3
    assert set(np.unique(clear_border_objects(inner))) == {0, 2}
    with pytest.raises(ValueError, match=r"labels must be \(T, Y, X\) or \(T, Z, Y, X\)"):
        clear_border_objects(frames[0], frame_axis=True)
    with pytest.raises(ValueError, match=r"labels must be \(Y, X\) or \(Z, Y, X\); got shape"):
        clear_border_objects(np.zeros(5, int))
