"""Markdown tables of held-out scores (``eval_models.py --json``), as in docs/models.md.

    python benchmarks/validation_tables.py docs/models-validation.json \\
        --previous old.json --previous-label "before calibration"

One table per model: every held-out block and reference, F1 / AJI / SEG of H-EMD, the
0.5-threshold and the watershed on the same maps (and the Mutex watershed for affinity models);
against a sparse reference (the HeLa gold truth) only SEG; against tracking markers ("TRA", one per
tracked cell: the challenge's reference for detection) the CTC DET score with the markers missed and the
objects on no marker. ``--previous``: the same protocol's
H-EMD scores of an earlier model file (or the Mutex watershed's for affinity models) in a last
column.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

NAMES = {
    "hemd": "H-EMD",
    "threshold": "0.5-threshold",
    "watershed": "watershed",
    "mutex": "Mutex watershed",
}
#: References that annotate only some objects per frame: SEG only.
SPARSE = {("Fluo-N2DL-HeLa/01", "GT")}


def _cell(scores: dict, sparse: bool) -> str:
    if "DET" in scores and "F1" not in scores:  # tracking markers
        return f"DET {scores['DET']:.3f} ({scores['FN']} missed, {scores['FP']} on no marker)"
    if sparse:
        return f"SEG {scores['SEG']:.3f}"
    return f"{scores['F1']:.3f} / {scores['AJI']:.3f} / {scores['SEG']:.3f}"


def _block(ds: str, frames: list[str]) -> str:
    if all(re.fullmatch(r"[tz]\d+", f) for f in frames):  # frames of a sequence, slices of a volume
        return f"{ds} {frames[0]}-{frames[-1]}"
    return f"{ds} ({len(frames)} held-out images)"  # independent images


def tables(results: dict, previous: dict | None = None, label: str = "previous") -> str:
    """Markdown: one table per model of ``results`` (``eval_models.py --json``)."""
    out = []
    for model, res in results.items():
        blocks = res["held_out"]
        methods = [m for m in NAMES if any(m in r for b in blocks.values() for k, r in b.items()
                                          if k != "frames")]  # fmt: skip
        main = "mutex" if "mutex" in methods else "hemd"
        head = [f"{NAMES[m]} F1 / AJI / SEG" if i == 0 else NAMES[m] for i, m in enumerate(methods)]
        cols = ["held-out block", "reference", *head]
        if previous and model in previous:
            cols.append(f"{label}, {NAMES[main]}")
        out += [f"**`{model}`**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for ds, block in blocks.items():
            for ref, by_method in block.items():
                if ref == "frames":
                    continue
                sparse = (ds, ref) in SPARSE
                first = next(iter(by_method.values()))
                what = (
                    f"markers ({first['markers']})"
                    if ref == "TRA"
                    else f"({first['n_ref']} objects)"
                )
                row = [_block(ds, block["frames"]), f"{ref} {what}"]
                row += [_cell(by_method[m], sparse) if m in by_method else "–" for m in methods]
                if previous and model in previous:
                    old = previous[model]["held_out"].get(ds, {}).get(ref, {}).get(main)
                    row.append(_cell(old, sparse) if old else "–")
                out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path)
    p.add_argument("--previous", type=Path, default=None)
    p.add_argument("--previous-label", default="previous")
    p.add_argument("--models", default=None, help="comma-separated subset, in this order")
    args = p.parse_args()
    results = json.loads(args.results.read_text())
    if args.models:
        results = {m: results[m] for m in args.models.split(",")}
    previous = json.loads(args.previous.read_text()) if args.previous else None
    print(tables(results, previous, args.previous_label))


if __name__ == "__main__":
    main()
