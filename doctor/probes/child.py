"""Runs the scripts under doctor/probes/scripts/ in a child interpreter and explains how they ended.

A script reports progress as it goes (see scripts/__init__.py), so when the child hangs or is killed
the parent still has the partial facts and the name of the step that never finished.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from doctor.runner import RESULT_MARKER, CommandResult, run_python

SCRIPTS = Path(__file__).parent / "scripts"


def run_script(name: str, timeout: float) -> tuple[CommandResult, Optional[dict[str, Any]]]:
    """Run scripts/<name>.py's main() in a child; (result, last progress report or None)."""
    code = (SCRIPTS / f"{name}.py").read_text() + f"\nmain({RESULT_MARKER!r})\n"
    res, payload = run_python(code, timeout=timeout)
    return res, payload if isinstance(payload, dict) else None


def unfinished(payload: Optional[dict], res: CommandResult) -> Optional[str]:
    """One line when the child stopped before the end: which step, and how (hung, crashed, exited).

    None when the script finished. The words "timed out" appear only for a timeout, which is how
    doctor.probes marks the probe as timed out.
    """
    stage = payload.get("stage") if payload else "starting Python"
    if payload and stage is None:
        return None
    if res.timed_out:
        how = "hung"
    elif res.signal is not None:
        how = "crashed"
    else:
        how = "failed"
    return f"`{stage}` {how}: {res.describe_failure()}"
