"""Installed release combinations that the trackers confirmed broken (data/known_bad.json).

A row matches when every package in its `when` is installed at a version its specifier accepts
(pre-releases and local labels such as +cu121 count) and every condition in its `facts` holds.
Each match is an error (or the row's severity) naming the row, the versions, the message users
saw, the fix and the thread. When a pasted log (`--log`) shows the row's message too, the finding
says so, is near certain, and explains the generic log findings that line produced.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Optional

from checks import check
from doctor.knowledge import load
from checks._machine import gpus
from doctor.knowledge.versions import matches
from doctor.facts import Facts, canonical_name
from doctor.findings import Finding, Severity

KNOWN_BAD = "versions.known-bad-combination"


def installed_version(facts: Facts, name: str) -> Optional[str]:
    v = facts.version(name)
    if v is None and canonical_name(name) == "torch":
        v = facts.torch.version      # the torch probe saw it even when the packages probe did not
    return v


def _version_in(version: str, spec: str) -> bool:
    return matches(version, spec) is True          # unreadable versions or specifiers never match


def _caps(facts: Facts) -> list[tuple[int, int]]:
    return [g.capability for g in gpus(facts) if g.capability]


def _cap(value: str) -> tuple[int, int]:
    major, _, minor = str(value).partition(".")
    return int(major), int(minor or 0)


def _python_below(facts: Facts, value: str) -> bool:
    py = facts.platform.python_version
    return bool(py) and _version_in(py, f"<{value}")


# Conditions a row's "facts" may use (documented in known_bad.json's _doc). Unknown keys never match.
FACT_CONDITIONS: dict[str, Callable[[Facts, Any], bool]] = {
    "gpu.capability_min": lambda f, v: any(c >= _cap(v) for c in _caps(f)),
    "gpu.capability_max": lambda f, v: any(c <= _cap(v) for c in _caps(f)),
    "platform.wsl": lambda f, v: bool(f.platform.is_wsl) == bool(v),
    "platform.windows": lambda f, v: bool(f.platform.is_windows_native) == bool(v),
    "platform.windows_or_wsl": lambda f, v: bool(f.platform.is_windows_native or f.platform.is_wsl) == bool(v),
    "platform.container": lambda f, v: bool(f.platform.container) == bool(v),
    "python.below": _python_below,
}


def row_matches(facts: Facts, row: dict) -> Optional[dict[str, str]]:
    """{package: installed version} when the row applies to these facts, else None."""
    return combination_matches(row, lambda name: installed_version(facts, name), facts)


def combination_matches(row: dict, version_of: Callable[[str], Optional[str]],
                        facts: Optional[Facts] = None) -> Optional[dict[str, str]]:
    """The row against any set of versions (installed, or a resolver's candidate pins):
    {package: version} when every `when` entry holds and, given facts, every `facts` condition;
    without facts the conditions are assumed to hold (a resolver must avoid the row anywhere)."""
    versions: dict[str, str] = {}
    for name, spec in row["when"].items():
        v = version_of(canonical_name(name))
        if v is None or not _version_in(v, spec):
            return None
        versions[name] = v
    if facts is not None:
        for key, value in row.get("facts", {}).items():
            cond = FACT_CONDITIONS.get(key)
            if cond is None or not cond(facts, value):
                return None
    return versions


def rows_hit_by(pins: dict[str, str], facts: Optional[Facts] = None) -> list[dict]:
    """For the one-install-command resolver: the rows a set of pins {name: version} would hit."""
    norm = {canonical_name(k): v for k, v in pins.items()}
    return [r for r in rows() if combination_matches(r, norm.get, facts) is not None]


def rows() -> list[dict]:
    return load("known_bad")["rows"]


@check(id="known-bad", title="installed release combinations confirmed broken on the public trackers",
       finding_ids=(KNOWN_BAD,), order=35)
def known_bad(facts: Facts, config=None) -> list[Finding]:
    out = []
    for row in rows():
        versions = row_matches(facts, row)
        if versions is not None:
            out.append(_finding(facts, row, versions))
    return out


def _finding(facts: Facts, row: dict, versions: dict[str, str]) -> Finding:
    installed = ", ".join(f"{k} {v}" for k, v in versions.items())
    seen = next((m for m in facts.log_matches if m.signature == row["id"]), None)
    evidence: dict[str, Any] = {"known_bad.row": row["id"], "installed": installed,
                                "known_bad.when": ", ".join(f"{k}{s}" for k, s in row["when"].items())}
    if row.get("facts"):
        evidence["known_bad.facts"] = ", ".join(f"{k}={v}" for k, v in row["facts"].items())
    if row.get("fixed_in"):
        evidence["fixed_in"] = ", ".join(f"{k} {v}" for k, v in row["fixed_in"].items())
    evidence["confirmed_by"] = row["confirmed_by"]
    if seen is not None:
        evidence["log"] = f"{seen.source}: {seen.line}" if seen.source else seen.line
    commands = [f'pip install "{k}>={v}"' for k, v in row.get("fixed_in", {}).items()]
    return Finding(
        id=KNOWN_BAD, severity=Severity(row.get("severity", "error")),
        title=f"{installed}: a combination confirmed broken ({_short(row['message'])})",
        why=f"This combination is known to fail with: \"{row['message']}\" "
            + ("Your log shows that message. " if seen is not None else "")
            + f"Confirmed by the {row['confirmed_by']} in the linked thread.",
        remediation=row["fix"], commands=commands, evidence=evidence, links=list(row["links"]),
        confidence=0.99 if seen is not None else (0.85 if row["confirmed_by"] == "reporter" else 0.95),
        fix_cost=2, explains=_explained_log_findings(facts, row))


def _explained_log_findings(facts: Facts, row: dict) -> list[str]:
    """The generic log findings whose matched line is this row's message."""
    if not row.get("symptom"):
        return []
    rx = re.compile(row["symptom"])
    by_sig = {r["id"]: r["finding"] for r in load("log_signatures")["rows"]}
    out = []
    for m in facts.log_matches:
        fid = by_sig.get(m.signature)
        if fid and fid not in out and rx.search(m.line):
            out.append(fid)
    return out


def _short(text: str, n: int = 90) -> str:
    text = text.strip()
    return text if len(text) <= n else text[: n - 3].rstrip() + "..."
