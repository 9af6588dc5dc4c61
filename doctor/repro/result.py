"""The outcome of one `doctor repro` run, as plain data (JSON round-trip through doctor.serde)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Optional

from doctor.findings import Finding
from doctor.serde import from_jsonable, to_jsonable


def median_step_s(steps: list["StepRecord"]) -> Optional[float]:
    """The median duration of the finished steps after the first (step 1 compiles and warms up)."""
    steady = [s.duration_s for s in steps if s.duration_s is not None and s.step > 1]
    return statistics.median(steady) if steady else None


@dataclass
class StepRecord:
    step: int
    t_end: float                          # time.time() when the step ended (child clock = host clock)
    duration_s: Optional[float] = None    # since the previous step ended (data loading included)
    loss: Optional[float] = None
    mem_allocated: Optional[int] = None   # torch.cuda.memory_allocated() after the step (None on CPU)
    mem_reserved: Optional[int] = None
    mem_peak: Optional[int] = None        # max_memory_allocated() during the step
    host_rss: Optional[int] = None        # the training process's RSS after the step
    tokens: Optional[int] = None          # tokens fed to the model in the step, padding included
    tokens_nonpad: Optional[int] = None
    max_len: Optional[int] = None         # longest sample of the step


@dataclass
class FaultRecord:
    kind: str
    step: int
    injected: bool = False                # the child reached the step and planted it
    emulated: bool = False                # a CPU stand-in for a GPU-side fault
    detail: str = ""
    skipped: Optional[str] = None         # why it could not be planted here (vram-squeeze on CPU)
    data: dict[str, Any] = field(default_factory=dict)   # numbers the child reported


@dataclass
class StallInfo:
    step: int                             # the step that never finished
    phase: str                            # the child's phase at the time (training, loading-model ...)
    waited_s: float                       # since the last progress
    deadline_s: float
    reason: str                           # how the deadline was computed
    detected_at: float                    # time.time()


@dataclass
class CrashInfo:
    type: str = ""
    message: str = ""
    traceback: str = ""
    step: Optional[int] = None            # the step in progress; None before the first one
    phase: str = ""                       # the child's phase (importing, loading-model, training ...)
    memory: dict[str, Any] = field(default_factory=dict)
    exit_code: Optional[int] = None
    signal: Optional[int] = None          # the child was killed by this signal (9: OOM killer?)


@dataclass
class ReproResult:
    out_dir: str
    model_size: str
    steps_planned: int
    config: dict[str, Any] = field(default_factory=dict)     # the mirrored settings (ChildSpec, trimmed)
    policy: dict[str, float] = field(default_factory=dict)   # the watchdog's floor, factor and graces
    info: dict[str, Any] = field(default_factory=dict)       # what the child actually ran
    notes: list[str] = field(default_factory=list)           # where the run differs from the config
    steps: list[StepRecord] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    completed: bool = False
    stalled: bool = False
    stall: Optional[StallInfo] = None
    crashed: bool = False
    crash: Optional[CrashInfo] = None
    diagnosis: Optional[dict] = None      # AttachReport.to_dict() of the stalled child tree
    diagnosis_error: Optional[str] = None
    stack_dump: str = ""                  # faulthandler's all-thread dump (needs no ptrace)
    host: Optional[dict] = None           # host memory and the child tree at the stall or crash
    wsl: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""                    # the child's stdout/stderr, last lines
    cause: str = "none"
    findings: list[Finding] = field(default_factory=list)
    events_path: str = ""
    step_log_path: str = ""
    log_path: str = ""
    chart_path: Optional[str] = None
    duration_s: float = 0.0
    pids_seen: list[int] = field(default_factory=list)       # every process of the child tree we saw
    leftover_pids: list[int] = field(default_factory=list)   # child-tree processes that survived the stop

    @property
    def stall_step(self) -> Optional[int]:
        return self.stall.step if self.stall else None

    @property
    def detection_latency_s(self) -> Optional[float]:
        return round(self.stall.waited_s, 3) if self.stall else None

    def median_step_s(self) -> Optional[float]:
        return median_step_s(self.steps)

    def fault(self, kind: str) -> Optional[FaultRecord]:
        return next((f for f in self.faults if f.kind == kind), None)

    def to_dict(self) -> dict:
        data = to_jsonable(self)
        data["stall_step"] = self.stall_step
        data["detection_latency_s"] = self.detection_latency_s
        data["median_step_s"] = self.median_step_s()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ReproResult":
        return from_jsonable(cls, data)

    def report(self):
        from doctor.report_model import Report

        return Report(command="repro", findings=list(self.findings), facts=None,
                      sections={"repro": self.to_dict()}, parts=[self])
