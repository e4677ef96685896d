"""Where a model's masks go wrong on its held-out blocks: each error counted by kind.

For every reference object of the held-out block (as ``eval_models.py`` segments it: H-EMD over
the block, whole cells, the model's defaults) the result object that covers most of it decides:

- ``matched``: IoU >= 0.5 (the F1 criterion);
- ``missed``: no result object touches it;
- ``split``: no result object covers 70 % of it and several touch it;
- ``merged``: that result object is mostly (>= 30 %) other reference objects;
- ``too large`` / ``too small``: otherwise, by the two areas.

Result objects that match no reference object are counted as ``unmatched``, split into those
touching the frame border (which HeLa's and PSC's silver truth leave out) and the others, whose
frames and centres are listed (``--list``) to look at. Matched objects give the median IoU and
area ratio (result / reference).

    PYTHONPATH=src python benchmarks/error_breakdown.py src/napari_hemd/models/weights/nuclei-fluo.pt \
        --data ../shared/data --tta 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from eval_models import _labels, _on_border, _predict, held_out_blocks
from scipy import ndimage as ndi

from napari_hemd.core.metrics import overlap_table
from napari_hemd.image_segmentation import whole_cell_growth
from napari_hemd.models import load_model_file
from napari_hemd.models.prediction import model_tta

#: A result object covering less than this share of a reference object leaves it split.
SPLIT_COVER = 0.7
#: A result object of which other reference objects make this share or more is a merge.
MERGE_SHARE = 0.3


def breakdown(refs: list[np.ndarray], preds: list[np.ndarray]) -> dict:
    """The counts above over the frames, and the result objects that match nothing inside.

    ``inside``: ``[frame, y, x, area]`` of each unmatched result object not touching the border.
    """
    kinds = dict.fromkeys(("matched", "missed", "split", "merged", "too large", "too small"), 0)
    ious, ratios, inside = [], [], []
    border = 0
    for t, (ref, pred) in enumerate(zip(refs, preds, strict=True)):
        pred = np.asarray(pred)
        table = overlap_table(ref, pred)
        r, c, inter, union = table.object_pairs()
        matched = set()
        for i in range(1, table.gt_labels.size):
            mine = np.flatnonzero(r == i)
            if not mine.size:
                kinds["missed"] += 1
                continue
            k = mine[np.argmax(inter[mine])]
            col, size = c[k], table.gt_sizes[i]
            if inter[k] >= 0.5 * union[k]:
                kinds["matched"] += 1
                matched.add(col)
                ious.append(inter[k] / union[k])
                ratios.append(table.pred_sizes[col] / size)
            elif mine.size > 1 and inter[k] < SPLIT_COVER * size:
                kinds["split"] += 1
            elif inter[(c == col) & (r != i)].sum() >= MERGE_SHARE * table.pred_sizes[col]:
                kinds["merged"] += 1
            else:
                kinds["too large" if table.pred_sizes[col] > size else "too small"] += 1
        on_border = _on_border(pred)
        rest = [j for j in range(1, table.pred_labels.size) if j not in matched]
        border += sum(int(table.pred_labels[j]) in on_border for j in rest)
        rest = [j for j in rest if int(table.pred_labels[j]) not in on_border]
        ids = [int(table.pred_labels[j]) for j in rest]
        centres = ndi.center_of_mass(pred, pred, ids) if ids else []
        for j, (cy, cx) in zip(rest, centres, strict=True):
            inside.append([t, round(cy), round(cx), int(table.pred_sizes[j])])
    return {
        **kinds,
        "reference objects": int(sum(kinds.values())),
        "median IoU (matched)": round(float(np.median(ious)), 3) if ious else None,
        "median area ratio (matched)": round(float(np.median(ratios)), 3) if ratios else None,
        "unmatched at the border": border,
        "unmatched inside": len(inside),
        "inside": inside,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="model file (.pt)")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--tta", type=int, default=None, help="views (default: the model's own)")
    p.add_argument("--method", default="hemd", help="hemd (default), threshold or watershed")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--list", action="store_true", help="list the unmatched objects inside")
    p.add_argument("--json", type=Path, help="write the counts here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model_file(args.model)
    tta = args.tta or model_tta(model)
    grow = whole_cell_growth(model)
    defaults = {"min_size": 20, **model.metadata.get("segment_defaults", {})}
    out = {}
    for ds, block in held_out_blocks(model, args.data).items():
        if not block["sequence"] or block.get("volume"):
            continue  # independent images and volumes: eval_models.py scores them
        samples = block["samples"]
        maps = _predict(model, [s.image for s in samples], ["foreground", "background"], tta)
        preds = _labels(maps, list(range(len(samples))), args.method, grow, **defaults)
        res = breakdown([s.labels for s in samples], preds)
        inside = res.pop("inside")
        out[ds] = {"reference": block["source"], **res}
        print(f"{ds} ({block['source']}, {len(samples)} frames, {args.method}, {tta} views):")
        for k, v in res.items():
            print(f"  {k:30s} {v}")
        if args.list:
            for t, y, x, area in inside:
                print(f"    frame {t} (y {y}, x {x}): {area} px")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
