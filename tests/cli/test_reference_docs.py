"""docs/reference.md documents every option of the commands it has a table for."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from napari_hemd.cli import build_parser

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"

#: Commands whose section of docs/reference.md lists every option (train points to models.md for
#: its recipe, demo has three options in its heading and text).
TABLED = ("segment", "predict", "stream", "link", "measure", "models")


def _sections() -> dict[str, str]:
    text = REFERENCE.read_text()
    found = re.finditer(r"^## `napari-hemd (\w+)[^\n]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return {m.group(1): m.group(2) for m in found}


@pytest.mark.parametrize("command", TABLED)
def test_every_option_is_in_the_reference(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [
        o
        for action in sub.choices[command]._actions
        for o in action.option_strings
        if o.startswith("--") and o != "--help"
    ]
    section = _sections()[command]
    missing = [o for o in options if not re.search(re.escape(o) + r"(?![\w-])", section)]
    assert not missing, f"docs/reference.md, napari-hemd {command}: no row for {missing}"
