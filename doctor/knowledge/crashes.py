"""Crash classes (checks/data/crash_signatures.json): the one table of crash texts, read by
`doctor watch` (every row but "watch": false ones) and `doctor repro` (the rows with a cuda_class)."""
from __future__ import annotations

import re
from typing import Optional

from doctor.knowledge import load


def crash_rows(reader: str) -> list[dict]:
    """The rows, in order, that reader ("watch" or "repro") classifies with."""
    rows = load("crash_signatures")["rows"]
    if reader == "repro":
        return [r for r in rows if "cuda_class" in r]
    return [r for r in rows if r.get("watch", True)]


def pattern_hits(row: dict, text: str) -> bool:
    """The row's regex (multiline) is found in text; a row with no pattern never hits."""
    return "pattern" in row and re.search(row["pattern"], text, re.M) is not None


def cuda_error_class(text: str) -> tuple[str, Optional[str]]:
    """CUDA error text -> (class, failure mode) of the first repro row that hits."""
    row = next((r for r in crash_rows("repro") if pattern_hits(r, text)), None)
    return (row["cuda_class"], row["failure_mode"]) if row else ("unclassified CUDA error", None)
