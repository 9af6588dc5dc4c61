"""The console script's entry point: signal handlers first, the slow imports (typer, rich) after.

Ctrl-C or SIGTERM while the doctor is still importing (the first ~150 ms) would otherwise print a
KeyboardInterrupt traceback from deep inside an import. Until a command starts, either signal
ends the process at once with one line and exit 130; the command wrapper (cli.handles_errors)
then turns both into KeyboardInterrupt, so a command stops its children and keeps its outputs.
A reader that closes the pipe early (`doctor checks --json | head -c 100`) ends the doctor
quietly with 141 (128 + SIGPIPE, what a shell reports for a tool killed by the pipe).
"""
from __future__ import annotations

import os
import signal
import sys

from doctor.stdio import silence_broken_pipe

INTERRUPTED = 130     # = doctor.exitcodes.INTERRUPTED (not imported: this module must stay light)
BROKEN_PIPE = 141     # = doctor.exitcodes.BROKEN_PIPE


def _quit_now(signum, frame) -> None:
    os.write(2, b"doctor: interrupted\n")
    os._exit(INTERRUPTED)


def install_early_handlers() -> None:
    signal.signal(signal.SIGINT, _quit_now)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _quit_now)


def main() -> None:
    install_early_handlers()
    from doctor.cli import app

    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BrokenPipeError:
        code = BROKEN_PIPE
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = BROKEN_PIPE
    if code == BROKEN_PIPE:
        silence_broken_pipe()
    sys.exit(code)


if __name__ == "__main__":
    main()
