"""The one way the doctor runs anything that might hang: a subprocess with a hard timeout.

Every probe that touches the GPU stack (nvidia-smi, `import torch`, NVML, ldconfig) goes through
here, so a wedged driver or a deadlocking import becomes a CommandResult with timed_out=True,
never a hung doctor. The child gets its own session so that, on timeout, its whole process group
(including grandchildren such as a torch import's helpers) is killed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence


@dataclass
class CommandResult:
    argv: list[str]
    returncode: Optional[int] = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    timed_out: bool = False
    error: Optional[str] = None          # could not start (not found, permission), or killed by a signal
    signal: Optional[int] = None         # the signal that ended the child (segfault = 11)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None

    def describe_failure(self) -> str:
        """One line saying why this command did not succeed."""
        name = os.path.basename(self.argv[0]) if self.argv else "command"
        if self.timed_out:
            return f"{name} timed out after {self.duration_s:.1f} s"
        if self.signal is not None:
            try:
                signame = signal.Signals(self.signal).name
            except ValueError:
                signame = f"signal {self.signal}"
            return f"{name} was killed by {signame}"
        if self.error:
            return f"{name}: {self.error}"
        tail = (self.stderr.strip().splitlines() or self.stdout.strip().splitlines() or [""])[-1]
        return f"{name} exited with {self.returncode}" + (f": {tail[:200]}" if tail else "")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        try:
            proc.kill()
        except OSError:
            pass


def run_command(
    argv: Sequence[str],
    timeout: float = 10.0,
    env: Optional[Mapping[str, str]] = None,
    input_text: Optional[str] = None,
    cwd: Optional[str] = None,
) -> CommandResult:
    """Run argv with a hard timeout; never raises for ordinary failures."""
    argv = [str(a) for a in argv]
    result = CommandResult(argv=argv)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError:
        result.error = "not found"
        return result
    except PermissionError:
        result.error = "permission denied"
        return result
    except OSError as exc:
        result.error = str(exc)
        return result
    try:
        out, err = proc.communicate(input=input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        result.timed_out = True
    result.duration_s = time.monotonic() - start
    result.stdout, result.stderr = out or "", err or ""
    result.returncode = proc.returncode
    if not result.timed_out and proc.returncode is not None and proc.returncode < 0:
        result.signal = -proc.returncode
    return result


# Marker that separates a Python probe's JSON result from whatever the imported libraries print.
RESULT_MARKER = "@@DOCTOR-RESULT@@"


def run_python(code: str, timeout: float = 30.0, env: Optional[Mapping[str, str]] = None,
               python: Optional[str] = None) -> tuple[CommandResult, Optional[Any]]:
    """Run Python code in a child interpreter; the code prints RESULT_MARKER + json on one line.

    Returns the CommandResult and the decoded JSON (None when absent or undecodable).
    """
    res = run_command([python or sys.executable, "-c", code], timeout=timeout, env=env)
    payload = None
    for line in reversed(res.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                payload = json.loads(line[len(RESULT_MARKER):])
            except ValueError:
                payload = None
            break
    return res, payload
