"""Runs the training child and watches it: tails its events, applies the stall policy, samples it
on a stall (attach, host state, faulthandler), and stops its whole tree, DataLoader workers that
were reparented included.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from doctor.exitcodes import DoctorError
from doctor.proctree import create_time as _create_time
from doctor.proctree import kill_survivors, kill_tree, remember_tree
from doctor.repro import host
from doctor.repro.events import EventReader
from doctor.repro.result import ReproResult, StallInfo
from doctor.repro.spec import ChildSpec
from doctor.repro.watchdog import StallPolicy, Watch

POLL_S = 0.2
STACK_DUMP_WAIT_S = 1.0
LOG_TAIL_BYTES = 12_000
# The child runs offline: nothing may wait on the hub (unsloth-on-the-gpu-machine.md, "Offline").
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
             "UNSLOTH_DISABLE_STATISTICS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
             "WANDB_MODE": "disabled", "HF_HUB_DISABLE_TELEMETRY": "1"}

Sampler = Callable[[int], Any]       # pid -> AttachReport (anything with .to_dict())
EventHook = Callable[[dict], None]


def child_env() -> dict:
    env = dict(os.environ, **CHILD_ENV)
    root = str(Path(__file__).resolve().parents[2])     # the folder holding the doctor package
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def sample_into(target: Any, sampler: Optional[Sampler], pid: int) -> None:
    """Set target.diagnosis (the sampler's report as a dict) or target.diagnosis_error: the stall
    record of `doctor repro` and of `doctor watch` alike. A failing sampler never loses the stall."""
    if sampler is None:
        target.diagnosis_error = "no sampler"
        return
    try:
        report = sampler(pid)
        target.diagnosis = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    except DoctorError as exc:
        target.diagnosis_error = exc.message
    except Exception as exc:  # the sampler failing must not lose the stall itself
        target.diagnosis_error = f"{type(exc).__name__}: {exc}"


class Supervisor:
    """One child under watch: events in, stall/crash/finish out; always stopped with its tree."""

    def __init__(self, spec: ChildSpec, out: Path, policy: StallPolicy, max_wall_s: Optional[float],
                 python: Optional[str], sampler: Optional[Sampler], on_event: Optional[EventHook]):
        self.spec, self.out, self.policy = spec, out, policy
        self.max_wall_s, self.python = max_wall_s, python
        self.sampler = sampler
        self.on_event = on_event or (lambda e: None)
        self.events: list[dict] = []
        self.known: dict[int, float] = {}   # pid -> create_time of every process seen in the tree
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = out / "child.log"

    def start(self) -> None:
        cmd = [self.python or sys.executable, "-m", "doctor.repro.child", "--spec",
               str((self.out / "spec.json").resolve())]
        with open(self.log_path, "wb") as log:
            # cwd = the output folder: Unsloth writes its compiled cache and temp buffers into the cwd
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=child_env(), cwd=str(self.out.resolve()), start_new_session=True)
        self._remember(self.proc.pid)

    def _remember(self, pid: int) -> None:
        remember_tree(pid, self.known)

    def watch(self, result: ReproResult) -> None:
        reader = EventReader(Path(self.spec.events_path))
        w = Watch(self.policy, started=time.time())
        while True:
            for ev in reader.read_new():
                self.events.append(ev)
                w.feed(ev)
                if isinstance(ev.get("pid"), int) and ev["pid"] not in self.known:
                    created = _create_time(ev["pid"])
                    if created:                  # already gone: never guess, the pid may be reused
                        self.known[ev["pid"]] = created
                self.on_event(ev)
            self._remember(self.proc.pid)
            if self.proc.poll() is not None:
                time.sleep(POLL_S)           # let the last lines land, then read them
                for ev in reader.read_new():
                    self.events.append(ev)
                    self.on_event(ev)
                return
            now = time.time()
            if self.max_wall_s and now - w.started > self.max_wall_s:
                w.force_deadline(self.max_wall_s, w.started, "the run's wall-clock limit (--timeout)")
            if w.overdue(now):
                d = w.deadline()
                result.stalled = True
                result.stall = StallInfo(step=w.last_step + 1, phase=w.phase, waited_s=now - d.since,
                                         deadline_s=d.seconds, reason=d.reason, detected_at=now)
                self.on_event({"kind": "stall", "t": now, "step": w.last_step + 1, "phase": w.phase,
                               "waited_s": now - d.since})
                self.examine_stall(result)
                return
            time.sleep(POLL_S)

    def examine_stall(self, result: ReproResult) -> None:
        pid = self.proc.pid
        sample_into(result, self.sampler, pid)
        snap = host.host_snapshot(pid)
        snap["root_pid"] = pid
        result.host = snap
        result.stack_dump = self.faulthandler_dump()

    def faulthandler_dump(self) -> str:
        """The child's own all-thread traceback (SIGUSR1 -> faulthandler): works without ptrace."""
        if not self.events or self.proc.poll() is not None or not hasattr(signal, "SIGUSR1"):
            return ""          # before the first event the handler may not be installed yet
        start = self.log_path.stat().st_size
        try:
            os.kill(self.proc.pid, signal.SIGUSR1)
        except OSError:
            return ""
        deadline = time.monotonic() + STACK_DUMP_WAIT_S
        text = ""
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with open(self.log_path, "rb") as fh:
                fh.seek(start)
                text = fh.read(LOG_TAIL_BYTES).decode(errors="replace")
            if "Current thread" in text:         # the signalled (main) thread's block is written
                time.sleep(0.1)
                with open(self.log_path, "rb") as fh:
                    fh.seek(start)
                    text = fh.read(LOG_TAIL_BYTES).decode(errors="replace")
                break
        return text if "most recent call first" in text else ""

    def stop(self) -> list[int]:
        """Stop the whole tree, reparented DataLoader workers included; return the survivors."""
        if self.proc is None:
            return []
        self._remember(self.proc.pid)
        kill_tree(self.proc.pid, grace_s=3.0)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)   # workers share the child's process group
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return kill_survivors(self.known)

    def log_tail(self) -> str:
        try:
            size = self.log_path.stat().st_size
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, size - LOG_TAIL_BYTES))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""
