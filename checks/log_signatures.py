"""What a given log or traceback shows (`doctor run --log`, `doctor bundle --log`, `doctor analyze`).

The matching is done once, before the checks, into facts.log_matches (doctor/knowledge/logmatch.py). Each
known message becomes a finding with its usual cause; facts-based findings that explain it (a
driver too old, a CPU build of torch, an arch without kernels) rank before it, linked by
data/explanations.json. A log line that carries a known-bad row's message while the installed
versions do not match the row is reported as a hint (the environment may differ from the log's).
"""
from __future__ import annotations

from checks import check
from doctor.knowledge import load
from checks.known_bad import installed_version, row_matches
from doctor.facts import Facts
from doctor.findings import Finding, Severity

KNOWN_ISSUE_MESSAGE = "log.known-issue-message"


def _signature_rows() -> dict[str, dict]:
    return {r["id"]: r for r in load("log_signatures")["rows"]}


def _finding_ids() -> tuple[str, ...]:
    ids = []
    for r in load("log_signatures")["rows"]:
        if r["finding"] not in ids:
            ids.append(r["finding"])
    return tuple(ids) + (KNOWN_ISSUE_MESSAGE,)


@check(id="log-signatures", title="known messages in a given training log or traceback (--log)",
       finding_ids=_finding_ids(), order=90)
def log_signatures(facts: Facts, config=None) -> list[Finding]:
    sig_rows = _signature_rows()
    kb_rows = {r["id"]: r for r in load("known_bad")["rows"]}
    by_finding: dict[str, Finding] = {}
    out: list[Finding] = []
    for m in facts.log_matches:
        where = f"{m.source}: {m.line}" if m.source else m.line
        row = sig_rows.get(m.signature)
        if row is not None:
            f = by_finding.get(row["finding"])
            if f is not None:        # two signatures of one finding: keep one finding, both lines
                f.evidence[f"log.line{len(f.evidence)}"] = where
                continue
            f = Finding(
                id=row["finding"], severity=Severity(row.get("severity", "error")), title=row["title"],
                why=f"Usual cause: {row['cause']}", remediation=row["fix"],
                evidence={"log.signature": m.signature, "log.line": where}, links=list(row["links"]),
                confidence=0.7, fix_cost=2)
            by_finding[row["finding"]] = f
            out.append(f)
            continue
        kb = kb_rows.get(m.signature)
        if kb is not None and row_matches(facts, kb) is None:
            out.append(_known_issue(facts, kb, where))
    return out


def _known_issue(facts: Facts, kb: dict, where: str) -> Finding:
    have = ", ".join(f"{k} {installed_version(facts, k) or 'not installed'}" for k in kb["when"])
    need = ", ".join(f"{k}{s}" for k, s in kb["when"].items())
    return Finding(
        id=KNOWN_ISSUE_MESSAGE, severity=Severity.WARNING,
        title=f"the log shows the message of a known issue ({kb['id']})",
        why=f"That message was confirmed for {need}; these facts show {have}. If the log comes from "
            "another environment (a notebook, a container), check its versions.",
        remediation=kb["fix"], evidence={"log.line": where, "known_bad.row": kb["id"]},
        links=list(kb["links"]), confidence=0.6, fix_cost=2)
