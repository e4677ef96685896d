"""The core and the public API import no Qt, napari or torch (house layout)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["napari_hemd", "napari_hemd.core", "napari_hemd.io"])
def test_no_gui_or_torch_imports(module):
    code = (
        f"import sys, {module}; "
        "bad = [m for m in ('qtpy', 'PyQt5', 'PyQt6', 'napari', 'torch', 'magicgui') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_imports_point_down():
    """pipeline (workflows level) takes nothing from the CLI; io.ctc reads TIFFs through io.tiff,
    not io.stacks (which writes CTC folders through io.ctc)."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "napari_hemd"

    def imported(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert not {m for m in imported(src / "pipeline.py") if m.startswith("napari_hemd.cli")}
    assert "napari_hemd.io.stacks" not in imported(src / "io" / "ctc.py")
    assert not {m for m in imported(src / "io" / "tiff.py") if m.startswith("napari_hemd")}
    # the core takes nothing from the layers above it (only the bottom helper _atomic)
    for path in (src / "core").glob("*.py"):
        up = {
            m
            for m in imported(path)
            if m.startswith("napari_hemd.")
            and not m.startswith(("napari_hemd.core", "napari_hemd._atomic"))
        }
        assert not up, f"{path.name} imports {sorted(up)}"
