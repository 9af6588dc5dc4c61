"""The Report every command returns (core: diagnosers and the application build it, renderers
format it) and its versioned JSON envelope, which every command's --json prints.
tests/test_envelope.py pins it: people script against it, so fields are only ever added, and
removing or renaming one bumps SCHEMA_VERSION."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Optional

from doctor import __version__
from doctor.facts import Facts
from doctor.findings import Finding, exit_code_for, rank, worst_severity
from doctor.serde import to_jsonable

SCHEMA_VERSION = 1


@dataclass
class Report:
    command: str                                   # run | attach | repro | analyze | vram
    findings: list[Finding]
    facts: Optional[Facts] = None
    sections: dict[str, Any] = field(default_factory=dict)   # command-specific data (vram, attach ...)
    exit_code: Optional[int] = None                # overrides the findings-derived code
    generated_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                              .isoformat(timespec="seconds"))
    # Not serialised: what the renderers format besides the findings (doctor.report.emit) ...
    parts: list[Any] = field(default_factory=list, repr=False)   # VramEstimate, PatchResult, AttachReport, ReproResult
    title: Optional[str] = None                    # ... and the report's heading

    def __post_init__(self):
        self.findings = rank(self.findings)

    @property
    def code(self) -> int:
        return self.exit_code if self.exit_code is not None else exit_code_for(self.findings)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("critical", "error", "warning", "info")}
        for f in self.findings:
            out[f.severity.value] += 1
        return out

    def to_dict(self) -> dict:
        worst = worst_severity(self.findings)
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "finetune-doctor",
            "doctor_version": __version__,
            "command": self.command,
            "generated_at": self.generated_at,
            "exit_code": self.code,
            "summary": {"counts": self.counts(), "worst": worst.value if worst else None},
            "findings": [f.to_dict() for f in self.findings],
            "facts": self.facts.to_dict() if self.facts else None,
            "sections": to_jsonable(self.sections),
            "release_table_snapshot": _release_table_snapshot(),
        }


def _release_table_snapshot() -> Optional[str]:
    """When the bundled release table (checks/data/releases.json.gz) was built, if a check used it."""
    from doctor.knowledge.releases import loaded_snapshot

    return loaded_snapshot()
