"""Shared test fixtures. Area-specific helpers live in tests/<area>_helpers.py."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from doctor.proctree import kill_tree

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FACT_SNAPSHOTS = EXAMPLES / "facts"


@pytest.fixture(autouse=True, scope="session")
def _private_torch_facts_cache(tmp_path_factory):
    """The torch facts cache (doctor/probes/torch_cache.py) goes to a folder of this session, never the
    user's ~/.cache: tests neither read a stale answer from a previous run nor leave files behind."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()


@pytest.fixture
def spawn():
    """Start a real process (own session) and kill its whole tree at teardown, pass or fail."""
    started: list[subprocess.Popen] = []

    def _spawn(args, **kw) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(args, **kw)
        started.append(p)
        return p

    yield _spawn
    for p in started:
        kill_tree(p.pid)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def python_exe() -> str:
    return sys.executable


def pytest_collection_modifyitems(config, items):
    """Tests marked `network` reach PyPI: run them only when DOCTOR_NETWORK_TESTS=1 (this variable
    only selects tests; no production code reads it)."""
    import os

    import pytest

    if os.environ.get("DOCTOR_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs the network: set DOCTOR_NETWORK_TESTS=1")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)
