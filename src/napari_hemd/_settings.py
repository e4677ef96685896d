"""User settings of the napari plugin: a small JSON file in the user's config folder (no Qt).

Holds the last project folder (so reopening napari restores the session), whether to restore
it automatically, and the models the user fine-tuned (name -> file), listed in every model choice. The folder is ``platformdirs.user_config_dir("napari-hemd")``, or
``$NAPARI_HEMD_CONFIG_DIR`` when set (tests point it at a temporary folder).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

__all__ = [
    "CONFIG_ENV",
    "config_dir",
    "last_project",
    "load_settings",
    "remember_model",
    "remember_project",
    "save_settings",
    "user_models",
]

log = logging.getLogger(__name__)

#: Environment variable overriding the settings folder.
CONFIG_ENV = "NAPARI_HEMD_CONFIG_DIR"
_FILE = "settings.json"
DEFAULTS = {"last_project": None, "auto_restore": True, "user_models": {}}


def config_dir() -> Path:
    """The settings folder (not created here)."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-hemd", appauthor=False))


def load_settings() -> dict:
    """The settings, defaults filled in; an unreadable file counts as empty (and is logged)."""
    path = config_dir() / _FILE
    data: dict = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable settings %s: %s", path, e)
            data = {}
        if not isinstance(data, dict):
            data = {}
    return {**DEFAULTS, **{k: v for k, v in data.items() if k in DEFAULTS}}


def save_settings(**updates) -> dict:
    """Update settings (only keys of :data:`DEFAULTS`); write atomically; return them all."""
    unknown = set(updates) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"settings: expected keys from {sorted(DEFAULTS)}; got {sorted(unknown)}")
    settings = {**load_settings(), **updates}
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{_FILE}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(settings, f, indent=2)
        os.replace(tmp, folder / _FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return settings


def remember_project(path: str | os.PathLike) -> None:
    """Record ``path`` as the last project (failures are logged, never raised)."""
    try:
        save_settings(last_project=str(Path(path).resolve()))
    except OSError as e:
        log.warning("cannot remember the last project %s: %s", path, e)


def last_project() -> Path | None:
    """The last project folder, if it still exists."""
    p = load_settings().get("last_project")
    return Path(p) if p and Path(p).is_dir() else None


def user_models() -> dict[str, dict]:
    """Models the user fine-tuned: ``{name: {"path": str, "kind": str}}``, files that still exist."""
    models = load_settings().get("user_models") or {}
    out = {}
    for name, info in models.items():
        if isinstance(info, dict) and Path(str(info.get("path", ""))).is_file():
            out[str(name)] = {"path": str(info["path"]), "kind": str(info.get("kind", "unet"))}
    return out


def remember_model(name: str, path: str | os.PathLike, kind: str = "unet") -> None:
    """List a fine-tuned model under ``name`` (replacing an entry of that name)."""
    models = dict(load_settings().get("user_models") or {})
    models[str(name)] = {"path": str(Path(path).resolve()), "kind": str(kind)}
    save_settings(user_models=models)
