"""Shipped models: small networks trained on CPU on public data, stored in ``models/weights/``.

Their catalogue (names, kinds, files) is :mod:`napari_hemd._shipped`, which imports no torch;
this module loads them.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_hemd._shipped import SHIPPED_MODELS, ShippedModel, list_models, model_path
from napari_hemd.models.weights import HemdModel, load_model_file

__all__ = [
    "SHIPPED_MODELS",
    "ShippedModel",
    "held_out_scores",
    "list_models",
    "load_model",
    "model_origin",
    "model_path",
]


def load_model(
    name_or_path: str | os.PathLike, *, device: str = "cpu", name: str | None = None
) -> HemdModel:
    """Load a shipped model by name, or a model file by path (``weights_only=True``).

    Parameters
    ----------
    name : str, optional
        The argument the model was given as (``"--model"``, ``"--init"``), to name it in
        messages.

    Raises
    ------
    FileNotFoundError
        Neither a shipped model name nor an existing file.
    ValueError
        The file is not a napari-hemd model (the message says what it is) or is an unsafe pickle.
    """
    key = str(name_or_path)
    if key in SHIPPED_MODELS:
        path = model_path(key)
        if not path.exists():
            raise FileNotFoundError(
                f"shipped model {key!r}: weights {str(path)!r} are not installed"
            )
        return load_model_file(path, device=device, name=name)
    path = Path(name_or_path)
    if not path.exists():
        from napari_hemd._settings import user_models

        tuned = user_models().get(key)
        hint = (
            f" ({key!r} is a model you fine-tuned in the plugin: pass its file, {tuned['path']!r})"
            if tuned
            else ""
        )
        raise FileNotFoundError(
            f"{name or 'model'} must be one of {sorted(SHIPPED_MODELS)} or an existing model "
            f"file; got {key!r}{hint}"
        )
    return load_model_file(path, device=device, name=name)


def held_out_scores(validation: dict, method: str = "hemd", views: int = 1) -> list[dict]:
    """The meaningful held-out score of ``method`` per reference of a model's ``validation``.

    One dict per reference: ``ref``, ``method`` (the method scored: ``method``, else H-EMD, else
    the first one recorded), ``scores`` (F1, AJI, SEG ...) with ``views`` test-time flips (the
    model's own, :func:`napari_hemd.models.prediction.model_tta`) where they were measured,
    ``views`` (the flips those scores were measured with), ``sparse`` (the reference annotates
    only some cells, :data:`napari_hemd.core.metrics.SPARSE_REFERENCES`: only SEG is
    meaningful) and ``other`` / ``other_views`` (the scores with the other number of flips
    measured, else None). ``napari-hemd models`` and the widgets' model summary print these.
    """
    from napari_hemd.core.metrics import SPARSE_REFERENCES

    flips = validation.get("tta") or {}
    flipped_views = flips.get("views")
    out = []
    for ref, by_method in (validation.get("scores") or {}).items():
        if not by_method:
            continue
        key = next((k for k in (method, "hemd") if k in by_method), next(iter(by_method)))
        plain, flipped = by_method[key], (flips.get("scores") or {}).get(ref, {}).get(key)
        if flipped is not None and views == flipped_views:  # the model's own flips first
            got, got_views, other, other_views = flipped, flipped_views, plain, 1
        else:
            got, got_views = plain, 1
            other, other_views = flipped, (flipped_views if flipped is not None else None)
        out.append(
            {
                "ref": ref,
                "method": key,
                "scores": got,
                "views": got_views,
                "sparse": ref in SPARSE_REFERENCES,
                "other": other,
                "other_views": other_views,
            }
        )
    return out


def model_origin(model: HemdModel, *, short: bool = False) -> str:
    """What a model file is, in words: ``"U-Net, fine-tuned from nuclei-fluo"`` and the like.

    The base a fine-tune records (the plugin's ``fine_tuned["base"]``, else ``train --init``'s
    ``fine_tuned_from["model"]``); ``short``: its name without the note in parentheses a
    shipped file carries.
    """
    meta = model.metadata
    what = {"unet": "U-Net", "affinity": "affinity network"}.get(model.kind, model.kind)
    origin = meta.get("fine_tuned_from") or {}
    base = (meta.get("fine_tuned") or {}).get("base") or origin.get("model")
    if base:
        return f"{what}, fine-tuned from {str(base).split(' (')[0] if short else base}"
    return (
        f"{what}, trained further from another network"
        if origin
        else f"{what}, trained from scratch"
    )
