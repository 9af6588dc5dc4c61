"""Files the doctor writes for the user (the patched config, --markdown): always a NEW file. An
existing file, a directory or a symlink at the name is never written through; the next free name
(`train.patched-2.py`, `report-2.md`) is used and the caller says so. A missing folder is created
only when asked (--mkdir)."""
from __future__ import annotations

import os
from pathlib import Path

from doctor import exitcodes
from doctor.exitcodes import DoctorError

MAX_TRIES = 100


def check_output_file(path: Path, flag: str, mkdir: bool = False, offer_mkdir: bool = False) -> None:
    """Before any work: `path` can name a new output file. DoctorError (exit 2) otherwise.
    offer_mkdir: the command has --mkdir, so the error can suggest it."""
    path = Path(path)
    if path.is_dir():
        raise DoctorError(f"{flag} {path}: is a directory (give a file name, e.g. {path / 'report.md'})",
                          exitcodes.USAGE)
    check_output_dir(path.parent, flag, mkdir, offer_mkdir)


def check_output_dir(folder: Path, flag: str, mkdir: bool = False, offer_mkdir: bool = False) -> None:
    folder = Path(folder)
    if folder.is_dir():
        return
    if folder.exists() or folder.is_symlink():
        raise DoctorError(f"{flag}: {folder} is not a folder", exitcodes.USAGE)
    if not mkdir:
        hint = "create it, or add --mkdir" if offer_mkdir else "create it first"
        raise DoctorError(f"{flag}: folder {folder} does not exist ({hint})", exitcodes.USAGE)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DoctorError(f"{flag}: cannot create {folder}: {exc.strerror or exc}", exitcodes.USAGE)


def numbered(path: Path, n: int) -> Path:
    """train.patched.py -> train.patched-2.py; report.md -> report-2.md."""
    return path if n <= 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")


def write_new_file(path: Path, text: str) -> Path:
    """Create a new file at `path`, or at the first free numbered name when it is taken; returns
    where it went. O_EXCL refuses an existing name, a symlink included (never followed, even
    dangling), in one step, so a file appearing meanwhile is not overwritten either. OSError when
    the folder cannot be written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for n in range(1, MAX_TRIES + 1):
        candidate = numbered(Path(path), n)
        try:
            fd = os.open(candidate, flags, 0o666)
        except (FileExistsError, IsADirectoryError):
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        except BaseException:
            candidate.unlink(missing_ok=True)   # ours, just created: no half file left behind
            raise
        return candidate
    raise FileExistsError(f"{path} and {MAX_TRIES - 1} numbered names beside it are all taken")
