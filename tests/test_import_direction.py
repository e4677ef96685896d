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
