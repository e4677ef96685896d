"""Proofread dock widget: merge, delete, relabel, paint with the next free id, undo/redo.

It also deletes the cells that the image's edge cuts (for measurements that need whole cells).

A frame the user has corrected is marked *checked* (checkbox or Alt-C): the checked frames, listed
here and saved with the project, are the training data of the Fine-tune widget; unchecked frames
never are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Label, LineEdit, PushButton, SpinBox
from napari.layers import Labels, Points
from napari.utils.notifications import show_error, show_info, show_warning

from napari_hemd._widgets._common import CLOSED, LayerWidget
from napari_hemd._widgets._layer_state import (
    apply_edit,
    apply_id_map,
    checked_frames,
    first_frame,
    frame_ranges,
    index_at,
    is_one_stack,
    needs_rebuild,
    set_checked,
    step_history,
    track_paint,
)
from napari_hemd.workflows import next_free_id, split_by_seeds

log = logging.getLogger(__name__)

CURRENT, ALL = "current frame", "all frames"

#: Shortcuts bound on the edited layer; napari's own Ctrl-Z / Ctrl-Shift-Z are bound to Undo /
#: Redo as well (one history for strokes and edits).
SHORTCUTS = {
    "Alt-Z": "undo",
    "Alt-Shift-Z": "redo",
    "Alt-M": "merge",
    "Alt-D": "delete",
    "Alt-N": "paint_new",
    "Alt-S": "split",
    "Alt-C": "toggle_checked",
}


def parse_ids(text: str) -> list[int]:
    """``"3, 7 9"`` -> ``[3, 7, 9]``."""
    return [int(t) for t in text.replace(",", " ").split()]


class ProofreadWidget(LayerWidget):
    """Fix labels by hand; every operation (also inspector swaps) can be undone and redone."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, labels=True)
        self.labels = self.layer_combo(Labels, "labels")
        self.scope = ComboBox(label="apply to", choices=[CURRENT, ALL], value=CURRENT)
        self.ids = LineEdit(label="object ids", value="")
        self.new_id = SpinBox(label="new id (relabel)", value=1, min=1, max=2**31 - 1)
        self.merge_button = PushButton(text="Merge ids (into the first)")
        self.delete_button = PushButton(text="Delete ids")
        self.border_button = PushButton(text="Delete cells cut by the image edge")
        self.relabel_button = PushButton(text="Relabel first id -> new id")
        self.paint_button = PushButton(text="Paint a new object (next free id)")
        self.seeds = self.layer_combo(Points, "seeds (points)")
        self.split_button = PushButton(text="Split the object under the seeds")
        self.undo_button = PushButton(text="Undo")
        self.redo_button = PushButton(text="Redo")
        self.checked = CheckBox(label="this frame is corrected (checked, Alt-C)", value=False)
        self.checked_list = Label(value="checked frames: none")
        self.extend(
            [
                self.labels, self.scope, self.ids, self.new_id, self.merge_button,
                self.delete_button, self.border_button, self.relabel_button, self.paint_button,
                self.seeds, self.split_button,
                self.undo_button, self.redo_button, self.checked, self.checked_list,
            ]
        )  # fmt: skip
        self.checked.changed.connect(self._checked_changed)
        self.viewer.dims.events.current_step.connect(self._show_checked)
        self.labels.changed.connect(self._show_checked)
        self.merge_button.clicked.connect(lambda: self.merge())
        self.delete_button.clicked.connect(lambda: self.delete())
        self.border_button.clicked.connect(lambda: self.delete_border())
        self.relabel_button.clicked.connect(lambda: self.relabel())
        self.paint_button.clicked.connect(lambda: self.paint_new())
        self.split_button.clicked.connect(lambda: self.split())
        self.undo_button.clicked.connect(lambda: self.undo())
        self.redo_button.clicked.connect(lambda: self.redo())
        self.labels.changed.connect(self.bind_shortcuts)
        self.labels.changed.connect(self._show_scope)
        self.bind_shortcuts(self.labels.value)
        self._show_checked()
        self._show_scope()

    def _show_scope(self, _event=None) -> None:
        """*apply to* is off for one stack of 3D objects: its objects are edited whole."""
        stack = is_one_stack(self.labels.value)
        self.scope.enabled = not stack
        self.scope.tooltip = (
            "one stack of 3D objects: merge, delete, relabel and split act on whole objects"
            if stack
            else "the frame on screen, or every frame"
        )

    # ------------------------------------------------------------------ checked frames
    def current_frame(self) -> int:
        """The labels layer's frame shown (0 for a single 2D image).

        A layer placed at later frames (Segment on a frame range) counts its own frames: the
        viewer's frame less the layer's offset.
        """
        layer = self.labels.value
        if not isinstance(layer, Labels):
            return int(self.viewer.dims.current_step[0])
        if layer.ndim < 3:
            return 0
        return index_at(self.viewer, layer)  # its own frame (placed later, or scaled)

    def _show_checked(self, _event=None) -> None:
        layer = self._chosen_labels(self._show_checked)
        if layer is CLOSED:
            return
        frames = checked_frames(layer) if isinstance(layer, Labels) else []
        with self.checked.changed.blocked():
            self.checked.value = self.current_frame() in frames
        self.checked_list.value = "checked frames: " + (frame_ranges(frames) if frames else "none")

    def _checked_changed(self, value: bool) -> None:
        self.mark_checked(self.current_frame(), bool(value))

    def mark_checked(self, frame: int | None = None, checked: bool = True) -> list[int]:
        """Mark ``frame`` (default: the current one) as corrected; returns the checked frames."""
        layer = self.labels.value
        if not isinstance(layer, Labels):
            show_error("Proofread: choose a labels layer")
            return []
        frame = self.current_frame() if frame is None else int(frame)
        n = layer.data.shape[0] if layer.ndim >= 3 else 1
        if not 0 <= frame < n:
            show_error(f"Proofread: frame must be in 0..{n - 1}; got {frame}")
            return checked_frames(layer)
        frames = set_checked(layer, frame, checked)
        self._show_checked()
        return frames

    def toggle_checked(self) -> list[int]:
        """Flip the current frame's checked mark (Alt-C)."""
        layer = self.labels.value
        if not isinstance(layer, Labels):
            show_error("Proofread: choose a labels layer")
            return []
        frame = self.current_frame()
        return self.mark_checked(frame, frame not in checked_frames(layer))

    def bind_shortcuts(self, layer: Labels | None) -> None:
        """Bind :data:`SHORTCUTS` on ``layer`` (the edited layer, not every Labels layer)."""
        if not isinstance(layer, Labels):
            return
        track_paint(layer)  # brush strokes join the undo history (and the saved project)
        for key, method in SHORTCUTS.items():
            layer.bind_key(key, self._on_key(method), overwrite=True)
        from app_model.types import KeyCode, KeyMod

        for key, method in (
            (KeyMod.CtrlCmd | KeyCode.KeyZ, "undo"),
            (KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ, "redo"),
        ):
            # napari's own keys too: one history (a reopened project's forests rebuilt)
            layer.bind_key(key, self._on_key(method), overwrite=True)

    def _on_key(self, method: str) -> Callable[[Labels], None]:
        """A shortcut's action on the layer it is pressed on.

        A layer chosen earlier keeps its keys: pressed there, they act there (the widget turns
        to it first), not on the layer chosen now (audit 19: Ctrl-Z on one layer undid the
        other's delete).
        """

        def act(pressed: Labels) -> None:
            if not self._turn_to(pressed):
                return
            getattr(self, method)()

        return act

    def _turn_to(self, layer: Labels) -> bool:
        """Make ``layer`` the one edited (said when it changes); False if it is not offered."""
        mine = getattr(layer, "__wrapped__", layer)
        current = self.labels.value
        if getattr(current, "__wrapped__", current) is mine:
            return True
        for choice in self.labels.choices:  # the docked widget's proxies wrap each layer
            if getattr(choice, "__wrapped__", choice) is mine:
                self.labels.value = choice
                show_info(
                    f"Proofread: now editing {layer.name!r} (the layer the key was pressed on)"
                )
                return True
        return False

    def _editable(self, layer) -> bool:
        """A labels layer held in memory, else said: a store on disk is read, not edited."""
        if not isinstance(layer, Labels):
            show_error("Proofread: choose a labels layer")
            return False
        if not isinstance(layer.data, np.ndarray):  # zarr / dask (Large data), multiscale
            show_error(
                f"Proofread: {layer.name!r} is read from disk (a Large data result or a lazy "
                "file), not held in memory: its edits could not be kept. Segment the frames to "
                "correct with the Segment widget (frames: a range) and proofread those"
            )
            return False
        return True

    def _layer_frame(self, layer: Labels) -> int | None:
        """The layer's frame the viewer shows (``None``: a 2D image), said when it has none."""
        if layer.ndim < 3:
            return None
        frame = self.current_frame()
        if not 0 <= frame < layer.data.shape[0]:
            first = first_frame(layer)
            show_error(
                f"Proofread: {layer.name!r} holds frames {first}-{first + layer.data.shape[0] - 1} "
                f"of the viewer; it shows frame {first + frame}"
            )
            return -1
        return frame

    def _target(self) -> tuple[Labels, int | None] | None:
        layer = self.labels.value
        if not self._editable(layer):
            return None
        frame = None
        # one stack of 3D objects: a z-slice is no frame (a merge on the slice shown left the
        # nucleus two ids in the others, audit 15); its objects are edited whole
        if self.scope.value == CURRENT and not is_one_stack(layer):
            frame = self._layer_frame(layer)  # the frame on screen (a frame range: its own)
            if frame == -1:
                return None
        return layer, frame

    def _ids(self, ids: list[int] | None, need: int) -> list[int] | None:
        try:
            ids = parse_ids(self.ids.value) if ids is None else list(ids)
        except ValueError:
            show_error(f"Proofread: object ids must be integers; got {self.ids.value!r}")
            return None
        if len(ids) < need:
            show_error(f"Proofread: give at least {need} object id(s)")
            return None
        return ids

    def _edit(self, name: str, fn, *args) -> bool:
        got = self._target()
        if got is None:
            return False
        layer, frame = got
        data = layer.data if frame is None else layer.data[frame]
        new = fn(data[None] if frame is not None else data, *args)
        new = new[0] if frame is not None else new
        changed = apply_edit(layer, name, new, frame)
        if not changed:
            show_info(f"Proofread: nothing changed ({name})")
        return changed

    def _map_ids(self, name: str, mapping: dict[int, int]) -> bool:
        """Give objects new ids (``{old: new}``) in the scope, only their pixels touched."""
        got = self._target()
        if got is None:
            return False
        layer, frame = got
        try:  # a uint8 layer takes id 300 as uint32 (converted only if the edit happens)
            changed = apply_id_map(layer, name, mapping, frame, make_room=_make_room)
        except ValueError as exc:  # past uint32 (the API's ids): said, nothing changed
            show_error(f"Proofread: {exc}")
            return False
        if not changed:
            show_info(f"Proofread: nothing changed ({name})")
        return changed

    def merge(self, ids: list[int] | None = None) -> bool:
        """Give all ``ids`` the first id."""
        ids = self._ids(ids, 2)
        return ids is not None and self._map_ids(f"merge {ids}", {i: ids[0] for i in ids[1:]})

    def delete(self, ids: list[int] | None = None) -> bool:
        """Remove the objects ``ids``."""
        ids = self._ids(ids, 1)
        if ids is None:
            return False
        return self._map_ids(f"delete {ids}", dict.fromkeys(ids, 0))

    def delete_border(self) -> bool:
        """Remove the objects that touch the image's edge, in each frame of the scope.

        One stack of 3D objects (:func:`is_one_stack`): the objects touching any face of the
        volume, whole (whatever the scope: a slice's edge is not the stack's).
        """
        from napari_hemd.core.cells import clear_border_objects

        layer = self.labels.value
        if is_one_stack(layer) and self._editable(layer):
            new = clear_border_objects(np.asarray(layer.data))
            if not apply_edit(layer, "delete cells cut by the stack's faces", new):
                show_info("Proofread: nothing changed (no object touches the stack's faces)")
                return False
            return True
        got = self._target()
        if got is None:
            return False
        frames = got[0].ndim >= 3  # frames on axis 0 (a (T, Z, Y, X) layer: each volume)
        return self._edit(
            "delete cells cut by the edge", lambda a: clear_border_objects(a, frame_axis=frames)
        )

    def relabel(self, old: int | None = None, new: int | None = None) -> bool:
        """Rename object ``old`` to ``new``."""
        ids = self._ids(None if old is None else [old], 1)
        if ids is None:
            return False
        new = int(self.new_id.value if new is None else new)
        got = self._target()
        if got is None:
            return False
        layer, frame = got
        data = np.asarray(layer.data) if frame is None else np.asarray(layer.data[frame])[None]
        if data.ndim == 2:
            data = data[None]
        both = [t for t in range(data.shape[0]) if _holds(data[t], ids[0], new)]
        changed = self._map_ids(f"relabel {ids[0]} -> {new}", {ids[0]: new})
        if changed and both:  # two objects of one id in a frame: one object now
            where = f"frame {both[0]}" if len(both) == 1 else f"{len(both)} frames"
            if frame is not None:
                where = f"frame {frame}"
            elif is_one_stack(layer):
                where = "the stack"
            show_warning(
                f"Proofread: object {new} was already there ({where}): {ids[0]} and {new} are "
                "one object now (Undo separates them; a free id: Paint a new object shows one)"
            )
        return changed

    def split(self, seeds: Points | None = None) -> bool:
        """Split the object under the current frame's seed points, one object per seed."""
        layer = self.labels.value
        pts = self.seeds.value if seeds is None else seeds
        if not isinstance(layer, Labels) or not isinstance(pts, Points):
            show_error("Proofread: choose a labels layer and a points layer with the seeds")
            return False
        if not self._editable(layer):
            return False
        # the seeds in the labels' own pixels (a layer placed at later frames, or scaled)
        world = np.asarray(pts.data) * np.asarray(pts.scale) + np.asarray(pts.translate)
        coords = (world - np.asarray(layer.translate)) / np.asarray(layer.scale)
        coords = np.round(coords).astype(np.int64)
        # one stack: its 3D object is split (seeds on any slices); a movie: the frame on screen
        frame = None if is_one_stack(layer) else self._layer_frame(layer)
        if frame == -1:
            return False
        if frame is not None:
            coords = coords[coords[:, 0] == frame][:, 1:]
        _make_room(layer, next_free_id(layer.data) + len(coords))
        data = layer.data if frame is None else layer.data[frame]
        prob = self._probability(layer, frame)  # the cut follows its valleys too
        try:
            new = split_by_seeds(data, coords, next_free_id(layer.data), prob=prob)
        except (ValueError, IndexError) as e:
            show_error(f"Proofread: cannot split: {e}")
            return False
        return apply_edit(layer, f"split by {len(coords)} seeds", new, frame)

    def _probability(self, layer: Labels, frame: int | None):
        """The probability the labels were segmented from (that frame), where it is open."""
        from napari.layers import Image

        from napari_hemd._widgets._layer_state import PARAMS_KEY, SOURCE_KEY

        src = (layer.metadata.get(PARAMS_KEY) or {}).get(SOURCE_KEY)
        prob = self.viewer.layers[src] if src in self.viewer.layers else None
        if not isinstance(prob, Image) or prob.multiscale or prob.data.shape != layer.data.shape:
            return None
        return np.asarray(prob.data if frame is None else prob.data[frame], dtype=np.float32)

    def paint_new(self) -> int | None:
        """Switch the layer to painting with the next free id."""
        got = self._target()
        if got is None:
            return None
        layer, _ = got
        free = next_free_id(layer.data)
        _make_room(layer, free)
        layer.selected_label = free
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        return int(layer.selected_label)

    def _history(self, redo: bool) -> str | None:
        layer = self.labels.value
        if not isinstance(layer, Labels):
            show_error("Proofread: choose a labels layer")
            return None
        edit = step_history(layer, redo=redo)
        if edit is None:
            show_info(f"Proofread: nothing to {'redo' if redo else 'undo'}")
            return None
        if needs_rebuild(layer):  # reopened from a project: the forest of that state is rebuilt
            self.rebuild_result(layer)
        return edit.name

    def undo(self) -> str | None:
        """Undo the last edit of the layer (returns its name)."""
        return self._history(redo=False)

    def redo(self) -> str | None:
        """Redo the last undone edit (returns its name)."""
        return self._history(redo=True)


def _holds(frame: np.ndarray, a: int, b: int) -> bool:
    """Whether ``frame`` holds both ids."""
    return bool((frame == a).any() and (frame == b).any())


def _make_room(layer: Labels, top: int) -> None:
    """Convert ``layer`` to uint32 when its type cannot hold id ``top``, and say so.

    napari's new labels layers are uint8: id 256 and up did not fit (a traceback).
    """
    dtype = layer.data.dtype
    # (an id past uint32 too: left as it is, the edit says so)
    if np.issubdtype(dtype, np.integer) and np.iinfo(dtype).max < int(top) <= 2**32 - 1:
        layer.data = layer.data.astype(np.uint32)
        show_info(f"Proofread: {layer.name!r} converted from {dtype} to uint32 for id {top}")
