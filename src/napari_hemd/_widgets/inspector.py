"""Candidate forest inspector: the leaf-to-root path under a click, candidate swaps, level preview."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSlider, Label, PushButton
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from napari_hemd._widgets._common import (
    CLOSED,
    LayerWidget,
    add_or_update,
    ask_yes_no,
    bare_layer,
    full_width,
)
from napari_hemd._widgets._layer_state import (
    LOCKED_KEY,
    PARAMS_KEY,
    PER_STACK_KEY,
    PREVIEW_KEY,
    RESULT_KEY,
    SOURCE_KEY,
    apply_edit,
    edits_since_run,
    index_at,
    is_one_stack,
    needs_rebuild,
    show_index,
)
from napari_hemd._widgets._paths import (
    COLUMNS,
    UNCERTAIN_IOU,
    best_text,
    chosen_text,
    compact_path,
    uncertain_objects,
)
from napari_hemd._widgets._stacks import StacksMixin
from napari_hemd.core.segment import HEMDResult
from napari_hemd.image_segmentation import StackResults
from napari_hemd.workflows import (
    PathRow,
    candidate_path,
    choose_candidate,
    locked_choices,
    next_free_id,
    replace_locks,
    split_siblings,
)

log = logging.getLogger(__name__)

#: In the preview layer's metadata: the frame it draws now (cleared when another is drawn).
PREVIEW_FRAME_KEY = "hemd_preview_frame"


class InspectorWidget(StacksMixin, LayerWidget):
    """Click a pixel of an H-EMD labels layer to see, and change, what H-EMD chose there."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, labels=True)
        #: Asked before a re-run replaces hand edits (a dialog; tests replace it).
        self.confirm_discard: Callable[[str], bool] = ask_yes_no
        self.labels = self.layer_combo(Labels, "labels", lambda ly: RESULT_KEY in ly.metadata)
        self.where = Label(value="click an object (or any pixel) in the labels layer")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(220)
        self.table.setMinimumWidth(280)  # five short columns: the canvas keeps the window
        self.show_all = CheckBox(label="show every level", value=False)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table_box = Container(labels=False)
        table_box.native.layout().addWidget(self.table)
        self.use_button = PushButton(text="Use this candidate")
        self.level = FloatSlider(label="preview cut at", value=0.5, min=0.0, max=1.0, step=0.01)
        self.lock_button = PushButton(text="Lock choices and re-run H-EMD")
        self.next_button = PushButton(text="Next uncertain object")
        self.extend(
            [self.labels, self.where, self.next_button, table_box, self.show_all, self.use_button]
        )
        full_width(table_box)
        self.extend([self.level, self.lock_button])
        self._cursor = -1
        self.rows: list[PathRow] = []
        self.frame: int | None = None
        #: the time point of a (T, Z, Y, X) time-lapse of stacks (``frame`` is then its slice)
        self.stack: int | None = None
        self.pixel: tuple[int, ...] | None = None
        #: the last (slice, pixel) asked for, inspected once its stack's forests are rebuilt
        self._asked: tuple[int, tuple[int, ...]] | None = None
        #: (StackResults id, time point) of the forests being rebuilt
        self._rebuilding: tuple[int, int] | None = None
        self._hooked: Labels | None = None
        #: (layer, forest) the table's rows were read from: a row's node means nothing in another
        #: (a re-run or another layer: audit 36, Use this candidate edited an unrelated region)
        self._table_of: tuple | None = None
        self.use_button.clicked.connect(lambda: self.use_candidate())
        self.lock_button.clicked.connect(lambda: self.lock_and_rerun())
        self.next_button.clicked.connect(lambda: self.next_uncertain())
        self.level.changed.connect(self.preview_cut)
        self.table.itemSelectionChanged.connect(self._preview_selected)
        self.table.setMouseTracking(True)  # hovering a row previews its candidate
        self.table.cellEntered.connect(lambda row, _col: self.preview_row(row))
        self.labels.changed.connect(self._hook)
        self.labels.changed.connect(lambda _v: self._clear_table())
        self.show_all.changed.connect(
            lambda _v: self.frame is not None and self.inspect(self.frame, self.pixel)
        )
        self._hook(self.labels.value)
        # a layer closed while chosen: let it go (kept, with its forests, until the dock
        # closed: 283 MB of labels and 560 MB of forests on a 92-frame movie, audit 25)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        #: the where-line of the table shown (``inspect``), before any "on screen" remark
        self._where = self.where.value
        self.viewer.dims.events.current_step.connect(self._show_where)

    # ------------------------------------------------------------------ helpers
    def _hook(self, layer: Labels | None) -> None:
        """Follow clicks on the chosen labels layer."""
        if self._hooked is not None and self._on_click in self._hooked.mouse_drag_callbacks:
            self._hooked.mouse_drag_callbacks.remove(self._on_click)
        self._hooked = layer
        if layer is not None:
            layer.mouse_drag_callbacks.append(self._on_click)

    def _clear_table(self, why: str | None = None) -> None:
        """Empty the table (its rows describe a result the layer no longer holds)."""
        self.rows, self.frame, self.pixel, self._table_of = [], None, None, None
        self.table.setRowCount(0)
        self._where = self.where.value = why or "click an object (or any pixel) in the labels layer"

    def _table_current(self, layer: Labels, res: HEMDResult) -> bool:
        """Whether the table's rows were read from ``layer``'s present ``res`` (else cleared)."""
        if self._table_of is not None and self.frame is not None and self.frame < len(res.forests):
            was, forest = self._table_of
            if bare_layer(was) is bare_layer(layer) and forest is res.forests[self.frame]:
                return True
        self._clear_table(
            "the labels were segmented again (or changed layer) since the table was filled: "
            "click the object again"
        )
        return False

    def _on_layer_removed(self, event) -> None:
        gone = bare_layer(event.value)
        if self._table_of is not None and bare_layer(self._table_of[0]) is gone:
            self._clear_table()  # (the table held the layer and a forest of it)
        if self._hooked is not None and bare_layer(self._hooked) is gone:
            self._hook(None)

    def _on_click(self, layer: Labels, event) -> None:
        if layer.mode != "pan_zoom":
            return  # painting / picking: not an inspection click
        if len(getattr(event, "dims_displayed", ())) == 3:  # 3D view: the object under the mouse
            coord = _voxel_on_ray(layer, event)
            if coord is None:
                self.where.value = self._where = (
                    "3D view: no object under the mouse (click one, or inspect in 2D view)"
                )
                return
        else:
            coord = np.round(layer.world_to_data(event.position)).astype(int)
        if self._per_stack(layer):  # a time-lapse of stacks: (time, slice, y, x)
            self.inspect(int(coord[1]), tuple(coord[2:]), stack=int(coord[0]))
        elif layer.ndim >= 3:
            self.inspect(int(coord[0]), tuple(coord[1:]))

    @staticmethod
    def _per_stack(layer) -> bool:
        """Whether ``layer`` is a time-lapse of stacks segmented stack by stack.

        Segment with a model gives a forest per slice of each stack; a ``(T, Z, Y, X)``
        probability segmented by Segment without one has a forest of 3D candidates per time
        point instead.
        """
        if getattr(layer, "ndim", 0) != 4:
            return False
        meta = getattr(layer, "metadata", {})
        per_stack = (meta.get(PARAMS_KEY) or {}).get(PER_STACK_KEY)
        return hasattr(meta.get(RESULT_KEY), "results") or bool(per_stack)

    def _stacks(self) -> bool:
        """Whether the chosen layer is a time-lapse of stacks with each stack's result."""
        res = getattr(self.labels.value, "metadata", {}).get(RESULT_KEY)
        return hasattr(res, "results")

    def _result(self) -> tuple[Labels, HEMDResult] | None:
        """The layer and the H-EMD result behind it (a time-lapse of stacks: ``self.stack``'s).

        A time-lapse of stacks reopened from a project has no forests yet: the asked stack's are
        rebuilt in a thread (:meth:`_rebuild_stack`), and ``None`` is returned meanwhile.
        """
        layer = self.labels.value
        res = getattr(layer, "metadata", {}).get(RESULT_KEY)
        per_stack = (getattr(layer, "metadata", {}).get(PARAMS_KEY) or {}).get(PER_STACK_KEY)
        if per_stack and not hasattr(res, "results"):
            if not isinstance(per_stack, dict):  # saved before the stacks' parameters were
                show_error(
                    f"Inspector: {layer.name!r} is a time-lapse of 3D stacks whose H-EMD "
                    "parameters were not saved (an older project, or a baseline's run), so its "
                    "candidate forests cannot be rebuilt. Segment it again with H-EMD (or one "
                    "stack: right-click the raw layer > Split Stack) to inspect them"
                )
                return None
            res = layer.metadata[RESULT_KEY] = StackResults([None] * int(layer.data.shape[0]))
        if hasattr(res, "results"):  # StackResults: the stack's own forests
            t = self.stack if self.stack is not None else index_at(self.viewer, layer)
            if not 0 <= t < len(res.results):
                show_error(f"Inspector: {layer.name!r} has no time point {t}")
                return None
            self.stack = t
            if res.results[t] is None:
                self._rebuild_stack(layer, res, t)
                return None
            return layer, res.results[t]
        if res is None and isinstance(layer, Labels) and needs_rebuild(layer):  # undone far back
            if self._worker is None:
                self.rebuild_result(layer)
            show_info(
                "Inspector: rebuilding the candidate forest of this state of the labels; "
                "click the object again when it is done"
            )
            return None
        if not isinstance(res, HEMDResult):
            show_error("Inspector: choose a labels layer made by the Segment widget with H-EMD")
            return None
        if layer.ndim == 3 and res.params.get("axis", 0) % 3 != 0:
            show_error("Inspector: only frames along axis 0 are supported")
            return None
        return layer, res

    def _labels_frame(self, layer: Labels, frame: int) -> np.ndarray:
        """The labels of ``frame`` (a time-lapse of stacks: slice ``frame`` of ``self.stack``)."""
        data = layer.data[self.stack] if self._per_stack(layer) else layer.data
        return np.asarray(data[frame])

    def _preview(self, data: np.ndarray, frame: int, layer: Labels) -> None:
        # a time-lapse of stacks: one stack's preview (shown at every time point, as napari
        # shows a layer with fewer axes), not a whole movie of zeros per hover
        shape = tuple(layer.data.shape[self._per_stack(layer) :])
        name = f"{layer.name} preview"
        n = len(shape)  # placed as the labels are (a frame range: at its frames)
        old = self.viewer.layers[name] if name in self.viewer.layers else None
        # the smallest type that holds it: a candidate's outline (1) or a cut's ids (a whole
        # movie of int32 zeros took 270 MB on a 92-frame movie, audit 25)
        top = int(data.max(initial=0))
        need = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
        if (
            isinstance(old, Labels)
            and old.metadata.get(PREVIEW_KEY)
            and tuple(old.data.shape) == shape
            and isinstance(old.data, np.ndarray)
            and old.data.dtype.kind == "u"
            and old.data.dtype.itemsize >= np.dtype(need).itemsize
        ):
            # the hover's frame drawn into the preview there is: a whole movie of zeros made,
            # coloured and drawn anew on each hover took 0.1-0.9 s on the 92-frame HeLa movie
            last = old.metadata.get(PREVIEW_FRAME_KEY)
            if last is not None and 0 <= last < shape[0]:
                old.data[last] = 0
            old.data[frame] = data
            old.metadata[PREVIEW_FRAME_KEY] = frame
            old.translate = list(layer.translate)[-n:]
            old.refresh()
        else:
            full = np.zeros(shape, dtype=need)
            full[frame] = data
            prev = add_or_update(  # its scale and units: a layer in pixels drops napari's units
                self.viewer, full, name, kind="labels", opacity=0.9,
                metadata={PREVIEW_KEY: True, PREVIEW_FRAME_KEY: frame},
                translate=list(layer.translate)[-n:], like=layer,
            )  # fmt: skip
            # a white outline, 2 px: seen on any object colour (label 1's is a dark red)
            prev.colormap = DirectLabelColormap(color_dict={None: "transparent", 1: "white"})
            prev.contour = 2
        self.viewer.layers.selection.active = layer

    # ------------------------------------------------------------------ actions
    def inspect(
        self, frame: int, pixel: tuple[int, ...], stack: int | None = None
    ) -> list[PathRow]:
        """Fill the table with the leaf-to-root path through ``pixel`` of ``frame``.

        A time-lapse of stacks: ``frame`` is a slice of time point ``stack`` (default: the one
        inspected last, else the one shown).
        """
        if stack is not None:
            self.stack = int(stack)
        self._asked = (int(frame), tuple(int(p) for p in pixel))
        got = self._result()
        if got is None:
            return []
        layer, res = got
        if not 0 <= frame < len(res.forests) or any(
            not 0 <= p < s for p, s in zip(pixel, res.forests[frame].shape, strict=True)
        ):
            return []
        self.frame, self.pixel = frame, tuple(int(p) for p in pixel)
        self._table_of = (layer, res.forests[frame])
        n = len(res.forests)
        left, right = (
            (res.forests[f], res.selections[f]) if 0 <= f < n else None
            for f in (frame - 1, frame + 1)
        )
        path = candidate_path(
            res.forests[frame], res.selections[frame], self.pixel, left=left, right=right
        )
        labels_frame = self._labels_frame(layer, frame)
        obj = int(labels_frame[self.pixel])
        rim = False
        if not path and obj:  # the rim the whole-cell growth added: the path under its centre
            inner = _centre_pixel(labels_frame == obj)
            if inner is not None:
                path = candidate_path(
                    res.forests[frame], res.selections[frame], inner, left=left, right=right
                )
                if path:
                    self.pixel, rim = inner, True
        if self.show_all.value:
            self.rows = path
        else:
            f = res.forests[frame]
            parents = {r.node: int(f.parent[r.node]) for r in path}
            splits = {r.node for r in path if f.children(r.node).size >= 2}
            self.rows = compact_path(path, parents, splits, self._locks(layer, frame))
        at = f"time {self.stack}, slice {frame}" if self._per_stack(layer) else f"frame {frame}"
        if is_one_stack(layer):  # one stack's forests are its slices'
            at = f"slice {frame}"
        self.where.value = f"{at}, object {obj or 'none'}: {len(self.rows)} of {len(path)} levels"
        if rim:  # (it said "no candidate here", naming the object: audit 19)
            self.where.value += (
                " under its centre (you clicked its rim, which the growth to whole cells added)"
            )
        if not path:  # no candidate holds the pixel: below the lowest threshold (or too small)
            tau = res.params.get("tau", 0.5)
            self.where.value = (
                f"{at}, object {obj or 'none'}: no candidate here (probability below tau "
                f"{tau:g}, or a region under min size)"
            )
        self._where = self.where.value
        self._show_where()
        self.table.setRowCount(len(self.rows))
        chosen_row = None
        mine = self._locks(layer, frame)
        # a choice of the user's on this path: it is the object now, not H-EMD's (whose row kept
        # its tick beside "your choice", audit 19)
        yours = bool(mine & {r.node for r in path})
        for i, r in enumerate(self.rows):
            chosen = chosen_text(r, frame)
            if r.node in mine:
                chosen = f"{chosen} (your choice, locked)" if chosen else "your choice (locked)"
            elif yours and r.chosen:
                chosen = f"H-EMD's before yours: {chosen.removeprefix('✓ ')}"
            cells = (
                f"{r.threshold:.2f}", r.area, chosen, best_text(r.left), best_text(r.right),
            )  # fmt: skip
            shown = r.node in mine if yours else r.chosen
            for j, c in enumerate(cells):
                item = QTableWidgetItem(str(c))
                item.setToolTip(f"candidate #{r.node}, mean probability {r.mean_prob:.3f}")
                if shown:
                    item.setBackground(QColor(255, 200, 0, 110))
                self.table.setItem(i, j, item)
            if shown and chosen_row is None:
                chosen_row = i
        if chosen_row is not None:  # the answer to "why this cell" in view
            self.table.scrollToItem(self.table.item(chosen_row, 0))
        return self.rows

    def _locks(self, layer: Labels, frame: int) -> set[int]:
        """The user's choices (Use this candidate) in ``frame``, which a re-run keeps."""
        locks = locked_choices(layer.metadata.get(LOCKED_KEY))
        if self._per_stack(layer):  # a time-lapse of stacks: time point -> slice -> nodes
            locks = locks.get(self.stack) if isinstance(locks.get(self.stack), dict) else {}
        return {int(n) for n in locks.get(frame, [])}

    def _show_where(self, _event=None) -> None:
        """Say when the viewer shows another frame than the one the table describes."""
        layer = self._chosen_labels(self._show_where)
        if layer is CLOSED:
            return
        text = self._where
        three_d = self.viewer.dims.ndisplay == 3  # every slice on screen: no "on screen" remark
        if self.frame is not None and isinstance(layer, Labels) and layer.ndim >= 3 and not three_d:
            if self._per_stack(layer):
                shown = (index_at(self.viewer, layer, 0), index_at(self.viewer, layer, 1))
                if shown != (self.stack, self.frame):
                    text += f" (on screen: time {shown[0]}, slice {shown[1]}; click to inspect)"
            else:
                shown = index_at(self.viewer, layer)
                unit = "slice" if is_one_stack(layer) else "frame"
                if shown != self.frame:
                    text += f" (on screen: {unit} {shown}; click an object there to inspect it)"
        self.where.value = text

    def select_row(self, i: int) -> None:
        """Select (and preview) row ``i`` of the path."""
        self.table.selectRow(i)

    def _preview_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.preview_row(rows[0].row())

    def preview_row(self, row: int) -> None:
        """Outline the candidate of table row ``row`` in the preview layer."""
        got = self._result() if 0 <= row < len(self.rows) else None
        if got is None or self.frame is None:
            return
        layer, res = got
        if not self._table_current(layer, res):
            return
        node = self.rows[row].node
        self._preview(res.forests[self.frame].mask(node).astype(np.uint8), self.frame, layer)

    def preview_cut(self, level: float | None = None) -> None:
        """Preview the current frame cut at ``level`` (all candidates at that threshold)."""
        got = self._result()
        if got is None:
            return
        layer, res = got
        axis = 1 if self._per_stack(layer) else 0  # a time-lapse of stacks: slices on axis 1
        frame = self.frame if self.frame is not None else index_at(self.viewer, layer, axis)
        self._preview(
            res.forests[frame].cut(self.level.value if level is None else level), frame, layer
        )

    def use_candidate(self, row: int | None = None) -> bool:
        """Replace the clicked object by the candidate of ``row`` (default: the selected row).

        The candidate and the pieces it split off are locked for *Lock choices and re-run H-EMD*
        (in the layer's metadata, as part of the edit: undo forgets them). A time-lapse of stacks:
        in the inspected slice of its stack, locked for that stack (time point -> slice -> nodes);
        the object keeps its id over time (a split's new parts start new ids).
        """
        got = self._result()
        if got is None or self.frame is None:
            return False
        if row is None:
            sel = self.table.selectionModel().selectedRows()
            if not sel:
                show_error("Inspector: select a candidate in the table first")
                return False
            row = sel[0].row()
        layer, res = got
        if not self._table_current(layer, res):
            show_error(f"Inspector: {self.where.value}")
            return False
        node = self.rows[row].node
        stacks = self._stacks()
        where = (self.stack, self.frame) if stacks else self.frame
        frame = self._labels_frame(layer, self.frame)
        label = int(frame[self.pixel]) or next_free_id(layer.data)
        src = (layer.metadata.get(PARAMS_KEY) or {}).get(SOURCE_KEY)
        prob = None
        if src in self.viewer.layers and self.viewer.layers[src].data.shape == layer.data.shape:
            prob = np.asarray(self.viewer.layers[src].data[where])
        # a child gets the rest of its parent's pixels (watershed of the probability map), so
        # choosing a high-threshold speck splits the object instead of erasing it
        forest = res.forests[self.frame]
        new = choose_candidate(frame, forest, node, label, next_free_id(layer.data), prob=prob)
        same_shape = np.array_equal(new, frame)
        picked = node
        shown = next((r.node for r in self.rows if r.chosen), None)
        if same_shape and shown is not None:
            # a speck inside the object whose fill gives back its shape: lock the candidate the
            # object is (locking the speck, a re-run linked it into a neighbour across slices)
            node, siblings = shown, []
        else:  # a child splits the object: its path's siblings become the other pieces
            siblings = split_siblings(forest, node, frame == label) if frame[self.pixel] else []
        locked = locked_choices(layer.metadata.get(LOCKED_KEY))
        # the choice locks what the user now sees, replacing earlier locks it overlaps
        chosen = [node, *siblings]
        if stacks:  # each stack's node ids are its own
            mine = locked.get(self.stack)
            mine = mine if isinstance(mine, dict) else {}
            mine[self.frame] = replace_locks(mine.get(self.frame, []), forest, chosen)
            locked[self.stack] = mine
            at = f"time {self.stack}, slice {self.frame}"
        else:
            locked[self.frame] = replace_locks(locked.get(self.frame, []), forest, chosen)
            at = f"slice {self.frame}" if is_one_stack(layer) else f"frame {self.frame}"
        if same_shape and locked == locked_choices(layer.metadata.get(LOCKED_KEY)):
            self._used(False, node, label, siblings, at, picked)  # nothing to record
            return False
        # the lock is part of the edit: undoing the swap also forgets the choice
        name = f"lock candidate {node} ({at})" if same_shape else f"use candidate {node} ({at})"
        apply_edit(layer, name, new, where, state={LOCKED_KEY: locked})
        self._used(not same_shape, node, label, siblings, at, picked)
        if not same_shape and siblings:  # a split: the candidate took the old pixels nearest it
            area, size = int(forest.mask(node).sum()), int((new == label).sum())
            if size != area:
                show_info(
                    f"Inspector: object {label} holds {size} px: candidate #{node}'s {area} and "
                    "the old object's pixels nearer to it than to the other pieces"
                )
        self.inspect(self.frame, self.pixel)
        return True

    @staticmethod
    def _used(
        changed: bool, node: int, label: int, siblings: list[int], where: str, picked: int
    ) -> None:
        """Say what *Use this candidate* did (a table row's swap shows nowhere else)."""
        if not changed and picked != node:  # a part with no sibling: the rest went back to it
            show_info(
                f"Inspector: {where}: candidate #{picked} has no other candidate beside it in "
                f"object {label}: the object's other pixels go back to it, so the object keeps "
                f"its shape (candidate #{node}, locked for a re-run of H-EMD). To make it "
                "smaller, erase with the brush"
            )
            return
        if not changed:
            show_info(
                f"Inspector: {where}: candidate #{node} is already object {label}'s shape "
                "(locked for a re-run of H-EMD)"
            )
            return
        split = f", split into {len(siblings) + 1} objects" if siblings else ""
        show_info(f"Inspector: {where}: object {label} is now candidate #{node}{split}")

    def _next_from_shown(self, layer: Labels, todo: list) -> int:
        """The index of the next of ``todo`` (``(stack, frame, node)``) to show.

        After the last one shown; where the viewer has moved to another frame since, the first
        at or after the frame on screen (it started at frame 0 whatever was shown, audit 18).
        """
        stacks = todo[0][0] is not None
        if layer.ndim < 3:
            here = (None, 0)
        elif stacks:
            here = (index_at(self.viewer, layer, 0), index_at(self.viewer, layer, 1))
        else:
            here = (None, index_at(self.viewer, layer))
        at = todo[self._cursor][:2] if 0 <= self._cursor < len(todo) else None
        if at == here:  # still on the one shown last: the one after it
            return (self._cursor + 1) % len(todo)
        key = (lambda e: (e[0], e[1])) if stacks else (lambda e: e[1])
        mine = here if stacks else here[1]
        return next((i for i, e in enumerate(todo) if key(e) >= mine), 0)

    def next_uncertain(self, margin: float = UNCERTAIN_IOU) -> tuple[int, int] | None:
        """Jump to the next padding-selected or weakly matched object; return (frame, node).

        A time-lapse of stacks: through every stack in turn (the stack is ``self.stack``) whose
        forests are built (reopened from a project: the stacks inspected so far).
        """
        got = self._result()
        if got is None:
            return None
        layer, res = got
        if self._stacks():
            results = layer.metadata[RESULT_KEY].results
            todo = [
                (t, f, n)
                for t, r in enumerate(results)
                if r is not None
                for f, n in uncertain_objects(r, margin)
            ]
        else:
            todo = [(None, f, n) for f, n in uncertain_objects(res, margin)]
        if not todo:
            show_info("Inspector: no uncertain object")
            return None
        self._cursor = self._next_from_shown(layer, todo)
        stack, frame, node = todo[self._cursor]
        # the viewer's steps and camera are in world coordinates: a layer placed at later
        # frames (a frame range) or scaled is shown where it sits
        world = lambda axis, v: float(v) * layer.scale[axis] + layer.translate[axis]  # noqa: E731
        if stack is not None:
            self.stack, res = stack, layer.metadata[RESULT_KEY].results[stack]
            show_index(self.viewer, layer, 0, stack)
        pix = np.argwhere(res.forests[frame].mask(node))
        pixel = tuple(int(v) for v in pix[len(pix) // 2])
        axis = 0 if stack is None else 1
        show_index(self.viewer, layer, axis, frame)
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9 moved the camera there
        first = layer.ndim - len(pixel)  # the pixel's axes are the layer's last ones
        centre = tuple(world(first + i, v) for i, v in enumerate(pixel))
        (scene.camera if scene is not None else self.viewer.camera).center = centre
        self.inspect(frame, pixel, stack=stack)
        self.select_row([r.node for r in self.rows].index(node))
        return frame, node

    def lock_and_rerun(self):
        """Re-run H-EMD keeping the candidates chosen here, so neighbouring frames follow.

        A time-lapse of stacks: only the stacks with locked candidates, each as the run
        segmented it (:meth:`_rerun_stacks`). Returns the worker (``None``: nothing to do, or
        refused).
        """
        layer = self.labels.value
        edits = edits_since_run(layer) if isinstance(layer, Labels) else []
        if edits:  # a re-run makes the labels anew: hand edits since the run would be gone
            shown = ", ".join(edits[:4]) + (f" and {len(edits) - 4} more" if len(edits) > 4 else "")
            if not self.confirm_discard(
                f"The re-run replaces the labels: {len(edits)} edit(s) made since the run "
                f"({shown}) will be gone (Undo brings them back). Re-run anyway?"
            ):
                show_info("Inspector: not re-run; your edits are kept")
                return None
        if self._per_stack(layer):
            return self._rerun_stacks(layer)
        got = self._result()
        if got is None:
            return None
        layer, _ = got
        locked = locked_choices(layer.metadata.get(LOCKED_KEY))
        if not locked:
            show_info("Inspector: no candidate chosen yet; nothing to lock")
            return None
        src = layer.metadata.get(PARAMS_KEY, {}).get(SOURCE_KEY)
        prob = self.viewer.layers[src] if src in self.viewer.layers else None
        if not isinstance(prob, Image):
            show_error(f"Inspector: the probability layer {src!r} is gone")
            return None
        from napari_hemd._widgets.segment import SegmentWidget

        seg = getattr(self, "_segment", None) or SegmentWidget(self.viewer)
        self._segment = seg
        seg.restore(layer, announce=False)  # the H-EMD settings; the maps are given below
        worker = seg.run(locked=locked, prob_layer=prob, target=layer)
        if worker is not None and self.frame is not None:  # the table shows the new result
            frame, pixel = self.frame, self.pixel

            def refresh() -> None:
                self._drop_preview(layer)
                self.inspect(frame, pixel)

            worker.finished.connect(refresh)
        return worker

    def _drop_preview(self, layer: Labels) -> None:
        """Remove the preview layer: an outline of the old result's candidate."""
        stale = f"{layer.name} preview"
        if stale in self.viewer.layers and PREVIEW_KEY in self.viewer.layers[stale].metadata:
            self.viewer.layers.remove(stale)


def _centre_pixel(mask: np.ndarray) -> tuple[int, ...] | None:
    """The pixel of ``mask`` farthest from its edge (None for an empty mask)."""
    from scipy.ndimage import distance_transform_edt

    where = np.argwhere(mask)
    if not len(where):
        return None
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    box = np.pad(mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))], 1)
    far = np.unravel_index(int(np.argmax(distance_transform_edt(box))), box.shape)
    return tuple(int(a + i - 1) for a, i in zip(lo, far, strict=True))


def _voxel_on_ray(layer: Labels, event) -> np.ndarray | None:
    """The first labelled voxel along a 3D view's click ray (as napari's status bar picks).

    The click's world position lies at the middle of the view's depth: taken as a voxel, it
    inspected whatever object happened to sit there (audit 36). ``None``: the ray meets none.
    """
    start, end = layer.get_ray_intersections(
        event.position, event.view_direction, event.dims_displayed, world=True
    )
    if start is None or end is None:
        return None
    data = layer.data[0] if layer.multiscale else layer.data  # (a pyramid: its full level)
    shape = np.asarray(data.shape)
    n = max(int(2 * np.linalg.norm(np.asarray(end) - np.asarray(start))), 2)
    points = np.round(np.linspace(start, end, n)).astype(int)
    points = points[np.all((points >= 0) & (points < shape), axis=1)]
    for point in points:
        if data[tuple(point)]:
            return point
    return None
