"""Snapshot -> AttachReport: per thread (moved or stuck, busy or idle, matched signature), per process
(its own cause), then the whole tree (the primary cause, refined by workers, ranks and the GPU).

Pure functions of the recorded data; the texts and patterns live in checks/data/stack_signatures.json.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

from doctor.attach import signatures as sig
from doctor.attach.gpu import SLOWDOWN_REASONS
from doctor.attach.model import AttachReport, ProcessView, ThreadView
from doctor.attach.snapshot import GpuSample, ProcessSample, Snapshot
from doctor.findings import ConfigChange, Finding, Severity

BUSY_CPU_PERCENT = 30.0       # a thread above this share of one core over the window is working
# causes whose real culprit is another process of the tree: say which one, and where
WAITS_ON_CHILDREN = ("dataloader-worker-hang", "worker-queue-wait", "datasets-map", "subprocess-wait")
IDLE = "worker-idle"
THREAD_WAITS = ("lock-wait", "thread-join")   # the culprit is another thread of the same process


# ---------------------------------------------------------------- threads

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


def _main(threads: list[ThreadAnalysis]) -> Optional[ThreadAnalysis]:
    return next((t for t in threads if t.view.main), threads[0] if threads else None)


def wants_native(ps: ProcessSample, arch: str = "") -> bool:
    """A --native pass pays off when the main thread sits still in a C call we cannot name yet."""
    table = sig.table()
    main = _main(analyse_threads(ps, table, arch, only_main=True))
    if main is None or not main.view.stuck:
        return False
    m = main.match
    return m is None or m.cause.confirm_native or m.cause.tier >= 3


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
    if m is not None and not (v.busy and m.cause.tier >= 3):
        cause = m.cause.id
    elif v.busy:
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


# ---------------------------------------------------------------- GPU

def gpu_state(gpu: GpuSample, pids: set[int], thresholds: dict, only_mine: bool = False) -> tuple[str, str, list]:
    """(busy | spinning | idle | partial | unknown, one-line summary, the devices looked at).
    only_mine: judge only GPUs that list one of pids (else fall back to the busiest GPU)."""
    if not gpu.available or not gpu.devices:
        return "unknown", "; ".join(gpu.unavailable[:2]) or "GPU not readable", []
    mine = [d for d in gpu.devices if any(p.get("pid") in pids for p in d.processes)]
    if only_mine and not mine:
        return "unknown", "the process is not in NVML's process list", []
    devs = mine or gpu.devices
    with_util = [d for d in devs if d.util]
    if not with_util:
        return "unknown", "GPU utilisation not readable", devs
    d = max(with_util, key=lambda x: sum(x.util) / len(x.util))
    util = sum(d.util) / len(d.util)
    ratio = None
    if d.power_mw and d.power_limit_mw:
        ratio = (sum(d.power_mw) / len(d.power_mw)) / d.power_limit_mw
    summary = f"GPU {d.index} ({d.name}): util {util:.0f}%"
    if ratio is not None:
        summary += f", power {sum(d.power_mw) / len(d.power_mw) / 1000:.0f}/{d.power_limit_mw / 1000:.0f} W"
    if d.sm_clock_mhz and d.sm_clock_max_mhz:
        summary += f", SM clock {d.sm_clock_mhz[-1]}/{d.sm_clock_max_mhz} MHz"
    if not mine:
        summary += " (target not in NVML's process list: busiest GPU shown)"
    if util <= thresholds["idle_util"]:
        return "idle", summary, devs
    if util >= thresholds["spin_util"] and ratio is not None and ratio < thresholds["spin_power_ratio"]:
        return "spinning", summary, devs
    if util >= thresholds["busy_util"]:
        return "busy", summary, devs
    return "partial", summary, devs


_GPU_WORDS = {"busy": "GPU busy", "spinning": "GPU spinning", "idle": "GPU idle", "partial": "GPU partly busy",
              "unknown": "GPU not visible"}


# ---------------------------------------------------------------- the tree

def _descendants(pid: int, procs: list[ProcessAnalysis]) -> list[ProcessAnalysis]:
    out, frontier = [], {pid}
    while frontier:
        kids = [p for p in procs if p.sample.ppid in frontier and p not in out]
        out += kids
        frontier = {p.sample.pid for p in kids}
    return out


def _describe_child(p: ProcessAnalysis) -> str:
    v = p.view
    if v.skipped:
        return f"{v.role} pid {v.pid} ({p.sample.name}) skipped: {v.skipped}"
    state = "busy" if p.main and p.main.view.busy else "stuck"
    what = f" ({p.cause})" if p.cause and p.cause not in ("unknown-wait", "busy-python", "running-normally") else ""
    frames = p.main.view.key_frames[0] if p.main and p.main.view.key_frames else "?"
    cpu = f", {v.cpu_percent:.0f}% CPU" if v.cpu_percent is not None else ""
    return f"{v.role} pid {v.pid} is {state} in {frames}{what}{cpu}"


def _refine_with_children(primary: ProcessAnalysis, procs: list[ProcessAnalysis], table: sig.Table,
                          children_sampled: bool = True) -> tuple[str, list[str], Optional[ProcessAnalysis]]:
    """(cause, detail lines, the process that refined the cause) for a process waiting on others."""
    cause = primary.cause or "no-samples"
    details: list[str] = []
    culprit = None
    # another thread of the same process (the pin-memory thread) can be the real blocker
    for t in primary.threads:
        if t is primary.main or not t.view.stuck or t.match is None:
            continue
        if cause in t.match.cause.refines:
            details.append(f"thread {t.view.name or t.view.tid} is stuck in {t.view.matched}")
            cause, culprit = t.match.cause.id, primary
    if cause not in WAITS_ON_CHILDREN and primary.cause not in WAITS_ON_CHILDREN:
        return cause, details, culprit
    kids = [k for k in _descendants(primary.sample.pid, procs) if k.cause != IDLE]
    if not kids:
        details.append("no worker process is alive or busy: the worker may have died" if children_sampled
                       else "child processes were not sampled (--no-children)")
    for k in kids:
        details.append(_describe_child(k))
        c = table.cause(k.cause or "")
        stuck = k.main is not None and k.main.view.stuck
        if c is not None and stuck and (cause in c.refines or primary.cause in c.refines):
            cause, culprit = c.id, k
    return cause, details, culprit


def _ranks(root: ProcessAnalysis, procs: list[ProcessAnalysis]) -> list[ProcessAnalysis]:
    """The processes that do the training: the target itself, or, under a launcher (torchrun,
    accelerate, a shell wrapper), its ranks or its top-most sampled Python descendants."""
    if root.view.role not in ("launcher", "non-python"):
        return [root]
    kids = _descendants(root.sample.pid, procs)
    ranks = [k for k in kids if k.view.role.startswith("rank ")]
    if ranks:
        return ranks
    sampled = {k.sample.pid for k in kids if not k.view.skipped}
    top = [k for k in kids if k.sample.pid in sampled and k.sample.ppid not in sampled]
    return top or [root]


def _severity(row: dict) -> Severity:
    return Severity(row.get("severity", "warning"))


def _fmt(text: str, values: dict) -> str:
    class _Default(dict):
        def __missing__(self, key):
            return "{" + key + "}"
    return (text or "").format_map(_Default(values))


def _finding(cid: str, row: dict, values: dict, evidence: dict, confidence: float) -> Finding:
    f = Finding(id=f"attach.{cid}", severity=_severity(row), title=_fmt(row.get("title", cid), values),
                why=_fmt(row.get("why", ""), values), remediation=_fmt(row.get("remediation", ""), values),
                commands=[_fmt(c, values) for c in row.get("commands") or []], evidence=evidence,
                config_changes=[ConfigChange(c["setting"], c["value"], c["reason"]) for c in row.get("config_changes") or []],
                links=list(row.get("links") or []), failure_mode=row.get("failure_mode"),
                confidence=confidence, fix_cost=1 if row.get("config_changes") or row.get("commands") else 2,
                check="attach")
    return f


def _merged_row(table: sig.Table, cid: str, stuck: bool, gstate: str) -> dict:
    row = dict(table.row(cid))
    if stuck and row.get("stuck"):
        row.update(row["stuck"])
    over = (row.get("gpu") or {}).get(gstate)
    if over:
        over = dict(over)
        suffix = over.pop("why_suffix", None)
        row.update(over)
        if suffix:
            row["why"] = (row.get("why") or "") + " " + suffix
    return row


def classify(snap: Snapshot) -> AttachReport:
    table = sig.table()
    raw = sig.load_raw()
    procs = [analyse_process(ps, table, snap.arch) for ps in snap.processes]
    root = next((p for p in procs if p.sample.pid == snap.target_pid), procs[0] if procs else None)
    if root is None:
        return AttachReport(pid=snap.target_pid, cause="no-samples", errors=list(snap.errors), snapshot=snap)
    ranks = _ranks(root, procs)
    thresholds = raw["gpu_states"]
    per_rank = []
    for r in ranks:
        cause, details, culprit = _refine_with_children(r, procs, table, snap.include_children)
        if cause == "cuda-sync-wait" and (r.sample.world_size or len(ranks)) > 1:
            # all_reduce returns at once; the rank then waits in the next sync while the NCCL kernel
            # spins on its GPU (util ~100% at idle power, vram-and-hang.md §2.5)
            mine = {r.sample.pid} | {k.sample.pid for k in _descendants(r.sample.pid, procs)}
            if gpu_state(snap.gpu, mine, thresholds, only_mine=True)[0] == "spinning":
                cause = "nccl-collective"
                details = ["its GPU runs a kernel at idle power while the host waits: an NCCL collective "
                           "waiting for the other ranks"] + details
        per_rank.append((r, cause, details, culprit))
    primary, cause, details, culprit = _pick(per_rank, table)
    if len(ranks) > 1:
        details = _rank_details(per_rank, cause) + details
    if cause in THREAD_WAITS:
        details = _thread_details(primary) + details
    pids = {p.sample.pid for p in procs}
    gstate, gsummary, devs = gpu_state(snap.gpu, pids, thresholds)
    # a thread spinning in a CUDA sync burns CPU but waits; only progress or Python work is "busy"
    host_busy = bool(primary.main and (primary.main.view.moved or cause in ("busy-python", "running-normally")))
    situation = f"{_GPU_WORDS[gstate]}, host {'busy' if host_busy else 'waiting'}"
    stuck = bool(primary.main and primary.main.view.stuck)
    row = _merged_row(table, cause, stuck, gstate)
    where_match = (culprit.match if culprit is not None and culprit is not primary else None) or primary.match
    where = sig.format_frame(where_match.frame) if where_match and where_match.frame else \
        (primary.main.view.key_frames[0] if primary.main and primary.main.view.key_frames else "?")
    detail = (": " + details[0]) if details else ""
    if cause == "running-normally" and primary.main:
        detail = _phases(primary.main, table) or where
    values = {"pid": primary.sample.pid, "where": where, "detail": detail}
    evidence = _evidence(primary, details, gsummary, situation, snap)
    findings = []
    c = table.cause(cause)
    if c is None or c.report:
        findings.append(_finding(cause, row, values, evidence, _confidence(primary, cause, snap)))
    findings += _side_findings(procs, snap, table, gstate, devs, thresholds, raw)
    views = [p.view for p in procs]
    errors = list(snap.errors) + [f"pid {p.sample.pid}: {e}" for p in procs for e in p.sample.errors]
    return AttachReport(pid=snap.target_pid, cause=cause, findings=findings, processes=views, gpu=snap.gpu,
                        situation=situation, raw_dumps=snap.raw_dumps(), errors=errors,
                        duration_s=snap.duration_s, snapshot=snap)


def _phases(main: ThreadAnalysis, table: sig.Table) -> str:
    """'forward, backward, optimizer': the training phases seen in the samples, in order."""
    seen: list[str] = []
    for s in main.stacks:
        ph = table.phase(s.python_frames)
        if ph and ph not in seen:
            seen.append(ph)
    return ", ".join(seen)


def _thread_details(primary: ProcessAnalysis) -> list[str]:
    """For a lock or join wait: what every other thread of the process is doing (one of them holds it)."""
    others = [t for t in primary.threads if t is not primary.main]
    lines = []
    for t in others:
        v = t.view
        state = "busy" if v.busy else (v.cause or "waiting")
        lines.append(f"thread {v.name or v.tid} is {state} in {v.matched or (v.key_frames[0] if v.key_frames else '?')}")
    waiting_on_locks = [t for t in others if t.view.cause == "lock-wait" and t.view.stuck]
    if others and primary.cause == "lock-wait" and len(waiting_on_locks) == len(others):
        lines.insert(0, "a deadlock, every thread waits on a lock")
    return lines


def _pick(per_rank, table: sig.Table):
    """The rank that explains the tree: a collective wait first (then the others say who diverged),
    else the most severe cause."""
    nccl = [x for x in per_rank if x[1] == "nccl-collective"]
    if nccl:
        return nccl[0]

    def badness(x):
        row = table.row(x[1]) if x[1] else {}
        return (Severity(row.get("severity", "info")).rank, x[0].sample.pid)
    return min(per_rank, key=badness)


def _rank_details(per_rank, cause: str) -> list[str]:
    out = []
    if cause == "nccl-collective":
        waiting = [x for x in per_rank if x[1] == "nccl-collective"]
        others = [x for x in per_rank if x[1] != "nccl-collective"]
        if not others:
            return [f"all {len(per_rank)} ranks wait in the same collective (interconnect or NCCL problem)"]
        for r, c, _d, _cul in others:
            out.append(f"{r.view.role} (pid {r.sample.pid}) is not in the collective: {c}, {r.view.where}")
        out.append(f"{len(waiting)} of {len(per_rank)} ranks wait in the collective")
        return out
    return [f"{r.view.role} (pid {r.sample.pid}): {c}, {r.view.where}" for r, c, _d, _cul in per_rank]


def _evidence(primary: ProcessAnalysis, details: list[str], gsummary: str, situation: str, snap: Snapshot) -> dict:
    v, m = primary.view, primary.main
    ev = {"process": f"pid {v.pid} ({v.role}), state {v.state or '?'}, "
                     f"CPU {v.cpu_percent if v.cpu_percent is not None else '?'}%"}
    if m is not None:
        n = len(primary.sample.dumps)
        ev["main thread"] = " ← ".join(m.view.key_frames) or "?"
        ev["samples"] = f"{n} over {snap.window_s:.2f} s, stack {'changed' if m.view.moved else 'unchanged'}"
        if m.view.kernel_wait:
            ev["kernel wait"] = m.view.kernel_wait
        if m.view.native_frames:
            ev["native"] = " ← ".join(m.view.native_frames[:3])
    if details:
        ev["details"] = "; ".join(details)
    ev["gpu"] = gsummary
    ev["situation"] = situation
    return ev


def _confidence(primary: ProcessAnalysis, cause: str, snap: Snapshot) -> float:
    if cause in ("unknown-wait", "no-samples"):
        return 0.4
    n = len(primary.sample.dumps)
    conf = 0.9 if n >= 2 else 0.6
    if primary.sample.native_dump and primary.match is not None:
        conf = min(0.95, conf + 0.05)
    return conf


def _side_findings(procs: list[ProcessAnalysis], snap: Snapshot, table: sig.Table, gstate: str, devs: list,
                   thresholds: dict, raw: dict) -> list[Finding]:
    out: list[Finding] = []
    extra = {r["id"]: r for r in raw["side_findings"]}
    for p in procs:
        if p.sample.resumed:
            out.append(_finding("resumed-stopped-process", extra["resumed-stopped-process"], {"pid": p.sample.pid},
                                {"pid": p.sample.pid}, 0.9))
        if p.view.state == "D" and p.cause != "uninterruptible-io":
            row = table.process_states["D"]
            out.append(_finding(row["id"], row, {"pid": p.sample.pid, "detail": f": pid {p.sample.pid}"},
                                {"wchan": p.sample.wchan, "open files": ", ".join(p.sample.open_files[:5])}, 0.8))
    swapped = [p for p in procs if (p.sample.swap or 0) >= thresholds["swap_warn_bytes"]]
    if swapped:
        gib = sum(p.sample.swap or 0 for p in swapped) / 2**30
        out.append(_finding("swapping", extra["swapping"], {"detail": f"{gib:.1f} GiB"},
                            {f"pid {p.sample.pid} VmSwap": p.sample.swap for p in swapped}, 0.8))
    for d in devs:
        slow = [n for n in d.clock_event_names if n in SLOWDOWN_REASONS]
        if slow and gstate in ("busy", "partial"):
            out.append(_finding("gpu-throttled", extra["gpu-throttled"], {"detail": ", ".join(slow)},
                                {"gpu": d.index, "reasons": ", ".join(d.clock_event_names),
                                 "sm clock": f"{d.sm_clock_mhz[-1] if d.sm_clock_mhz else '?'}/{d.sm_clock_max_mhz} MHz"}, 0.8))
        if d.memory_used and d.memory_total and d.memory_used / d.memory_total >= thresholds["memory_full_ratio"]:
            out.append(_finding("gpu-memory-full", extra["gpu-memory-full"],
                                {"detail": f"{d.memory_used / 2**30:.1f}/{d.memory_total / 2**30:.1f} GiB"},
                                {"gpu": d.index, "used": d.memory_used, "total": d.memory_total}, 0.7))
    if snap.gpu.unavailable:
        row = dict(extra["gpu-telemetry"])
        if not snap.wsl:
            row["failure_mode"] = None
        out.append(_finding("gpu-telemetry", row, {"detail": "; ".join(snap.gpu.unavailable)},
                            {"unavailable": "; ".join(snap.gpu.unavailable)}, 0.9))
    skipped = [p for p in procs if p.view.skipped]
    if skipped:
        out.append(_finding("skipped-processes", extra["skipped-processes"],
                            {"detail": "; ".join(f"pid {p.view.pid} {p.sample.name}: {p.view.skipped}" for p in skipped)},
                            {}, 0.9))
    return out

