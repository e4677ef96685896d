"""Widget-test fixtures: a viewer holding the sample video, errors captured instead of shown."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    """Messages passed to ``show_error`` by any widget module."""
    got: list[str] = []
    import importlib
    import pkgutil

    import napari_hemd._widgets as widgets

    for info in pkgutil.iter_modules(widgets.__path__):  # every widget module, new ones too
        mod = importlib.import_module(f"{widgets.__name__}.{info.name}")
        if hasattr(mod, "show_error"):
            monkeypatch.setattr(mod, "show_error", got.append)
    return got


@pytest.fixture(autouse=True)
def _no_dialogs(monkeypatch):
    """A question dialog would wait for a click forever: a test that meets one fails instead."""
    import napari_hemd._widgets.inspector as inspector

    def ask(text: str, title: str = "") -> bool:
        raise AssertionError(f"a dialog would have asked: {text}")

    monkeypatch.setattr(inspector, "ask_yes_no", ask)


@pytest.fixture
def viewer(make_napari_viewer):
    """A viewer with the synthetic nuclei video (image, probability, ground truth) as the sample
    lays it out, at zoom 1 (192 x 192 px; the shipped sample is 1.5 times as large): quicker.
    ``test_manifest_widgets`` runs the widgets on the shipped sample itself."""
    from napari_hemd._sample_data import _layers
    from napari_hemd.data.synthetic import nuclei_video

    v = make_napari_viewer()
    for data, meta, kind in _layers(nuclei_video(), "nuclei video"):
        getattr(v, f"add_{kind}")(data, **meta)
    return v


@pytest.fixture(autouse=True)
def settings_dir(tmp_path, monkeypatch):
    """Per-test user settings (the last project), never the real config folder."""
    from napari_hemd._settings import CONFIG_ENV

    folder = tmp_path / "config"
    monkeypatch.setenv(CONFIG_ENV, str(folder))
    return folder


@pytest.fixture(autouse=True)
def restore_answer(monkeypatch) -> dict:
    """The *Restore last session?* dialog: answers ``answer["yes"]`` (default Yes) and records the
    folders it was asked about in ``answer["asked"]``."""
    from napari_hemd._widgets import project

    answer: dict = {"yes": True, "asked": []}

    def ask(folder):
        answer["asked"].append(folder)
        return answer["yes"]

    monkeypatch.setattr(project, "_ask_restore", ask)
    return answer
