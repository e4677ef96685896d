"""Every script in ``benchmarks/`` imports and shows its options (audit 30: none was run by a
test, and they import each other: a rename would have broken them silently)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_each_script_imports_and_shows_its_options(script, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    try:
        module = importlib.import_module(script.stem)
    except ModuleNotFoundError as exc:  # an optional part (torch, napari) not installed here
        if exc.name and exc.name.split(".")[0] in ("torch", "elf", "napari", "distributed"):
            pytest.skip(f"{script.name} needs {exc.name}")
        raise
    assert callable(getattr(module, "main", None)) and module.__doc__, script.name
    assert f"benchmarks/{script.name}" in module.__doc__, "its docstring gives the command"
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as stop:
        module.main()
    shown = capsys.readouterr()
    # argparse's help, or (a script of positional paths) its docstring as the usage
    assert stop.value.code in (0, None) or "python benchmarks/" in str(stop.value.code)
    assert "usage" in shown.out or "python benchmarks/" in str(stop.value.code)
