"""What only WSL2 shows during a stall: dxgkrnl lines in dmesg, and the Windows side's view of GPU
memory (shared GPU memory grows when the driver spills VRAM to system RAM: FM-01).

Everything runs through doctor.runner with a timeout (interop calls to powershell.exe can take
seconds or hang). What cannot be read is recorded with the reason; off WSL nothing runs and the
record says it does not apply.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Optional

from doctor.probes.platform_probe import WSL_PATHS, detect_wsl
from doctor.runner import run_command

DMESG_S = 5.0
INTEROP_S = 15.0
MAX_LINES = 30

# dmesg lines and what they point at (docs/knowledge/unsloth-failure-modes.md §4.3, FM-03/FM-04)
DXG_PATTERNS = [
    (re.compile(r"dxgkio_make_resident.*Ioctl failed: -12"), "FM-03",
     "GPU-PV refused to make memory resident (expandable_segments / VRAM budget)"),
    (re.compile(r"dxgvmb_send_wait_sync_object_gpu"), "FM-04", "dxgkrnl sync-object wait: the GPU-PV hang"),
    (re.compile(r"dxgkio_query_adapter_info.*Ioctl failed"), "FM-04", "dxgkrnl adapter query failed"),
]
_DXG = re.compile(r"dxg", re.I)

# Windows performance counter for shared GPU memory; the exact counter name is unverified
# (unsloth-failure-modes.md FM-01 "Detection"), so a failure to read it is reported, not guessed.
SHARED_COUNTER = r"\GPU Adapter Memory(*)\Shared Usage"
_PS_SHARED = ("(Get-Counter -Counter '" + SHARED_COUNTER + "').CounterSamples | "
              "ForEach-Object { [int64]$_.CookedValue }")


def is_wsl() -> tuple[bool, list[str]]:
    try:
        with open("/proc/sys/kernel/osrelease") as fh:
            release = fh.read().strip()
    except OSError:
        release = ""
    found, _version, signals = detect_wsl(release, os.environ, [p for p in WSL_PATHS if os.path.exists(p)])
    return found, signals


def parse_dxg(dmesg_text: str) -> list[dict]:
    """The dxg lines of a dmesg output (newest last), each with the failure mode it points at."""
    out = []
    for line in dmesg_text.splitlines():
        if not _DXG.search(line):
            continue
        fm, meaning = next(((fm, m) for rx, fm, m in DXG_PATTERNS if rx.search(line)), (None, None))
        out.append({"line": line.strip()[:300], "failure_mode": fm, "meaning": meaning})
    return out[-MAX_LINES:]


def parse_counter_sum(text: str) -> Optional[int]:
    """Sum of the integer lines powershell printed (one per GPU adapter instance)."""
    values = [int(v) for v in re.findall(r"^\s*(\d+)\s*$", text, re.M)]
    return sum(values) if values else None


def read_dxg() -> dict:
    res = run_command(["dmesg"], timeout=DMESG_S)
    if not res.ok:
        return {"readable": False, "why": f"dmesg not readable: {res.describe_failure()}", "lines": []}
    return {"readable": True, "lines": parse_dxg(res.stdout)}


def read_shared_gpu_memory() -> dict:
    res = run_command(["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", _PS_SHARED],
                      timeout=INTEROP_S)
    if not res.ok:
        return {"readable": False, "why": f"Windows shared GPU memory not readable through interop: "
                                          f"{res.describe_failure()}"}
    value = parse_counter_sum(res.stdout)
    if value is None:
        return {"readable": False, "why": f"counter {SHARED_COUNTER!r} gave no value"}
    return {"readable": True, "bytes": value}


def read_windows_vram() -> dict:
    res = run_command(["nvidia-smi.exe", "--query-gpu=memory.used,memory.total",
                       "--format=csv,noheader,nounits"], timeout=INTEROP_S)
    if not res.ok:
        return {"readable": False, "why": f"nvidia-smi.exe not reachable: {res.describe_failure()}"}
    first = (res.stdout.strip().splitlines() or [""])[0]
    try:
        used, total = (int(x.strip()) * (1 << 20) for x in first.split(","))
    except ValueError:
        return {"readable": False, "why": f"nvidia-smi.exe output not understood: {first[:100]!r}"}
    return {"readable": True, "used": used, "total": total}


class WslRecorder:
    """Takes a baseline at start, a second reading at the end, and reports growth and dxg lines."""

    def __init__(self):
        self.applicable, self.signals = is_wsl()
        self.baseline: Optional[dict] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Read the baseline in the background: interop can take seconds, the child should not wait."""
        if self.applicable:
            self._thread = threading.Thread(target=self._read_baseline, name="wsl-baseline", daemon=True)
            self._thread.start()

    def _read_baseline(self) -> None:
        self.baseline = read_shared_gpu_memory()

    def finish(self) -> dict:
        if not self.applicable:
            return {"applicable": False, "why": "not running under WSL2: dxgkrnl messages and Windows "
                                                "shared GPU memory do not apply"}
        if self._thread is not None:
            self._thread.join(INTEROP_S + 1)
        out: dict = {"applicable": True, "signals": self.signals, "dmesg": read_dxg(),
                     "windows_vram": read_windows_vram()}
        now = read_shared_gpu_memory()
        out["shared_gpu_memory"] = {"start": self.baseline, "end": now}
        if self.baseline and self.baseline.get("readable") and now.get("readable"):
            out["shared_gpu_memory"]["growth"] = now["bytes"] - self.baseline["bytes"]
        return out
