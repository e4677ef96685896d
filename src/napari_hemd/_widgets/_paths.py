"""What the inspector's table shows: a click's leaf-to-root path, compacted, and its wording."""

from __future__ import annotations

from napari_hemd.core.segment import HEMDResult
from napari_hemd.core.selection import HOW
from napari_hemd.workflows import Match, PathRow

#: Matches with an IoU below this are listed as uncertain.
UNCERTAIN_IOU = 0.5


def uncertain_objects(res: HEMDResult, margin: float = UNCERTAIN_IOU) -> list[tuple[int, int]]:
    """(frame, node) of objects chosen by padding, or matched with an IoU below ``margin``."""
    out = []
    for t, s in enumerate(res.selections):
        for n, how, score in zip(s.nodes, s.how, s.score, strict=True):
            if how == HOW["padding"] or (how in (HOW["left"], HOW["right"]) and score < margin):
                out.append((t, int(n)))
    return out


#: What a biologist reads: where the candidate appears, how big it is, whether (and why) H-EMD chose
#: it, and how well it overlaps the neighbouring frames. The node id is the row's tooltip.
COLUMNS = ("threshold", "area", "chosen", "best in t-1", "best in t+1")

#: Compact path: a candidate is listed when its area differs by at least this fraction from the
#: last listed one (or it splits, is a split's piece, is chosen, or is the chosen one's parent,
#: the leaf or the root).
AREA_STEP = 0.05


def compact_path(
    rows: list[PathRow], parents: dict[int, int], splits: set[int], locked=()
) -> list[PathRow]:
    """The rows of a leaf-to-root path a user needs: where the region changes.

    Keeps the leaf, the root, the chosen candidate and its parent, the user's ``locked``
    candidates (*Use this candidate*: the object now, review 29), every candidate that splits
    (two or more children), the candidate just below each split (the one that, used, splits a
    merged object: its pieces gain few pixels on the way up, so the area rule alone dropped it)
    and every candidate whose area differs by :data:`AREA_STEP` or more from the last kept one;
    the 40-odd levels at which a region only gains a few pixels go.
    """
    if len(rows) <= 2:
        return list(rows)
    chosen = {r.node for r in rows if r.chosen} | {int(n) for n in locked}
    keep_parent = {parents.get(n, -1) for n in chosen}
    out = [rows[0]]
    for r in rows[1:-1]:
        keep = r.node in chosen or r.node in keep_parent or r.node in splits
        keep = keep or parents.get(r.node, -1) in splits  # a split's piece: used, it splits
        if keep or abs(r.area - out[-1].area) >= AREA_STEP * max(out[-1].area, 1):
            out.append(r)
    out.append(rows[-1])
    return out


def best_text(m: Match | None) -> str:
    """``"#161 0.82 ✓"``: a neighbour frame's best-overlapping candidate, IoU, ✓ if chosen there."""
    if m is None:
        return ""
    return f"#{m.node} {m.iou:.2f}" + (" ✓" if m.chosen else "")


def chosen_text(row: PathRow, frame: int) -> str:
    """``"✓ matched t4 #161 (0.82)"`` / ``"✓ padding"`` / ``""``: whether and why it was chosen.

    Unchosen candidates say why when the selection recorded it (``"touching cells"``,
    ``"absorbed into 12"``).
    """
    if not row.chosen:
        return row.how
    match = match_text(row, frame)
    if match:
        return f"✓ {row.how} {match} ({row.score:.2f})"
    return f"✓ {row.how}"


def match_text(row: PathRow, frame: int) -> str:
    """``"t4 #161"``: the frame and node the candidate was matched to (matched left = t - 1)."""
    if row.partner < 0:
        return ""
    other = frame - 1 if row.how == "left" else frame + 1 if row.how == "right" else None
    return f"#{row.partner}" if other is None else f"t{other} #{row.partner}"
