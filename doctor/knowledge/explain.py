"""Causes before symptoms: links findings that explain others (data/explanations.json), after all
checks ran. Only pairs that are both present are linked; ranking (doctor.findings.rank) then puts
the cause first and renderers say 'explained by #N' on the symptom."""
from __future__ import annotations

import functools

from doctor.knowledge import load
from doctor.findings import Finding


@functools.lru_cache(maxsize=None)
def _table() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for row in load("explanations")["rows"]:
        for cause in row.get("causes") or [row["cause"]]:      # one row may name several causes
            out.setdefault(cause, []).extend(row["explains"])
    return {k: tuple(v) for k, v in out.items()}


def link_explanations(findings: list[Finding]) -> list[Finding]:
    present = {f.id for f in findings}
    table = _table()
    for f in findings:
        for sid in table.get(f.id, ()):
            if sid in present and sid != f.id and sid not in f.explains:
                f.explains.append(sid)
    return findings
