"""GPU state during the sampling window, through NVML in a child process with a timeout, and what
it means (gpu_state: busy, spinning, idle, partial or unknown).

Under WSL2 (WDDM) NVML reports no per-process memory and unreliable utilisation; whatever could
not be read goes into GpuSample.unavailable with the reason, never a made-up number.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from doctor.attach.snapshot import GpuDevice, GpuSample
from doctor.runner import RESULT_MARKER, run_python
from doctor.serde import from_jsonable

# nvmlDeviceGetCurrentClocksEventReasons bits (nvml.h nvmlClocksEventReason*; vram-and-hang.md §2.6).
CLOCK_EVENT_REASONS = {
    0x1: "GpuIdle", 0x2: "ApplicationsClocksSetting", 0x4: "SwPowerCap", 0x8: "HwSlowdown",
    0x10: "SyncBoost", 0x20: "SwThermalSlowdown", 0x40: "HwThermalSlowdown",
    0x80: "HwPowerBrakeSlowdown", 0x100: "DisplayClockSetting",
}
# Reasons that mean "slowed down" rather than "idle" or "ordinary power management".
SLOWDOWN_REASONS = ("HwSlowdown", "SwThermalSlowdown", "HwThermalSlowdown", "HwPowerBrakeSlowdown")

_CHILD = Path(__file__).with_name("_nvml_child.py")


def decode_reasons(mask: Optional[int]) -> list[str]:
    if mask is None:
        return []
    return [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]


def sample_gpu(pids: Iterable[int], duration_s: float, n: int, timeout_s: float, wsl: bool = False) -> GpuSample:
    pids = sorted(set(int(p) for p in pids))
    code = _CHILD.read_text() + f"\nsample({RESULT_MARKER!r}, {pids!r}, {float(duration_s)!r}, {int(n)!r})\n"
    res, payload = run_python(code, timeout=timeout_s)
    if payload is None:
        return GpuSample(available=False, unavailable=[f"NVML sampling failed: {res.describe_failure()}"])
    return gpu_from_payload(payload, pids, wsl)


def gpu_from_payload(payload: dict, pids: list[int], wsl: bool = False) -> GpuSample:
    out = GpuSample(available=bool(payload.get("available")), driver=payload.get("driver"),
                    unavailable=list(payload.get("unavailable") or []))
    for raw in payload.get("devices") or []:
        dev = from_jsonable(GpuDevice, raw)
        dev.clock_event_names = decode_reasons(dev.clock_event_reasons)
        out.devices.append(dev)
    errors = payload.get("errors") or {}
    if not out.available:
        return out
    if not out.devices:
        out.unavailable.append("no NVIDIA GPU visible to NVML")
        return out
    seen: dict[str, Optional[int]] = {}
    unreported = False
    for dev in out.devices:
        for p in dev.processes:
            if p.get("pid") in pids:
                prev = seen.get(str(p["pid"]))
                used = p.get("used_memory")
                unreported |= used is None
                seen[str(p["pid"])] = (prev or 0) + used if used is not None else prev
    out.target_memory = seen
    why_wsl = " (WSL2/WDDM does not report it)" if wsl else ""
    if "processes" in errors:
        out.unavailable.append(f"GPU process list: {errors['processes']}{why_wsl}")
    elif unreported:
        out.unavailable.append(f"per-process GPU memory{why_wsl or ' (the driver reports N/A: WDDM)'}")
    elif not seen:
        out.unavailable.append("the target's processes are not in NVML's process list"
                               + (" (WSL2 hides them)" if wsl else
                                  " (no CUDA context yet, or another PID namespace, e.g. a container)"))
    for key, label in (("utilization", "GPU utilisation"), ("power", "power draw"),
                       ("clock_event_reasons", "clock event (throttle) reasons"),
                       ("pcie_throughput", "PCIe throughput")):
        if key in errors:
            out.unavailable.append(f"{label}: {errors[key]}{why_wsl if key == 'utilization' else ''}")
    return out


def rank_device(gpu: GpuSample, local_rank: Optional[int], visible: Optional[str]) -> list[GpuDevice]:
    """The GPU a rank uses when NVML lists no pids we know (containers see host pids): device
    LOCAL_RANK among CUDA_VISIBLE_DEVICES (indices or UUIDs), else device LOCAL_RANK."""
    if local_rank is None:
        return []
    entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
    if entries:
        if local_rank >= len(entries):
            return []
        want = entries[local_rank]
        if want.isdigit():
            return [d for d in gpu.devices if d.index == int(want)]
        return [d for d in gpu.devices if d.uuid and (d.uuid == want or d.uuid.startswith(want))]
    return [d for d in gpu.devices if d.index == local_rank]


def gpu_state(gpu: GpuSample, pids: set[int], thresholds: dict, only_mine: bool = False,
              fallback: Optional[list[GpuDevice]] = None) -> tuple[str, str, list]:
    """(busy | spinning | idle | partial | unknown, one-line summary, the devices looked at).
    only_mine: judge only GPUs that list one of pids, or the fallback devices (else the busiest GPU)."""
    if not gpu.available or not gpu.devices:
        return "unknown", "; ".join(gpu.unavailable[:2]) or "GPU not readable", []
    mine = [d for d in gpu.devices if any(p.get("pid") in pids for p in d.processes)] or list(fallback or [])
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


GPU_WORDS = {"busy": "GPU busy", "spinning": "GPU spinning", "idle": "GPU idle", "partial": "GPU partly busy",
             "unknown": "GPU not visible"}
