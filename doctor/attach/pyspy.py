"""Calling py-spy: where the binary is, one `dump --json` with a hard timeout, and what its errors mean.

py-spy ships only a binary (<venv>/bin/py-spy), which is not on PATH unless the venv is active, so
we look beside sys.executable first. DOCTOR_PYSPY overrides the lookup (a path; tests point it at a
missing file or a wrapper).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from importlib import metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from doctor.runner import run_command

ENV_OVERRIDE = "DOCTOR_PYSPY"

# Error kinds, from py-spy 0.4's messages (src/python_process_info.rs, src/python_spy.rs, main.rs).
OK = "ok"
NO_PROCESS = "no-process"
PERMISSION = "permission"
NOT_PYTHON = "not-python"
TIMEOUT = "timeout"
FAILED = "failed"

_PATTERNS = (
    (PERMISSION, ("permission denied", "operation not permitted", "os error 1)", "os error 13)")),
    (NOT_PYTHON, ("failed to find python version", "failed to find a python interpreter",
                  "failed to get python version", "unsupported version of python")),
    (NO_PROCESS, ("no such process", "no such file or directory", "check that the process is running",
                  "os error 3)")),
)


def find_pyspy() -> Optional[str]:
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        p = Path(override)
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return _from_distribution() or shutil.which("py-spy")


def _from_distribution() -> Optional[str]:
    """The binary the installed py-spy package recorded (covers `pip install --target DIR`)."""
    try:
        dist = metadata.distribution("py-spy")
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name == "py-spy":
            path = Path(dist.locate_file(f)).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return None


def pyspy_version(binary: str, timeout: float = 5.0) -> Optional[str]:
    res = run_command([binary, "--version"], timeout=timeout, env=_env())
    return res.stdout.strip().split()[-1] if res.ok and res.stdout.strip() else None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RUST_BACKTRACE", None)      # else every error is a 20-line Rust backtrace
    env.pop("RUST_LIB_BACKTRACE", None)
    return env


@dataclass
class DumpResult:
    kind: str                            # OK or one of the error kinds above
    threads: list[dict] = field(default_factory=list)
    message: str = ""                    # one line, when not OK
    duration_s: float = 0.0
    native: bool = False
    nonblocking: bool = False


def error_kind(stderr: str) -> str:
    """Map py-spy's stderr to an error kind (first matching line wins, top to bottom)."""
    low = stderr.lower()
    for kind, needles in _PATTERNS:
        if any(n in low for n in needles):
            return kind
    return FAILED


def first_error_line(stderr: str) -> str:
    """py-spy's error plus its first 'Caused by' line, without the Rust backtrace."""
    head, cause, in_causes = "", "", False
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line:
            continue
        low = line.lower()
        if low.startswith("stack backtrace"):
            break
        if low.startswith("caused by"):
            in_causes = True
        elif in_causes and not cause:
            cause = line.split(":", 1)[-1].strip()
        elif not head:
            head = line
    text = head + (f" ({cause})" if cause and cause not in head else "")
    return text[:300] or "py-spy failed"


def dump(binary: str, pid: int, *, native: bool = False, nonblocking: bool = False,
         locals_: bool = False, timeout: float = 5.0) -> DumpResult:
    argv = [binary, "dump", "--json", "--pid", str(pid)]
    if native:
        argv.append("--native")
    if locals_:
        argv.append("--locals")       # each frame's variables: only when asked, they can hold secrets
    if nonblocking:
        argv.append("--nonblocking")
    res = run_command(argv, timeout=max(0.5, timeout), env=_env())
    out = DumpResult(kind=OK, duration_s=res.duration_s, native=native, nonblocking=nonblocking)
    if res.timed_out:
        out.kind, out.message = TIMEOUT, f"py-spy dump timed out after {res.duration_s:.1f} s"
        return out
    if res.error or res.signal is not None:
        out.kind, out.message = FAILED, res.describe_failure()
        return out
    if res.returncode != 0:
        out.kind, out.message = error_kind(res.stderr + "\n" + res.stdout), first_error_line(res.stderr)
        return out
    try:
        threads = json.loads(res.stdout)
    except ValueError as exc:
        out.kind, out.message = FAILED, f"py-spy printed unreadable JSON: {exc}"
        return out
    if not isinstance(threads, list):
        out.kind, out.message = FAILED, "py-spy printed JSON that is not a list of threads"
        return out
    out.threads = [t for t in threads if isinstance(t, dict)]
    return out
