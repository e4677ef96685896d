"""Opening a napari-hemd dock in a fresh napari: the widgets list the models without torch.

The widgets' model lists read the shipped models' catalogue (``napari_hemd._shipped``), which
imports no torch; before, they imported ``napari_hemd.models`` (torch and the networks), about
2 s before the first dock appeared. Both in the same run: each dock opened in a fresh process
(napari already started, as when a user picks it from the Plugins menu), as it is now and with
``napari_hemd.models`` imported first, the cost the dock paid before. Best of ``--repeat``;
ratios below 1 are the gain. Needs a display (``xvfb-run -a`` on a server).

    xvfb-run -a python benchmarks/bench_dock_open.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

#: The docks whose model lists imported torch before (Proofread, Export, Project and the
#: inspector never did; Predict opens with a model chosen, whose summary reads its file).
DOCKS = (
    "Segment (H-EMD)",
    "Large data (stream, Dask)",
    "Fine-tune (learn from your corrections)",
)

CODE = """
import json, sys, time
import napari
viewer = napari.Viewer(show=False)
start = time.perf_counter()
if {before!r}:
    import napari_hemd.models  # what the model lists imported before
viewer.window.add_plugin_dock_widget("napari-hemd", {dock!r})
took = time.perf_counter() - start
print(json.dumps({{"s": took, "torch": "torch" in sys.modules}}))
viewer.close()
"""


def dock_time(dock: str, before: bool, config: str) -> dict:
    env = {**os.environ, "NAPARI_HEMD_CONFIG_DIR": config}
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(dock=dock, before=before)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as config:
        print(f"{'dock':<42} {'now s':>7} {'torch':>6} {'before s':>9} {'ratio':>6}")
        for dock in DOCKS:
            now, old = [], []
            for _ in range(args.repeat):  # alternately: drift hits both alike
                now.append(dock_time(dock, False, config))
                old.append(dock_time(dock, True, config))
            best_now = min(r["s"] for r in now)
            best_old = min(r["s"] for r in old)
            print(
                f"{dock:<42} {best_now:7.2f} {now[0]['torch']!s:>6} {best_old:9.2f} "
                f"{best_now / best_old:6.2f}"
            )


if __name__ == "__main__":
    main()
