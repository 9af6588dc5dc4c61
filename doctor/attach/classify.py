"""Snapshot -> AttachReport: each process's own cause (threads.py), then the tree: the processes that
train (the target, or the ranks under a launcher), refined by the thread or worker process that
blocks them, by the other ranks, and by the GPU state.

Pure functions of the recorded data; the texts and patterns live in checks/data/stack_signatures.json.
"""
from __future__ import annotations

from typing import Optional

from doctor.attach import signatures as sig
from doctor.attach.attach_findings import (make_finding, merged_row, primary_confidence, primary_evidence,
                                           side_findings)
from doctor.attach.gpu import GPU_WORDS, gpu_state, rank_device
from doctor.attach.model import AttachReport
from doctor.attach.snapshot import Snapshot
from doctor.attach.threads import IDLE, ProcessAnalysis, ThreadAnalysis, analyse_process
from doctor.findings import Severity

# causes whose real culprit is another process of the tree: say which one, and where
WAITS_ON_CHILDREN = ("dataloader-worker-hang", "worker-queue-wait", "datasets-map", "subprocess-wait")
THREAD_WAITS = ("lock-wait", "thread-join")   # the culprit is another thread of the same process


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
            by_rank = rank_device(snap.gpu, r.sample.local_rank, r.sample.cuda_visible_devices)
            if gpu_state(snap.gpu, mine, thresholds, only_mine=True, fallback=by_rank)[0] == "spinning":
                cause = "nccl-collective"
                details = ["its GPU runs a kernel at idle power while the host waits: an NCCL collective "
                           "waiting for the other ranks"] + details
        elif cause in ("running-normally", "busy-python") and r.main is not None and r.main.view.stuck:
            # one Python line in every sample at 100% CPU while this process's GPU runs a kernel: the
            # host spin-waits in an implicit sync on that line (int(t), .item(), .cpu()), seen on the
            # H100 with a queued long kernel (benchmarks/repro.md, cuda-stall)
            mine = {r.sample.pid} | {k.sample.pid for k in _descendants(r.sample.pid, procs)}
            by_rank = rank_device(snap.gpu, r.sample.local_rank or 0, r.sample.cuda_visible_devices)
            if gpu_state(snap.gpu, mine, thresholds, only_mine=True, fallback=by_rank)[0] in ("busy", "spinning"):
                cause = "cuda-sync-wait"
                details = ["its main thread stays on one line in every sample while its GPU runs a kernel: "
                           "the host is spin-waiting for the GPU (an implicit sync on that line)"] + details
        per_rank.append((r, cause, details, culprit))
    primary, cause, details, culprit = _pick(per_rank, table)
    if len(ranks) > 1:
        details = _rank_details(per_rank, cause) + details
    if cause in THREAD_WAITS:
        details = _thread_details(primary) + details
    if cause in WAIT_DETAILS:
        details = WAIT_DETAILS[cause](primary, table) + details
    pids = {p.sample.pid for p in procs}
    gstate, gsummary, devs = gpu_state(snap.gpu, pids, thresholds)
    # a thread spinning in a CUDA sync burns CPU but waits; only progress or Python work is "busy"
    host_busy = bool(primary.main and (primary.main.view.moved or cause in ("busy-python", "running-normally")))
    gpu_words = GPU_WORDS[gstate] if snap.gpu_requested else "GPU not read"
    situation = f"{gpu_words}, host {'busy' if host_busy else 'waiting'}"
    stuck = bool(primary.main and primary.main.view.stuck)
    row = merged_row(table, cause, stuck, gstate)
    where_match = (culprit.match if culprit is not None and culprit is not primary else None) or primary.match
    where = sig.format_frame(where_match.frame) if where_match and where_match.frame else \
        (primary.main.view.key_frames[0] if primary.main and primary.main.view.key_frames else "?")
    detail = (": " + details[0]) if details else ""
    if cause == "running-normally" and primary.main:
        detail = _phases(primary.main, table) or where
    values = {"pid": primary.sample.pid, "where": where, "detail": detail}
    evidence = primary_evidence(primary, details, gsummary, situation, snap)
    findings = []
    c = table.cause(cause)
    if c is None or c.report:
        findings.append(make_finding(cause, row, values, evidence, primary_confidence(primary, cause)))
    findings += side_findings(procs, snap, table, gstate, devs, thresholds, raw)
    views = [p.view for p in procs]
    errors = list(snap.errors) + [f"pid {p.sample.pid}: {e}" for p in procs for e in p.sample.errors]
    return AttachReport(pid=snap.target_pid, cause=cause, findings=findings, processes=views, gpu=snap.gpu,
                        situation=situation, raw_dumps=snap.raw_dumps(), errors=errors,
                        duration_s=snap.duration_s, snapshot=snap)


def _rendezvous_details(primary: ProcessAnalysis, table: sig.Table) -> list[str]:
    """Who is expected where: the world size and the rendezvous address from the process env."""
    s = primary.sample
    env = getattr(s, "dist_env", None) or {}     # MASTER_ADDR/PORT from /proc/<pid>/environ (attach/ranks.py)
    addr = f"{env.get('MASTER_ADDR') or '?'}:{env.get('MASTER_PORT') or '?'}"
    if s.world_size:
        missing = f"{s.world_size - 1} other rank(s)" if s.world_size > 1 else "no one (WORLD_SIZE=1?)"
        line = f"rank {s.rank if s.rank is not None else '?'} of WORLD_SIZE={s.world_size} waits at {addr} for {missing}"
    else:
        line = f"waits at {addr}; WORLD_SIZE is not in its environment (passed to init_process_group in code?)"
    return [line]


def _input_details(primary: ProcessAnalysis, table: sig.Table) -> list[str]:
    """Which prompt: the blocked line's code and file names against the known prompts."""
    m = primary.main.match if primary.main is not None else None
    frames = primary.main.stack.python_frames if primary.main is not None else []
    code = primary.main.stack.code if primary.main is not None else (lambda f: None)
    text = " ".join([(f.get("filename") or "") for f in frames] + [code(m.frame) or "" if m and m.frame else ""])
    lines = []
    if m is not None and m.frame is not None and code(m.frame):
        lines.append(f"blocked on `{code(m.frame).strip()[:120]}`")
    known = prompt_for(text, table)
    if known:
        lines.insert(0, f"{known['who']}: {known['fix']}")
    return lines


def prompt_for(text: str, table: sig.Table) -> Optional[dict]:
    """The known prompt (checks/data/stack_signatures.json, terminal-input.prompts) found in text."""
    import re

    for p in table.row("terminal-input").get("prompts") or []:
        if re.search(p["match"], text or ""):
            return p
    return None


# causes whose detail line comes from the process itself rather than from other threads or children
WAIT_DETAILS = {"rendezvous-wait": _rendezvous_details, "terminal-input": _input_details}


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
