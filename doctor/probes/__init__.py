"""Probes gather Facts. All I/O lives here; each probe runs concurrently in a daemon thread with
a deadline, and does its risky work (torch import, NVML, nvidia-smi) in a child process through
doctor.runner, so a hang or segfault becomes a ProbeStatus, never a hung doctor.

A probe is a function () -> value, registered in PROBES with the Facts field it fills. It may
raise; it may also return (value, error_line) to say it only partly succeeded.
"""
from __future__ import annotations

import datetime as _dt
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from doctor import __version__
from doctor.facts import Facts, ProbeStatus


@dataclass(frozen=True)
class ProbeSpec:
    name: str          # shown in findings: "probe torch timed out"
    field: str         # the Facts attribute it fills
    fn: Callable[[], Any]
    deadline_s: float  # the thread-level guard; the probe's own subprocess timeouts are shorter


def _registry() -> list[ProbeSpec]:
    from doctor.probes import env, libcuda, nvidia, packages, platform_probe, toolchain, torch_probe
    from doctor.probes.timeouts import scaled  # DOCTOR_PROBE_TIMEOUT_SCALE scales deadlines too

    return [
        ProbeSpec("platform", "platform", platform_probe.probe, scaled(10.0)),
        ProbeSpec("packages", "packages", packages.probe, scaled(15.0)),
        ProbeSpec("env", "env", env.probe, scaled(5.0)),
        ProbeSpec("nvidia", "nvidia", nvidia.probe, scaled(20.0)),
        ProbeSpec("torch", "torch", torch_probe.probe, scaled(60.0)),
        ProbeSpec("libcuda", "libcuda", libcuda.probe, scaled(15.0)),
        ProbeSpec("toolchain", "toolchain", toolchain.probe, scaled(25.0)),
    ]


def gather_facts(specs: Optional[list[ProbeSpec]] = None, label: Optional[str] = None) -> Facts:
    facts = Facts(doctor_version=__version__, label=label,
                  collected_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    specs = specs if specs is not None else _registry()
    results: dict[str, tuple[Any, Optional[str], float]] = {}

    def run(spec: ProbeSpec) -> None:
        t0 = time.monotonic()
        try:
            value = spec.fn()
            err = None
            if isinstance(value, tuple) and len(value) == 2 and (value[1] is None or isinstance(value[1], str)):
                value, err = value
            results[spec.name] = (value, err, time.monotonic() - t0)
        except Exception as exc:  # the probe failed: record it, keep the defaults
            results[spec.name] = (None, f"{type(exc).__name__}: {exc}", time.monotonic() - t0)

    threads = []
    start = time.monotonic()
    for spec in specs:
        th = threading.Thread(target=run, args=(spec,), name=f"probe-{spec.name}", daemon=True)
        th.start()
        threads.append((spec, th))
    for spec, th in threads:
        th.join(max(0.0, spec.deadline_s - (time.monotonic() - start)))
        if spec.name not in results:
            facts.probes.append(ProbeStatus(spec.name, ok=False, timed_out=True, duration_s=spec.deadline_s,
                                            error=f"probe {spec.name} did not finish within {spec.deadline_s:g} s"))
            continue
        value, err, dur = results[spec.name]
        if value is not None:
            setattr(facts, spec.field, value)
        facts.probes.append(ProbeStatus(spec.name, ok=err is None, duration_s=round(dur, 3),
                                        timed_out=bool(err and "timed out" in err), error=err))
    return facts
