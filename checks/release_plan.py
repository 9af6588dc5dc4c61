"""One install command (issue 10): when the installed stack breaks a constraint the release table
can judge (a declared requirement, Requires-Python, the GPU's minimum torch, the driver's CUDA, a
known-bad combination), offer one copy-pasteable `pip install` with a consistent set of pins and the
reason for each (checks/_resolver.py). The findings that name each problem stay; this is their
common remedy, so it is info: it ranks with, never before, the causes it fixes (they point to it
through checks/data/explanations.json, and the renderers say 'explained by #N' on it)."""
from __future__ import annotations

from checks import check
from doctor.knowledge.releases import EVIDENCE_KEY, table
from checks._resolver import pin_lines, plan_install, violations
from doctor.facts import Facts
from doctor.findings import Finding, Severity

PLAN = "releases.install-command"


@check(id="release-plan", title="one install command with consistent pins when the installed stack breaks a constraint",
       finding_ids=(PLAN,), order=58)
def release_plan(facts: Facts, config=None) -> list[Finding]:
    if not facts.version("torch") and not facts.version("unsloth"):
        return []
    broken = violations(facts)
    if not broken:
        return []
    plan = plan_install(facts)
    return [Finding(
        id=PLAN, severity=Severity.INFO,
        title=(f"one install command for a consistent stack ({len(plan.pins)} pins)" if plan.ok else
               "no consistent stack fits this machine: " + (plan.failure or "")),
        why="The installed stack breaks: " + "; ".join(broken) + ". Fixing one package at a time moves "
            "the others' requirements; these pins satisfy all of them together: the newest releases "
            "that every declared requirement, Requires-Python, the GPU's minimum CUDA, the driver's "
            "maximum CUDA and the known-bad combinations allow.",
        remediation=("Run the command in the environment you train in (it replaces the listed packages); "
                     "each pin's reason is in the evidence." if plan.ok else
                     "Fix what the failure names first (usually the driver), then run the doctor again."),
        commands=[plan.command()] if plan.ok else [],
        evidence={"constraints broken": broken, "install pins": pin_lines(plan),
                  EVIDENCE_KEY: table().snapshot_day},
        failure_mode="FM-10", confidence=0.8, fix_cost=2)]
