"""Every command in this worktree's manifest resolves; every widget opens docked in a viewer."""

from __future__ import annotations

import importlib
from pathlib import Path

import npe2
import numpy as np
import pytest

import napari_hemd

MANIFEST = npe2.PluginManifest.from_file(Path(napari_hemd.__file__).parent / "napari.yaml")


def _resolve(python_name: str):
    module, attr = python_name.split(":")
    return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("command", MANIFEST.contributions.commands, ids=lambda c: c.id)
def test_command_resolves(command):
    assert callable(_resolve(command.python_name))


@pytest.mark.parametrize("widget", MANIFEST.contributions.widgets, ids=lambda w: w.command)
def test_widget_docks(widget, make_napari_viewer):
    viewer = make_napari_viewer()
    command = next(c for c in MANIFEST.contributions.commands if c.id == widget.command)
    w = _resolve(command.python_name)(viewer)
    viewer.window.add_dock_widget(w, name=widget.display_name)
    viewer.add_image(np.eye(4, dtype=np.float32), name="x")  # combo boxes follow the layer list
    combos = [c for c in w if c.widget_type == "ComboBox" and c.label in ("image", "probability")]
    for c in combos:
        assert c.value is viewer.layers["x"]
