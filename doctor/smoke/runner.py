"""The smoke watchdog: runs the steps in a child process, gives each step its own time limit from the
moment the child says it started, and turns a hang (limit passed: the child's whole process group is
killed) or a crash (the child died mid-step: a segfault in a kernel, an abort in a native library)
into that step's result. The steps after it run in a fresh child, so one broken layer does not hide
the others, and the doctor never hangs.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from doctor.facts import Facts, SmokeInfo, SmokeStep
from doctor.proctree import kill_tree
from doctor.smoke.protocol import MARKER
from doctor.smoke.steps import PRELUDE_S, PRELUDE_STEP, StepSpec, plan

CHILD_MODULE = "doctor.smoke.child"
STDERR_TAIL = 1500
_ROOT = str(Path(__file__).resolve().parent.parent.parent)   # the folder holding the doctor package


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _reader(stream, q: "queue.Queue[Optional[dict]]") -> None:
    for line in stream:
        if line.startswith(MARKER):
            try:
                q.put(json.loads(line[len(MARKER):]))
            except ValueError:
                pass
    q.put(None)   # end of output: the child exited (or closed stdout)


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - STDERR_TAIL))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _ended(proc: subprocess.Popen, stderr_path: str, killed: bool = False) -> str:
    """How the child ended, in words, with the end of its stderr."""
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        code = None
    if killed:
        how = "the watchdog killed the process"
    elif code is not None and code < 0:
        try:
            how = f"the process was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"the process was killed by signal {-code}"
    else:
        how = f"the process exited with code {code}"
    tail = _tail(stderr_path)
    return how + (f"\n{tail}" if tail else "")


def _kill(proc: subprocess.Popen) -> None:
    """The child and everything it started (compiler workers, NCCL helpers)."""
    kill_tree(proc.pid, grace_s=1.0, include_root=True)
    if hasattr(os, "killpg"):       # POSIX: the child's session, whatever kill_tree missed
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


def run_steps(specs: Sequence[StepSpec], module: str = CHILD_MODULE, prelude_s: float = PRELUDE_S,
              python: Optional[str] = None) -> tuple[list[SmokeStep], Optional[SmokeStep]]:
    """Run the steps in order; (one SmokeStep per spec, the first child's prelude or None)."""
    remaining = list(specs)
    results: list[SmokeStep] = []
    prelude: Optional[SmokeStep] = None
    while remaining:
        batch = [{"name": s.name, "device": s.device} for s in remaining]
        fd, stderr_path = tempfile.mkstemp(prefix="doctor-smoke-", suffix=".err")
        try:
            with os.fdopen(fd, "w") as err_fh:
                proc = subprocess.Popen([python or sys.executable, "-m", module, json.dumps(batch)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err_fh,
                                        text=True, errors="replace", env=_child_env(), start_new_session=True)
            q: "queue.Queue[Optional[dict]]" = queue.Queue()
            threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True).start()
            done, pre = _watch(proc, q, remaining, results, prelude_s, stderr_path)
        finally:
            try:
                os.unlink(stderr_path)
            except OSError:
                pass
        if pre is not None and (prelude is None or pre.status != "passed"):
            prelude = pre
        if pre is None or pre.status != "passed":
            # Nothing runs without torch: every remaining step inherits the reason.
            results += [SmokeStep(s.name, s.device, s.layer, "failed", None, f"not run: {PRELUDE_STEP} "
                                  f"{pre.status if pre else 'did not finish'}") for s in remaining[done:]]
            return results, prelude
        remaining = remaining[done:]
    return results, prelude


def _watch(proc, q, specs: list[StepSpec], results: list[SmokeStep], prelude_s: float,
           stderr_path: str) -> tuple[int, Optional[SmokeStep]]:
    """Follow one child; (how many of specs now have a result, its prelude step or None)."""
    done, current = 0, None
    prelude: Optional[SmokeStep] = None
    started = step_t0 = time.monotonic()
    deadline = started + prelude_s
    try:
        while True:
            try:
                event = q.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                event = "timeout"
            if event == "timeout" or event is None:
                hung = event == "timeout"
                if hung:
                    _kill(proc)
                how = _ended(proc, stderr_path, killed=hung)
                if prelude is None:     # hung or died before it was ready
                    return done, SmokeStep(PRELUDE_STEP, None, "runtime", "hung" if hung else "crashed",
                                           round(time.monotonic() - started, 3),
                                           (f"no answer within {prelude_s:g} s; " if hung else "") + how)
                index = current if current is not None else done   # between steps: blame the next one
                if index >= len(specs):
                    return done, prelude
                spec = specs[index]
                limit = spec.limit_s if current is not None else prelude_s
                results.append(SmokeStep(spec.name, spec.device, spec.layer, "hung" if hung else "crashed",
                                         round(time.monotonic() - step_t0, 3),
                                         (f"no result within {limit:g} s; " if hung else "") + how))
                return index + 1, prelude
            kind = event.get("event")
            if kind == "ready":
                prelude = SmokeStep(PRELUDE_STEP, None, "runtime", "failed" if event.get("error") else "passed",
                                    event.get("seconds"), event.get("error"))
                if event.get("error"):
                    return done, prelude
                step_t0 = time.monotonic()
                deadline = step_t0 + prelude_s
            elif kind == "start":
                current = int(event["step"])
                step_t0 = time.monotonic()
                deadline = step_t0 + specs[current].limit_s
            elif kind == "end":
                spec = specs[int(event["step"])]
                results.append(SmokeStep(spec.name, spec.device, spec.layer, event.get("status") or "failed",
                                         event.get("seconds"), event.get("error"), event.get("detail")))
                done, current = int(event["step"]) + 1, None
                if done == len(specs):
                    return done, prelude
                step_t0 = time.monotonic()
                deadline = step_t0 + prelude_s     # time to reach the next "start"
    finally:
        if proc.poll() is None:
            try:
                if sys.exc_info()[0] is not None:
                    raise subprocess.TimeoutExpired(proc.args, 0)    # Ctrl-C or a bug: no waiting
                proc.wait(timeout=10)       # the last step is done: let it exit (CUDA teardown)
            except subprocess.TimeoutExpired:
                _kill(proc)


def run_smoke(facts: Facts, only: Optional[list[str]] = None, module: str = CHILD_MODULE) -> SmokeInfo:
    """Plan from the facts, run, and return Facts.smoke."""
    info = SmokeInfo()
    if not facts.torch.cuda_available or not (facts.torch.device_count or facts.torch.devices):
        info.cpu_only = True
        info.error = facts.torch.error or ("torch sees no CUDA device" if facts.torch.importable
                                           else "torch is not importable")
        return info
    specs, skipped = plan(facts, only)
    t0 = time.monotonic()
    results, prelude = run_steps(specs, module=module)
    info.ran = True
    info.steps = ([prelude] if prelude else []) + results + skipped
    info.seconds = round(time.monotonic() - t0, 3)
    return info
