"""The public entry points of `doctor attach`, for the CLI and for repro/bundle.

    report = diagnose_pid(pid)           # AttachReport; raises DoctorError on bad input
    report.cause                         # "dataloader-worker-hang", "running-normally", ...
    report.findings[0]                   # the primary diagnosis (ranked)
    report.raw_dumps                     # {"<pid>": [py-spy JSON sample, ...]}
    report.report()                      # doctor.report_model.Report for the shared renderers

Errors (DoctorError.exit_code from doctor/exitcodes.py): NO_SUCH_PROCESS, PERMISSION_DENIED,
NOT_PYTHON, PROCESS_EXITED, PYSPY_MISSING.
"""
from __future__ import annotations

from typing import Optional

from doctor.attach.classify import classify
from doctor.attach.model import AttachReport
from doctor.attach.sampler import SampleOptions, sample_tree
from doctor.attach.snapshot import Snapshot

__all__ = ["AttachReport", "diagnose_pid", "diagnose_snapshot"]


def diagnose_pid(pid: int, *, samples: int = 3, interval_s: float = 0.25, native: Optional[bool] = None,
                 include_children: bool = True, timeout_s: float = 20.0, gpu: bool = True,
                 locals: bool = False) -> AttachReport:
    """Sample the process tree rooted at pid and say where it is stuck, and why.

    native: True = always take a `--native` sample; False = never; None = only when a stuck thread
    sits in a C call (a CUDA sync, a lock) or matches no known signature.
    timeout_s bounds the whole sampling; every py-spy and NVML call has its own hard timeout too.
    locals: keep each Python frame's local variables (py-spy --locals) in the raw dumps.
    """
    opts = SampleOptions(samples=max(1, int(samples)), interval_s=max(0.0, float(interval_s)),
                         native=native, include_children=include_children, timeout_s=float(timeout_s),
                         gpu=gpu, locals=locals)
    return diagnose_snapshot(sample_tree(pid, opts))


def diagnose_snapshot(snapshot: Snapshot) -> AttachReport:
    """Classify recorded data (a live sample, a --save-dumps snapshot, the GPU fixtures)."""
    from doctor.attach.ranks import add_to_report

    report = classify(snapshot)
    try:
        return add_to_report(report, snapshot)
    except Exception as exc:  # noqa: BLE001 - an odd rank layout must not cost the diagnosis itself
        report.errors.append(f"the rank line-up failed: {type(exc).__name__}: {exc}")
        return report
