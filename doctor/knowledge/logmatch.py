"""Matches a training log or pasted traceback against known messages: the rows of
data/log_signatures.json (message -> usual cause) and the `symptom` of data/known_bad.json rows.

Pure and bounded: at most the last MAX_TEXT characters are searched, each signature once over the
whole text (a C-level scan per regex, not a Python loop per line), and only the first line that
matches a signature is kept, cut to MAX_LINE characters. The regexes are written without nested
quantifiers and never cross a line (tests/test_known_bad.py lints them).
"""
from __future__ import annotations

import functools
import re

from doctor.knowledge import load
from doctor.facts import LogMatch

MAX_TEXT = 2 * 1024 * 1024     # the end of a log is where the traceback is
MAX_LINE = 300


@functools.lru_cache(maxsize=None)
def signatures() -> tuple[tuple[str, "re.Pattern[str]"], ...]:
    """(signature id, compiled regex): log signatures first, then known-bad symptoms."""
    rows = [(r["id"], r["regex"]) for r in load("log_signatures")["rows"]]
    rows += [(r["id"], r["symptom"]) for r in load("known_bad")["rows"] if r.get("symptom")]
    return tuple((sid, re.compile(rx)) for sid, rx in rows)


def match_text(text: str, source: str = "") -> list[LogMatch]:
    """Every signature the text shows, with the first line that shows it."""
    if len(text) > MAX_TEXT:
        text = text[-MAX_TEXT:]
    out: list[LogMatch] = []
    for sid, rx in signatures():
        m = rx.search(text)
        if m is None:
            continue
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        line = text[start:end if end != -1 else len(text)].strip()
        if len(line) > MAX_LINE:   # keep the matched part visible in a long line
            lo = max(0, m.start() - start - 40)
            line = line[lo:lo + MAX_LINE]
        out.append(LogMatch(signature=sid, line=line, source=source))
    return out


def match_logs(logs: list[tuple[str, str]]) -> list[LogMatch]:
    """(file name, text) pairs -> matches, one per signature (the first log that shows it)."""
    seen: set[str] = set()
    out: list[LogMatch] = []
    for name, text in logs:
        for m in match_text(text, source=name):
            if m.signature not in seen:
                seen.add(m.signature)
                out.append(m)
    return out
