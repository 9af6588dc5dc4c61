"""Runs the checks over the facts: each check isolated, a crash turned into a finding."""
from __future__ import annotations

import traceback
from typing import Iterable, Optional

from checks import CheckSpec, all_checks
from doctor.config.model import TrainingConfig
from doctor.facts import Facts
from doctor.findings import Finding, Severity, rank


def run_checks(facts: Facts, config: Optional[TrainingConfig] = None,
               only: Optional[Iterable[str]] = None,
               specs: Optional[list[CheckSpec]] = None) -> list[Finding]:
    """Every applicable check over facts (+ config); ranked findings."""
    wanted = set(only) if only else None
    findings: list[Finding] = []
    for spec in specs if specs is not None else all_checks():
        if wanted is not None and spec.id not in wanted:
            continue
        if spec.needs_config and config is None:
            continue
        try:
            produced = list(spec.fn(facts, config) or [])
            stray = next((f for f in produced if not isinstance(f, Finding)), None)
            if stray is not None:
                raise TypeError(f"returned {type(stray).__name__}, not a Finding")
        except Exception as exc:  # a broken check must not take the others down
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else "?"
            produced = [Finding(
                id="doctor.check-crashed",
                # an error, so the exit code is non-zero: "no problems found" would be a guess
                severity=Severity.ERROR,
                title=f"check '{spec.id}' crashed: {type(exc).__name__}: {str(exc)[:200]}",
                why="A doctor check failed on these facts, so what it looks for was not checked, "
                    "and this report cannot say the machine is healthy.",
                remediation="Please report this with `doctor bundle`; the other checks still ran.",
                evidence={"check": spec.id, "at": where},
                confidence=1.0,
            )]
        for f in produced:
            f.check = f.check or spec.id
        findings.extend(produced)
    from doctor.knowledge.explain import link_explanations

    return rank(link_explanations(findings))
