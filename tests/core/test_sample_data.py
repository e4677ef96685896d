"""The package's sample data: stained-looking nuclei whose labels the image agrees with."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_hemd.data.synthetic import nuclei_video, nuclei_volume


def _contact(labels: np.ndarray, a: int, b: int) -> np.ndarray:
    """Pixels of ``a`` next to ``b``."""
    return (labels == a) & ndi.binary_dilation(labels == b)


def test_touching_nuclei_meet_at_a_darker_seam():
    """Above background, a seam between two touching nuclei is well below the dimmer one's
    middle (0.65-0.89 of it here; 0.89-0.99 when the sample's nuclei were flat discs)."""
    v = nuclei_video()
    img, lab = v["image"].astype(float), v["labels"]
    background = np.median(img[lab == 0])
    ratios = []
    for t in range(len(lab)):
        for a, b in ((1, 2), (3, 4), (5, 6)):  # the pairs pulled together
            seam = _contact(lab[t], a, b) | _contact(lab[t], b, a)
            if seam.sum() < 4:
                continue
            middle = min(
                np.median(img[t][ndi.binary_erosion(lab[t] == c, iterations=3)]) for c in (a, b)
            )
            ratios.append((np.median(img[t][seam]) - background) / (middle - background))
    assert len(ratios) >= 6  # 9: pairs drift apart, one divides
    assert max(ratios) < 0.92 and np.median(ratios) < 0.8, ratios


def test_each_nucleus_has_its_own_brightness_and_a_dimmer_rim():
    v = nuclei_video()
    img, lab = v["image"][0].astype(float), v["labels"][0]
    ids = [i for i in np.unique(lab) if i and ndi.binary_erosion(lab == i, iterations=3).any()]
    assert len(ids) >= 12  # one of 14 is mostly hidden under a neighbour
    middle = {i: np.median(img[ndi.binary_erosion(lab == i, iterations=3)]) for i in ids}
    rim = {i: np.median(img[(lab == i) & ~ndi.binary_erosion(lab == i)]) for i in ids}
    assert all(rim[i] < middle[i] for i in ids)
    background = np.median(img[lab == 0])
    contrast = np.array([middle[i] - background for i in ids])
    assert contrast.min() > 300 and contrast.max() / contrast.min() > 1.5  # not one flat level


def test_appearance_is_reproducible_and_volumes_look_alike():
    a, b = nuclei_video(n_frames=3, seed=2), nuclei_video(n_frames=3, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in ("image", "labels", "prob"))
    vol = nuclei_volume(shape=(24, 64, 64), n_cells=6)
    img, lab = vol["image"].astype(float), vol["labels"]
    ids = [i for i in np.unique(lab) if i]
    inner = [np.median(img[ndi.binary_erosion(lab == i, iterations=2)]) for i in ids]
    outer = [np.median(img[(lab == i) & ~ndi.binary_erosion(lab == i)]) for i in ids]
    assert np.all(np.array(outer) < np.array(inner))
