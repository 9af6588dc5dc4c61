"""Findings of `doctor attach`: the primary one from the cause's row in stack_signatures.json (merged
with its stuck/GPU-state variant), and the side findings (stopped, D state, swap, GPU throttling,
GPU memory, telemetry gaps, skipped processes)."""
from __future__ import annotations

from doctor.attach import signatures as sig
from doctor.attach.gpu import SLOWDOWN_REASONS
from doctor.attach.snapshot import Snapshot
from doctor.attach.threads import ProcessAnalysis
from doctor.findings import ConfigChange, Finding, Severity


def _severity(row: dict) -> Severity:
    return Severity(row.get("severity", "warning"))


def _fmt(text: str, values: dict) -> str:
    class _Default(dict):
        def __missing__(self, key):
            return "{" + key + "}"
    return (text or "").format_map(_Default(values))


def make_finding(cid: str, row: dict, values: dict, evidence: dict, confidence: float) -> Finding:
    return Finding(id=f"attach.{cid}", severity=_severity(row), title=_fmt(row.get("title", cid), values),
                why=_fmt(row.get("why", ""), values), remediation=_fmt(row.get("remediation", ""), values),
                commands=[_fmt(c, values) for c in row.get("commands") or []], evidence=evidence,
                config_changes=[ConfigChange(c["setting"], c["value"], c["reason"]) for c in row.get("config_changes") or []],
                links=list(row.get("links") or []), failure_mode=row.get("failure_mode"),
                confidence=confidence, fix_cost=1 if row.get("config_changes") or row.get("commands") else 2,
                check="attach")


def merged_row(table: sig.Table, cid: str, stuck: bool, gstate: str) -> dict:
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


def primary_evidence(primary: ProcessAnalysis, details: list[str], gsummary: str, situation: str, snap: Snapshot) -> dict:
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


def primary_confidence(primary: ProcessAnalysis, cause: str) -> float:
    if cause in ("unknown-wait", "no-samples"):
        return 0.4
    n = len(primary.sample.dumps)
    conf = 0.9 if n >= 2 else 0.6
    if primary.sample.native_dump and primary.match is not None:
        conf = min(0.95, conf + 0.05)
    return conf


def side_findings(procs: list[ProcessAnalysis], snap: Snapshot, table: sig.Table, gstate: str, devs: list,
                  thresholds: dict, raw: dict) -> list[Finding]:
    out: list[Finding] = []
    extra = {r["id"]: r for r in raw["side_findings"]}
    for p in procs:
        if p.sample.resumed:
            out.append(make_finding("resumed-stopped-process", extra["resumed-stopped-process"], {"pid": p.sample.pid},
                                {"pid": p.sample.pid}, 0.9))
        if p.view.state == "D" and p.cause != "uninterruptible-io":
            row = table.process_states["D"]
            out.append(make_finding(row["id"], row, {"pid": p.sample.pid, "detail": f": pid {p.sample.pid}"},
                                {"wchan": p.sample.wchan, "open files": ", ".join(p.sample.open_files[:5])}, 0.8))
    swapped = [p for p in procs if (p.sample.swap or 0) >= thresholds["swap_warn_bytes"]]
    if swapped:
        gib = sum(p.sample.swap or 0 for p in swapped) / 2**30
        out.append(make_finding("swapping", extra["swapping"], {"detail": f"{gib:.1f} GiB"},
                            {f"pid {p.sample.pid} VmSwap": p.sample.swap for p in swapped}, 0.8))
    for d in devs:
        slow = [n for n in d.clock_event_names if n in SLOWDOWN_REASONS]
        if slow and gstate in ("busy", "partial"):
            out.append(make_finding("gpu-throttled", extra["gpu-throttled"], {"detail": ", ".join(slow)},
                                {"gpu": d.index, "reasons": ", ".join(d.clock_event_names),
                                 "sm clock": f"{d.sm_clock_mhz[-1] if d.sm_clock_mhz else '?'}/{d.sm_clock_max_mhz} MHz"}, 0.8))
        if d.memory_used and d.memory_total and d.memory_used / d.memory_total >= thresholds["memory_full_ratio"]:
            out.append(make_finding("gpu-memory-full", extra["gpu-memory-full"],
                                {"detail": f"{d.memory_used / 2**30:.1f}/{d.memory_total / 2**30:.1f} GiB"},
                                {"gpu": d.index, "used": d.memory_used, "total": d.memory_total}, 0.7))
    if snap.gpu.unavailable and snap.gpu_requested:
        row = dict(extra["gpu-telemetry"])
        if not snap.wsl:
            row["failure_mode"] = None
        out.append(make_finding("gpu-telemetry", row, {"detail": "; ".join(snap.gpu.unavailable)},
                            {"unavailable": "; ".join(snap.gpu.unavailable)}, 0.9))
    skipped = [p for p in procs if p.view.skipped]
    if skipped:
        out.append(make_finding("skipped-processes", extra["skipped-processes"],
                            {"detail": "; ".join(f"pid {p.view.pid} {p.sample.name}: {p.view.skipped}" for p in skipped)},
                            {}, 0.9))
    return out
