"""A zarr group of several arrays (the maps ``predict`` and ``stream`` write) is read by name.

Reading the alphabetically first array made ``segment maps.zarr`` run H-EMD on the
*background* map of a ``{background, foreground}`` group: one object per frame, no warning.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_hemd.cli import main
from napari_hemd.data.synthetic import nuclei_video
from napari_hemd.io import read_stack

zarr = pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def maps_group(tmp_path_factory):
    """A maps group as ``stream --model`` writes it: ``background`` and ``foreground``."""
    v = nuclei_video(n_frames=3, shape=(96, 96), n_cells=6, seed=4)
    path = tmp_path_factory.mktemp("maps") / "maps.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("background", data=(1 - v["prob"]).astype(np.float32))
    group.create_array("foreground", data=v["prob"].astype(np.float32))
    return path, v["prob"].astype(np.float32)


def test_read_stack_takes_the_named_array_and_refuses_to_guess(maps_group, tmp_path):
    path, fg = maps_group
    np.testing.assert_array_equal(read_stack(path, array="foreground"), fg)
    with pytest.raises(ValueError, match=r"several arrays \(background, foreground\)") as e:
        read_stack(path)
    assert "maps.zarr/background" in str(e.value)  # how to name one
    with pytest.raises(ValueError, match="none named 'instances'"):
        read_stack(path, array="instances")
    np.testing.assert_array_equal(read_stack(path / "foreground"), fg)  # named in the path
    one = zarr.open_group(str(tmp_path / "one.zarr"), mode="w")
    one.create_array("foreground", data=fg)
    np.testing.assert_array_equal(read_stack(tmp_path / "one.zarr"), fg)  # the only array


@pytest.mark.parametrize("command", ["segment", "stream"])
def test_segment_and_stream_of_a_maps_group_use_its_foreground(maps_group, tmp_path, command):
    path, fg = maps_group
    single = tmp_path / "fg.tif"
    import tifffile

    tifffile.imwrite(single, fg, photometric="minisblack")
    out = ["labels.tif", "mine.tif"] if command == "segment" else ["labels.zarr", "mine.zarr"]
    assert main([command, str(path), "-o", str(tmp_path / out[0]), "--no-progress"]) == 0
    assert main([command, str(single), "-o", str(tmp_path / out[1]), "--no-progress"]) == 0
    got, want = (np.asarray(read_stack(tmp_path / name)) for name in out)
    np.testing.assert_array_equal(got, want)
    assert got.max() > 3  # several nuclei per frame, not one background blob


def test_compare_of_a_maps_group_uses_its_foreground(maps_group, tmp_path, capsys):
    import tifffile

    path, fg = maps_group
    v = nuclei_video(n_frames=3, shape=(96, 96), n_cells=6, seed=4)
    tifffile.imwrite(tmp_path / "gt.tif", v["labels"].astype(np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "fg.tif", fg, photometric="minisblack")
    rows = []
    for prob in (path, tmp_path / "fg.tif"):
        rc = main(["compare", str(prob), "--gt", str(tmp_path / "gt.tif"), "--methods", "hemd"])
        assert rc == 0
        row = next(ln for ln in capsys.readouterr().out.splitlines() if "hemd" in ln)
        rows.append(row.split("|")[:-2])  # the scores, not the seconds
    assert rows[0] == rows[1]
    assert float(rows[0][2]) > 0.5  # nuclei found (the background map: F1 ~0)


def test_napari_opens_each_array_of_a_maps_group(maps_group, tmp_path):
    from napari_hemd._napari_io import get_reader

    path, fg = maps_group
    layers = get_reader(str(path))(str(path))
    assert [(meta["name"], kind) for _, meta, kind in layers] == [
        ("maps background", "image"),
        ("maps foreground", "image"),
    ]
    np.testing.assert_array_equal(np.asarray(layers[1][0]), fg)
    group = zarr.open_group(str(tmp_path / "aff.zarr"), mode="w")  # predict --outputs ...,instances
    group.create_array("foreground", data=fg)
    group.create_array("instances", data=(fg > 0.5).astype(np.uint32))
    kinds = [
        kind for *_, kind in get_reader(str(tmp_path / "aff.zarr"))(str(tmp_path / "aff.zarr"))
    ]
    assert kinds == ["image", "labels"]
