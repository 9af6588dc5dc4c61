"""Settings the parser could not resolve statically (computed, read from argv or the environment)."""
from __future__ import annotations

from checks import check
from doctor.config.model import TrainingConfig
from doctor.facts import Facts
from doctor.findings import Finding, Severity


@check(id="config-unresolved", title="Training settings the doctor could not read from the file",
       finding_ids=("config.unresolved-settings",), needs_config=True, order=90)
def config_unresolved(facts: Facts, config: TrainingConfig) -> list[Finding]:
    if not config.unresolved:
        return []
    names = sorted(config.unresolved)
    return [Finding(
        id="config.unresolved-settings", severity=Severity.INFO,
        title=f"{len(names)} setting{'s' if len(names) > 1 else ''} could not be read statically: {', '.join(names)}",
        why="The doctor reads the script without running it; these values are computed at run time, so the "
            "checks and the VRAM estimate use library defaults for them instead.",
        remediation="Pass the values as flags (e.g. --batch-size 2 --seq-len 2048) to check what you will run.",
        evidence={name: config.unresolved[name] for name in names}, confidence=1.0, fix_cost=1)]
