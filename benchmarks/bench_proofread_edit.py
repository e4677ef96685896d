"""An "all frames" merge / delete in Proofread: only the objects' pixels vs a copy of the movie.

Proofread's merge, delete and relabel give objects new ids (``_layer_state.apply_id_map``): the
pixels of those ids are found, recorded for undo and written in place. Before, the edit made a
new movie (``workflows.merge_labels``: a copy with the ids replaced) and ``apply_edit``
compared it with the layer's to record the difference and copied it back, on napari's thread.
Both on the same layer in the same run (the whole Fluo-N2DL-HeLa 01 silver truth from
``--data``, else a synthetic movie of its size; each edit undone before the next, untimed);
ratios below 1 are the gain. Time is best of ``--repeat``, memory the peak numpy allocates
above the layer (``tracemalloc``).

    PYTHONPATH=src python benchmarks/bench_proofread_edit.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
from bench_frame_ids import labels_movie
from napari.layers import Labels

from napari_hemd._widgets._layer_state import apply_edit, apply_id_map, history_of
from napari_hemd.workflows import merge_labels


def timed(fn) -> tuple[float, int]:
    tracemalloc.start()
    t = time.perf_counter()
    fn()
    took = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return took, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lab, what = labels_movie(args.data)
    layer = Labels(lab)
    # the two largest objects over the movie (tracked nuclei keep their id from frame to frame)
    ids = np.bincount(lab[:, ::8, ::8].ravel())
    ids[0] = 0
    a, b = (int(i) for i in np.argsort(ids)[-2:])
    print(f"{what}: {lab.shape[0]} frames of {lab.shape[1]} x {lab.shape[2]} "
          f"({lab.nbytes / 2**20:.0f} MiB); merge {a} and {b}, delete {a}, in all frames")  # fmt: skip
    before = lab.copy()
    edits = {
        "merge": (
            lambda: apply_id_map(layer, "merge", {b: a}),
            lambda: apply_edit(layer, "merge", merge_labels(layer.data, [a, b])),
        ),
        "delete": (
            lambda: apply_id_map(layer, "delete", {a: 0}),
            lambda: apply_edit(layer, "delete", merge_labels(layer.data, [0, a])),
        ),
    }
    for name, (new, old) in edits.items():
        results = {"new": [], "old": []}
        for _ in range(args.repeat):
            for key, fn in (("new", new), ("old", old)):  # alternately: drift hits both alike
                results[key].append(timed(fn))
                history_of(layer).undo(layer.data)
                assert np.array_equal(layer.data, before)
        tn, to = (min(t for t, _ in results[k]) for k in ("new", "old"))
        mn, mo = (max(m for _, m in results[k]) for k in ("new", "old"))
        print(
            f"{name}: pixels only {tn:.3f} s / {mn / 2**20:.0f} MiB, copy of the movie "
            f"{to:.3f} s / {mo / 2**20:.0f} MiB; ratio time {tn / to:.2f}, memory {mn / mo:.2f}"
        )


if __name__ == "__main__":
    main()
