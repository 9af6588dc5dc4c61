"""The attach diagnosis as the bundle stores it: py-spy dumps without locals, and a plain-text
rendering of every thread's stack for the issue body."""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional

MAX_FRAMES = 40


def strip_locals(obj: Any) -> Any:
    """Drop every py-spy "locals" entry (variables can hold tokens and data) from a JSON-able object."""
    if isinstance(obj, dict):
        return {k: strip_locals(v) for k, v in obj.items() if k != "locals"}
    if isinstance(obj, list):
        return [strip_locals(v) for v in obj]
    return obj


def _is_secret_local(v: Any) -> bool:
    """A py-spy local whose name says credential (api_key, hf_token, password ...: the redactor's
    one predicate); under a weak name (a bare `key`, sort_key) only a value that is not a plain word."""
    from doctor.redact import credential_strength, is_secret_value

    if not isinstance(v, dict):
        return False
    strength = credential_strength(str(v.get("name", "")))
    return bool(strength) and is_secret_value(strength, str(v.get("repr", "")).strip().strip("'\""))


def mask_secret_locals(obj: Any, counts: Optional[Counter] = None) -> Any:
    """Keep py-spy "locals", but blank the value of every credential-named one: its repr has no
    shape the pattern redactor could know. The bundle writer then redacts the rest like any text."""
    from doctor.redact import placeholder

    counts = Counter() if counts is None else counts
    if isinstance(obj, dict):
        out = {k: mask_secret_locals(v, counts) for k, v in obj.items()}
        if isinstance(out.get("locals"), list):
            masked = []
            for v in out["locals"]:
                if _is_secret_local(v):
                    counts["secret-local"] += 1
                    v = dict(v, repr=placeholder("secret-local"))
                masked.append(v)
            out["locals"] = masked
        return out
    if isinstance(obj, list):
        return [mask_secret_locals(v, counts) for v in obj]
    return obj


def secret_local_values(obj: Any) -> list[str]:
    """The values (repr without its quotes) of every credential-named py-spy local in obj."""
    found: list[str] = []
    if isinstance(obj, dict):
        found += [v["repr"].strip().strip("'\"") for v in obj.get("locals") or []
                  if _is_secret_local(v) and isinstance(v.get("repr"), str)]
        for k, v in obj.items():
            if k != "locals":
                found += secret_local_values(v)
    elif isinstance(obj, list):
        for v in obj:
            found += secret_local_values(v)
    return found


def _frame(fr: dict) -> str:
    from doctor.attach.signatures import is_native

    if is_native(fr):
        return f"{fr.get('name', '?')} ({(fr.get('module') or '').rsplit('/', 1)[-1]})"
    return f"{fr.get('name', '?')} ({fr.get('filename') or fr.get('short_filename') or '?'}:{fr.get('line', 0)})"


def stacks_text(report, max_frames: int = MAX_FRAMES) -> str:
    """Each dumped process's last sample, py-spy style: threads, frames innermost first."""
    procs = {p.pid: p for p in report.processes}
    out = []
    for pid, samples in report.raw_dumps.items():
        p = procs.get(int(pid)) if str(pid).isdigit() else None
        head = f"Process {pid}"
        if p is not None:
            head += f" ({p.role}, state {p.state or '?'}): {p.cmdline[:300]}"
        out.append(head)
        last = samples[-1] if samples else []
        for th in last:
            flags = ["active" if th.get("active") else "idle"] + (["owns GIL"] if th.get("owns_gil") else [])
            name = th.get("thread_name") or ""
            out.append(f"  Thread {th.get('os_thread_id') or th.get('thread_id')} {name} ({', '.join(flags)})".rstrip())
            frames = th.get("frames") or []
            out += [f"      {_frame(fr)}" for fr in frames[:max_frames]]
            if len(frames) > max_frames:
                out.append(f"      ... {len(frames) - max_frames} outer frames")
        out.append("")
    return "\n".join(out).rstrip() + "\n" if out else ""


def attach_summary(report) -> Optional[str]:
    primary = report.primary
    parts = [f"Diagnosis: `{report.cause}`"]
    if primary is not None:
        parts[0] += f", {primary.title}"
    if report.situation:
        parts.append(f"Situation: {report.situation}")
    if report.errors:
        parts.append("Notes: " + "; ".join(report.errors[:3]))
    return ". ".join(parts) + "."
