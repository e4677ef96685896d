"""What the fine-tune widget shows: a live loss plot and the held-out frame's scores."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget


class LossPlot(QWidget):
    """A small live plot of the training loss (and the held-out loss, as dots)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.losses: list[float] = []
        self.val: list[tuple[int, float]] = []
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def clear(self) -> None:
        self.losses, self.val = [], []
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor(30, 30, 34))
        p.setPen(QColor(150, 150, 150))
        p.drawText(6, 14, "loss" if self.losses else "loss (fine-tune to see it)")
        if len(self.losses) < 2:
            p.end()
            return
        # a running mean over ~2 % of the steps: single patches are noisy
        k = max(1, len(self.losses) // 50)
        ys = np.convolve(self.losses, np.ones(k) / k, mode="valid")
        top = float(max(ys.max(), max((v for _, v in self.val), default=0.0)))
        bottom = float(min(ys.min(), min((v for _, v in self.val), default=np.inf)))
        span = max(top - bottom, 1e-9)
        n = len(self.losses)

        def pt(i: float, v: float) -> QPointF:
            return QPointF(4 + (w - 8) * i / max(n - 1, 1), 20 + (h - 26) * (top - v) / span)

        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(90, 180, 255), 1.5))
        p.drawPolyline(QPolygonF([pt(i + k - 1, v) for i, v in enumerate(ys)]))
        p.setPen(QPen(QColor(255, 170, 60), 5))
        for step, v in self.val:
            p.drawPoint(pt(step - 1, v))
        p.setPen(QColor(150, 150, 150))
        p.drawText(w - 150, 14, f"{self.losses[-1]:.3f}  step {n}")
        p.end()


def scores_lower(result) -> bool:
    """The new model scores lower than the starting one on the held-out frame (F1 or AJI)."""
    if result.before is None or result.after is None:
        return False
    return any(result.after[k] < result.before[k] for k in ("F1", "AJI"))


def scores_text(result) -> str:
    """The held-out frame's F1 / AJI / SEG before and after, flagged when the new model is worse."""
    if result.held_out is None:
        return (
            f"{result.name}: {result.steps} steps on frames {result.frames}; check 3 or more "
            "frames to have one scored before and after"
        )

    def fmt(s: dict) -> str:
        return " ".join(f"{k} {s[k]:.3f}" for k in ("F1", "AJI", "SEG"))

    text = (
        f"held-out frame {result.held_out}, {result.steps} steps:\n"
        f"  before  {fmt(result.before)}\n  after   {fmt(result.after)}"
    )
    if scores_lower(result):
        text += "\n  lower than before: better not re-segment with it"
    return text
