"""The result of `doctor attach`: the classifier's view of each process and thread, the findings,
and the snapshot it was computed from (raw py-spy dumps included, for the bundle)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from doctor.attach.snapshot import GpuSample, Snapshot
from doctor.findings import Finding, rank
from doctor.serde import to_jsonable


@dataclass
class ThreadView:
    tid: Optional[int]                   # OS thread id
    name: str = ""
    main: bool = False
    moved: bool = False                  # its Python stack changed between samples
    stuck: bool = False                  # same stack in every sample
    busy: bool = False                   # burning CPU (or moving)
    active: bool = False                 # py-spy: running on a CPU in any sample
    owns_gil: bool = False               # py-spy: held the GIL in any sample
    cpu_percent: Optional[float] = None
    kernel_wait: Optional[str] = None    # sleep | futex | read | poll | wait-child | io | running ...
    key_frames: list[str] = field(default_factory=list)     # innermost interesting frames, "fn (file:line)"
    waits_in: Optional[str] = None       # innermost raw frame when it is a wrapper (queue.get ...)
    native_frames: list[str] = field(default_factory=list)  # innermost native frames (--native pass)
    cause: Optional[str] = None          # signature id matched on this thread
    matched: Optional[str] = None        # the frame that matched


@dataclass
class ProcessView:
    pid: int
    ppid: Optional[int] = None
    cmdline: str = ""
    role: str = "main"
    state: Optional[str] = None          # /proc state (most common over the window)
    cpu_percent: Optional[float] = None
    rss: Optional[int] = None
    swap: Optional[int] = None
    wchan: Optional[str] = None
    open_files: list[str] = field(default_factory=list)
    threads: list[ThreadView] = field(default_factory=list)
    skipped: Optional[str] = None
    cause: Optional[str] = None          # this process's own diagnosis
    where: Optional[str] = None          # one line: where its main thread is
    resumed: bool = False


@dataclass
class AttachReport:
    pid: int
    cause: str
    findings: list[Finding] = field(default_factory=list)
    processes: list[ProcessView] = field(default_factory=list)
    gpu: GpuSample = field(default_factory=GpuSample)
    situation: str = ""                  # "GPU busy, host waiting" | "GPU idle, host waiting" | "host busy" ...
    raw_dumps: dict[str, list[list[dict]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    snapshot: Optional[Snapshot] = None  # the measured data (kept for replay and --save-dumps)
    ranks: Optional[dict] = None         # the line-up of a distributed job's ranks (doctor/attach/ranks.py)

    def __post_init__(self):
        # the primary diagnosis first (even when a side finding is more severe), then by rank
        ranked = rank(self.findings)
        primary = [f for f in ranked if f.id == f"attach.{self.cause}"][:1]
        self.findings = primary + [f for f in ranked if f not in primary]

    @property
    def primary(self) -> Optional[Finding]:
        return self.findings[0] if self.findings else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "cause": self.cause,
            "situation": self.situation,
            "findings": [f.to_dict() for f in self.findings],
            "processes": to_jsonable(self.processes),
            "gpu": to_jsonable(self.gpu),
            "raw_dumps": self.raw_dumps,
            "errors": list(self.errors),
            "duration_s": round(self.duration_s, 3),
            # everything the classifier read besides the dumps, so the report alone can be replayed
            "snapshot": _snapshot_without_dumps(self.snapshot),
            **({"ranks": self.ranks} if self.ranks is not None else {}),
        }

    def report(self):
        from doctor.report_model import Report

        return Report(command="attach", findings=list(self.findings), facts=None,
                      sections={"attach": self.to_dict()}, parts=[self])


def _snapshot_without_dumps(snap: Optional[Snapshot]) -> Optional[dict]:
    if snap is None:
        return None
    data = snap.to_dict()
    for p in data["processes"]:
        p["dumps"] = []                  # they are in raw_dumps, keyed by pid
    return data


def snapshot_from_report_dict(data: dict) -> Snapshot:
    """Rebuild the Snapshot from an AttachReport.to_dict() (or its envelope) for replay."""
    if "sections" in data:               # a --json envelope
        data = data["sections"]["attach"]
    snap = Snapshot.from_dict(data["snapshot"])
    dumps = data.get("raw_dumps") or {}
    for p in snap.processes:
        p.dumps = dumps.get(str(p.pid), p.dumps)
    return snap
