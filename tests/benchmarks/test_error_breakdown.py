"""``benchmarks/error_breakdown.py``: each kind of error counted once where it is made."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from error_breakdown import breakdown


def _square(lab, i, y, x, h, w):
    lab[y : y + h, x : x + w] = i


def test_each_kind_of_error_is_counted():
    ref = np.zeros((64, 96), np.int32)
    pred = np.zeros_like(ref)
    _square(ref, 1, 4, 4, 10, 10)  # matched exactly
    _square(pred, 1, 4, 4, 10, 10)
    _square(ref, 2, 4, 30, 10, 10)  # missed
    _square(ref, 3, 30, 4, 10, 10)  # split in three
    _square(pred, 2, 30, 4, 10, 4)
    _square(pred, 3, 30, 8, 10, 3)
    _square(pred, 8, 30, 11, 10, 3)
    _square(ref, 4, 30, 30, 10, 10)  # merged with 5 into one result object
    _square(ref, 5, 30, 40, 10, 10)
    _square(pred, 4, 30, 30, 10, 22)
    _square(ref, 6, 4, 60, 6, 6)  # a mask far too large
    _square(pred, 5, 2, 58, 14, 14)
    _square(pred, 6, 50, 60, 6, 6)  # on no reference object, inside
    _square(pred, 7, 58, 90, 6, 6)  # on no reference object, at the border
    got = breakdown([ref], [pred])
    assert {k: got[k] for k in ("matched", "missed", "split", "merged", "too large", "too small")} == {
        "matched": 1, "missed": 1, "split": 1, "merged": 2, "too large": 1, "too small": 0,
    }  # fmt: skip
    assert got["reference objects"] == 6 and got["median IoU (matched)"] == 1.0
    # the split's three pieces, the merge, the large mask and the stray object match nothing
    assert got["unmatched at the border"] == 1 and got["unmatched inside"] == 6
    assert [0, 52, 62, 36] in got["inside"]  # frame, centre, area
