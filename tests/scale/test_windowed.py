"""Windowed H-EMD equals the global run when the halo is at least T (see core/streaming.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile

from napari_hemd.core.segment import hemd
from napari_hemd.core.streaming import hemd_online, hemd_windowed, plan_windows
from napari_hemd.data.synthetic import probability_from_labels


def test_plan_windows_cover_every_frame_once():
    ws = plan_windows(11, 4, 3)
    kept = np.concatenate([np.arange(w.start, w.stop) for w in ws])
    np.testing.assert_array_equal(kept, np.arange(11))
    assert all(w.lo == max(0, w.start - 3) and w.hi == min(11, w.stop + 3) for w in ws)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        plan_windows(5, 0, 1)


@pytest.mark.parametrize("iterations", [2, 3, 10])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_windowed_equals_global(video, iterations, chunk):
    glob = hemd(video, iterations=iterations).labels
    win = hemd_windowed(video, chunk=chunk, iterations=iterations)
    np.testing.assert_array_equal(win, glob)


@pytest.mark.parametrize("variant", ["paper", "refined"])
def test_windowed_equals_global_variants(video, variant):
    glob = hemd(video, iterations=3, variant=variant).labels
    np.testing.assert_array_equal(
        hemd_windowed(video, chunk=4, iterations=3, variant=variant), glob
    )


def test_halo_below_T_is_not_enough(video, caplog):
    """The bound is tight on this video: a halo of T - 1 changes some frames."""
    glob = hemd(video, iterations=2).labels
    with caplog.at_level(logging.WARNING):
        win = hemd_windowed(video, chunk=1, iterations=2, halo=1)
    assert "may differ" in caplog.text
    assert (win != glob).any()


def test_online_equals_global(video):
    glob = hemd(video, iterations=3).labels
    seen = []
    for t, lab in hemd_online(iter(video), chunk=2, iterations=3):
        seen.append(t)
        np.testing.assert_array_equal(lab, glob[t])
    assert seen == list(range(len(video)))


@pytest.mark.parametrize("halo", [None, 4])
def test_online_lag(video, halo):
    """Frame t comes out as soon as frame t + halo has arrived (default T; the issue's T + 1)."""
    arrived = []
    lag = 3 if halo is None else halo
    glob = hemd(video, iterations=3).labels

    def source():
        for t, f in enumerate(video):
            arrived.append(t)
            yield f

    for t, lab in hemd_online(source(), chunk=1, halo=halo, iterations=3):
        assert arrived[-1] == min(t + lag, len(video) - 1)
        np.testing.assert_array_equal(lab, glob[t])


def test_windowed_refuses_link(video):
    with pytest.raises(ValueError, match="link=True"):
        hemd_windowed(video, link=True)


@pytest.mark.shared
def test_windowed_equals_global_on_real_masks(shared_data):
    seg = sorted((shared_data / "ctc/Fluo-N2DH-SIM+/02_GT/SEG").glob("man_seg*.tif"))[:30]
    gt = np.stack([tifffile.imread(f)[::2, ::2] for f in seg])
    prob = np.stack(
        [probability_from_labels(m, rng=i, contact_dip=0.45, noise=0.05) for i, m in enumerate(gt)]
    )
    for iterations, chunks in ((4, (1, 5)), (10, (4, 8))):
        res = hemd(prob, iterations=iterations)
        # Not a trivial case: matching (not only initial/padding) selected some instances.
        assert sum(int(np.isin(s.how, (1, 2)).sum()) for s in res.selections) > 0
        for chunk in chunks:
            win = hemd_windowed(prob, chunk=chunk, iterations=iterations)
            np.testing.assert_array_equal(win, res.labels)
        # the halo of T + 1 frames (one frame more than the bound needs)
        win = hemd_windowed(prob, chunk=chunks[0], halo=iterations + 1, iterations=iterations)
        np.testing.assert_array_equal(win, res.labels)


def test_windowed_equals_global_3d_time(video):
    """(T, Z, Y, X): 3D forests matched across time."""
    vol = np.stack([video[t : t + 3] for t in range(10)])
    glob = hemd(vol, iterations=3).labels
    np.testing.assert_array_equal(hemd_windowed(vol, chunk=3, iterations=3), glob)


def test_windowed_locked_uses_global_frame_indices(video):
    from napari_hemd.core.forest import build_candidate_forest

    f = build_candidate_forest(video[9], tau=0.5, connectivity=1)
    # Lock a root that H-EMD would split: the user's choice must reach the neighbours too.
    locked = {9: [int(f.roots[f.n_leaves[f.roots] > 1][-1])]}
    glob = hemd(video, iterations=3, locked=locked).labels
    assert (glob != hemd(video, iterations=3).labels).any()
    np.testing.assert_array_equal(hemd_windowed(video, chunk=4, iterations=3, locked=locked), glob)


def test_online_following_a_growing_zarr(video, tmp_path):
    import zarr

    from napari_hemd.core.streaming import follow_zarr

    path = str(tmp_path / "live.zarr")
    z = zarr.create_array(path, shape=(2, 96, 96), chunks=(1, 96, 96), dtype=np.float32)
    z[:] = video[:2]
    written = [2]

    def microscope(_seconds):  # each wait, two more frames arrive
        n = written[0]
        if n < len(video):
            live = zarr.open_array(path, mode="r+")
            live.resize((n + 2, 96, 96))
            live[n : n + 2] = video[n : n + 2]
            written[0] = n + 2

    glob = hemd(video, iterations=2).labels
    frames = follow_zarr(path, poll=1, idle_timeout=3, sleep=microscope)
    out = dict(hemd_online(frames, iterations=2))
    assert sorted(out) == list(range(len(video)))
    for t, lab in out.items():
        np.testing.assert_array_equal(lab, glob[t])


def test_windowed_equals_global_with_explicit_seed_threshold():
    from napari_hemd.core.streaming import hemd_windowed
    from napari_hemd.data.synthetic import nuclei_video

    prob = nuclei_video(n_frames=10, shape=(96, 96), n_cells=6, seed=4)["prob"]
    for peak in (0.0, 0.95):
        ref = hemd(prob, iterations=3, seed_min_peak=peak).labels
        win = hemd_windowed(prob, chunk=3, iterations=3, seed_min_peak=peak)
        assert np.array_equal(win, ref)


def test_following_a_writer_that_resizes_before_it_writes(video, tmp_path):
    """zarr's append resizes, then writes: a frame seen between the two read back as zeros and
    was segmented as an empty frame (20 of 24 frames, exit 0). A frame is taken once the next
    one appears (or the array stops growing), or as the writer's frames_written count says."""
    import zarr

    from napari_hemd.core.streaming import follow_zarr

    path = str(tmp_path / "live.zarr")
    z = zarr.create_array(path, shape=(1, 96, 96), chunks=(1, 96, 96), dtype=np.float32)
    z[:] = video[:1]
    state = {"n": 1, "resized": False}

    def microscope(_seconds):  # one wait resizes, the next writes the new frame
        live = zarr.open_array(path, mode="r+")
        n = state["n"]
        if not state["resized"] and n < len(video):
            live.resize((n + 1, 96, 96))
            state["resized"] = True
        elif state["resized"]:
            live[n] = video[n]
            state.update(n=n + 1, resized=False)

    got = list(follow_zarr(path, poll=1, idle_timeout=3, sleep=microscope))
    np.testing.assert_array_equal(np.stack(got), video)
    # the count a writer publishes (hemd_follow's output) is taken as it is
    z = zarr.create_array(str(tmp_path / "c.zarr"), shape=(4, 96, 96), chunks=(1, 96, 96),
                          dtype=np.float32)  # fmt: skip
    z[:2] = video[:2]
    z.attrs["frames_written"] = 2
    got = list(follow_zarr(str(tmp_path / "c.zarr"), poll=1, idle_timeout=1, sleep=lambda s: None))
    assert len(got) == 2
