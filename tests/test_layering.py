"""The package's import layers (developers' guide): nn ← models ← pipelines/objectives ← evaluation/hub ←
training/cli, with data and utils below. The contract is `[tool.importlinter]` in pyproject.toml; these tests
run it with import-linter and check that it names every subpackage, so a new one cannot escape it."""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import whitebox_hf

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
PACKAGE_DIR = Path(whitebox_hf.__file__).parent


def _lint(config: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on ``config`` against the whitebox_hf the tests import (not an installed copy)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, env=env,
                          timeout=300)


def _contract() -> dict:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c["type"] == "layers" and c.get("containers") == ["whitebox_hf"]]
    return layers


def _layer_names(layers: dict) -> set[str]:
    names = set()
    for layer in layers["layers"]:
        for part in re.split(r"[|:]", layer):
            names.add(part.strip().strip("()"))
    return names


def test_imports_only_point_down():
    result = _lint(PYPROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # The same runner on a contract that puts models below nn, which models imports: it must report the break,
    # so the test above cannot pass by not checking anything.
    text = PYPROJECT.read_text().replace('    "models",\n    "nn | tokenization",\n',
                                         '    "nn | tokenization",\n    "models",\n')
    assert text != PYPROJECT.read_text()
    (tmp_path / "pyproject.toml").write_text(text)
    result = _lint(tmp_path / "pyproject.toml")
    assert result.returncode != 0
    assert "whitebox_hf.models is not allowed to import whitebox_hf.nn" in result.stdout


def test_contract_names_every_subpackage():
    layers = _contract()
    assert layers.get("exhaustive") is True
    declared = _layer_names(layers)
    present = {module.name for module in pkgutil.iter_modules([str(PACKAGE_DIR)])}
    assert present - declared == set(), f"give these modules a layer in pyproject.toml: {sorted(present - declared)}"
