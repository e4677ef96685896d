"""Score model files on the frames they were *not* trained on.

The held-out frames are read from the model's metadata (``training.held_out_samples``); masks are
the gold truth (GT/SEG) where a frame has one, else the silver truth (ST/SEG), as stated in the
output. Writes a JSON summary and, with ``--store``, the scores into the model file's metadata
(shown by ``napari-hemd models``).

    PYTHONPATH=src python benchmarks/eval_models.py src/napari_hemd/models/weights/*.pt \
        --data ../shared/data --json docs/models-validation.json --store
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

import torch

from napari_hemd.models import load_model_file, load_samples, save_model_file
from napari_hemd.models.evaluation import evaluate_model


def held_out_samples(model, data_root: Path) -> dict[str, list]:
    """Group the model's held-out samples by dataset, with GT masks where the frame has them."""
    groups: dict[str, list] = {}
    names = model.metadata["training"]["held_out_samples"]
    by_dataset: dict[str, set] = {}
    for name in names:
        *ds, frame = name.split("/")
        by_dataset.setdefault("/".join(ds), set()).add(frame)
    for ds, frames in by_dataset.items():
        if "/" in ds:  # CTC: DATASET/SEQ
            folder = data_root / "ctc" / ds
            gt = {s.name.split("/")[-1]: s for s in _try(load_samples, folder, masks="gt")}
            st = {s.name.split("/")[-1]: s for s in _try(load_samples, folder, masks="st")}
            chosen = [gt.get(f) or st.get(f) for f in sorted(frames)]
        else:
            folder = data_root / ds
            allsamples = {s.name.split("/")[-1]: s for s in load_samples(folder)}
            chosen = [allsamples[f] for f in sorted(frames)]
        for s in chosen:
            if s is not None:
                groups.setdefault(f"{ds} ({s.source})", []).append(s)
    return groups


def _try(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except FileNotFoundError:
        return []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--store", action="store_true", help="store scores in the model files")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    summary = {}
    for path in args.models:
        model = load_model_file(path)
        methods = ("threshold", "hemd") + (("mutex",) if model.kind == "affinity" else ())
        results = {}
        t0 = time.perf_counter()
        for group, samples in held_out_samples(model, args.data).items():
            frames = [re.sub(r".*/", "", s.name) for s in samples]
            scores = evaluate_model(model, samples, methods=methods)
            results[group] = {"frames": frames, **scores}
            for m, sc in scores.items():
                print(
                    f"{path.stem:16s} {group:38s} {m:9s} F1 {sc['F1']:.3f} AJI {sc['AJI']:.3f} "
                    f"PQ {sc['PQ']:.3f} SEG {sc['SEG']:.3f}  ({sc['frames']} frames, "
                    f"{sc['n_gt']} ref / {sc['n_pred']} found)"
                )
        summary[path.stem] = {"seconds": round(time.perf_counter() - t0, 1), "held_out": results}
        if args.store:
            model.metadata["validation"] = {
                f"{g} {m}": f"F1 {r[m]['F1']:.3f} AJI {r[m]['AJI']:.3f}"
                for g, r in results.items()
                for m in methods
            }
            save_model_file(
                model,
                path,
                half=next(iter(torch.load(path, weights_only=True)["state_dict"].values())).dtype
                == torch.float16,
            )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
