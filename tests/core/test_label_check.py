"""``not_instance_labels``: a raw intensity image given where instance labels belong."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hemd.core.validation import not_instance_labels
from napari_hemd.data.synthetic import nuclei_video


@pytest.fixture(scope="module")
def sample():
    return nuclei_video(n_frames=4, shape=(96, 96), n_cells=5)


def test_raw_frames_are_told_apart_from_their_labels(sample):
    assert not_instance_labels(sample["labels"]) is None
    why = not_instance_labels(sample["image"])  # uint16 intensities
    assert why is not None and "separate pieces" in why and "intensity image" in why
    # a uint8 copy (narrow range, many equal neighbours) is an image all the same
    img8 = (sample["image"] / sample["image"].max() * 255).astype(np.uint8)
    assert not_instance_labels(img8) is not None


def test_floats(sample):
    why = not_instance_labels(sample["prob"].astype(np.float32))
    assert why is not None and "not whole numbers" in why
    assert not_instance_labels(sample["labels"].astype(np.float32)) is None  # ids stored as floats


def test_shapes_and_containers(sample):
    labels, image = sample["labels"], sample["image"]
    assert not_instance_labels(labels[0]) is None and not_instance_labels(image[0]) is not None
    volumes = np.stack([labels, labels], axis=1)  # (T, Z, Y, X)
    assert not_instance_labels(volumes) is None
    assert not_instance_labels(np.stack([image, image], axis=1)) is not None
    assert not_instance_labels(dict(enumerate(labels))) is None  # CTC frames by index
    assert not_instance_labels(dict(enumerate(image))) is not None
    assert not_instance_labels(np.zeros((2, 8, 8), np.uint16)) is None  # empty frames
    assert not_instance_labels({}) is None


def test_small_dense_objects_are_labels():
    """Many tiny touching objects (3 x 3 px each, 400 of them) are still labels."""
    grid = np.arange(60)[:, None] // 3 * 20 + np.arange(60)[None] // 3 + 1
    assert not_instance_labels(grid[None].astype(np.uint16)) is None


@pytest.mark.shared
def test_real_label_images_pass_and_real_frames_do_not(shared_data):
    import tifffile

    ctc = shared_data / "ctc"
    label_files = [
        *sorted(ctc.glob("*/0?_ST/SEG/man_seg*.tif"))[::7],
        *sorted(ctc.glob("*/0?_GT/SEG/man_seg*.tif")),
        *sorted(ctc.glob("*/0?_GT/TRA/man_track*.tif"))[::7],
        *sorted((shared_data / "bbbc039" / "labels").glob("*.tif")),
    ]
    raw_files = [
        *sorted(ctc.glob("*/0?/t*.tif"))[::7],
        *sorted((shared_data / "bbbc039" / "images").glob("*.tif"))[::3],
    ]
    assert len(label_files) > 50 and len(raw_files) > 20
    wrong = [str(f) for f in label_files if not_instance_labels(tifffile.imread(f))]
    assert not wrong
    missed = [str(f) for f in raw_files if not_instance_labels(tifffile.imread(f)) is None]
    assert not missed
    c2c12 = np.load(shared_data / "c2c12" / "data_small.npz")
    assert not_instance_labels(c2c12["labels"]) is None
    assert not_instance_labels(c2c12["images"]) is not None


def test_a_lazy_stack_is_judged_from_windows_not_whole_frames():
    """Judging a zarr by its values read whole frames (a 12000 x 12000 plane: 1.2 GB) to look
    at their centres (review 29b): only the windows are read."""
    from napari_hemd.core.validation import not_instance_labels

    class Counted:
        def __init__(self, arr):
            self.arr, self.shape, self.dtype, self.read = arr, arr.shape, arr.dtype, []

        def __getitem__(self, key):
            out = self.arr[key]
            self.read.append(np.size(out))
            return out

    labels = np.zeros((3, 3000, 3000), np.uint16)
    labels[:, 1400:1500, 1400:1500] = 7
    lazy = Counted(labels)
    assert not_instance_labels(lazy) is None
    assert lazy.read and max(lazy.read) <= 1024 * 1024
