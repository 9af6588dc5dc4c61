"""Drift: a library that patches another's internals, installed with a dependency released well after
it (issue 10). Unsloth declares few ceilings and breaks when transformers, TRL, PEFT, accelerate or
torch change the internals it patches; TRL and PEFT subclass transformers. No declared requirement
catches such a pairing, so the release dates must.

Rule (checks/data/patchers.json): the dependency was uploaded after the patcher's NEXT release (its
maintainers had moved on before the dependency existed, so this patcher release was never released
against it) and at least grace_days after the patcher itself. A declared ceiling that admits the
dependency means the maintainers vouched for it: no drift. Which to move: the patcher release
closest after the dependency's date that still declares it compatible; else the dependency back to
the newest release that predates the patcher's next one.
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

from checks import check
from doctor.knowledge import load
from doctor.knowledge.releases import EVIDENCE_KEY, Release, declared_on, table
from doctor.knowledge.requires import applicable
from checks._resolver import pin_lines, plan_install
from doctor.knowledge.versions import matches
from checks.version_matrix import _zoo_skew as zoo_skew   # the owner of the unsloth pair
from doctor.facts import Facts, canonical_name
from doctor.findings import Finding, Severity

DRIFT = "releases.untested-pairing"
CEILINGS = ("<", "<=", "==", "===", "~=")


@check(id="release-drift", title="libraries that patch others are not paired with much newer releases of them",
       finding_ids=(DRIFT,), order=54)
def release_drift(facts: Facts, config=None) -> list[Finding]:
    data = load("patchers")
    # A skewed unsloth/unsloth_zoo pair is one cause with one fix (upgrade both together), owned by
    # versions.unsloth-zoo-skew; the drift of either side against the libraries they patch is that
    # same staleness seen from another angle, so it is not said twice.
    skewed = zoo_skew(facts) is not None
    out = []
    for row in data["rows"]:
        if skewed and row["patcher"] in ("unsloth", "unsloth-zoo"):
            continue
        f = _drift(facts, row, data["grace_days"])
        if f is not None:
            out.append(f)
    return out


def _days(a: str, b: str) -> int:
    return (dt.date.fromisoformat(a) - dt.date.fromisoformat(b)).days


def _declares_ok(rel: Release, dep: str, version: str, facts: Facts) -> bool:
    """rel's own (table) requirement on dep admits version (no requirement: it does)."""
    for req, _ in applicable(rel.requires or (), facts.platform, rel.package):
        if canonical_name(req.name) == dep and str(req.specifier) and matches(version, str(req.specifier)) is False:
            return False
    return rel.requires is not None


def _drift(facts: Facts, row: dict, grace: int) -> Optional[Finding]:
    t = table()
    patcher = row["patcher"]
    mine = t.get(patcher, facts.version(patcher))
    nxt = t.next_by_date(patcher, facts.version(patcher))
    if mine is None or not mine.date or nxt is None or not nxt.date:
        return None
    drifted = []
    for dep in row["patches"]:
        have = facts.version(dep)
        rel = t.get(dep, have)
        if rel is None or not rel.date:
            continue
        if rel.date <= nxt.date or _days(rel.date, mine.date) < grace:
            continue
        spec, _basis = declared_on(facts, patcher, dep)
        if spec is not None and (matches(have, str(spec)) is False
                                 or any(s.operator in CEILINGS for s in spec)):
            continue      # excluded: version_matrix says so; admitted by a ceiling: vouched for
        drifted.append((dep, have, rel))
    if not drifted:
        return None
    latest = max(rel.date for _, _, rel in drifted)
    one = next((r for r in sorted(t.releases(patcher), key=lambda r: (r.date or "", r.v))
                if r.final and r.date and r.date >= latest and r.v > mine.v
                and all(_declares_ok(r, dep, have, facts) for dep, have, _ in drifted)), None)
    moves = ([f"upgrade {patcher} to {one.version} ({one.date}), its first release after all of them that "
              "declares them compatible (move unsloth and unsloth_zoo together)"] if one else [])
    for dep, have, rel in ([] if one else drifted):
        up = next((r for r in sorted(t.releases(patcher), key=lambda r: (r.date or "", r.v))
                   if r.final and r.date and r.date >= rel.date and r.v > mine.v
                   and _declares_ok(r, dep, have, facts)), None)
        if up is not None:
            moves.append(f"upgrade {patcher} to {up.version} ({up.date}), its first release after "
                         f"{dep} {have} that declares it compatible")
        else:
            back = t.newest_before(dep, nxt.date)
            moves.append(f"move {dep} back to {back.version} ({back.date}), released before {patcher} "
                         f"{nxt.version}" if back else f"no {patcher} release after {dep} {have} accepts it")
    plan = plan_install(facts)
    pairs = ", ".join(f"{dep} {have} ({rel.date}, {_days(rel.date, mine.date)} days later)"
                      for dep, have, rel in drifted)
    first = drifted[0]
    return Finding(
        id=DRIFT, severity=Severity.WARNING,
        title=f"{patcher} {mine.version} ({mine.date}) runs with {pairs}: an untested pairing",
        why=f"{patcher} patches the internals of {', '.join(row['patches'])}, so it works with the releases "
            f"that existed when it was made. {patcher} {nxt.version} came out on {nxt.date}, before "
            f"{first[0]} {first[1]} existed, and {patcher} {mine.version} declares no ceiling that admits it: "
            "nobody tested this pairing, and renamed or changed internals fail at import or mid-training "
            f"(rule: the dependency appeared after the patcher's next release and >= {grace} days after it).",
        remediation="; ".join(moves) + "." + (" Or take one consistent set of the newest releases "
                                               "(the command; each pin's reason is in the evidence)."
                                               if plan.ok else ""),
        commands=[plan.command()] if plan.ok else [],
        evidence={f"packages.{patcher}.version": f"{mine.version} ({mine.date})",
                  f"next {patcher} release": f"{nxt.version} ({nxt.date})",
                  **{f"packages.{dep}.version": f"{have} ({rel.date})" for dep, have, rel in drifted},
                  EVIDENCE_KEY: t.snapshot_day, "install pins": pin_lines(plan)},
        links=[row["source"]], failure_mode="FM-22" if patcher.startswith("unsloth") else "FM-10",
        confidence=0.5, fix_cost=2)
