"""`doctor attach`: sample (or replay) -> classify -> print, like `doctor run`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from doctor import exitcodes
from doctor.attach.api import diagnose_pid, diagnose_snapshot
from doctor.attach.model import AttachReport, snapshot_from_report_dict
from doctor.attach.snapshot import Snapshot
from doctor.exitcodes import DoctorError


def load_snapshot(path: Path) -> Snapshot:
    """A snapshot.json from --save-dumps, or an attach report / --json envelope."""
    try:
        data = json.loads(Path(path).read_text())
        if "target_pid" in data:
            return Snapshot.from_dict(data)
        return snapshot_from_report_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DoctorError(f"cannot replay {path}: {exc}", exitcodes.FACTS_INVALID)


def save_dumps(report: AttachReport, folder: Path) -> list[Path]:
    """snapshot.json (everything the classifier read) plus one py-spy JSON file per sample."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if report.snapshot is not None:
        report.snapshot.save(folder / "snapshot.json")
        written.append(folder / "snapshot.json")
    for pid, samples in report.raw_dumps.items():
        for i, sample in enumerate(samples):
            path = folder / f"pyspy-{pid}-{i}.json"
            path.write_text(json.dumps(sample, indent=1))
            written.append(path)
    snap = report.snapshot
    for p in (snap.processes if snap else []):
        if p.native_dump:
            path = folder / f"pyspy-{p.pid}-native.json"
            path.write_text(json.dumps(p.native_dump, indent=1))
            written.append(path)
    return written


def attach_command(pid: Optional[int], samples: int, interval: float, native: Optional[bool], children: bool,
                   save: Optional[Path], timeout: float, gpu: bool,
                   replay: Optional[Path], locals_: bool = False):
    """The attach Report (its part: the AttachReport); the cli emits it."""
    if replay is not None:
        report = diagnose_snapshot(load_snapshot(replay))
    elif pid is None:
        raise DoctorError("give a PID to attach to (or --replay FILE)", exitcodes.USAGE)
    else:
        report = diagnose_pid(pid, samples=samples, interval_s=interval, native=native,
                              include_children=children, timeout_s=timeout, gpu=gpu, locals=locals_)
    if save is not None:
        save_dumps(report, save)
    env = report.report()
    env.title = f"finetune doctor attach {report.pid}: {report.cause}"
    return env
