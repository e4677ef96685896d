"""Peak RSS of ``napari-hemd predict STACK.tif -o OUT.tif`` in this process (one view, two maps).

    python benchmarks/predict_rss.py SRC STACK.tif OUT.tif

``SRC``: the ``src`` folder of the checkout to measure (another commit's worktree, to compare
two versions on the same stack; run them alternately, RSS scatters). Prints the seconds and
``ru_maxrss``. Make a stack with ``bench_scale.make_stack`` and write it as TIFF pages.
"""

from __future__ import annotations

import resource
import sys
import time


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    src, stack, out = sys.argv[1:]
    sys.path.insert(0, src)
    from napari_hemd.cli import main as cli

    t0 = time.perf_counter()
    argv = ["predict", stack, "--model", "nuclei-fluo", "-o", out, "--tta", "1"]
    assert cli([*argv, "--outputs", "foreground,background", "--no-progress"]) == 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{src}: {time.perf_counter() - t0:.1f} s, peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
