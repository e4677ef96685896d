"""Fine-tune dock widget: train a model on the frames you corrected, then re-segment the rest.

The loop: proofread a few frames and mark them checked (Proofread widget), fine-tune here for a
few minutes (a live loss curve; Cancel keeps the best model so far), compare the held-out
frame's scores before and after, then re-segment the unchecked frames with the new model (one
undoable edit; Revert brings the previous labels and model back). The training itself is the
Qt-free :func:`napari_hemd.finetune.finetune_workflow`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning

from napari_hemd._widgets._common import (
    LayerWidget,
    add_or_update,
    base_name,
    full_width,
    is_probability_layer,
)
from napari_hemd._widgets._finetune_report import LossPlot, scores_lower, scores_text
from napari_hemd._widgets._layer_state import (
    BACKGROUND_KEY,
    DEFAULTS_KEY,
    GROW_KEY,
    LOCKED_KEY,
    MODEL_KEY,
    PARAMS_KEY,
    PROJECT_KEY,
    RESULT_KEY,
    SOURCE_KEY,
    apply_edit,
    checked_frames,
    edited_event,
    frame_ranges,
    history_of,
    is_one_stack,
    keep_checked_after,
    keep_checked_frames,
    kept_earlier,
    snapshot_checked,
    track_paint,
    with_tracks,
)
from napari_hemd.workflows import selection_choices

log = logging.getLogger(__name__)

FROM_FILE = "model file..."
#: Segmentation parameters a re-segment takes over from the labels layer's last run.
_SEGMENT_KEYS = ("tau", "delta", "iterations", "min_size", "link", "variant")


def run_zoom(labels: Labels) -> float:
    """The zoom the labels were segmented at (Segment's or Large data's ``scale``; else 1)."""
    from napari_hemd._widgets.stream import STREAM_KEY
    from napari_hemd.models.prediction import recorded_scale

    return recorded_scale(labels.metadata.get(PARAMS_KEY) or labels.metadata.get(STREAM_KEY))


def models_folder(labels: Labels | None) -> Path:
    """Where a new model goes: the project's ``models/``, else the user's settings folder."""
    from napari_hemd import _settings
    from napari_hemd.workflows import PROJECT_MODELS

    project = getattr(labels, "metadata", {}).get(PROJECT_KEY)
    if project and Path(project).is_dir():
        return Path(project) / PROJECT_MODELS
    return _settings.config_dir() / "models"


def _labels_model(labels) -> str | None:
    """The model a labels layer was segmented with (its run's parameters), else None."""
    params = (getattr(labels, "metadata", None) or {}).get(PARAMS_KEY) or {}
    model = params.get(MODEL_KEY) or params.get("model")
    return str(model) if model else None


def _safe_name(name: str) -> str | None:
    name = name.strip()
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}", name) else None


def _tuned_name(stem: str) -> str:
    """``STEM-tuned`` with what a model name cannot hold dropped (a file "model (copy).pt")."""
    clean = re.sub(r"\s*[^A-Za-z0-9 ._-]+\s*", "-", stem).strip(" ._-")
    clean = re.sub(r"-{2,}", "-", clean)[:58].rstrip(" ._-")
    return f"{clean}-tuned" if clean else "model-tuned"


def _listed_elsewhere(folder: Path) -> dict[str, str]:
    """Fine-tuned models listed in the widgets whose file is not in ``folder``: name -> path."""
    from napari_hemd import _settings

    here = folder.resolve()
    return {
        name: info["path"]
        for name, info in _settings.user_models().items()
        if Path(info["path"]).resolve().parent != here
    }


class FineTuneWidget(LayerWidget):
    """Fine-tune a model on the checked frames of a labels layer; re-segment the others."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, labels=True)
        self.image = self.layer_combo(
            Image, "image", prefer=lambda ly: not is_probability_layer(ly)
        )
        self.labels = self.layer_combo(Labels, "corrected labels")
        self.base = ComboBox(label="start from", choices=self._base_choices)
        self.base_file = FileEdit(label="model file", filter="*.pt", visible=False)
        self.base.changed.connect(lambda v: setattr(self.base_file, "visible", v == FROM_FILE))
        self.name = LineEdit(label="new model name", value="")
        self.name.tooltip = "empty: the starting model's name + '-tuned' (numbered if taken)"
        # the name an empty field gives, shown greyed in it
        self.base.changed.connect(lambda _v: self._show_default_name())
        self.base_file.changed.connect(lambda _v: self._show_default_name())
        self.minutes = FloatSpinBox(
            label="time budget (min)", value=2.0, min=0.1, max=600.0, step=0.5
        )
        self.frames_info = Label(value="")
        self.run_button = PushButton(text="Fine-tune on the checked frames")
        self.cancel_button = PushButton(text="Cancel (keep the best so far)", enabled=False)
        self.plot = LossPlot()
        self.scores = Label(value="")
        self.resegment_button = PushButton(text="Re-segment unchecked frames", enabled=False)
        self.revert_button = PushButton(text="Revert to the previous model and labels")
        self.revert_button.enabled = False
        self.extend(
            [
                self.image, self.labels, self.base, self.base_file, self.name, self.minutes,
                self.frames_info, self.run_button, self.cancel_button,
            ]
        )  # fmt: skip
        plot_box = Container(labels=False)  # in the order shown: after Run, before the scores
        plot_box.native.layout().addWidget(self.plot)
        self.extend([plot_box, self.scores, self.resegment_button, self.revert_button])
        full_width(plot_box)
        full_width(self.scores)  # a sentence, not a field
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.resegment_button.clicked.connect(lambda: self.resegment())
        self.revert_button.clicked.connect(lambda: self.revert())
        self.labels.changed.connect(self._show_frames)
        self.labels.changed.connect(lambda _v: self.base.reset_choices())
        self.labels.changed.connect(lambda _v: self._prefer_base())
        #: The last fine-tune (:class:`napari_hemd.finetune.FineTuneResult`).
        self.result = None
        # the last re-segment: (labels layer, its recorded edit, the probability layer it added);
        # the edit holds the previous labels (sparse) and the previous model in its state
        self._undo: tuple | None = None
        self._training = False
        self._prefer_base()
        self._show_frames()
        self._show_default_name()

    # ------------------------------------------------------------------ helpers
    def _base_choices(self, _widget=None) -> list[tuple[str, str]]:
        """Shipped and fine-tuned models; first the project's last model, else the labels' own."""
        from napari_hemd._widgets._models import model_choices
        from napari_hemd.workflows import project_models

        choices = [*model_choices(), (FROM_FILE, FROM_FILE)]
        labels = self.labels.value if hasattr(self, "labels") else None
        project = getattr(labels, "metadata", {}).get(PROJECT_KEY)
        if project and Path(project).is_dir():
            models = project_models(project)
            if models:
                last = str(models[-1])
                choices = [c for c in choices if c[1] != last]  # one entry per model file
                choices.insert(0, (f"this project's last model ({models[-1].stem})", last))
                return choices
        made = _labels_model(labels)  # the model the labels came from (cells-phc ...) first
        first = [c for c in choices if c[1] == made]
        return first + [c for c in choices if c[1] != made]

    def _prefer_base(self) -> None:
        """Choose the first of the choices: the project's last model, else the labels' own."""
        choices = self._base_choices()
        if choices and choices[0][1] != FROM_FILE:
            self.base.value = choices[0][1]

    def _show_frames(self, _value=None) -> None:
        try:
            layer = self.labels.value
        except RuntimeError:  # the widget was closed
            return
        if not isinstance(layer, Labels):
            self.frames_info.value = "choose the corrected labels layer"
            return
        # follow checks made in Proofread (they emit the layer's edited event)
        edited_event(layer).connect(self._show_frames)
        frames = checked_frames(layer)
        if not frames:
            self.frames_info.value = "no checked frames: mark corrected frames in Proofread"
        else:
            held = " (the last one is held out and scored)" if len(frames) >= 3 else ""
            zoom = run_zoom(layer)
            at = f"; at zoom {zoom:g}, the labels' zoom" if zoom != 1.0 else ""
            self.frames_info.value = f"{len(frames)} checked frame(s){held}{at}"

    def default_name(self) -> str:
        """The model name an empty *new model name* gives: the starting model's + ``-tuned``."""
        value = self.base.value
        if value == FROM_FILE:
            value = Path(str(self.base_file.value)).stem if str(self.base_file.value) else ""
        elif value and str(value).endswith(".pt"):
            value = Path(value).stem
        return _tuned_name(str(value)) if value and value != "." else ""

    def _show_default_name(self) -> None:
        self.name.native.setPlaceholderText(self.default_name())

    def _base_value(self) -> str | None:
        value = self.base.value
        if value == FROM_FILE:
            path = Path(self.base_file.value)
            if not path.is_file():
                show_error(f"Fine-tune: model file {str(path)!r} does not exist")
                return None
            return str(path)
        return value

    def cancel(self) -> None:
        """While training: stop and keep the best model so far; otherwise stop the run."""
        if self._training:
            event = getattr(self, "_cancel_event", None)
            if event is not None:
                event.set()
            show_info("Fine-tune: stopping after this step; the best model so far is kept")
            return
        super().cancel()

    # ------------------------------------------------------------------ fine-tune
    def run(self):
        """Start fine-tuning; returns the worker (``None`` on invalid input)."""
        from napari_hemd.finetune import finetune_workflow

        image, labels = self.image.value, self.labels.value
        if not isinstance(image, Image) or not isinstance(labels, Labels):
            show_error("Fine-tune: choose the raw image and the corrected labels layer")
            return None
        if image.rgb or tuple(image.data.shape) != tuple(labels.data.shape):
            show_error(
                f"Fine-tune: image {image.name!r} {tuple(image.data.shape)} and labels "
                f"{labels.name!r} {tuple(labels.data.shape)} must have the same shape (grayscale)"
            )
            return None
        frames = checked_frames(labels)
        if not frames:
            show_error(
                "Fine-tune: no checked frames. Correct a few frames and mark them checked in "
                "the Proofread widget (Alt-C); only checked frames are training data"
            )
            return None
        from napari_hemd.models.data import refuse_no_objects

        data = labels.data if labels.ndim >= 3 else np.asarray(labels.data)[None]
        empty = [t for t in frames if t < data.shape[0] and not np.any(data[t])]
        try:  # said here, in one line, not as a failed run with a traceback (audit 17)
            refuse_no_objects(empty, frames, "Fine-tune")
        except ValueError as e:
            show_error(str(e))
            return None
        base = self._base_value()
        if base is None:
            return None
        stem = Path(base).stem if base.endswith(".pt") else base
        name = _safe_name(self.name.value or _tuned_name(stem))
        if name is None:
            show_error(
                "Fine-tune: the model name must be letters, digits, space, '.', '_' or '-' "
                f"(at most 64, starting with a letter or digit); got {self.name.value!r}"
            )
            return None
        from napari_hemd._shipped import SHIPPED_MODELS

        if name in SHIPPED_MODELS:  # listed as "cells-phc (fine-tuned)" beside it (audit 27)
            show_error(
                f"Fine-tune: {name!r} is a shipped model's name; choose another (empty: "
                f"{_tuned_name(name)!r})"
            )
            return None
        folder = models_folder(labels)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{name}.pt"
        # a name listed for another project's model would replace it in every model list
        elsewhere = _listed_elsewhere(folder)
        if out.exists() or name in elsewhere:
            if self.name.value:
                where = str(out) if out.exists() else f"{elsewhere[name]}, another project's"
                show_error(
                    f"Fine-tune: a model named {name!r} exists ({where}); choose another name"
                )
                return None
            i = 2
            while (folder / f"{name}-{i}.pt").exists() or f"{name}-{i}" in elsewhere:
                i += 1
            name, out = f"{name}-{i}", folder / f"{name}-{i}.pt"
        self.plot.clear()
        self.scores.value = ""
        plot = self.plot
        gen = finetune_workflow(
            np.asarray(image.data[0] if image.multiscale else image.data),
            np.array(labels.data, copy=True),  # the user may keep proofreading meanwhile
            frames,
            base,
            output=out,
            minutes=float(self.minutes.value),
            scale=run_zoom(labels),  # the objects at the size the network saw them
            name=name,
            stop=self.cancel_flag(),
            on_step=lambda step, loss: plot.losses.append(loss),
            on_eval=lambda e: "val_loss" in e and plot.val.append((e["step"], e["val_loss"])),
        )
        self._training = True

        def done(result) -> None:
            from napari_hemd._widgets._models import register_model
            from napari_hemd.models import load_model

            self.result = result
            kind = load_model(result.path).kind
            register_model(result.name, result.path, kind)
            self.scores.value = scores_text(result)
            self.resegment_button.enabled = True
            what = "cancelled; the best model so far" if result.cancelled else "done; the model"
            advice = "Re-segment the unchecked frames to use it"
            if scores_lower(result):
                advice = (
                    "It scores LOWER than the starting model on the held-out frame: better not "
                    "use it; correct and check a few more frames, or give it more time"
                )
            zoom = (
                f" It was trained at zoom {result.scale:g}, the labels' zoom, and is used at "
                "that zoom when chosen."
                if result.scale != 1
                else ""
            )
            saved = (
                f"Fine-tune {what} is saved as {result.name!r} ({result.path}); your labels are "
                f"unchanged.{zoom}"
            )
            if scores_lower(result):  # the verdict first: a notification shows its first words
                show_warning(f"Fine-tune: {advice}. {saved}")
            else:
                show_info(f"{saved} {advice}.")

        worker = self.run_workflow(gen, done, self.run_button, self.cancel_button, "Fine-tune")

        worker.yielded.connect(lambda _event: plot.update())
        worker.finished.connect(lambda: setattr(self, "_training", False))
        return worker

    # ------------------------------------------------------------------ re-segment / revert
    def resegment(self, model: str | None = None):
        """Predict + segment the unchecked frames with the fine-tuned model (one undoable edit)."""
        from napari_hemd.image_segmentation import segment_image_workflow

        image, labels = self.image.value, self.labels.value
        model = model or (str(self.result.path) if self.result is not None else None)
        if model is None:
            show_error("Fine-tune: fine-tune a model first")
            return None
        if not isinstance(image, Image) or not isinstance(labels, Labels):
            show_error("Fine-tune: choose the raw image and the labels layer")
            return None
        if tuple(image.data.shape) != tuple(labels.data.shape):
            show_error("Fine-tune: the image and labels layers must have the same shape")
            return None
        checked = set(checked_frames(labels))
        n = labels.data.shape[0] if labels.ndim >= 3 else 1
        todo = [t for t in range(n) if t not in checked]
        if not todo:
            show_info("Fine-tune: every frame is checked; nothing to re-segment")
            return None
        old_params = dict(labels.metadata.get(PARAMS_KEY) or {})
        params = {k: old_params[k] for k in _SEGMENT_KEYS if k in old_params}
        # the zoom the model was fine-tuned at (another model: the labels' zoom)
        tuned = self.result is not None and model == str(self.result.path)
        params["scale"] = self.result.scale if tuned else run_zoom(labels)
        data = np.asarray(image.data[0] if image.multiscale else image.data)
        if data.ndim == 4:  # the stacks it was segmented as
            params["axes"] = "TZYX"
        gen = segment_image_workflow(data, model, "hemd", cancel=self.cancel_flag(), **params)
        name = self.result.name if self.result is not None else Path(model).stem
        dtype = np.result_type(labels.data.dtype, np.uint32)
        snap = snapshot_checked(labels)  # kept in the worker (5 s on napari's thread, HeLa)
        holder = SimpleNamespace(prekept=None)
        if snap is not None:

            def how(seg):
                linked = bool(old_params.get("link") or seg.tracks is not None)
                delta = float(seg.params.get("delta", old_params.get("delta", 0.5)))
                return seg.labels, dtype, linked, delta

            gen = keep_checked_after(gen, snap, how, holder)

        def done(seg) -> None:
            old = np.asarray(labels.data)
            new = seg.labels.astype(np.result_type(old.dtype, np.uint32), copy=True)
            # the frames checked now: one corrected and checked while this ran is the user's
            # too (it was replaced and stayed checked, audit 27)
            checked = set(checked_frames(labels))
            todo = [t for t in range(n) if t not in checked]
            if not todo:  # (one image checked meanwhile: replaced before, review 30c)
                show_info("Fine-tune: every frame is checked now; nothing was re-segmented")
                return
            tracks, linked = None, False
            if labels.ndim >= 3:  # the checked frames kept; linked: linked again with them
                linked = bool(old_params.get("link") or seg.tracks is not None)
                delta = float(seg.params.get("delta", old_params.get("delta", 0.5)))
                kept = kept_earlier(holder, labels, checked, linked, delta)  # the worker's
                if kept is None:  # checked or edited meanwhile: kept here
                    kept = keep_checked_frames(
                        old,
                        new,
                        checked,
                        linked=linked,
                        delta=delta,
                        stack=is_one_stack(labels),
                        tracked=bool(old_params.get("link")),
                    )  # a stack's slices: one 3D object across the kept ones
                new, tracks = kept
            prob_name = f"{base_name(image.name)} probability ({name})"
            prob = add_or_update(
                self.viewer,
                seg.maps["foreground"],
                prob_name,
                like=image,
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                opacity=0.6,
                blending="additive",
                visible=False,
                metadata={
                    MODEL_KEY: model,
                    SOURCE_KEY: image.name,
                    GROW_KEY: seg.grow,
                    BACKGROUND_KEY: seg.maps.get("background"),
                    DEFAULTS_KEY: seg.defaults,
                },
            )
            saved = {**old_params, **seg.params, "method": "hemd", "grow": seg.grow}
            saved.update(selection_choices(seg.result))
            saved[SOURCE_KEY], saved[MODEL_KEY] = prob.name, model
            result = with_tracks(seg.result, tracks)  # the lineage of the kept labels
            state = {PARAMS_KEY: saved, RESULT_KEY: result, LOCKED_KEY: {}}
            self.viewer.layers.selection.active = labels  # keep proofreading the labels
            if labels.data.dtype != new.dtype:  # painted (uint8) labels: the new ids fit
                labels.data = np.asarray(labels.data).astype(new.dtype)
            if apply_edit(labels, f"re-segment {len(todo)} frames with {name}", new, state=state):
                self._undo = (labels, history_of(labels).undo_stack[-1], prob, set(checked))
                track_paint(labels)  # strokes from now on are steps Revert sees
                self.revert_button.enabled = True
            ids = ", linked over time with the others" if tracks is not None else ""
            show_info(
                f"Fine-tune: {len(todo)} unchecked frame(s) re-segmented with {name!r}; checked "
                f"frames {sorted(checked)} kept{ids}. Revert brings the previous labels back"
            )

        return self.run_workflow(gen, done, self.resegment_button, self.cancel_button, "Re-segment")

    def revert(self) -> bool:
        """Put back the labels (and parameters) from before the last re-segment."""
        if self._undo is None:
            show_info("Fine-tune: nothing to revert")
            return False
        labels, edit, prob, checked_then = self._undo
        if labels not in self.viewer.layers:
            show_error("Fine-tune: the labels layer is gone")
            return False
        if not any(e is edit for e in history_of(labels).undo_stack):  # undone (Proofread)
            show_info("Fine-tune: the re-segment is undone already (Redo brings it back)")
            return False
        # the re-segment's pixels back to what they were, its parameters (model) too; one edit.
        # Frames edited since, or checked since, stay as the user left them (a frame corrected
        # after the re-segment became a mix of both, and stayed checked, audit 27)
        current = np.asarray(labels.data)
        old = np.array(current, copy=True)
        index, before = np.asarray(edit.index), np.asarray(edit.before)
        per_frame = max(int(np.prod(current.shape[1:])) if current.ndim >= 3 else current.size, 1)
        frame = index // per_frame
        # edited since: the later steps of the undo history (a stroke anywhere in a frame),
        # and any of the re-segment's pixels changed since
        stack = history_of(labels).undo_stack
        later = stack[next(i for i, e in enumerate(stack) if e is edit) + 1 :]
        edited = set(np.unique(frame[current.flat[index] != np.asarray(edit.after)]).tolist())
        for e in later:
            edited.update((np.unique(np.asarray(e.index) // per_frame)).tolist())
        # checked since (a frame checked before it was kept by it: its ids may have been
        # relinked with the others, and go back with them, review 30c)
        since = set(checked_frames(labels)) - set(checked_then)
        kept = sorted((edited | since) & set(frame.tolist()))
        back = ~np.isin(frame, kept)
        old.flat[index[back]] = before[back]
        apply_edit(labels, "revert fine-tune", old, state=edit.state[0])
        if prob in self.viewer.layers:
            self.viewer.layers.remove(prob)
        self._undo = None
        self.revert_button.enabled = False
        what = f"frames {frame_ranges(kept)}" if current.ndim >= 3 else "the image"
        since = (
            f"; {what}, edited or checked since, kept as you left them (Undo in Proofread "
            "reverts them too)"
            if kept
            else ""
        )
        show_info(f"Fine-tune: reverted to the previous labels and model{since}")
        return True
