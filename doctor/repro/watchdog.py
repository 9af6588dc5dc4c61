"""When does a quiet training child count as stalled? Pure state, fed with the child's events.

A stall is "no step finished within max(floor, factor x median step time)". Before the first step
the child is importing, loading and compiling, which legitimately takes minutes (Unsloth: import
~45 s, first-step compile ~50 s on an H100: docs/knowledge/unsloth-on-the-gpu-machine.md), so
each start-up phase gets `startup_grace_s` and the first step `first_step_grace_s`. On a backend
that compiles per shape (Unsloth), a step that meets a new batch shape gets the first-step grace too.

Shared by `doctor repro` (its own child reports every step) and `doctor watch` (the user's script:
steps come from the Trainer hook; without one, "activity" events, output or CPU time, are the only
progress, and they count outside the training phase only). After a stall is reported,
`acknowledge()` keeps the same stall from being reported again: the next one needs progress first.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Optional

COMPILING_BACKENDS = ("unsloth",)


@dataclass
class StallPolicy:
    floor_s: float = 60.0
    factor: float = 10.0
    first_step_grace_s: float = 300.0
    startup_grace_s: float = 600.0


@dataclass
class Deadline:
    seconds: float
    since: float                  # time.time() of the last progress
    reason: str                   # why this much: "startup phase importing", "10 x median 0.8 s" ...


@dataclass
class Watch:
    policy: StallPolicy
    started: float                # time.time() when the child was started
    phase: str = "starting"
    phase_detail: str = ""
    backend: Optional[str] = None
    last_progress: float = 0.0
    last_step: int = 0
    durations: dict[int, float] = field(default_factory=dict)
    new_shape_in_step: bool = False
    forced: Optional[Deadline] = None         # an outside limit (the run's --timeout) overrides all
    acknowledged: Optional[float] = None      # last_progress of the stall already reported

    def __post_init__(self):
        self.last_progress = self.started

    def force_deadline(self, seconds: float, since: float, reason: str) -> None:
        self.forced = Deadline(seconds, since, reason)

    def feed(self, event: dict) -> None:
        kind, t = event.get("kind"), float(event.get("t") or self.last_progress)
        if kind == "phase":
            self.phase, self.phase_detail = event.get("phase", ""), event.get("detail", "")
            self.last_progress = t
        elif kind == "info":
            self.backend = event.get("backend")
        elif kind == "step":
            step = int(event["step"])
            if event.get("duration_s") is not None:
                self.durations[step] = float(event["duration_s"])
            self.last_step = max(self.last_step, step)
            self.last_progress = t
            self.new_shape_in_step = False
        elif kind == "activity" and self.phase != "training":
            self.last_progress = max(self.last_progress, t)
        elif kind == "shape" and self.last_step >= 1 and self.backend in COMPILING_BACKENDS:
            self.new_shape_in_step = True

    def median_step_s(self) -> Optional[float]:
        """Median of the steady steps: step 1 (compile, warm-up) only counts while it is alone."""
        steady = [d for s, d in self.durations.items() if s > 1] or list(self.durations.values())
        return statistics.median(steady) if steady else None

    def deadline(self) -> Deadline:
        if self.forced is not None:
            return self.forced
        p = self.policy
        if self.phase != "training":
            return Deadline(p.startup_grace_s, self.last_progress, f"start-up phase '{self.phase}' grace")
        if self.last_step == 0:
            return Deadline(p.first_step_grace_s, self.last_progress, "first-step grace (compile, warm-up)")
        median = self.median_step_s() or 0.0
        seconds = max(p.floor_s, p.factor * median)
        reason = (f"{p.factor:g} x median step {median:.2f} s" if p.factor * median >= p.floor_s
                  else f"floor {p.floor_s:g} s")
        if self.new_shape_in_step and p.first_step_grace_s > seconds:
            return Deadline(p.first_step_grace_s, self.last_progress, "new batch shape: compile grace")
        return Deadline(seconds, self.last_progress, reason)

    def overdue(self, now: float) -> bool:
        if self.acknowledged is not None and self.acknowledged == self.last_progress:
            return False
        d = self.deadline()
        return now - d.since > d.seconds

    def acknowledge(self) -> None:
        """The current stall has been reported: wait for progress before reporting another."""
        self.acknowledged = self.last_progress
