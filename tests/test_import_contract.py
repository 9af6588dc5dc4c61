"""The import contract (pyproject.toml [tool.importlinter], issue 14) holds: layers, pure checks,
no cycles. Runs the real `lint-imports` on this tree, so CI enforces it with the suite."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(root: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("import-linter is not installed (pip install -e '.[test]'): the layer contract cannot be checked")
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([exe, "--no-cache", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_import_contract_is_kept():
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in run.stdout


def test_the_contract_catches_a_layer_violation(tmp_path):
    """The same config on a copy of the tree with one upward import added fails: the test can fail."""
    copy = tmp_path / "tree"
    for name in ("doctor", "checks"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    facts = copy / "doctor" / "facts.py"
    facts.write_text(facts.read_text() + "\nfrom doctor.report import terminal  # noqa: E402,F401\n")
    run = _lint_imports(copy)
    assert run.returncode != 0
    assert "doctor.facts -> doctor.report.terminal" in run.stdout
