"""`doctor watch` as a function: run the command, watch it, diagnose, write the outputs.

    result = run_watch(WatchOptions(argv=["python", "train.py"], first_step_grace_s=300))
    result.exit_code, result.stalls, result.crash, result.cause, result.findings

The sampler is a parameter (default: doctor.attach.api.diagnose_pid on the whole tree).
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from doctor import exitcodes
from doctor.exitcodes import DoctorError
from doctor.repro.watchdog import StallPolicy
from doctor.watch import chart
from doctor.watch.crash import classify_crash
from doctor.watch.ranks import rank_progress
from doctor.watch.diagnose import diagnose
from doctor.watch.result import WatchResult, WatchStep
from doctor.watch.runner import EventHook, Runner, Sampler


@dataclass
class WatchOptions:
    argv: list = field(default_factory=list)
    out_dir: Optional[Path] = None            # default reports/watch-<timestamp>/
    stall_floor_s: float = 60.0
    stall_factor: float = 10.0
    first_step_grace_s: float = 300.0
    startup_grace_s: float = 600.0
    kill_on_stall: bool = False
    max_stalls: int = 5
    estimate_oom: bool = True                 # on a CUDA OOM, estimate the script's VRAM (probes the GPU)

    def policy(self) -> StallPolicy:
        return StallPolicy(floor_s=self.stall_floor_s, factor=self.stall_factor,
                           first_step_grace_s=self.first_step_grace_s, startup_grace_s=self.startup_grace_s)


def default_sampler(pid: int):
    from doctor.attach.api import diagnose_pid

    return diagnose_pid(pid, samples=3, interval_s=0.25, include_children=True, timeout_s=20.0, gpu=True)


def prepare(opts: WatchOptions) -> Path:
    if not opts.argv:
        raise DoctorError("no command to watch: doctor watch [options] -- COMMAND [ARGS...]", exitcodes.USAGE)
    for name in ("stall_floor_s", "stall_factor", "first_step_grace_s", "startup_grace_s"):
        if getattr(opts, name) <= 0:
            raise DoctorError(f"--{name[:-2].replace('_', '-')} must be positive", exitcodes.USAGE)
    out = Path(opts.out_dir) if opts.out_dir else Path("reports") / f"watch-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    if out.is_symlink():
        raise DoctorError(f"--out {out} is a symlink; give a real folder", exitcodes.USAGE)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DoctorError(f"cannot create the output folder {out}: {exc}", exitcodes.USAGE)
    return out


def collect(result: WatchResult, events: list[dict]) -> None:
    """Fold the hook's events into the result: steps (with loss and lr), notes, progress mode."""
    # under torchrun every rank reports: the step log follows the first process that reported a step
    reporter = next((e.get("pid") for e in events if e.get("kind") == "step"), None)
    losses = {e.get("step"): e for e in events if e.get("kind") == "loss" and e.get("pid") == reporter}
    for e in events:
        kind = e.get("kind")
        if kind == "step" and e.get("pid") == reporter:
            lo = losses.get(e.get("step")) or {}
            result.steps.append(WatchStep(
                step=int(e["step"]), t_end=float(e["t"]), duration_s=e.get("duration_s"), loss=lo.get("loss"),
                lr=lo.get("lr"), mem_allocated=e.get("mem_allocated"), mem_reserved=e.get("mem_reserved"),
                mem_peak=e.get("mem_peak"), host_rss=e.get("host_rss"), data_wait_s=e.get("data_wait_s")))
        elif kind == "note":
            result.notes.append(str(e.get("text", "")))
        elif kind == "info":
            result.info = {k: v for k, v in e.items() if k not in ("kind", "t", "pid", "rank", "local_rank")}
        elif kind == "done":
            result.completed = True
    ranks = rank_progress(events)
    result.ranks = ranks if len(ranks) > 1 else []
    hooked = [e for e in events if e.get("kind") == "hooked"]
    trainer = any(e.get("target") == "transformers.Trainer" for e in hooked) or result.steps
    if result.steps or any(e.get("kind") == "phase" and e.get("phase") == "training" for e in events):
        result.progress = "trainer"
    elif trainer:
        result.progress, result.progress_note = "activity", "A Trainer was patched but never started training."
    elif hooked:
        result.progress, result.progress_note = "activity", "The command's Python never imported transformers' Trainer."
    else:
        result.progress, result.progress_note = "activity", (
            "The instrumentation never loaded: not a Python command, a Python started with -S/-I, "
            "or a PYTHONPATH reset by the command.")


def run_watch(opts: WatchOptions, on_event: Optional[EventHook] = None,
              sampler: Optional[Sampler] = default_sampler) -> WatchResult:
    t0 = time.monotonic()
    out = prepare(opts)
    result = WatchResult(command=[str(a) for a in opts.argv], out_dir=str(out), policy=asdict(opts.policy()))
    runner = Runner(list(map(str, opts.argv)), out, opts.policy(), opts.kill_on_stall, sampler, on_event,
                    max_stalls=opts.max_stalls)
    try:
        runner.start()
        runner.watch()
    finally:
        result.leftover_pids = runner.stop()
        result.pids_seen = sorted(runner.known)
    result.exit_code, result.signal = runner.exit_status()
    result.stalls, result.killed_on_stall = runner.stalls, runner.killed_on_stall
    result.stderr_tail = runner.relay.text() if runner.relay else ""
    collect(result, runner.events)
    if not result.killed_on_stall:
        rc = runner.proc.returncode if runner.proc else None
        crash = classify_crash(result.stderr_tail, rc)
        if crash is not None:
            result.crash = {"id": crash.id, "row": crash.row, "exc_type": crash.exc_type, "message": crash.message,
                            "traceback": crash.traceback, "where": crash.where}
    vram = oom_estimate(opts.argv) if (opts.estimate_oom and result.crash and result.crash["row"].get("oom")) else None
    result.cause, result.findings = diagnose(result, vram, prompt_line=last_line(result.stderr_tail))
    result.duration_s = round(time.monotonic() - t0, 3)
    write_outputs(result, out)
    return result


def last_line(text: str) -> str:
    lines = [ln for ln in (text or "").replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def oom_estimate(argv: list) -> Optional[str]:
    """For a CUDA OOM: the doctor's VRAM estimate of the script in the command, when it parses."""
    script = next((Path(a) for a in argv if str(a).endswith((".py", ".yaml", ".yml", ".json")) and Path(a).is_file()), None)
    if script is None:
        return None
    try:
        from doctor.config.loader import load_config
        from doctor.probes import gather_facts
        from doctor.units import gib
        from doctor.vram.estimator import estimate_for

        est = estimate_for(gather_facts(), load_config(script))
        if est is None:
            return None
        line = f"peak {gib(est.mid.total)} ({gib(est.low.total)}-{gib(est.high.total)})"
        if est.gpu_free is not None:
            line += f" vs {gib(est.gpu_free)} usable: {est.verdict}; `doctor vram {script}` has the breakdown"
        return line
    except Exception as exc:  # an estimate is a bonus: never lose the crash report over it
        return f"not available ({type(exc).__name__}: {str(exc)[:120]})"


def write_outputs(result: WatchResult, out: Path) -> None:
    with open(out / "steps.jsonl", "w") as fh:
        for s in result.to_dict()["steps"]:
            fh.write(json.dumps(s) + "\n")
    png = chart.write_png(result, out / "step_times.png")
    result.chart_path = str(png) if png else None
    for i, s in enumerate(result.stalls, 1):
        if s.diagnosis is not None:
            (out / f"stall-{i}.attach.json").write_text(json.dumps(s.diagnosis, indent=1, default=str))
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
