"""stdout handling shared by the console entry point and the command wrapper (core; stays light:
the entry point imports it before typer and rich)."""
from __future__ import annotations

import os
import sys


def silence_broken_pipe() -> None:
    """stdout's reader is gone: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
