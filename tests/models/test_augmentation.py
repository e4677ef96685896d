from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_hemd.models.augmentation import (
    Augmentation,
    augment_intensity,
    dim_objects,
    dim_parts,
    warp_patch,
)


def _ramp(h=120, w=150):
    yy, xx = np.mgrid[:h, :w]
    return yy, xx


def test_warp_keeps_image_and_labels_aligned():
    """Images = the source row / column (linear, so interpolated exactly), labels = a unique id per
    source pixel (nearest): every output pixel's label is the source pixel nearest to where the
    images say it was sampled, through rotation, flip, zoom and the elastic field."""
    yy, xx = _ramp()
    ids = (yy * 1000 + xx).astype(np.int64)
    aug = Augmentation(elastic=3.0)
    for seed in range(10):
        centre = (40 + 4 * seed, 40 + 7 * seed)  # the patch stays inside the frame
        src_y, lab = warp_patch(yy.astype(float), ids, 48, np.random.default_rng(seed), aug, centre)
        src_x, _ = warp_patch(xx.astype(float), ids, 48, np.random.default_rng(seed), aug, centre)
        assert src_y.shape == lab.shape == (48, 48) and lab.dtype == np.int64
        inside = (src_y > 0) & (src_y < 119) & (src_x > 0) & (src_x < 149)
        assert inside.mean() > 0.9
        assert np.abs(lab // 1000 - src_y)[inside].max() <= 0.51
        assert np.abs(lab % 1000 - src_x)[inside].max() <= 0.51


def test_warp_preserves_label_ids_and_zooms():
    yy, xx = _ramp()
    labels = np.zeros(yy.shape, np.int32)
    labels[(yy - 60) ** 2 + (xx - 75) ** 2 < 20**2] = 7
    image = labels.astype(np.float32)
    rng = np.random.default_rng(0)
    small = Augmentation(scale=(0.5, 0.5), elastic=0)
    big = Augmentation(scale=(2.0, 2.0), elastic=0)
    _, lab_s = warp_patch(image, labels, 50, rng, small, centre=(60, 75))  # no mirrored copies
    _, lab_b = warp_patch(image, labels, 100, rng, big, centre=(60, 75))
    assert set(np.unique(lab_s)) <= {0, 7} and set(np.unique(lab_b)) <= {0, 7}
    area = np.pi * 20**2
    assert (lab_s == 7).sum() == pytest.approx(area * 0.25, rel=0.1)
    assert (lab_b == 7).sum() == pytest.approx(area * 4, rel=0.1)


def test_intensity_augmentation_changes_values_not_shape():
    rng = np.random.default_rng(1)
    img = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    outs = [augment_intensity(img, rng, Augmentation()) for _ in range(5)]
    assert all(o.shape == img.shape and o.dtype == np.float32 for o in outs)
    assert np.std([o.mean() for o in outs]) > 0.01  # gain / offset / gamma vary
    off = augment_intensity(img, np.random.default_rng(1), Augmentation.off())
    assert np.corrcoef(off.ravel(), img.ravel())[0, 1] > 0.95
    assert Augmentation().to_dict()["scale"] == [0.7, 1.4]


def _discs():
    """Four bright discs (contrast 1 above a background of 0.2) on a 128 x 128 patch."""
    yy, xx = np.mgrid[:128, :128]
    labels = np.zeros((128, 128), np.int32)
    for i, (cy, cx) in enumerate([(32, 32), (32, 96), (96, 32), (96, 96)], start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < 14**2] = i
    return 0.2 + (labels > 0).astype(np.float32), labels


def _object_contrasts(dim, aug, erode: int):
    """Each object's core contrast above the background after ``dim`` with seeds 0-7.

    Checks on the way that the output is a float32 patch of the input's shape, that the
    background far from the objects keeps its level, and that the input is not modified; then
    that ``dim`` leaves the patch alone when off, or when it has no objects or no background.
    """
    img, labels = _discs()
    far = ndi.distance_transform_edt(labels == 0) > 8  # beyond the spread factor map
    out = []
    for seed in range(8):
        got = dim(img, labels, np.random.default_rng(seed), aug)
        assert got.shape == img.shape and got.dtype == np.float32
        np.testing.assert_allclose(got[far], 0.2, atol=1e-4)  # the background level stays
        for i in range(1, 5):
            out.append(got[ndi.binary_erosion(labels == i, iterations=erode)] - 0.2)
    np.testing.assert_array_equal(img, _discs()[0])  # the input is not modified
    np.testing.assert_array_equal(dim(img, labels, np.random.default_rng(0), Augmentation()), img)
    for lab in (np.zeros_like(labels), np.ones_like(labels)):
        np.testing.assert_array_equal(dim(img, lab, np.random.default_rng(0), aug), img)
    return out


def test_dim_objects_lowers_some_objects_contrast_and_keeps_the_background():
    contrasts = [
        float(c.mean())
        for c in _object_contrasts(dim_objects, Augmentation(dim_prob=1.0, dim_min=0.1), 5)
    ]
    assert all(0.1 - 1e-3 <= c <= 1 + 1e-3 for c in contrasts)  # within [dim_min, 1] of its own
    # each object is dimmed or not, by chance
    assert any(c < 0.9 for c in contrasts) and any(c > 0.999 for c in contrasts)


def test_dim_objects_probability_is_per_patch():
    img, labels = _discs()
    aug = Augmentation(dim_prob=0.3)
    rng = np.random.default_rng(3)
    changed = [not np.array_equal(dim_objects(img, labels, rng, aug), img) for _ in range(400)]
    # a touched patch dims each of its 4 objects with probability 1/2: 15/16 of them change
    assert np.mean(changed) == pytest.approx(0.3 * 15 / 16, abs=0.06)


def test_dim_parts_fades_sectors_of_objects_and_keeps_the_rest():
    """Parts of an object sink to the background (its label stays whole); others keep all."""
    contrasts = _object_contrasts(dim_parts, Augmentation(part_prob=1.0), 4)
    assert all(c.min() >= -1e-4 and c.max() <= 1 + 1e-4 for c in contrasts)  # never beyond
    faded = [c for c in contrasts if c.min() < 0.05]
    assert faded and any(c.min() > 0.999 for c in contrasts)  # faded or not, by chance
    for c in faded:  # part at the background, part not
        assert c.max() > 0.5 and 0.02 < np.mean(c < 0.1) < 0.8
