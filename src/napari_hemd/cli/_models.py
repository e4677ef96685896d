"""``napari-hemd models``: list the shipped models and what they were trained on."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["load_model_arg", "register", "run"]


def load_model_arg(value: str, option: str = "--model"):
    """Load the model given as ``option`` (a shipped name or a model file).

    Commands call it before reading their input, so a wrong file fails at once, and the one-line
    error names the option and says what the file is instead
    (:func:`napari_hemd.models.load_model`).
    """
    try:
        from napari_hemd.models import load_model
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ModuleNotFoundError(
            f"{option} needs torch: pip install 'napari-hemd[torch]'"
        ) from None
    return load_model(value, name=option)


def register(subparsers) -> None:
    """Add the ``models`` subcommand."""
    p = subparsers.add_parser(
        "models",
        help="list the shipped models and their training data (and the ones you fine-tuned), "
        "or describe model files",
        description="List the shipped models: kind, size, training data, steps, the held-out "
        "scores on frames they never saw (H-EMD; an affinity model's own Mutex-watershed "
        "instances; SEG where the reference is sparse) and their calibration; then the models "
        "fine-tuned in the plugin (use them with --model FILE). With FILE: describe those "
        "model files instead.",
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="model files to describe instead (from train, the Fine-tune widget or elsewhere; "
        "a shipped name: its entry): what each was trained on, its scores, the zoom it is used at",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the shipped models (or the model files given); returns 0."""
    import json

    try:
        from napari_hemd.models import list_models, load_model
        from napari_hemd.models.registry import model_path
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ModuleNotFoundError(
            "napari-hemd models needs torch: pip install 'napari-hemd[torch]'"
        ) from None
    if args.files:
        rows = [_file_row(f, load_model) for f in args.files]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            _print_rows(rows)
        return 0
    rows = []
    for m in list_models():
        path = model_path(m.name)
        rows.append(
            _row(m.name, load_model(m.name), path, m.trained_on, m.description, shipped=True)
        )
    tuned = _fine_tuned(load_model)
    if args.json:
        print(json.dumps(rows + tuned, indent=2))
        return 0
    if not rows:
        print("no shipped models installed")
    _print_rows(rows)
    if tuned:
        print("\nfine-tuned in the plugin (segment ... --model FILE):")
    for r in tuned:
        print(f"{r['name']:<16} {r['kind']:<9} {r['path']}")
        print(f"{'':<16} {_fine_tuned_line(r['fine_tuned'])}")
        if r.get("inherited_calibration"):
            print(f"{'':<16} {_inherited_line(r['inherited_calibration'])}")
        _print_zoom(r)
    return 0


def _fine_tuned_line(ft: dict) -> str:
    """Where a model fine-tuned in the plugin came from, and its held-out frame's scores."""
    line = f"from {ft.get('base')} on checked frames {ft.get('frames')}, {ft.get('steps')} steps"
    if ft.get("held_out") is not None and ft.get("before") and ft.get("after"):
        b, a = ft["before"], ft["after"]
        line += (
            f"; held-out frame {ft['held_out']}: F1 {b['F1']:.3f} -> {a['F1']:.3f}, "
            f"AJI {b['AJI']:.3f} -> {a['AJI']:.3f}"
        )
    return line


def _print_zoom(row: dict) -> None:
    if row["scale"] != 1.0:  # trained on frames zoomed (as the movie was segmented)
        print(
            f"{'':<16} trained at zoom {row['scale']:g}: segment, predict and stream use it at "
            "that zoom (--scale to change it)"
        )


def _row(name: str, model, path, trained_on: str, description: str, *, shipped: bool) -> dict:
    """What ``napari-hemd models`` says of a model (``--json``: this dict).

    ``shipped``: a model of the package (its history is in docs/models.md), not a user's file.
    """
    from napari_hemd.models.prediction import model_scale, model_tta

    meta = model.metadata
    return {
        "name": name,
        "shipped": shipped,
        "kind": model.kind,
        "trained_on": trained_on,
        "description": description,
        "size_kb": round(Path(path).stat().st_size / 1024),
        "held_out": meta.get("validation", {}),
        "steps": meta.get("training", {}).get("steps_done"),
        "continued_from_steps": meta.get("fine_tuned_from", {}).get("steps"),
        "calibration": {k: v for k, v in meta.get("calibration", {}).items() if k != "scores"},
        "volume": {k: v for k, v in meta.get("volume", {}).items() if k != "chosen"},
        "object_diameters": meta.get("object_diameters", {}),
        "scale": model_scale(model),
        "tta": model_tta(model),
        "tta_calibration": {
            k: v for k, v in meta.get("tta_calibration", {}).items() if k != "frames"
        },
        "inherited_calibration": _inherited(meta),
    }


def _file_row(path: str, load_model) -> dict:
    """:func:`_row` of a model file, with its provenance and its score while training."""
    from napari_hemd.models.registry import SHIPPED_MODELS, model_origin, model_path

    file = model_path(path) if path in SHIPPED_MODELS else Path(path)  # a name works too
    if not file.is_file():
        raise FileNotFoundError(f"FILE must be a model file (.pt); got {path!r}: no such file")
    model = load_model(path, name="FILE")
    meta = model.metadata
    training = meta.get("training", {})
    if path in SHIPPED_MODELS:  # a shipped name: described as the listing does, not by the
        entry = SHIPPED_MODELS[path]  # developer's data paths the file records
        row = _row(path, model, file, entry.trained_on, entry.description, shipped=True)
    else:
        trained_on = ", ".join(training.get("data") or []) or "(not recorded)"
        name = meta.get("name") or file.name
        row = _row(name, model, file, trained_on, model_origin(model), shipped=False)
    scored = [h for h in training.get("history", []) if "val_scores" in h]
    best = max(scored, key=lambda h: h.get("val_score", float("-inf")), default=None)
    final = training.get("final_score")  # chosen by the held-out loss, scored at the end
    if best is not None:
        score = {"step": best["step"], "scores": best["val_scores"], "of": len(scored)}
    elif final:
        score = {"step": final["step"], "scores": final["val_scores"], "frames": final["frames"]}
    else:
        score = None
    row.update(path=str(file), fine_tuned=meta.get("fine_tuned", {}), training_score=score)
    return row


def _print_rows(rows: list[dict]) -> None:
    """Print models described by :func:`_row`, a few lines each."""
    for r in rows:
        print(f"{r['name']:<16} {r['kind']:<9} {r['size_kb']:>5} kB  {r['description']}")
        print(f"{'':<16} trained on: {r['trained_on']} ({_steps_text(r)})")
        method = "mutex" if r["kind"] == "affinity" else "hemd"
        for i, line in enumerate(_score_lines(r["held_out"], method, r.get("tta", 1))):
            print(f"{'':<16} {'held out:' if i == 0 else '':<9} {line}")
        if r.get("fine_tuned"):  # a file fine-tuned in the plugin
            print(f"{'':<16} {_fine_tuned_line(r['fine_tuned'])}")
        if not r["held_out"] and r.get("training_score"):  # a file from train
            best = r["training_score"]
            scores = "; ".join(
                f"{k} F1 {v['F1']:.3f} AJI {v['AJI']:.3f}" for k, v in best["scores"].items()
            )
            if "of" in best:  # --score-every: the best of the scores while training
                how = f"step {best['step']}, the best of {best['of']} scores"
            else:  # chosen by the held-out loss, scored once at the end
                how = f"step {best['step']}, the network written, on {best['frames']} frame(s)"
            print(f"{'':<16} held out while training: {scores} ({how}; threshold instances)")
        if r["object_diameters"]:
            sizes = ", ".join(f"{k} {v:.0f} px" for k, v in r["object_diameters"].items())
            hint = (
                " (yours much larger or smaller: --scale, e.g. 0.5 for twice as large)"
                if r["kind"] == "unet"
                else ""
            )
            print(f"{'':<16} objects across (median): {sizes}{hint}")
        if r["calibration"]:
            cal = r["calibration"]
            what = CALIBRATED.get(cal["parameter"], cal["parameter"])
            print(
                f"{'':<16} {what} {cal['value']} (chosen on {len(cal['frames'])} training frames)"
            )
        if r.get("tta_calibration"):
            print(f"{'':<16} {_tta_line(r['tta_calibration'])}")
        if r.get("inherited_calibration"):
            print(f"{'':<16} {_inherited_line(r['inherited_calibration'])}")
        if r["volume"].get("planes", 1) == 3:
            vol = r["volume"]
            print(
                f"{'':<16} stacks: z-, y- and x-slices averaged (z weight {vol['z_weight']}), "
                f"z step / pixel {vol['z_scale']} (segment --z-scale for yours)"
            )
        _print_zoom(r)


def _fine_tuned(load_model) -> list[dict]:
    """The models fine-tuned in the plugin (user settings), with their provenance."""
    from napari_hemd import _settings
    from napari_hemd.models.prediction import model_scale

    out = []
    for name, info in _settings.user_models().items():
        try:
            loaded = load_model(info["path"])
        except (OSError, ValueError) as exc:
            out.append({"name": name, "kind": info["kind"], "path": info["path"],
                        "fine_tuned": {"error": str(exc)}, "scale": 1.0})  # fmt: skip
            continue
        out.append(
            {
                "name": name,
                "kind": info["kind"],
                "path": info["path"],
                "fine_tuned": loaded.metadata.get("fine_tuned", {}),
                "scale": model_scale(loaded),
                "inherited_calibration": _inherited(loaded.metadata),
            }
        )
    return out


#: How ``napari-hemd models`` names a calibrated parameter.
CALIBRATED = {
    "grow_threshold": "whole cells: growth into background probability <",
    "mutex_bias": "Mutex watershed: repulsive-edge bias",
}


def _inherited(meta: dict) -> dict:
    """The calibrated settings a network trained further kept from its starting model.

    Empty unless its run stopped before its own calibration (then ``fine_tuned_from`` records
    the settings it uses: ``{parameter: value}``).
    """
    if "calibration" in meta:
        return {}
    return dict(meta.get("fine_tuned_from", {}).get("calibration") or {})


def _inherited_line(settings: dict) -> str:
    """``napari-hemd models``' line on settings a stopped run kept from its starting model."""
    parts = [
        f"test-time flips {v} view{'s' if v != 1 else ''}"
        if k == "tta"
        else f"{CALIBRATED.get(k, k)} {v}"
        for k, v in settings.items()
    ]
    return (
        f"{'; '.join(parts)}: the starting model's (this run stopped before calibrating on its "
        "own training frames)"
    )


def _tta_line(cal: dict) -> str:
    """``napari-hemd models``' line on a U-Net's calibrated test-time flips."""
    scores = cal["scores"]
    one, chosen = scores.get("1", {}).get("score"), scores.get(str(cal["value"]), {}).get("score")
    if cal["value"] == 1:
        more = [f"{v} views {t['score']:.3f}" for v, t in scores.items() if v != "1"]
        return (
            f"test-time flips: none by default (training frames' (F1+AJI)/2 {one:.3f}; "
            f"{', '.join(more)}: less than {cal['margin']} more, not worth the time)"
        )
    return (
        f"test-time flips: {cal['value']} views by default (training frames' (F1+AJI)/2 "
        f"{chosen:.3f}, none {one:.3f}; --tta 1 predicts {cal['value']}x faster)"
    )


def _steps_text(row: dict) -> str:
    """How long the network trained: ``"N steps"``, or its last run's and the run before.

    A network trained further from another records only the run before (docs/models.md has
    the whole history).
    """
    before = row.get("continued_from_steps")
    if before is None:
        return f"{row['steps']} steps"
    if not row["shipped"]:  # a user's file: its history is not in docs/models.md
        return f"{row['steps']} steps, from a network whose last run had {before} steps"
    return (
        f"last run {row['steps']} steps, from a network trained before (its last run:"
        f" {before} steps; the whole history: docs/models.md)"
    )


def _score_lines(validation: dict, method: str = "hemd", views: int = 1) -> list[str]:
    """One line per held-out reference: the meaningful score of ``method``.

    H-EMD's whole-cell masks; for an affinity network its own Mutex-watershed instances. First
    with the model's own test-time flips ``views`` (its default), then with the other flips
    measured.
    """
    from napari_hemd.models.registry import held_out_scores

    if validation.get("scores") is None:  # a model file from before the held-out block protocol
        return [f"{k}: {v}" for k, v in validation.items()]

    def flips(n: int) -> str:
        return "no flips" if n == 1 else f"--tta {n}"

    lines = []
    for h in held_out_scores(validation, method, views):
        got, other, ref = h["scores"], h["other"], h["ref"]
        how = {"hemd": "H-EMD", "mutex": "Mutex watershed"}.get(h["method"], h["method"])
        default = f" ({flips(h['views'])}, the default)" if other else ""
        if h["sparse"]:
            line = f"{ref}: {how} SEG {got['SEG']:.3f}{default}"
            if other:
                line += f"; {flips(h['other_views'])}: SEG {other['SEG']:.3f}"
            lines.append(line + " (sparse reference: SEG only)")
        else:
            line = f"{ref}: {how} F1 {got['F1']:.3f} AJI {got['AJI']:.3f}{default}"
            if other:
                line += f"; {flips(h['other_views'])}: F1 {other['F1']:.3f} AJI {other['AJI']:.3f}"
            lines.append(line)
    if "protocol" in validation:
        lines.append(f"({validation['protocol']})")
    return lines
