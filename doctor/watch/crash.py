"""A crash read from the child's stderr tail and exit status, classified by the rows of
checks/data/crash_signatures.json. Pure: text in, CrashRead out (tests feed recorded tails)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from doctor.knowledge.crashes import crash_rows, pattern_hits
from doctor.attach.signatures import is_user_code

_RANK_PREFIX = re.compile(r"^\[(default)?rank\d+\]:\s?", re.M)     # torchrun's per-rank line prefix
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (.+)$')
_EXC = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)|[A-Za-z_][\w.]*):\s?(.*)$")


@dataclass
class CrashRead:
    id: str                                   # a crash_signatures row id: cuda-oom, exception ...
    row: dict
    exc_type: str = ""
    message: str = ""
    traceback: str = ""                       # the last traceback block of the tail
    where: str = ""                           # innermost user frame "train.py:42 in collate"
    frames: list[dict] = field(default_factory=list)

    @property
    def exception(self) -> str:
        return f"{self.exc_type}: {self.message}" if self.exc_type else (self.message or "no exception text")


def last_traceback(tail: str) -> tuple[str, str, str, list[dict]]:
    """(traceback text, exception type, message, frames innermost last) of the last traceback."""
    text = _RANK_PREFIX.sub("", tail or "")
    start = text.rfind("Traceback (most recent call last):")
    if start < 0:
        return "", "", "", []
    lines = text[start:].splitlines()
    frames, end = [], len(lines)
    for i, line in enumerate(lines[1:], 1):
        m = _FRAME.match(line)
        if m:
            frames.append({"filename": m.group(1), "line": int(m.group(2)), "name": m.group(3).strip()})
            continue
        if line.startswith((" ", "\t")) or not line.strip():
            continue
        e = _EXC.match(line)
        if e:
            return "\n".join(lines[:i + 1]), e.group(1), e.group(3).strip(), frames
        end = i
        break
    last = lines[end - 1] if end <= len(lines) else ""
    return "\n".join(lines[:end]), "", last.strip(), frames


def _where(frames: list[dict]) -> str:
    pick = next((f for f in reversed(frames) if is_user_code(f)), frames[-1] if frames else None)
    if pick is None:
        return "?"
    return f"{pick['filename'].rsplit('/', 1)[-1]}:{pick['line']} in {pick['name']}"


def classify_crash(tail: str, exit_code: Optional[int]) -> Optional[CrashRead]:
    """None when the run ended well (exit 0). A negative exit_code is a signal (subprocess style)."""
    if exit_code == 0:
        return None
    rows = crash_rows("watch")
    tb, etype, message, frames = last_traceback(tail)
    sig = -exit_code if exit_code is not None and exit_code < 0 else None
    text = _RANK_PREFIX.sub("", tail or "")
    for row in rows:
        hit = "signal" in row and sig == row["signal"] and (not etype or "pattern" in row)
        if not hit:
            hit = pattern_hits(row, text)
        if hit:
            if not etype and not message and sig is not None:
                message = f"killed by signal {sig}"
            return CrashRead(id=row["id"], row=row, exc_type=etype, message=message, traceback=tb,
                             where=_where(frames), frames=frames)
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    generic = {"id": "exit", "severity": "error", "title": "The command exited with code {code}",
               "why": ("It printed no traceback on stderr; its last line there: {last}" if last else
                       "It printed nothing on stderr: the reason is in its own output (stdout) or exit code."),
               "remediation": "", "links": []}
    return CrashRead(id="exit", row=generic, message=last[:300] or (f"signal {sig}" if sig else ""),
                     where="?")
