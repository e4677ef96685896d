from __future__ import annotations

from pathlib import Path

import pytest

import napari_hemd
from napari_hemd._sample_data import nuclei_video_sample, nuclei_volume_sample


def test_manifest_validates():
    npe2 = pytest.importorskip("npe2")
    path = Path(napari_hemd.__file__).parent / "napari.yaml"
    manifest = npe2.PluginManifest.from_file(path)
    assert manifest.name == "napari-hemd"
    keys = {s.key for s in manifest.contributions.sample_data}
    assert keys == {"nuclei_video", "nuclei_volume"}


def test_sample_data_layers():
    video = nuclei_video_sample()
    assert [t[2] for t in video] == ["image", "image", "labels"]
    assert video[0][0].ndim == 3 and video[1][0].max() <= 1.0
    assert nuclei_volume_sample()[2][0].ndim == 3
