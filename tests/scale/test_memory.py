"""Streaming memory does not grow with the number of frames (traced numpy allocations).

Measured in a fresh process: threads of other tests (a Dask client's event loop, napari) would
allocate while tracemalloc traces this one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: The peak of numpy's traced allocations while ``fn`` runs (pasted into the scripts below).
_PEAK = """
def peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
"""

_MEASURE = """
import json, sys, tracemalloc
from pathlib import Path
import numpy as np, zarr
from napari_hemd.core.segment import hemd
from napari_hemd.core.streaming import hemd_stream
from napari_hemd.data.synthetic import nuclei_video

tmp = Path(sys.argv[1])
video = nuclei_video(n_frames=20, shape=(96, 96), n_cells=8, seed=1)["prob"]

{PEAK}

hemd_stream(video[:6], tmp / "warm.zarr", chunk=4, iterations=2)  # imports, caches
out = {"stream": {}, "memory": {}}
for n in (20, 80):  # the whole video, then four times it: the same windows' content
    frames = np.concatenate([video, video[::-1]] * 2)[:n]
    path = str(tmp / f"p{n}.zarr")
    z = zarr.create_array(path, shape=frames.shape, chunks=(1, 96, 96), dtype=np.float32)
    z[:] = frames
    z = zarr.open_array(path, mode="r")
    out["stream"][n] = peak(lambda: hemd_stream(z, tmp / f"l{n}.zarr", chunk=4, iterations=2))
    out["memory"][n] = peak(lambda: hemd(z[:], iterations=2))
print(json.dumps(out))
""".replace("{PEAK}", _PEAK)


def _measure(script: str, tmp_path) -> dict:
    """Run a measuring ``script`` in a fresh process (this checkout's package); its JSON."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_stream_peak_memory_is_independent_of_frame_count(tmp_path):
    peaks = _measure(_MEASURE, tmp_path)
    stream, memory = peaks["stream"], peaks["memory"]
    frame = 96 * 96 * 4
    # 4x the frames: the in-memory run holds them all (60 more frames), the stream one window's
    # worth. A window's peak depends on its content, e.g. how many instances the matchings leave
    # unmatched, so both runs hold the same frames: the video, forwards and backwards. zarr's
    # asynchronous I/O keeps ~2 KB per frame read and written (asyncio callbacks and futures,
    # measured: +140 KB for the 60 frames), hence a bound of 8 frames' worth, not 4.
    assert memory["80"] - memory["20"] > 50 * frame, peaks
    assert stream["80"] - stream["20"] < 8 * frame, peaks


_MEASURE_PREDICT = """
import json, sys, tracemalloc
from pathlib import Path
import numpy as np, tifffile, zarr
from napari_hemd.cli import main
from napari_hemd.data.synthetic import nuclei_video

tmp = Path(sys.argv[1])
video = nuclei_video(n_frames=10, shape=(64, 64), n_cells=4, seed=2)["image"]


def predict(n, kind, tag=""):
    frames = np.concatenate([video] * (n // 10))
    src = str(tmp / f"movie{n}{tag}.{kind}")
    if kind == "zarr":
        z = zarr.create_array(src, shape=frames.shape, chunks=(1, 64, 64), dtype=frames.dtype)
        z[:] = frames
    else:  # a TIFF stack, one page per frame
        tifffile.imwrite(src, frames, photometric="minisblack")
    out = tmp / f"maps{n}{tag}{kind}.tif"
    args = ["predict", src, "--model", "nuclei-fluo", "-o", str(out), "--outputs",
            "foreground,background", "--tta", "1", "--threads", "1", "--no-progress"]
    tracemalloc.start()
    try:
        assert main(args) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


predict(10, "zarr", "warm")  # imports, the model's cache
print(json.dumps({kind: {n: predict(n, kind) for n in (10, 40)} for kind in ("zarr", "tif")}))
"""


def test_predict_to_tif_peak_memory_is_independent_of_frame_count(tmp_path):
    """``predict MOVIE -o maps.tif`` writes each frame's maps as it goes (one TIFF page per
    frame and output), never holding the whole movie's maps; a zarr or TIFF MOVIE is read
    frame by frame."""
    import tifffile

    peaks = _measure(_MEASURE_PREDICT, tmp_path)
    frame = 64 * 64 * 4  # one float32 map
    # 30 more frames of two maps would be 60 frames' worth held until the end (the maps
    # collected, then stacked: measured 3.2 MB more for 50 more frames before 2026-12-06); a
    # TIFF MOVIE read whole, 30 more uint16 frames: 15 maps' worth
    for kind in ("zarr", "tif"):
        assert peaks[kind]["40"] - peaks[kind]["10"] < 10 * frame, peaks
    for name in ("foreground", "background"):
        with tifffile.TiffFile(tmp_path / f"maps40tif_{name}.tif") as tif:
            assert len(tif.pages) == 40 and tif.series[0].shape == (40, 64, 64)
            assert json.loads(tif.pages[0].description)["output"] == name


_MEASURE_STACKS = """
import json, sys, tracemalloc
from pathlib import Path
import numpy as np, zarr
from napari_hemd.data.synthetic import nuclei_volume
from napari_hemd.image_segmentation import segment_image
from napari_hemd.pipeline import stream_stacks

tmp = Path(sys.argv[1])
vol = nuclei_volume()["image"][:12, :64, :64]
opts = dict(tta=1, planes=1, threads=1)

{PEAK}

out = {"stream": {}, "memory": {}}
stream_stacks(np.stack([vol] * 2), tmp / "warm.zarr", "nuclei-3d", **opts)  # imports, caches
for n in (2, 8):
    path = str(tmp / f"s{n}.zarr")
    z = zarr.create_array(path, shape=(n, *vol.shape), chunks=(1, *vol.shape), dtype=vol.dtype)
    z[:] = np.stack([vol] * n)
    z = zarr.open_array(path, mode="r")
    out["stream"][n] = peak(lambda: stream_stacks(z, tmp / f"l{n}.zarr", "nuclei-3d", **opts))
    out["memory"][n] = peak(lambda: segment_image(z, "nuclei-3d", **opts))
print(json.dumps(out))
""".replace("{PEAK}", _PEAK)


def test_stream_stacks_peak_memory_is_independent_of_time_points(tmp_path):
    """A (T, Z, Y, X) time-lapse streamed stack by stack holds one stack (and the previous
    stack's labels for the linking), where the in-memory run holds every stack's maps."""
    peaks = _measure(_MEASURE_STACKS, tmp_path)
    stack = 12 * 64 * 64 * 4  # one stack's float32 map
    assert peaks["memory"]["8"] - peaks["memory"]["2"] > 6 * stack, peaks
    assert peaks["stream"]["8"] - peaks["stream"]["2"] < 1 * stack, peaks


def test_predict_writes_maps_of_2_gib_or_more_as_a_bigtiff(tmp_path, monkeypatch):
    """A classic TIFF ends at 4 GiB: predict's page-by-page maps of a long movie failed at the
    end of the run ("'I' format requires 0 <= number <= 4294967295" at frame 71 of 4096 x 4096
    float maps), their work lost. Maps that reach 2 GiB (the label TIFFs' limit) are BigTIFFs,
    smaller ones stay classic; both read back the same (the limit lowered to test it)."""
    import numpy as np
    import tifffile

    import napari_hemd.io.stacks as stacks
    from napari_hemd.cli import main
    from napari_hemd.data.synthetic import nuclei_video

    movie = nuclei_video(n_frames=3, shape=(48, 48), n_cells=3, seed=1)["image"]
    tifffile.imwrite(tmp_path / "movie.tif", movie, photometric="minisblack")
    base = ["predict", str(tmp_path / "movie.tif"), "--model", "nuclei-fluo", "--tta", "1"]
    base += ["--outputs", "foreground", "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "small.tif")]) == 0
    monkeypatch.setattr(stacks, "IMAGEJ_MAX_BYTES", 3 * 48 * 48 * 4)  # three float32 frames
    assert main([*base, "-o", str(tmp_path / "big.tif")]) == 0
    got = {}
    for name in ("small", "big"):
        with tifffile.TiffFile(tmp_path / f"{name}.tif") as tif:
            got[name] = (tif.is_bigtiff, tif.asarray())
    assert not got["small"][0] and got["big"][0]
    np.testing.assert_array_equal(got["small"][1], got["big"][1])
    assert main(["segment", str(tmp_path / "big.tif"), "-o", str(tmp_path / "l.tif")]) == 0


def test_predict_keeps_a_one_frame_movies_frame_axis_in_a_tiff(tmp_path):
    """Audit 35: predict -o maps.tif wrote a (1, Y, X) movie's maps as one 2D image (the .zarr
    kept (1, Y, X)); segment of them then gave 2D labels. The first page records the shape."""
    import tifffile

    from napari_hemd.cli import main
    from napari_hemd.data.synthetic import nuclei_video

    movie = nuclei_video(n_frames=1, shape=(48, 48), n_cells=3, seed=1)["image"]
    tifffile.imwrite(tmp_path / "one.tif", movie, photometric="minisblack")
    assert tifffile.imread(tmp_path / "one.tif").shape == (1, 48, 48)
    args = ["predict", str(tmp_path / "one.tif"), "--model", "nuclei-fluo", "--tta", "1"]
    assert main([*args, "--no-progress", "-o", str(tmp_path / "maps.tif")]) == 0
    assert tifffile.imread(tmp_path / "maps.tif").shape == (1, 48, 48)
    out = tmp_path / "labels.tif"
    assert main(["segment", str(tmp_path / "maps.tif"), "-o", str(out), "--no-progress"]) == 0
    assert tifffile.imread(out).shape == (1, 48, 48)
