"""Per thread and per process: did the stack move between samples, is the thread working or waiting,
which signature its frames match, and what that makes the process's own cause. Pure functions of a
ProcessSample."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

from doctor.attach import signatures as sig
from doctor.attach.model import ProcessView, ThreadView
from doctor.attach.snapshot import ProcessSample

BUSY_CPU_PERCENT = 30.0       # a thread above this share of one core over the window is busy
WORKING_CPU_PERCENT = 10.0    # ... and above this one it is at least not waiting
IDLE = "worker-idle"          # a pool or DataLoader worker waiting for work: not a finding


@dataclass
class ThreadAnalysis:
    view: ThreadView
    stack: sig.ThreadStack
    stacks: list[sig.ThreadStack]        # one per sample (Python frames only)
    match: Optional[sig.Match]


def _tid(th: dict) -> str:
    return str(th.get("os_thread_id") or th.get("thread_id"))


def _key(frames: list[dict]) -> tuple:
    return tuple((f.get("name"), f.get("filename"), f.get("line")) for f in frames if not sig.is_native(f))


def _code_lookup(ps: ProcessSample):
    return lambda f: ps.source.get(f"{f.get('filename')}:{f.get('line')}")


def _full_key(frames: list[dict]) -> tuple:
    return tuple((f.get("name"), f.get("filename"), f.get("line"), f.get("module")) for f in frames)


def analyse_threads(ps: ProcessSample, table: sig.Table, arch: str, only_main: bool = False) -> list[ThreadAnalysis]:
    per_thread: dict[str, list[dict]] = {}
    order: list[str] = []
    for dump in ps.dumps:
        for th in dump:
            t = _tid(th)
            if t not in per_thread:
                order.append(t)
            per_thread.setdefault(t, []).append(th)
    native = {_tid(th): th for th in (ps.native_dump or [])}
    code = _code_lookup(ps)
    matches: dict[tuple, Optional[sig.Match]] = {}   # pools of idle threads share one stack: match it once
    out = []
    for t in order:
        samples = per_thread[t]
        last = samples[-1]
        if only_main and not (last.get("thread_name") == "MainThread" or str(ps.pid) == t):
            continue
        kinds = [table.kernel_kind(k.get(t), arch) for k in ps.kernel if k.get(t) is not None]
        kind = Counter(kinds).most_common(1)[0][0] if kinds else None
        moved = len({_key(s.get("frames") or []) for s in samples}) > 1
        cpu = None
        if ps.cpu_window_s and t in ps.thread_cpu_s:
            cpu = round(100.0 * ps.thread_cpu_s[t] / ps.cpu_window_s, 1)
        active = any(s.get("active") for s in samples)
        busy = moved or (cpu >= BUSY_CPU_PERCENT if cpu is not None else all(s.get("active") for s in samples))
        frames = (native.get(t) or last).get("frames") or []
        stack = sig.ThreadStack(frames=frames, code=code, kernel=kind, wrappers=table.wrappers)
        stacks = [sig.ThreadStack(frames=s.get("frames") or [], code=code, kernel=kind, wrappers=table.wrappers)
                  for s in samples]
        mkey = (_full_key(frames), kind)
        if mkey not in matches:
            matches[mkey] = sig.best_match(table.causes, stack)
        match = matches[mkey]
        interesting = stack.interesting or stack.python_frames
        py = stack.python_frames
        view = ThreadView(
            tid=int(t) if t.isdigit() else None, name=last.get("thread_name") or "",
            main=(last.get("thread_name") == "MainThread" or str(ps.pid) == t),
            moved=moved, stuck=not moved and (len(samples) > 1 or not busy), busy=busy, active=active,
            owns_gil=any(s.get("owns_gil") for s in samples), cpu_percent=cpu, kernel_wait=kind,
            key_frames=[sig.format_frame(f) for f in interesting[:3]],
            waits_in=sig.format_frame(py[0]) if py and stack.is_wrapper(py[0]) else None,
            native_frames=[sig.format_frame(f) for f in stack.inner_native
                           if not str(f.get("name", "")).startswith("0x")][:4],
            cause=match.cause.id if match else None,
            matched=sig.format_frame(match.frame) if match and match.frame else None)
        out.append(ThreadAnalysis(view, stack, stacks, match))
    return out


def _working(v: ThreadView) -> bool:
    return v.busy or v.active or (v.cpu_percent or 0.0) >= WORKING_CPU_PERCENT


def _main(threads: list[ThreadAnalysis]) -> Optional[ThreadAnalysis]:
    return next((t for t in threads if t.view.main), threads[0] if threads else None)


def wants_native(ps: ProcessSample, arch: str = "") -> bool:
    """A --native pass pays off when the main thread sits still in a C call we cannot name yet."""
    table = sig.table()
    main = _main(analyse_threads(ps, table, arch, only_main=True))
    if main is None or not main.view.stuck:
        return False
    m = main.match
    if m is None or m.cause.tier >= 3:
        return not _working(main.view)       # a running thread is computing, not blocked in C
    return m.cause.confirm_native


# ---------------------------------------------------------------- one process

@dataclass
class ProcessAnalysis:
    sample: ProcessSample
    view: ProcessView
    threads: list[ThreadAnalysis]
    main: Optional[ThreadAnalysis]
    cause: Optional[str]
    match: Optional[sig.Match]


def _common_state(ps: ProcessSample) -> Optional[str]:
    states = [s for s in ps.states if s and s != "?"] or [s for s in (ps.state_before,) if s]
    return Counter(states).most_common(1)[0][0] if states else None


def _process_cause(ps: ProcessSample, main: Optional[ThreadAnalysis], table: sig.Table,
                   state: Optional[str]) -> tuple[Optional[str], Optional[sig.Match]]:
    if ps.state_before in ("T", "t"):    # stopped before we came; later T states may be py-spy's doing
        return "process-stopped", None
    if main is None:
        return ("no-samples" if not ps.skipped else None), None
    v, m = main.view, main.match
    if v.moved:
        per_sample = [sig.best_match(table.causes, s) for s in main.stacks]
        ids = {x.cause.id if x else None for x in per_sample}
        if len(ids) == 1 and per_sample[0] is not None and per_sample[0].cause.when == "any":
            return per_sample[0].cause.id, per_sample[0]
        if any(table.phase(s.python_frames) for s in main.stacks):
            return "running-normally", None
        return "busy-python", None
    # same stack in every sample but running: compute inside one C call (a GEMM, backward), or a
    # starved process on a loaded host; a thread that waits is never running and burns no CPU
    working = _working(v)
    if m is not None and not (working and m.cause.tier >= 3):
        cause = m.cause.id
    elif working:
        cause = "running-normally" if table.phase(main.stack.python_frames) else "busy-python"
        m = None
    else:
        cause, m = "unknown-wait", None
    if state == "D" and cause in ("unknown-wait", "busy-python", "sleeping", "lock-wait"):
        return "uninterruptible-io", None
    return cause, m


def _role(ps: ProcessSample, threads: list[ThreadAnalysis]) -> str:
    if ps.role in ("child", "main"):
        for t in threads:
            if any("torch/utils/data/_utils/worker.py" in (f.get("filename") or "") for f in t.stack.frames):
                return "dataloader-worker"
        if any("compile_worker" in a for a in ps.cmdline):
            return "compile-worker"
    return ps.role


def analyse_process(ps: ProcessSample, table: sig.Table, arch: str) -> ProcessAnalysis:
    threads = analyse_threads(ps, table, arch) if ps.dumps else []
    main = _main(threads)
    state = _common_state(ps)
    cause, match = (None, None) if (ps.skipped or (ps.exited and not ps.dumps)) else \
        _process_cause(ps, main, table, state)
    view = ProcessView(pid=ps.pid, ppid=ps.ppid, cmdline=" ".join(ps.cmdline)[:300], role=_role(ps, threads),
                       state=state, cpu_percent=ps.cpu_percent, rss=ps.rss, swap=ps.swap, wchan=ps.wchan,
                       open_files=list(ps.open_files), threads=[t.view for t in threads],
                       skipped=ps.skipped or ("exited before it could be sampled" if ps.exited and not ps.dumps else None),
                       cause=cause, resumed=ps.resumed)
    view.where = _where(main, cause)
    return ProcessAnalysis(ps, view, threads, main, cause, match)


def _where(main: Optional[ThreadAnalysis], cause: Optional[str]) -> Optional[str]:
    if main is None:
        return None
    v = main.view
    frames = " ← ".join(v.key_frames[:2]) or "?"
    verb = "moves through" if v.moved else ("runs in" if v.busy else "waits in")
    extra = f" ({v.kernel_wait})" if v.kernel_wait and not v.busy else ""
    return f"{verb} {frames}{extra}"
