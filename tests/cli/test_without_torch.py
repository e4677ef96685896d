"""An install without the [torch] extra: H-EMD on maps works, what needs torch says so in a line.

Audit 23: ``stream`` on plain maps imported the models (torch) before looking at its input, and
``napari-hemd models`` without torch ended in a traceback (exit 1).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import tifffile

BLOCK = textwrap.dedent(
    """
    import sys, importlib.abc

    class Block(importlib.abc.MetaPathFinder):  # as if torch, elf and h5py were not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "elf", "h5py"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, Block())
    from napari_hemd.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _cli(*argv, cwd):
    return subprocess.run(
        [sys.executable, "-c", BLOCK, *argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_maps_are_segmented_and_streamed_without_torch(tmp_path):
    from napari_hemd.data.synthetic import nuclei_video

    prob = nuclei_video(n_frames=4, shape=(96, 96), n_cells=5, seed=2)["prob"].astype(np.float32)
    tifffile.imwrite(tmp_path / "prob.tif", prob)
    done = _cli("stream", "prob.tif", "-o", "s.zarr", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = _cli("segment", "prob.tif", "-o", "l.tif", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = _cli("models", cwd=tmp_path)
    assert done.returncode == 2
    want = "napari-hemd models: error: napari-hemd models needs torch: pip install"
    assert done.stderr.strip().splitlines() == [f"{want} 'napari-hemd[torch]'"]
    done = _cli("predict", "prob.tif", "--model", "nuclei-fluo", "-o", "m.tif", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "pip install 'napari-hemd[torch]'" in done.stderr
