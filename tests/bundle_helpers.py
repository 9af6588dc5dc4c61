"""Helpers for the bundle tests: facts with planted identity and secrets, and reading every byte
of a bundle back."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

from doctor.facts import Facts, PackageInfo
from tests.conftest import FACT_SNAPSHOTS

WSL_FACTS = FACT_SNAPSHOTS / "wsl2-2080ti-unsloth-2024.8.json"

# Values from the WSL snapshot (and planted below) that a maintainer needs, so must survive.
MUST_SURVIVE = {
    "facts.json": ["2.2.0+cu121", "NVIDIA GeForce RTX 2080 Ti", "/usr/lib/wsl/lib", "2.5.0a0+git1234abc",
                   "/usr/local/cuda-12.1/lib64",
                   "5.15.153.1-microsoft-standard-WSL2", "560.94"],
    "env/pip-freeze.txt": ["torch==2.2.0+cu121", "unsloth==2024.8"],
}


def token_present(name: str, text: str) -> bool:
    """name as a whole token (what the redactor promises to remove), case-insensitive."""
    return re.search(r"(?<![A-Za-z0-9_\-.])" + re.escape(name) + r"(?![A-Za-z0-9_\-])(?!\.[A-Za-z0-9])",
                     text, re.I) is not None


def planted_facts(user: str, host: str, home: str, env: dict[str, str]) -> Facts:
    """The WSL2 2080 Ti snapshot as if taken by `user` on `host`, with `env` and home paths planted."""
    f = Facts.load(WSL_FACTS)
    p = f.platform
    p.username, p.hostname, p.home = user, host, home
    p.cwd = f"{home}/proj"
    p.python_executable = f"{home}/proj/.venv/bin/python"
    f.env = dict(env)
    f.packages["torchvision"] = PackageInfo("torchvision", "2.5.0a0+git1234abc",
                                            location=f"{home}/proj/.venv/lib/python3.10/site-packages")
    f.libcuda.ld_library_path_hits = ["/usr/lib/wsl/lib/libcuda.so.1", f"{home}/cuda/lib64/libcuda.so"]
    f.probes[0].error = f"could not read {home}/.wslconfig on {host}"
    return f


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def leaks(path: Path, secrets: list[str], tokens: list[str]) -> list[tuple[str, str]]:
    """(member, what) for every secret found as a substring and every name found as a whole token,
    in any member's bytes (member names included)."""
    found = []
    for name, data in read_members(path).items():
        text = name + "\n" + data.decode("utf-8", errors="replace")
        found += [(name, s) for s in secrets if s and s in text]
        found += [(name, t) for t in tokens if t and token_present(t, text)]
    return found
