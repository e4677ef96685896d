"""The model choices of every widget: shipped models, then the ones the user fine-tuned.

A fine-tuned model is listed under the name the user gave it (``"NAME (fine-tuned)"``); its value
is the model file's path, which :func:`napari_hemd.models.load_model` reads like a shipped name.
:data:`events` ``.changed`` fires when one is added, and every napari-hemd widget refreshes its
lists.
"""

from __future__ import annotations

import functools
from pathlib import Path

from psygnal import Signal

from napari_hemd import _settings

__all__ = [
    "FINE_TUNED",
    "TTA_CHOICES",
    "events",
    "model_choices",
    "model_kind",
    "model_summary",
    "model_views",
    "model_zoom",
    "read_model",
    "register_model",
    "scale_refused",
    "scale_spin",
    "scale_value",
    "tta_combo",
    "tta_refused",
]

#: Suffix of a fine-tuned model's name in the lists.
FINE_TUNED = " (fine-tuned)"


class _Events:
    changed = Signal()


#: ``events.changed`` is emitted after a model is registered.
events = _Events()


def model_choices(kind: str | None = None) -> list[tuple[str, str]]:
    """``(label, value)`` pairs: shipped models (value: name), then fine-tuned (value: path)."""
    from napari_hemd._shipped import SHIPPED_MODELS, torch_installed

    if not torch_installed():  # no models without torch (not imported here: 2 s)
        return []
    out = [(n, n) for n, m in SHIPPED_MODELS.items() if kind is None or m.kind == kind]
    for name, info in _settings.user_models().items():
        if kind is None or info["kind"] == kind:
            out.append((f"{name}{FINE_TUNED}", info["path"]))
    return out


def model_kind(value: str) -> str | None:
    """``"unet"`` / ``"affinity"`` of a choice's value (``None``: unknown)."""
    from napari_hemd._shipped import SHIPPED_MODELS

    if value in SHIPPED_MODELS:
        return SHIPPED_MODELS[value].kind
    for info in _settings.user_models().values():
        if info["path"] == value:
            return info["kind"]
    if str(value).endswith(".pt") and Path(value).is_file():  # a model file chosen directly
        try:
            return read_model(value).kind
        except (ImportError, OSError, ValueError):  # its summary says why it cannot be used
            return None
    return None


#: Test-time flips (``tta`` of :func:`napari_hemd.models.predict`) as the widgets offer them.
TTA_CHOICES = [
    ("off", 1),
    ("2 views (2x time)", 2),
    ("4 views (4x time)", 4),
    ("8 views (8x time)", 8),
]


def tta_combo(**kwargs):
    """The "test-time flips" choice of the Predict and Segment widgets."""
    from magicgui.widgets import ComboBox

    return ComboBox(
        label="test-time flips",
        choices=TTA_CHOICES,
        value=1,
        tooltip="U-Nets: average the probabilities of mirrored views of the image, at that many "
        "times the prediction time. Set to the model's own when a model is chosen: 4 views "
        "where they gave better masks on its training frames (nuclei-fluo, cells-dic, "
        "nuclei-3d)",
        **kwargs,
    )


def tta_refused(name, kind: str | None, tta: int) -> str | None:
    """Why ``tta`` flips cannot be used with model ``name`` of ``kind`` (``None``: they can)."""
    if int(tta) > 1 and kind not in (None, "unet"):
        return f"test-time flips need a U-Net model; {str(name)!r} is an {kind} model"
    return None


#: The zoom a widget offers (``napari_hemd.models.prediction.SCALE_RANGE``; not imported: torch).
SCALE_RANGE = (0.1, 10.0)


def scale_spin(*, auto: bool = False, **kwargs):
    """The "zoom for the model" field of the Predict, Segment and Large data widgets.

    ``auto``: its lowest value, 0, reads *auto* (Segment finds the zoom on a few frames;
    :func:`scale_value` turns it into ``"auto"``).
    """
    from magicgui.widgets import FloatSpinBox

    spin = FloatSpinBox(
        label="zoom for the model",
        value=1.0,
        min=0.0 if auto else SCALE_RANGE[0],
        max=SCALE_RANGE[1],
        step=0.05,
        tooltip="U-Nets: zoom your frames by this factor before the model (its maps come back at "
        "your size), for cells of another size than the model learned: 0.5 if yours are twice "
        "as large (napari-hemd models lists the sizes), 2 if half; 1: as they are"
        + ("; auto (the lowest value): found on a few frames" if auto else ""),
        **kwargs,
    )
    spin.native.setDecimals(3)  # a zoom auto found (three decimals) comes back exactly
    if auto:
        spin.native.setSpecialValueText("auto")
    return spin


def read_model(value):
    """The model of a choice (a shipped name or a file), read once per version of its file.

    Choosing a model updates several fields (zoom, planes, the summary); they share this read.
    Raises what :func:`napari_hemd.models.load_model` raises (OSError, ValueError ...).
    """
    from napari_hemd._shipped import SHIPPED_MODELS, model_path

    path = model_path(str(value)) if str(value) in SHIPPED_MODELS else Path(value)
    return _read_model(str(value), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_model(value: str, version: int):
    from napari_hemd.models import load_model

    return load_model(value)


def model_zoom(value) -> float:
    """The zoom the model of a choice (a name or a file) is used at unless told otherwise.

    :func:`napari_hemd.models.prediction.model_scale`: 1, or the zoom a fine-tuned model was
    trained at (the widgets set their zoom field to it when the model is chosen); 1 when the
    file cannot be read (the run then says why).
    """
    try:
        from napari_hemd.models.prediction import model_scale

        return model_scale(read_model(value))
    except (ImportError, OSError, ValueError, KeyError, RuntimeError, TypeError):
        return 1.0


def model_views(value) -> int:
    """The test-time flips the model of a choice (a name or a file) is used with by default.

    :func:`napari_hemd.models.prediction.model_tta`: the views its calibration chose (the widgets
    set their *test-time flips* to it when the model is chosen); 1 when the file cannot be read
    (the run then says why).
    """
    try:
        from napari_hemd.models.prediction import model_tta

        return model_tta(read_model(value))
    except (ImportError, OSError, ValueError, KeyError, RuntimeError, TypeError):
        return 1


def model_summary(value) -> str:
    """A few short lines on a choice's model (a name or a file) for the widgets to show.

    What it is (a shipped model's description; a fine-tuned one's base), the size of the
    objects it learned, its held-out scores (H-EMD; an affinity network's Mutex watershed; SEG
    only where the reference is sparse) and the zoom it is used at when not 1. A file that is
    no model file or a damaged one: why it cannot be used. Empty when there is nothing to say
    (no choice, no torch).
    """
    try:
        from napari_hemd.models.prediction import model_scale, model_tta
        from napari_hemd.models.registry import SHIPPED_MODELS, held_out_scores, model_origin

        model = read_model(value)
    except ValueError as exc:  # said where the user looks, before a run
        return f"cannot be used: {exc}"
    except (ImportError, OSError, KeyError, RuntimeError, TypeError):
        return ""
    meta = model.metadata
    if str(value) in SHIPPED_MODELS:
        lines = [SHIPPED_MODELS[str(value)].description.split(":")[0]]
    else:
        lines = [model_origin(model, short=True)]
    sizes = sorted(float(v) for v in (meta.get("object_diameters") or {}).values())
    if sizes:
        across = (
            f"{sizes[0]:.0f}" if sizes[-1] - sizes[0] < 2 else f"{sizes[0]:.0f}-{sizes[-1]:.0f}"
        )
        lines.append(f"learned objects about {across} px across")
    method = "mutex" if model.kind == "affinity" else "hemd"
    views = model_tta(model)
    for h in held_out_scores(meta.get("validation") or {}, method, views):
        got, ref = h["scores"], h["ref"]
        if h["sparse"]:
            lines.append(f"held out, {ref}: SEG {got['SEG']:.2f}")
        else:
            lines.append(f"held out, {ref}: F1 {got['F1']:.2f}, AJI {got['AJI']:.2f}")
    if views > 1:
        lines.append(f"test-time flips: {views} views by default ('off' is {views}x faster)")
    zoom = model_scale(model)
    if zoom != 1.0:
        lines.append(f"trained at zoom {zoom:g}: used at that zoom")
    return "\n".join(lines)


def scale_value(spin) -> float | str:
    """A zoom field's value for the API: a number, or ``"auto"`` (below the lowest zoom)."""
    value = float(spin.value)
    return "auto" if value < SCALE_RANGE[0] else value


def scale_refused(name, kind: str | None, scale) -> str | None:
    """Why zoom ``scale`` cannot be used with model ``name`` of ``kind`` (``None``: it can)."""
    if scale != 1.0 and kind not in (None, "unet"):
        return f"a zoom other than 1 needs a U-Net model; {str(name)!r} is an {kind} model"
    return None


def register_model(name: str, path, kind: str) -> None:
    """List a fine-tuned model in every widget's model choice."""
    _settings.remember_model(name, path, kind)
    events.changed.emit()
