"""A (T, Z, Y, X) time-lapse of stacks with a model, stack by stack: the in-memory labels,
bounded memory, resumable."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tifffile
import zarr

pytest.importorskip("torch")

from napari_hemd.cli import main
from napari_hemd.image_segmentation import segment_image
from napari_hemd.pipeline import stream_segment, stream_stacks


@pytest.fixture(scope="module")
def stacks() -> np.ndarray:
    """Three stacks of synthetic nuclei moving 1 px per time point: (3, 24, 96, 96) uint16."""
    from napari_hemd.data.synthetic import nuclei_volume

    vol = nuclei_volume()["image"][:24, :96]
    return np.stack([vol[..., s : s + 96] for s in (0, 1, 2)])


@pytest.fixture(scope="module")
def in_memory(stacks):
    res = segment_image(stacks, "nuclei-3d", tta=1, planes=1)
    assert len(res.tracks) > 5  # nuclei, linked over the three stacks
    return res


def test_equals_the_in_memory_run_and_resumes_after_a_kill(stacks, in_memory, tmp_path, caplog):
    out = tmp_path / "labels.zarr"

    def killed(t):
        if t == 1:
            raise KeyboardInterrupt  # as a killed run: stacks 0 and 1 recorded, 2 not

    with pytest.raises(KeyboardInterrupt):
        stream_stacks(stacks, out, "nuclei-3d", tta=1, planes=1, on_stack=killed)
    assert not out.exists()  # published only when complete
    partial = tmp_path / ".labels.zarr.partial"
    state = json.loads((partial / "progress.json").read_text())
    assert state["segmented"] == [0, 1] and state["linked"] == 0
    seen = []

    def killed_linking(stage, done, total):
        if stage == "link" and done == 2:
            raise KeyboardInterrupt  # stacks 0 and 1 linked, 2 not

    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        stream_stacks(
            stacks, out, "nuclei-3d", tta=1, planes=1, on_stack=seen.append,
            progress=killed_linking,
        )  # fmt: skip
    assert seen == [2]  # only the missing stack ran
    assert "resuming an interrupted run" in caplog.text
    assert "2 of 3 stacks done, continuing from stack 2" in caplog.text  # (it said "frame 2")
    assert json.loads((partial / "progress.json").read_text())["linked"] == 2
    stages = []
    stream_stacks(
        stacks, out, "nuclei-3d", tta=1, planes=1, on_stack=seen.append,
        progress=lambda stage, done, total: stages.append((stage, done)),
    )  # fmt: skip
    assert seen == [2] and stages == [("link", 3)]  # nothing segmented again; one stack linked
    z = zarr.open_array(str(out), mode="r")
    np.testing.assert_array_equal(z[:], in_memory.labels)
    assert z.chunks == (1, 1, 96, 96) and z.attrs["link_time"]
    np.testing.assert_array_equal(np.array(z.attrs["tracks"]), in_memory.tracks)
    assert z.attrs["model"] == "nuclei-3d"
    assert not (tmp_path / ".labels.zarr.partial").exists()


def test_stream_segment_and_the_cli_take_stacks(stacks, in_memory, tmp_path, capsys):
    out = stream_segment(stacks, tmp_path / "a.zarr", model="nuclei-3d", tta=1, planes=1)
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], in_memory.labels)
    with pytest.raises(ValueError, match="its maps not kept: no prob_output"):
        stream_segment(stacks, tmp_path / "b.zarr", model="nuclei-3d", prob_output="p.zarr")
    path = tmp_path / "embryo.tif"
    tifffile.imwrite(path, stacks, imagej=True, metadata={"axes": "TZYX"})
    args = ["stream", str(path), "--model", "nuclei-3d", "--tta", "1", "--planes", "1"]
    args.append("--no-progress")
    assert main([*args, "-o", str(tmp_path / "c.zarr")]) == 0
    err = capsys.readouterr().err
    assert "3 stack(s) over time, stack by stack, objects linked over time" in err
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "c.zarr"), mode="r")[:], in_memory.labels
    )
    table = tmp_path / "cells.csv"  # each nucleus' volume per time point, and its parent
    assert main(["measure", str(tmp_path / "c.zarr"), "-o", str(table), "--image", str(path)]) == 0
    header = table.read_text().splitlines()[0].split(",")
    assert "centroid_z" in header and "parent" in header and "mean_intensity" in header
    # the stacks as Dask tasks on a local cluster of two workers: the same labels and tracks
    assert main([*args, "-o", str(tmp_path / "d.zarr"), "--workers", "2"]) == 0
    z = zarr.open_array(str(tmp_path / "d.zarr"), mode="r")
    np.testing.assert_array_equal(z[:], in_memory.labels)
    np.testing.assert_array_equal(np.array(z.attrs["tracks"]), in_memory.tracks)
    assert main([*args, "-o", str(tmp_path / "e.zarr"), "--prob-output", "p.zarr"]) == 2
    assert "--prob-output: a (T, Z, Y, X) time-lapse of stacks" in capsys.readouterr().err
    assert not (tmp_path / "e.zarr").exists()


def test_workers_elsewhere_read_a_relative_zarr_source(
    stacks, in_memory, tmp_path, monkeypatch, dask_cluster_client
):
    """Audit 32: a zarr array (or maps group) opened by a relative path reached the Dask workers
    as that path; in their own working directory zarr found no chunks and gave zeros: empty
    labels and no error (a maps group: a bare KeyError). They get the absolute path."""
    import os

    client = dask_cluster_client
    monkeypatch.chdir(tmp_path)
    zarr.create_array("stacks.zarr", shape=stacks.shape, dtype=stacks.dtype)[:] = stacks
    assert main(["predict", "stacks.zarr", "--model", "nuclei-3d", "--tta", "1", "--planes",
                 "1", "--outputs", "foreground,background", "-o", "maps.zarr",
                 "--no-progress"]) == 0  # fmt: skip
    maps = zarr.open_group("maps.zarr", mode="r")  # relative, as a user's script opens them
    alone = stream_stacks(maps["foreground"], "alone.zarr", "nuclei-3d", maps_group=maps)
    here = client.run(os.getcwd)
    client.run(os.chdir, "/")  # the workers elsewhere (another machine's directory)
    try:
        source = zarr.open_array("stacks.zarr", mode="r")
        out = stream_stacks(source, "c.zarr", "nuclei-3d", tta=1, planes=1, client=client)
        mapped = stream_stacks(
            maps["foreground"], "m.zarr", "nuclei-3d", maps_group=maps, client=client
        )
    finally:
        for cwd in set(here.values()):
            client.run(os.chdir, cwd)
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], in_memory.labels)
    labels = zarr.open_array(str(mapped), mode="r")[:]
    assert labels.max() > 0
    np.testing.assert_array_equal(labels, zarr.open_array(str(alone), mode="r")[:])


def test_one_stack_s_maps_of_a_3d_model_are_refused(stacks, tmp_path, capsys):
    """Audit 32: ``stream`` of the maps a 3D model predicted of one (Z, Y, X) stack ran its
    slices as a movie's frames (exit 0, fewer objects than ``segment``), though the stack
    itself with ``--model`` is refused: its maps are refused the same way."""
    zarr.create_array(str(tmp_path / "one.zarr"), shape=stacks[0].shape, dtype=stacks.dtype)[:] = (
        stacks[0]
    )
    assert main(["predict", str(tmp_path / "one.zarr"), "--model", "nuclei-3d", "--tta", "1",
                 "-o", str(tmp_path / "maps.zarr"), "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "l.zarr"
    assert main(["stream", str(tmp_path / "maps.zarr"), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "predicted of one (Z, Y, X) stack from three planes: napari-hemd segment" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.zarr", "one.zarr"]
    assert main(["segment", str(tmp_path / "maps.zarr"), "-o", str(tmp_path / "s.tif"),
                 "--no-progress"]) == 0  # fmt: skip
