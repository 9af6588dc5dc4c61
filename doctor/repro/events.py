"""The event log between the training child and the watchdog: one JSON object per line in a file.

Not stdout: libraries print whatever they like there. Each event is written with a single
os.write on an O_APPEND descriptor, so lines from the child and its DataLoader workers never
interleave, and a reader never sees half a line as complete.

Event kinds (every event also has "t" = time.time() and "pid"):
  phase        {"phase": importing|building-model|loading-model|building-trainer|training|finished, "detail"}
  info         {"backend", "device", "precision", "optim", ...}  what the child actually runs
  note         {"text"}                  a setting the child could not mirror, and what it did instead
  step-begin   {"step"}
  shape        {"step", "shape"}         a batch shape seen for the first time (compiling backends recompile)
  step         {"step", "duration_s", "mem_allocated", "mem_reserved", "mem_peak", "host_rss",
                "tokens", "tokens_nonpad", "max_len"}
  loss         {"step", "loss"}
  inject       {"fault", "step", "detail", "emulated"}
  inject-skipped {"fault", "reason"}
  crash        {"type", "message", "traceback", "step", "memory"}
  done         {"steps"}
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional


class EventWriter:
    def __init__(self, path: str):
        self.path = path
        self._fd: Optional[int] = None
        self._pid: Optional[int] = None

    def emit(self, kind: str, **fields: Any) -> None:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:   # a forked worker gets its own descriptor
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = pid
        record = {"kind": kind, "t": time.time(), "pid": pid, **fields}
        os.write(self._fd, (json.dumps(record, default=str) + "\n").encode())


class EventReader:
    """Tails the event file; returns only complete lines."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def read_new(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "kind" in event:
                out.append(event)
        return out


def read_all(path: Path) -> list[dict]:
    return EventReader(path).read_new()
