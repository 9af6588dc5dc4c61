"""Reading training logs given with --log: only the tail (where the traceback is), never more than
LOG_TAIL_BYTES, decoded leniently. One place for `doctor run --log`, `doctor bundle --log` and
`doctor analyze --log`."""
from __future__ import annotations

from pathlib import Path

from doctor import exitcodes
from doctor.exitcodes import DoctorError

LOG_TAIL_BYTES = 2 * 1024 * 1024       # the end of a training log is where the traceback is


def read_tail(path: Path, notes: list[str]) -> str:
    """The last LOG_TAIL_BYTES of a log; a note (not an exception) when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            data = fh.read()
    except OSError as exc:
        notes.append(f"log {path.name}: cannot read: {exc.strerror or exc}")
        return ""
    if size > LOG_TAIL_BYTES:
        notes.append(f"log {path.name}: only the last {LOG_TAIL_BYTES // 1024 // 1024} MiB of {size // 1024 // 1024} MiB kept")
    return data.decode("utf-8", errors="replace")


def check_log_paths(paths) -> None:
    for p in paths or []:
        if not Path(p).is_file():
            raise DoctorError(f"--log: no such file: {p}", exitcodes.USAGE)


def read_logs(paths, notes: list[str]) -> list[tuple[str, str]]:
    """(file name, tail text) for each --log path."""
    return [(Path(p).name, read_tail(Path(p), notes)) for p in paths or []]


def attach_log_matches(facts, logs: list[tuple[str, str]]) -> None:
    """Match the logs against the known messages, into facts.log_matches (replacing older ones)."""
    if not logs:
        return
    from doctor.knowledge.logmatch import match_logs

    facts.log_matches = match_logs(logs)


def apply_logs(facts, paths, bundled: list[tuple[str, str]] = ()) -> None:
    """`--log` for run and analyze: read the tails, match them (with any logs a bundle carried) into
    facts.log_matches; a log that could not be read fully is one line on stderr."""
    import sys

    notes: list[str] = []
    attach_log_matches(facts, list(bundled) + read_logs(paths, notes))
    for note in notes:
        sys.stderr.write(f"note: {note}\n")
