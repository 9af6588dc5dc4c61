"""The line protocol between the smoke runner and its child, and the child's side of it.

The child prints one marked JSON line per event on stdout: {"event": "ready", "seconds": s} once its
prelude (import torch) is done, then for each step {"event": "start", "step": i} before running it
and {"event": "end", "step": i, "status": ..., "seconds": ..., "error": ..., "detail": ...} after.
The parent's watchdog gives each step its own limit from its "start", so a step that hangs or
crashes the process is named, and the remaining steps run in a fresh child.

Standard library only: this module is imported in the child before anything else.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Callable, Optional

MARKER = "@@DOCTOR-SMOKE@@"
ERROR_CHARS = 1500          # the error text kept per step (the end of it: that is where the cause is)


class Skip(Exception):
    """Raised by a step that does not apply here (a package not installed): status "skipped"."""


def emit(event: dict) -> None:
    sys.stdout.write(MARKER + json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def error_text(exc: BaseException) -> str:
    """The exception's last lines, with its cause chain: compiler output and 'undefined symbol' lines
    sit inside the message, the exception type names the layer."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}\n(caused by {type(cause).__name__}: {cause})"
    return text[-ERROR_CHARS:]


def serve(prelude: Callable[[], None], steps: dict[str, Callable[[Optional[str]], Optional[str]]],
          argv: Optional[list[str]] = None) -> None:
    """Run the steps named in argv[0] (a JSON list of {"name", "device"}) in order, reporting each.

    A step function takes the device ("0", "0-1" for a pair, or None) and returns a detail line."""
    plan = json.loads((argv if argv is not None else sys.argv[1:])[0])
    t0 = time.monotonic()
    try:
        prelude()
    except BaseException as exc:  # noqa: BLE001 - any failure here ends the child, reported
        emit({"event": "ready", "seconds": round(time.monotonic() - t0, 3), "error": error_text(exc)})
        return
    emit({"event": "ready", "seconds": round(time.monotonic() - t0, 3)})
    for i, item in enumerate(plan):
        emit({"event": "start", "step": i})
        t = time.monotonic()
        status, error, detail = "passed", None, None
        try:
            detail = steps[item["name"]](item.get("device"))
        except Skip as exc:
            status, detail = "skipped", str(exc)
        except BaseException as exc:  # noqa: BLE001 - a failing step is the result, not a crash
            status, error = "failed", error_text(exc)
        emit({"event": "end", "step": i, "status": status, "seconds": round(time.monotonic() - t, 3),
              "error": error, "detail": detail})
