"""Finding: what a check concludes, and how findings are ranked.

A finding keeps runnable `commands` apart from prose `remediation` (Homebrew's split), carries the
evidence it rests on (fact path -> value), an optional config patch, and links to the issues that
document it. Ranking: severity, then confidence, then how cheap the fix is.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

from doctor.serde import JsonRecord


class Severity(str, enum.Enum):
    CRITICAL = "critical"   # training cannot run at all
    ERROR = "error"         # training will fail, hang or silently produce garbage
    WARNING = "warning"     # a known hazard, or a real cost, that may bite
    INFO = "info"           # context worth knowing; nothing to fix

    @property
    def rank(self) -> int:
        return {"critical": 0, "error": 1, "warning": 2, "info": 3}[self.value]

    @property
    def is_failure(self) -> bool:
        return self in (Severity.CRITICAL, Severity.ERROR)


@dataclass
class ConfigChange:
    """One setting the patched config should change, and why."""
    setting: str                 # canonical TrainingConfig field, e.g. "use_gradient_checkpointing"
    value: Any                   # the new value (a Python literal)
    reason: str                  # one line, shown beside the change


@dataclass
class Finding(JsonRecord):
    id: str                      # stable, dotted: "wsl.pinned-memory-offload"
    severity: Severity
    title: str                   # one line
    why: str = ""                # why it matters
    remediation: str = ""        # prose: what to do
    commands: list[str] = field(default_factory=list)     # runnable, copy-pasteable
    evidence: dict[str, Any] = field(default_factory=dict)  # fact path -> value it rests on
    config_changes: list[ConfigChange] = field(default_factory=list)
    links: list[str] = field(default_factory=list)        # issues/docs that document it
    failure_mode: Optional[str] = None                    # "FM-02" in docs/knowledge/unsloth-failure-modes.md
    confidence: float = 0.8      # 0..1: how sure the evidence makes us
    fix_cost: int = 2            # 1 = one flag/env var, 2 = reinstall/config, 3 = hardware/OS change
    check: str = ""              # the check that produced it (filled in by the engine)
    explains: list[str] = field(default_factory=list)   # ids of findings this one is the cause of

    def sort_key(self) -> tuple:
        return (self.severity.rank, -self.confidence, self.fix_cost, self.id)



def rank(findings: list[Finding]) -> list[Finding]:
    """Severity, confidence, fix cost; then causes before symptoms: a finding that explains others
    moves up to just before the first of them, even across severity (a driver too old, error,
    before `torch.cuda.is_available()` False, critical). The symptoms stay where they were."""
    by_id: dict[str, list[Finding]] = {}
    for f in findings:
        by_id.setdefault(f.id, []).append(f)

    def effective(f: Finding, seen: frozenset = frozenset()) -> tuple:
        """(best key of f and all it explains, -depth): a cause of a cause comes first."""
        best = (f.sort_key(), 0)
        for sid in f.explains:
            if sid in seen or sid == f.id:
                continue        # an explanation cycle: ignore the back edge
            for s in by_id.get(sid, ()):
                key, depth = effective(s, seen | {f.id})
                best = min(best, (key, depth - 1))
        return best

    return sorted(findings, key=lambda f: (effective(f), f.sort_key()))


def explained_by(findings: list[Finding]) -> dict[int, list[int]]:
    """For renderers: position of a symptom -> positions of the findings that explain it."""
    out: dict[int, list[int]] = {}
    for i, cause in enumerate(findings):
        for j, f in enumerate(findings):
            if i != j and f.id in cause.explains:
                out.setdefault(j, []).append(i)
    return out


def worst_severity(findings: list[Finding]) -> Optional[Severity]:
    return min((f.severity for f in findings), key=lambda s: s.rank, default=None)


def exit_code_for(findings: list[Finding]) -> int:
    from doctor import exitcodes

    return exitcodes.UNHEALTHY if any(f.severity.is_failure for f in findings) else exitcodes.OK
