"""WatchResult -> (cause, findings). Pure: no I/O (the OOM's VRAM estimate is passed in).

A stall is explained with doctor repro's machinery (doctor.repro.diagnose.stall_finding, fed the
attach diagnosis and host state of the stalled tree), its ids moved into the watch.* namespace; the
waits only a real user script meets (a batch built in the main process, a rendezvous, a prompt) get
their own ids. A crash comes from crash.py's rows.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from doctor.findings import Finding, Severity
from doctor.repro import diagnose as repro_diag
from doctor.repro.result import ReproResult
from doctor.watch import ranks as rank_view
from doctor.watch.result import StallRecord, WatchResult

# attach causes that name the stall better than repro's generic "stall.other"
STALL_IDS = {"dataloader-fetch": "watch.stall.data-pipeline", "rendezvous-wait": "watch.stall.rendezvous",
             "terminal-input": "watch.stall.terminal-input"}
STALL_CAUSES = {"dataloader-fetch": "data-pipeline", "rendezvous-wait": "rendezvous",
                "terminal-input": "terminal-input"}
FINDING_IDS = tuple(sorted(
    {i.replace("repro.", "watch.", 1) for i in repro_diag.FINDING_IDS if i.startswith(("repro.stall.", "repro.slow"))}
    | set(STALL_IDS.values())
    | {"watch.crash.cuda-oom", "watch.crash.cuda-illegal-access", "watch.crash.cuda-device-assert",
       "watch.crash.nccl-timeout", "watch.crash.rendezvous-timeout", "watch.crash.killed", "watch.crash.segfault",
       "watch.crash.exception", "watch.crash.exit", "watch.crash.interrupted", "watch.progress-unavailable",
       "watch.leftover-processes"
}))


def _fmt(text: str, values: dict) -> str:
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError):
        return text


def _first_rank_pid(s: StallRecord) -> Optional[int]:
    row = next((x for x in s.ranks if x.get("rank") == s.first_stopped_rank), None)
    return row.get("pid") if row else None


def rank_focus(s: StallRecord) -> Optional[dict]:
    """The tree's diagnosis seen from the rank that stopped first: its process is the root and its own
    cause is the cause (the other ranks only wait for it in a collective). Unchanged without ranks."""
    diag, pid = s.diagnosis, _first_rank_pid(s)
    if not diag or pid is None:
        return diag
    proc = next((p for p in diag.get("processes") or [] if p.get("pid") == pid), None)
    if proc is None:
        return diag
    return dict(diag, pid=pid, cause=proc.get("cause") or diag.get("cause"))


def _shim(r: WatchResult, s: StallRecord) -> ReproResult:
    """The parts of a ReproResult that repro's stall and step findings read."""
    steps = [x for x in r.steps if x.t_end <= s.info.detected_at]
    return ReproResult(out_dir=r.out_dir, model_size="", steps_planned=0, policy=dict(r.policy), steps=steps,
                       stalled=True, stall=s.info, diagnosis=rank_focus(s), diagnosis_error=s.diagnosis_error,
                       host=s.host)


def stall_finding(r: WatchResult, s: StallRecord, prompt_line: str = "") -> tuple[str, Finding]:
    cause, f = repro_diag.stall_finding(_shim(r, s))
    acause = (rank_focus(s) or {}).get("cause") or ""
    new_id = STALL_IDS.get(acause) if f.id in ("repro.stall.other",) else None
    f = dataclasses.replace(f, id=new_id or f.id.replace("repro.", "watch.", 1), check="watch",
                            evidence=dict(f.evidence))
    if r.progress != "trainer":
        f.evidence["progress"] = "no step reports: output and CPU activity were the only progress signal"
        if s.info.phase != "training":
            f.title = f.title.replace("at the 'starting' phase", "with no output and no CPU use")
    if s.first_stopped_rank is not None:
        f.title += f" (rank {s.first_stopped_rank} stopped first)"
        f.evidence["first_stopped_rank"] = s.first_stopped_rank
        f.evidence["ranks"] = rank_view.describe(s.ranks, next(x for x in s.ranks if x["rank"] == s.first_stopped_rank))
        lineup = (s.diagnosis or {}).get("ranks") or {}
        if lineup.get("rows"):
            f.evidence["rank_lineup"] = "; ".join(
                f"rank {x.get('rank')}: " + (f"in {x['collective']} at {x.get('site') or '?'}" if x.get("collective")
                                              else (x.get("where") or x.get("cause") or "?"))
                for x in lineup["rows"])[:600]
    if acause == "terminal-input" and prompt_line:
        f.evidence["last_output_line"] = prompt_line
    if s.recovered:
        f.severity = Severity.WARNING
        f.title += " (it recovered and went on)"
    return STALL_CAUSES.get(acause, cause), f


def crash_finding(r: WatchResult, vram_line: Optional[str] = None) -> Finding:
    c = r.crash or {}
    row = c.get("row") or {}
    values = {"exception": (f"{c.get('exc_type')}: {c.get('message')}" if c.get("exc_type")
                            else c.get("message") or "no exception text"),
              "where": c.get("where") or "?", "signal": r.signal, "code": r.exit_code,
              "last": c.get("message") or ""}
    last_step = r.steps[-1].step if r.steps else 0
    evidence = {"exit_code": r.exit_code, "signal": r.signal, "exception": values["exception"][:400],
                "where": values["where"], "last_finished_step": last_step or None}
    if last_step and r.progress == "trainer":
        evidence["crashed_in_step"] = last_step + 1
    if r.steps and r.steps[-1].mem_peak:
        evidence["last_step_peak_vram"] = r.steps[-1].mem_peak
    why = _fmt(row.get("why", ""), values)
    if vram_line:
        evidence["vram_estimate"] = vram_line
        why += f" The doctor's estimate for this script: {vram_line}."
    title = _fmt(row.get("title", "crash"), values)
    if last_step and r.progress == "trainer":
        title += f" (step {last_step + 1})"
    return Finding(id=f"watch.crash.{c.get('id', 'exit')}", severity=Severity(row.get("severity", "error")),
                   title=title, why=why, remediation=_fmt(row.get("remediation", ""), values),
                   commands=list(row.get("commands") or []), links=list(row.get("links") or []),
                   failure_mode=row.get("failure_mode"), confidence=0.9 if c.get("exc_type") else 0.6,
                   evidence={k: v for k, v in evidence.items() if v is not None}, check="watch")


def progress_finding(r: WatchResult) -> Optional[Finding]:
    if r.progress == "trainer":
        return None
    return Finding(
        id="watch.progress-unavailable", severity=Severity.INFO, confidence=1.0, check="watch",
        title="Step progress was not available: the stall detector watched output and CPU time only",
        why=(r.progress_note or "No transformers Trainer reported a step.")
            + " Without step reports a stall is 'no output and no CPU use for the start-up grace', so a "
              "process that spins (a busy loop, NCCL polling) is not seen as stalled.",
        remediation="Use a transformers/TRL/Unsloth Trainer, or add `callbacks=[DoctorCallback()]` "
                    "(from doctor.watch import DoctorCallback) to your own.",
        evidence={"notes": "; ".join(r.notes)} if r.notes else {"instrumentation": "no event from the command"})


def diagnose(r: WatchResult, vram_line: Optional[str] = None, prompt_line: str = "") -> tuple[str, list[Finding]]:
    findings: list[Finding] = []
    cause = "none"
    for s in r.stalls:
        c, f = stall_finding(r, s, prompt_line)
        findings.append(f)
        cause = c if cause == "none" else cause
    if r.crash is not None and not r.killed_on_stall:
        findings.append(crash_finding(r, vram_line))
        cause = f"crash:{r.crash.get('id')}" if cause == "none" else cause
    if r.steps:
        shim = ReproResult(out_dir=r.out_dir, model_size="", steps_planned=0, policy=dict(r.policy), steps=r.steps)
        for f in repro_diag.slow_step_findings(shim, set()):
            findings.append(dataclasses.replace(f, id=f.id.replace("repro.", "watch.", 1), check="watch"))
    p = progress_finding(r)
    if p is not None:
        findings.append(p)
    if r.leftover_pids:
        findings.append(Finding(
            id="watch.leftover-processes", severity=Severity.WARNING, confidence=1.0, check="watch",
            title=f"{len(r.leftover_pids)} process(es) of the command's tree survived the stop",
            why="They ignored SIGTERM and SIGKILL (uninterruptible sleep, state D, usually a driver call).",
            remediation="Check them with `ps -o pid,stat,wchan -p PID`.", evidence={"pids": r.leftover_pids}))
    return cause, findings
