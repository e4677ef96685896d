"""Every third-party package the code imports is declared in pyproject.toml (audit 23).

A package that arrives only through another one (superqt through napari, platformdirs through
the torch extra's dependencies) breaks when that one stops bringing it; ``napari-hemd models``
needed platformdirs, declared only for the napari extra.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "napari_hemd"


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name not in ("test", "dev"):
            specs += extra
    return {_normal(re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0]) for s in specs}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported() -> set[str]:
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "napari_hemd"}


def test_every_imported_package_is_declared():
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("an installed copy without its pyproject.toml")
    dists = packages_distributions()
    declared = _declared()
    missing = {}
    for module in sorted(_imported()):
        names = {_normal(d) for d in dists.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(names)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
