"""`doctor repro` as a function: run a faithful copy of the training in a child, watch it, and on a
stall sample it with the attach machinery, classify, and stop its whole tree.

    result = run_repro(ReproOptions(config=cfg, inject=["dataloader-hang@11"]))
    result.stalled, result.stall_step, result.cause, result.findings, result.report()

The sampler is a parameter (default: doctor.attach.api.diagnose_pid) so tests and the bundle can
pass their own. Ctrl-C (KeyboardInterrupt) stops the child tree and is re-raised.
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from doctor import exitcodes
from doctor.config.model import TrainingConfig
from doctor.exitcodes import DoctorError
from doctor.repro import chart, host
from doctor.repro.diagnose import diagnose
from doctor.repro.faults import parse_injections
from doctor.repro.lengths import load_lengths
from doctor.repro.result import CrashInfo, FaultRecord, ReproResult, StepRecord
from doctor.repro.spec import ChildSpec, build_spec, reference_config
from doctor.repro.supervisor import EventHook, Sampler, Supervisor
from doctor.repro.watchdog import StallPolicy
from doctor.repro.wsl import WslRecorder



@dataclass
class ReproOptions:
    config: Optional[TrainingConfig] = None      # None: the reference config (unslothai/unsloth#1010)
    model_size: str = "tiny"                     # tiny | 1b | 8b
    steps: int = 20
    inject: list = field(default_factory=list)   # "dataloader-hang@11", ... (or Injection objects)
    stall_floor_s: float = 60.0
    stall_factor: float = 10.0
    first_step_grace_s: float = 300.0
    startup_grace_s: float = 600.0
    device: str = "auto"                         # auto | cpu | cuda
    out_dir: Optional[Path] = None               # default reports/repro-<timestamp>/
    backend: str = "auto"                        # auto | unsloth | transformers | torch
    seed: Optional[int] = None
    length_profile: Optional[str] = None         # full | uniform | chat | a file of token counts
    squeeze_limit: Optional[int] = None          # host-memory fault: bytes at most
    model_cache: Optional[Path] = None           # keep the saved random checkpoint here between runs
    python: Optional[str] = None                 # interpreter for the child (default: this one)
    max_wall_s: Optional[float] = None           # stop (and diagnose) a run still going after this

    def policy(self) -> StallPolicy:
        return StallPolicy(floor_s=self.stall_floor_s, factor=self.stall_factor,
                           first_step_grace_s=self.first_step_grace_s, startup_grace_s=self.startup_grace_s)


def default_out_dir() -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"repro-{stamp}"


def default_sampler(pid: int):
    from doctor.attach.api import diagnose_pid

    return diagnose_pid(pid, samples=3, interval_s=0.25, include_children=True, timeout_s=20.0, gpu=True)


def prepare(opts: ReproOptions) -> tuple[ChildSpec, Path]:
    """Validate the options and write spec.json; raises DoctorError for bad input."""
    if opts.steps < 1:
        raise DoctorError("--steps must be at least 1", exitcodes.USAGE)
    if opts.stall_floor_s <= 0 or opts.stall_factor <= 0 or (opts.max_wall_s is not None and opts.max_wall_s <= 0):
        raise DoctorError("--stall-floor, --stall-factor and --timeout must be positive", exitcodes.USAGE)
    if opts.device not in ("auto", "cpu", "cuda"):
        raise DoctorError(f"--device {opts.device!r}: expected auto, cpu or cuda", exitcodes.USAGE)
    if opts.backend not in ("auto", "unsloth", "transformers", "torch"):
        raise DoctorError(f"--backend {opts.backend!r}: expected auto, unsloth, transformers or torch",
                          exitcodes.USAGE)
    cfg = opts.config if opts.config is not None else reference_config()
    injections = parse_injections(opts.inject)
    out = Path(opts.out_dir) if opts.out_dir else default_out_dir()
    seq = cfg.effective_seq_len or 2048
    lengths = load_lengths(opts.length_profile, seq) if opts.length_profile else []
    spec = build_spec(cfg, events_path=(out / "events.jsonl").resolve(), work_dir=out.resolve(),
                      model_size=opts.model_size, steps=opts.steps, injections=injections,
                      backend=opts.backend, device=opts.device, seed=opts.seed, lengths=lengths,
                      squeeze_limit=opts.squeeze_limit, model_cache=opts.model_cache)
    try:                                 # only now: bad input leaves no empty folder behind
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DoctorError(f"cannot create the output folder {out}: {exc}", exitcodes.USAGE)
    events = Path(spec.events_path)
    if events.exists():
        events.unlink()                  # a reused --out must not replay an old run
    spec.save(out / "spec.json")
    return spec, out


def collect(result: ReproResult, events: list[dict], spec: ChildSpec) -> None:
    """Fold the child's events into the result (steps, losses, faults, notes, crash)."""
    losses = {e["step"]: e.get("loss") for e in events if e["kind"] == "loss"}
    faults = {i.kind: FaultRecord(kind=i.kind, step=i.step) for i in spec.injections}
    for e in events:
        kind = e["kind"]
        if kind == "step":
            result.steps.append(StepRecord(
                step=e["step"], t_end=e["t"], duration_s=e.get("duration_s"), loss=losses.get(e["step"]),
                mem_allocated=e.get("mem_allocated"), mem_reserved=e.get("mem_reserved"),
                mem_peak=e.get("mem_peak"), host_rss=e.get("host_rss"), tokens=e.get("tokens"),
                tokens_nonpad=e.get("tokens_nonpad"), max_len=e.get("max_len")))
        elif kind == "note":
            result.notes.append(e.get("text", ""))
        elif kind == "info":
            result.info = {k: v for k, v in e.items() if k not in ("kind", "t", "pid")}
        elif kind == "inject" and e.get("fault") in faults:
            f = faults[e["fault"]]
            f.injected, f.emulated, f.detail = True, bool(e.get("emulated")), e.get("detail", "")
            f.data = {k: v for k, v in e.items() if k not in ("kind", "t", "pid", "fault", "step", "detail",
                                                            "emulated")}
        elif kind == "inject-skipped" and e.get("fault") in faults:
            faults[e["fault"]].skipped = e.get("reason")
        elif kind == "crash":
            result.crashed = True
            result.crash = CrashInfo(type=e.get("type", ""), message=e.get("message", ""),
                                     traceback=e.get("traceback", ""), step=e.get("step"),
                                     phase=e.get("phase", ""),
                                     memory=e.get("memory") or {})
        elif kind == "done":
            result.completed = True
    result.faults = list(faults.values())


def run_repro(opts: ReproOptions, on_event: Optional[EventHook] = None,
              sampler: Optional[Sampler] = default_sampler) -> ReproResult:
    """Run, watch, diagnose; always stops the child tree, also on Ctrl-C (which is re-raised)."""
    t0 = time.monotonic()
    spec, out = prepare(opts)
    result = ReproResult(out_dir=str(out), model_size=opts.model_size, steps_planned=opts.steps,
                         config=trimmed_spec(spec), policy=asdict(opts.policy()), events_path=spec.events_path,
                         log_path=str(out / "child.log"))
    wsl = WslRecorder()
    wsl.start()
    sup = Supervisor(spec, out, opts.policy(), opts.max_wall_s, opts.python, sampler, on_event)
    try:
        sup.start()
        sup.watch(result)
    finally:
        result.leftover_pids = sup.stop()
        result.pids_seen = sorted(sup.known)
    collect(result, sup.events, spec)
    rc = sup.proc.returncode if sup.proc else None
    if not result.stalled and not result.completed and not result.crashed:
        result.crashed = True                       # died without a word: killed, segfault, os._exit
        phases = [e.get("phase", "") for e in sup.events if e["kind"] == "phase"]
        training = phases[-1:] == ["training"]
        result.crash = CrashInfo(step=((result.steps[-1].step if result.steps else 0) + 1) if training else None,
                                 phase=phases[-1] if phases else "starting", message=_last_line(sup.log_tail()))
    if result.crash is not None:
        result.crash.exit_code = rc
        if rc is not None and rc < 0:
            result.crash.signal = -rc
        if result.host is None:
            result.host = {"memory": host.host_memory()}
    if result.stalled:
        result.crashed, result.crash = False, None   # our own stop is not a crash
    result.log_tail = sup.log_tail()
    result.wsl = wsl.finish()
    result.cause, result.findings = diagnose(result)
    result.duration_s = round(time.monotonic() - t0, 3)
    write_outputs(result, out)
    return result


def trimmed_spec(spec: ChildSpec) -> dict:
    data = spec.to_dict()
    for key in ("events_path", "work_dir", "lengths", "notes", "model_cache"):
        data.pop(key, None)
    data["lengths_profile"] = len(spec.lengths) or "full"
    return data


def write_outputs(result: ReproResult, out: Path) -> None:
    steps_path = out / "steps.jsonl"
    with open(steps_path, "w") as fh:
        for s in result.to_dict()["steps"]:
            fh.write(json.dumps(s) + "\n")
    result.step_log_path = str(steps_path)
    png = chart.write_png(result, out / "step_times.png")
    result.chart_path = str(png) if png else None
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""
