"""Score model files on the contiguous block of frames they were *not* trained on.

Protocol (what a user gets from ``napari-hemd segment MOVIE --model M``): the held-out frames of
each data folder (``training.held_out_samples`` in the model file: the last 20 % of a sequence, a
contiguous block) are predicted once; H-EMD runs over the whole block as one sequence (so it
matches candidates across neighbouring frames), the 0.5-threshold and the watershed baselines on
the same maps, each with the model's minimum size (``segment_defaults``, else ``--min-size``
20); all instances are grown to whole cells exactly as
``segment --model`` does (:func:`napari_hemd.image_segmentation.labels_from_maps_workflow`).
Independent images (BBBC039) are segmented one at a time. The affinity model also reports its
Mutex-watershed instances.

Scores (F1 at IoU >= 0.5, AJI, PQ, CTC SEG; objects and pixels pooled over the frames) against the
silver truth (ST, every frame) and, where a frame has one, the gold truth (GT, sparse on HeLa: only
SEG is meaningful there). Where the gold truth has tracking markers (``SEQ_GT/TRA``: one marker
per tracked cell in every frame, made by hand, the challenge's reference for detection) the CTC **DET** score
against them is reported too, with its counts: markers no object covers (FN), objects that cover
no marker (FP) and objects covering several markers (merges); an object "covers" a marker when it
holds more than half of it.

Where the silver truth leaves out cells cut by the frame border (fewer than 2 % of its objects
touch the border: Fluo-N2DL-HeLa, PhC-C2DL-PSC), a second row scores against it with every object
touching the frame border removed from both the reference and the result (``"ST, border-cut
excluded"``): a user's masks rightly include those cells, the reference does not, and the strict
row counts each as a false positive. The strict row then also records the objects touching the
border (``ref_touching_border``, ``found_touching_border``) and how many of the result's objects
that match no reference object (``unmatched``) touch it (``unmatched_touching_border``).

    PYTHONPATH=src python benchmarks/eval_models.py src/napari_hemd/models/weights/*.pt \
        --data ../shared/data --json docs/models-validation.json --store
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from skimage.segmentation import clear_border

from napari_hemd.core.metrics import evaluate_sequence, overlap_table
from napari_hemd.image_segmentation import labels_from_maps_workflow, whole_cell_growth
from napari_hemd.io.ctc import read_ctc_labels
from napari_hemd.models import (
    iter_predict,
    load_model_file,
    load_samples,
    predict_volume,
    volume_settings,
)
from napari_hemd.models.weights import rewrite_model_file
from napari_hemd.workflows import run_workflow

METHODS = ("hemd", "threshold", "watershed")
BORDER = "ST, border-cut excluded"
MIN_SIZE = 20


def held_out_names(data_root: Path, folders: list[str], val: str = "0.2") -> list[str]:
    """Names of the held-out block of each folder, split as ``napari-hemd train --val`` does."""
    from napari_hemd.models import split_samples

    names = []
    for f in folders:
        _, held = split_samples(load_samples(data_root / f), val)
        names += [s.name for s in held]
    return names


def held_out_blocks(
    model, data_root: Path, names: list[str] | None = None, allow_trained: bool = False
) -> dict[str, dict]:
    """Per data folder: the held-out samples (images + ST or plain labels) and GT where present.

    ``allow_trained`` lets ``names`` be frames the model was trained on (``--frames``).
    """
    if names is None:
        names = model.metadata["training"]["held_out_samples"]
    trained = set(model.metadata["training"].get("train_samples", []))
    if trained & set(names) and not allow_trained:
        raise ValueError(f"the model was trained on {sorted(trained & set(names))[:3]}...")
    by_dataset: dict[str, list[str]] = {}
    for name in names:
        *ds, frame = name.split("/")
        by_dataset.setdefault("/".join(ds), []).append(frame)
    blocks = {}
    for ds, frames in by_dataset.items():
        volume = data_root / "volumes" / f"{ds}.h5"
        if volume.is_file():  # slices of one volume: H-EMD across slices, scored in 3D
            found = {s.name.split("/")[-1]: s for s in load_samples(volume)}
            blocks[ds] = {
                "samples": [found[f] for f in sorted(frames)],
                "source": "labels",
                "gt": {},
                "sequence": True,
                "volume": True,
            }
        elif "/" in ds:  # CTC: DATASET/SEQ
            folder = data_root / "ctc" / ds
            st = {s.name.split("/")[-1]: s for s in _try(load_samples, folder, masks="st")}
            gt = {s.name.split("/")[-1]: s for s in _try(load_samples, folder, masks="gt")}
            main, source = (st, "ST") if st else (gt, "GT")
            tra_dir = folder.parent / f"{folder.name}_GT" / "TRA"
            tra = read_ctc_labels(tra_dir) if tra_dir.is_dir() else {}
            blocks[ds] = {
                "tra": {f: tra[int(f[1:])] for f in sorted(frames) if int(f[1:]) in tra},
                "samples": [main[f] for f in sorted(frames) if f in main],
                "source": source,
                "gt": {f: gt[f] for f in sorted(frames) if f in gt} if source == "ST" else {},
                "sequence": True,
            }
        else:
            found = {s.name.split("/")[-1]: s for s in load_samples(data_root / ds)}
            blocks[ds] = {
                "samples": [found[f] for f in sorted(frames)],
                "source": "labels",
                "gt": {},
                "sequence": False,
            }
    return blocks


def _try(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except FileNotFoundError:
        return []


def _predict(
    model, images: list[np.ndarray], outputs: list[str], tta: int = 1
) -> dict[str, np.ndarray]:
    maps: dict[str, list] = {k: [] for k in outputs}
    for img in images:  # frames of one block share a shape; independent images may not
        for _, m in iter_predict(model, img[None], outputs=outputs, tta=tta):
            for k in outputs:
                maps[k].append(m[k])
    return maps


def _labels(maps: dict, idx: list[int], method: str, grow: int, **params) -> list[np.ndarray]:
    sub = {k: np.stack([v[i] for i in idx]) for k, v in maps.items() if k != "instances"}
    wf = labels_from_maps_workflow(sub, method, grow, **params)
    labels, _, _ = run_workflow(wf)
    return list(labels)


def _score(refs: list[np.ndarray], preds: list[np.ndarray]) -> dict:
    r = evaluate_sequence(dict(enumerate(refs)), dict(enumerate(preds)))
    return {
        **{k: round(float(r[k]), 4) for k in ("F1", "AJI", "PQ", "SEG")},
        "frames": len(refs),
        "n_ref": int(r["counts"]["n_gt"]),
        "n_found": int(r["counts"]["n_pred"]),
    }


def _leaves_out_border(samples, fraction: float = 0.02) -> bool:
    """Whether fewer than ``fraction`` of the reference objects touch the frame border."""
    n = touching = 0
    for s in samples:
        lab = s.labels
        n += np.unique(lab[lab > 0]).size
        touching += len(_on_border(lab))
    return n > 0 and touching < fraction * n


def _on_border(lab: np.ndarray) -> set[int]:
    """Labels of the objects touching the frame border."""
    rim = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    return set(np.unique(rim[rim > 0]).tolist())


def _border_counts(refs: list[np.ndarray], preds: list[np.ndarray]) -> dict:
    """Objects touching the frame border: in the reference, in the result, and among the result's
    objects that match no reference object (IoU >= 0.5), of all those unmatched objects."""
    n_ref = n_found = unmatched = unmatched_border = 0
    for ref, pred in zip(refs, preds, strict=True):
        table = overlap_table(ref, pred)
        _, c, inter, union = table.object_pairs()
        matched = set(table.pred_labels[c[inter / union >= 0.5]].tolist())
        found_on_border = _on_border(pred)
        n_ref += len(_on_border(ref))
        n_found += len(found_on_border)
        ids = set(np.unique(pred[pred > 0]).tolist()) - matched
        unmatched += len(ids)
        unmatched_border += len(ids & found_on_border)
    return {
        "ref_touching_border": n_ref,
        "found_touching_border": n_found,
        "unmatched": unmatched,
        "unmatched_touching_border": unmatched_border,
    }


def _det(markers: list[np.ndarray], preds: list[np.ndarray]) -> dict:
    """CTC DET against tracking markers, with its error counts (see the module docstring)."""
    r = evaluate_sequence(dict(enumerate(markers)), dict(enumerate(preds)))
    c = r["counts"]
    return {
        "DET": round(float(r["DET"]), 4),
        "frames": len(markers),
        "markers": int(c["n_gt"]),
        "n_found": int(c["n_pred"]),
        "FN": int(c["det_FN"]),
        "FP": int(c["det_FP"]),
        "merges": int(c["det_NS"]),
    }


def evaluate(
    model,
    data_root: Path,
    names: list[str] | None = None,
    min_size: int = MIN_SIZE,
    hemd_params: dict | None = None,
    allow_trained: bool = False,
    tta: int = 1,
) -> dict:
    """``{folder: {"ST"|"GT"|"labels": {method: scores}, "frames": [...]}}``.

    ``hemd_params`` override the model's ``segment_defaults`` (H-EMD options such as
    ``split_coverage``; the baselines ignore H-EMD-only ones). ``tta``: test-time flips.
    """
    grow = whole_cell_growth(model)
    outputs = ["foreground", "background"]
    methods = METHODS + (("mutex",) if model.kind == "affinity" else ())
    if model.kind == "affinity":
        outputs.append("instances")
    # the model's own segment defaults (what segment --model uses) win over min_size
    defaults = {
        "min_size": min_size,
        **model.metadata.get("segment_defaults", {}),
        **(hemd_params or {}),
    }
    results = {}
    for ds, block in held_out_blocks(model, data_root, names, allow_trained).items():
        samples = block["samples"]
        if block.get("volume") and volume_settings(model)["planes"] == 3:
            # the slab as the user's stack: z-, y- and x-slices, as segment --model does
            stack = np.stack([s.image for s in samples])
            vol = predict_volume(model, stack, outputs=outputs, tta=tta)
            maps = {k: list(v) for k, v in vol.items()}
        else:
            maps = _predict(model, [s.image for s in samples], outputs, tta)
        n = len(samples)
        preds = {}
        for m in methods:
            if m == "mutex":
                preds[m] = [np.asarray(x) for x in maps["instances"]]
            elif block["sequence"]:
                # slices of a volume are linked into 3D objects (same id through the slab)
                extra = dict(defaults, link=True) if block.get("volume") else defaults
                preds[m] = _labels(maps, list(range(n)), m, grow, **extra)
            else:
                preds[m] = [_labels(maps, [i], m, grow, **defaults)[0] for i in range(n)]
        frames = [s.name.split("/")[-1] for s in samples]
        res = {"frames": frames, block["source"]: {}}
        for m in methods:
            if block.get("volume"):  # one 3D volume: objects matched in 3D
                ref3d = np.stack([s.labels for s in samples])
                res[block["source"]][m] = _score([ref3d], [np.stack(preds[m])])
            else:
                res[block["source"]][m] = _score([s.labels for s in samples], preds[m])
        if block["gt"]:
            idx = [frames.index(f) for f in block["gt"]]
            res["GT"] = {
                m: _score([block["gt"][frames[i]].labels for i in idx], [preds[m][i] for i in idx])
                for m in methods
            }
        if block["source"] == "ST" and _leaves_out_border(block["samples"]):
            refs = [clear_border(s.labels) for s in block["samples"]]
            res[BORDER] = {m: _score(refs, [clear_border(x) for x in preds[m]]) for m in methods}
            for m in methods:  # what the strict row counts at the border
                res[block["source"]][m].update(
                    _border_counts([s.labels for s in block["samples"]], preds[m])
                )
        if block.get("tra"):
            idx = [frames.index(f) for f in block["tra"]]
            res["TRA"] = {
                m: _det(list(block["tra"].values()), [preds[m][i] for i in idx]) for m in methods
            }
        results[ds] = res
    return results


def _scores_by_reference(results: dict) -> dict:
    return {
        f"{ds} {ref}": {m: {k: sc[k] for k in ("F1", "AJI", "SEG")} for m, sc in r.items()}
        for ds, res in results.items()
        for ref, r in res.items()
        if ref not in ("frames", "TRA", BORDER)
    }


def store_validation(
    path: Path, model, results: dict, min_size: int = MIN_SIZE, tta: int = 1
) -> None:
    """Write the held-out scores into the model file (shown by ``napari-hemd models``).

    ``tta=1``: the scores of the defaults (replacing the file's validation, and with it any
    test-time-flip scores, which belonged to the weights scored before); ``tta > 1``: the same
    block with that many flipped views, kept beside them as ``validation["tta"]``.
    """
    frames = {ds: [res["frames"][0], res["frames"][-1]] for ds, res in results.items()}
    if tta != 1:
        validation = model.metadata.get("validation") or {}
        if "scores" not in validation or validation.get("frames") != frames:
            raise ValueError(
                f"{path}: store the default scores first (--store without --tta); test-time "
                "flip scores go beside them, on the same held-out block"
            )
        validation["tta"] = {"views": int(tta), "scores": _scores_by_reference(results)}
        model.metadata["validation"] = validation
        rewrite_model_file(model, path)
        return
    size = model.metadata.get("segment_defaults", {}).get("min_size", min_size)
    protocol = f"held-out block; H-EMD over the block; whole cells; min size {size}"
    if model.kind == "affinity":
        protocol = "held-out images; the network's Mutex-watershed instances (as predict gives)"
    model.metadata["validation"] = {
        "protocol": protocol,
        "scores": _scores_by_reference(results),
        "frames": frames,
    }
    rewrite_model_file(model, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--store", action="store_true", help="store scores in the model files")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-size", type=int, default=20, help="smallest object (default 20)")
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="with --store: take the scores from an earlier run's --json (same model files; "
        "with the test-time flips that run used)",
    )
    p.add_argument(
        "--held-out",
        action="append",
        metavar="FOLDER",
        help="score every model on the last 20 %% of FOLDER (under --data; repeatable) instead of "
        "its own held-out frames (compare models on one block; refused if a model trained on it)",
    )
    p.add_argument(
        "--frames",
        action="append",
        metavar="FOLDER=START:STOP",
        help="score frames START..STOP-1 of FOLDER (under --data; repeatable) instead of the "
        "held-out block, even frames the model was trained on (optimistic: for comparing "
        "settings on more frames, not for reporting a model)",
    )
    p.add_argument(
        "--hemd",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="H-EMD option over the model's defaults, e.g. split_coverage=0 (repeatable)",
    )
    p.add_argument(
        "--tta",
        type=int,
        default=1,
        choices=(1, 2, 4, 8),
        help="test-time flips: views averaged per tile (U-Nets; default 1: off)",
    )
    args = p.parse_args()
    if args.store and (args.frames or args.hemd or args.held_out):
        p.error("--store records the model's own held-out scores: drop --frames/--hemd/--held-out")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    summary = {}
    names = held_out_names(args.data, args.held_out) if args.held_out else None
    if args.frames:
        names = []
        for spec in args.frames:
            folder, sep, span = spec.partition("=")
            if not sep or ":" not in span:
                p.error(f"--frames expects FOLDER=START:STOP; got {spec!r}")
            names += held_out_names(args.data, [folder], span)
    hemd_params = {}
    for kv in args.hemd:
        key, sep, value = kv.partition("=")
        if not sep:
            p.error(f"--hemd expects KEY=VALUE; got {kv!r}")
        try:
            hemd_params[key] = json.loads(value)  # numbers, true / false
        except json.JSONDecodeError:
            hemd_params[key] = value  # e.g. variant=paper
    earlier = json.loads(args.from_json.read_text()) if args.from_json else {}
    for path in args.models:
        model = load_model_file(path)
        if path.stem in earlier:
            run = earlier[path.stem]  # flips as in that run (its "tta"; older runs: none)
            store_validation(path, model, run["held_out"], args.min_size, tta=run.get("tta", 1))
            print(f"{path.stem}: stored the scores of {args.from_json}")
            continue
        t0 = time.perf_counter()
        results = evaluate(
            model,
            args.data,
            names,
            args.min_size,
            hemd_params,
            allow_trained=bool(args.frames),
            tta=args.tta,
        )
        for ds, res in results.items():
            for ref in ("ST", BORDER, "GT", "labels"):
                for m, sc in res.get(ref, {}).items():
                    print(
                        f"{path.stem:16s} {ds:24s} {ref:6s} {m:9s} F1 {sc['F1']:.3f} "
                        f"AJI {sc['AJI']:.3f} PQ {sc['PQ']:.3f} SEG {sc['SEG']:.3f}  "
                        f"({sc['frames']} frames, {sc['n_ref']} ref / {sc['n_found']} found)"
                    )
            for m, sc in res.get("TRA", {}).items():
                print(
                    f"{path.stem:16s} {ds:24s} {'TRA':6s} {m:9s} DET {sc['DET']:.3f}  "
                    f"({sc['markers']} markers, {sc['n_found']} found: {sc['FN']} missed, "
                    f"{sc['FP']} on no marker, {sc['merges']} merges)"
                )
        seconds = round(time.perf_counter() - t0, 1)
        summary[path.stem] = {"seconds": seconds, "tta": args.tta, "held_out": results}
        if args.store:
            store_validation(path, model, results, args.min_size, tta=args.tta)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
