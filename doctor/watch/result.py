"""The outcome of one `doctor watch` run, as plain data (JSON round-trip through doctor.serde)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from doctor.findings import Finding
from doctor.repro.result import StallInfo, StepRecord, median_step_s
from doctor.serde import from_jsonable, to_jsonable


@dataclass
class WatchStep(StepRecord):
    data_wait_s: Optional[float] = None   # from the previous step's end to this step's begin (batch fetch)
    lr: Optional[float] = None


@dataclass
class StallRecord:
    info: StallInfo
    diagnosis: Optional[dict] = None      # AttachReport.to_dict() of the stalled tree
    diagnosis_error: Optional[str] = None
    host: Optional[dict] = None           # host memory and the tree at the stall (doctor.repro.host)
    recovered: bool = False               # progress came back after it (the run was kept going)
    report_s: Optional[float] = None      # from the stall's detection to its diagnosis being written
    ranks: list[dict] = field(default_factory=list)       # per-rank progress at the stall (doctor.watch.ranks)
    first_stopped_rank: Optional[int] = None              # the rank furthest behind at the stall


@dataclass
class WatchResult:
    command: list[str]
    out_dir: str
    policy: dict[str, float] = field(default_factory=dict)
    progress: str = "none"                # trainer: step reports arrived | activity: output/CPU only
    progress_note: str = ""               # why step reports were not available
    notes: list[str] = field(default_factory=list)          # what the hook said (patched, failures)
    info: dict[str, Any] = field(default_factory=dict)      # what the Trainer reported at train begin
    steps: list[WatchStep] = field(default_factory=list)
    stalls: list[StallRecord] = field(default_factory=list)
    killed_on_stall: bool = False
    exit_code: Optional[int] = None       # the child's, as the shell would say it (128+N for signal N)
    signal: Optional[int] = None
    crash: Optional[dict] = None          # crash.CrashRead as a dict (id, exc_type, message, traceback, where)
    completed: bool = False               # the Trainer reported the end of training
    stderr_tail: str = ""
    cause: str = "none"
    findings: list[Finding] = field(default_factory=list)
    chart_path: Optional[str] = None
    duration_s: float = 0.0
    pids_seen: list[int] = field(default_factory=list)
    leftover_pids: list[int] = field(default_factory=list)
    ranks: list[dict] = field(default_factory=list)       # per-rank progress under a launcher (doctor.watch.ranks)

    def median_step_s(self) -> Optional[float]:
        return median_step_s(self.steps)

    def to_dict(self) -> dict:
        data = to_jsonable(self)
        data["median_step_s"] = self.median_step_s()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "WatchResult":
        return from_jsonable(cls, data)

    def report(self):
        from doctor.report_model import Report

        return Report(command="watch", findings=list(self.findings), facts=None,
                      sections={"watch": self.to_dict()})
