"""The NVIDIA driver and GPUs: NVML in a child process (it can segfault or hang under WSL), with
`nvidia-smi --query-gpu` as the fallback. No driver at all is a fact (NvidiaInfo.error), not a
failure; a driver that is there but hangs, crashes or refuses is a probe failure (the error line).

Parsing (nvidia-smi CSV and header, NVML's report) is pure; probe() does the calls.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
from typing import Optional

from doctor.facts import GPUInfo, GPUProcess, NvidiaInfo
from doctor.probes.child import run_script, unfinished
from doctor.probes.timeouts import NVIDIA_SMI_S, NVIDIA_TOTAL_S, NVML_S, Budget, scaled
from doctor.runner import CommandResult, run_command

MIB = 1024 * 1024
QUERY_FIELDS = ("index", "name", "uuid", "pci.bus_id", "driver_version", "memory.total", "memory.used",
                "memory.free", "display_active", "persistence_mode", "driver_model.current", "power.limit",
                "compute_cap")
OLD_DRIVER_FIELDS = QUERY_FIELDS[:-1]      # compute_cap arrived with driver 510
APPS_FIELDS = ("gpu_uuid", "pid", "used_memory")
SMI_CANDIDATES = ("/usr/lib/wsl/lib/nvidia-smi", r"C:\Windows\System32\nvidia-smi.exe")
# NVML init errors that mean "no usable driver here" rather than "a driver that is broken".
NO_DRIVER_ERRORS = ("no-module", "NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")
DRIVER_MODELS = {0: "WDDM", 1: "TCC", 2: "MCDM"}
_UNKNOWN_VALUES = {"", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]", "err!", "[err!]"}


# ---------------------------------------------------------------- nvidia-smi parsing

def smi_value(text: Optional[str]) -> Optional[str]:
    """A CSV cell, or None for "[N/A]", "[Not Supported]" and friends."""
    if text is None:
        return None
    text = text.strip()
    return None if text.lower() in _UNKNOWN_VALUES else text


def _mib(text: Optional[str]) -> Optional[int]:
    value = smi_value(text)
    try:
        return int(float(value) * MIB) if value is not None else None
    except ValueError:
        return None


def _float(text: Optional[str]) -> Optional[float]:
    value = smi_value(text)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _enabled(text: Optional[str]) -> Optional[bool]:
    value = smi_value(text)
    return None if value is None else value.lower() in ("enabled", "on", "yes", "1")


def _capability(text: Optional[str]) -> Optional[list[int]]:
    value = smi_value(text)
    m = re.match(r"^(\d+)\.(\d+)$", value or "")
    return [int(m.group(1)), int(m.group(2))] if m else None


def parse_smi_gpus(text: str, fields: tuple[str, ...] = QUERY_FIELDS) -> tuple[list[GPUInfo], Optional[str]]:
    """`nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits` -> (GPUs, driver version)."""
    gpus, driver = [], None
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) != len(fields):
            continue
        cell = dict(zip(fields, row))
        index = smi_value(cell["index"])
        if index is None or not index.isdigit():
            continue
        driver = driver or smi_value(cell.get("driver_version"))
        gpus.append(GPUInfo(
            index=int(index),
            name=smi_value(cell.get("name")) or "",
            uuid=smi_value(cell.get("uuid")),
            pci_bus_id=smi_value(cell.get("pci.bus_id")),
            capability=_capability(cell.get("compute_cap")),
            memory_total=_mib(cell.get("memory.total")),
            memory_used=_mib(cell.get("memory.used")),
            memory_free=_mib(cell.get("memory.free")),
            display_active=_enabled(cell.get("display_active")),
            persistence_mode=_enabled(cell.get("persistence_mode")),
            driver_model=smi_value(cell.get("driver_model.current")),
            power_limit_w=_float(cell.get("power.limit")),
        ))
    return gpus, driver


def parse_smi_apps(text: str) -> list[tuple[str, GPUProcess]]:
    """`--query-compute-apps=gpu_uuid,pid,used_memory` -> [(gpu uuid, process)]; [N/A] memory = None."""
    out = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) != len(APPS_FIELDS):
            continue
        uuid, pid, used = (smi_value(c) for c in row)
        if uuid and pid and pid.isdigit():
            out.append((uuid, GPUProcess(pid=int(pid), used_memory=_mib(used))))
    return out


def parse_smi_header(text: str) -> tuple[Optional[str], Optional[str]]:
    """Plain `nvidia-smi` banner -> (driver version, CUDA version), e.g. ("550.54.15", "12.4")."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return (driver.group(1) if driver else None), (cuda.group(1) if cuda else None)


# ---------------------------------------------------------------- NVML report parsing

def cuda_version_string(value) -> Optional[str]:
    """nvmlSystemGetCudaDriverVersion's 12040 -> "12.4"."""
    if not isinstance(value, int) or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _bool(value) -> Optional[bool]:
    return None if value is None else bool(value)


def nvml_gpus(payload: dict) -> list[GPUInfo]:
    gpus = []
    for g in payload.get("gpus") or []:
        model = g.get("driver_model")
        gpus.append(GPUInfo(
            index=g.get("index", len(gpus)), name=g.get("name") or "", uuid=g.get("uuid"),
            pci_bus_id=g.get("pci_bus_id"), capability=g.get("capability"),
            memory_total=g.get("memory_total"), memory_used=g.get("memory_used"),
            memory_free=g.get("memory_free"), display_active=_bool(g.get("display_active")),
            persistence_mode=_bool(g.get("persistence_mode")),
            driver_model=DRIVER_MODELS.get(model, str(model)) if model is not None else None,
            power_limit_w=g.get("power_limit_w"),
            processes=[GPUProcess(pid=p["pid"], used_memory=p.get("used_memory"), kind=p.get("kind", "compute"))
                       for p in g.get("processes") or []],
        ))
    return gpus


def nvml_info_from(payload: Optional[dict], res: CommandResult) -> tuple[Optional[NvidiaInfo], Optional[str], bool]:
    """NVML child's report -> (info or None, problem line or None, no_driver).

    info is None when NVML gave nothing usable; no_driver says NVML found no driver to talk to.
    """
    p = payload or {}
    if p.get("init_error"):
        kind = p.get("init_error_kind")
        return None, f"NVML: {p['init_error']}", kind in NO_DRIVER_ERRORS
    stopped = unfinished(payload, res)
    problems = ([f"NVML {stopped}"] if stopped else []) + [f"NVML {e}" for e in p.get("errors") or []]
    problem = "; ".join(problems) or None
    if p.get("driver_version") is None and not p.get("gpus"):
        return None, problem or "NVML: no driver version and no GPUs reported", False
    info = NvidiaInfo(source="nvml", driver_version=p.get("driver_version"),
                      cuda_driver_version=cuda_version_string(p.get("cuda_driver_version")),
                      nvml_version=p.get("nvml_version"), gpus=nvml_gpus(p), p2p=p2p_status(p.get("p2p")))
    return info, problem, False


# nvmlGpuP2PStatus_t, in NVML's order (nvml.h)
P2P_STATUS = ("ok", "chipset not supported", "GPU not supported", "IOH topology not supported",
              "disabled by regkey", "not supported", "unknown")


def p2p_status(raw) -> dict[str, str]:
    """{"0-1": 0, ...} from the NVML child -> {"0-1": "ok", ...} (None: NVML would not say)."""
    out = {}
    for pair, code in (raw or {}).items():
        if code is not None:
            out[pair] = P2P_STATUS[code] if isinstance(code, int) and 0 <= code < len(P2P_STATUS) else str(code)
    return out


# ---------------------------------------------------------------- thin I/O

def find_nvidia_smi() -> Optional[str]:
    return shutil.which("nvidia-smi") or next((p for p in SMI_CANDIDATES if os.path.exists(p)), None)


def _smi(exe: str, args: list[str], budget: Budget) -> Optional[CommandResult]:
    timeout = budget.timeout(scaled(NVIDIA_SMI_S))
    return run_command([exe] + args, timeout=timeout) if timeout > 0.05 else None


def smi_info(exe: str, budget: Budget) -> tuple[Optional[NvidiaInfo], list[str]]:
    """GPU facts from nvidia-smi: (info or None, problems)."""
    fields = QUERY_FIELDS
    res = _smi(exe, [f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"], budget)
    if res is not None and not res.ok and "not a valid field" in (res.stdout + res.stderr).lower():
        fields = OLD_DRIVER_FIELDS
        res = _smi(exe, [f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"], budget)
    if res is None:
        return None, ["nvidia-smi: no time left"]
    if not res.ok:
        return None, [res.describe_failure()]
    gpus, driver = parse_smi_gpus(res.stdout, fields)
    if not gpus:
        return None, [f"nvidia-smi listed no GPUs: {res.stdout.strip()[:200]!r}"]
    info = NvidiaInfo(source="nvidia-smi", driver_version=driver, gpus=gpus)
    problems = []
    header = _smi(exe, [], budget)
    if header is not None and header.ok:
        info.cuda_driver_version = parse_smi_header(header.stdout)[1]
    elif header is not None:
        problems.append(f"`nvidia-smi` banner: {header.describe_failure()}")
    apps = _smi(exe, [f"--query-compute-apps={','.join(APPS_FIELDS)}", "--format=csv,noheader,nounits"], budget)
    if apps is not None and apps.ok:
        by_uuid = {g.uuid: g for g in gpus}
        for uuid, proc in parse_smi_apps(apps.stdout):
            if uuid in by_uuid:
                by_uuid[uuid].processes.append(proc)
    elif apps is not None:
        problems.append(f"`nvidia-smi --query-compute-apps`: {apps.describe_failure()}")
    return info, problems


def probe() -> tuple[NvidiaInfo, Optional[str]]:
    budget = Budget(scaled(NVIDIA_TOTAL_S))
    res, payload = run_script("nvml_info", timeout=budget.timeout(scaled(NVML_S)))
    nvml, nvml_problem, no_driver = nvml_info_from(payload, res)
    if nvml is not None and nvml_problem is None:
        return nvml, None
    exe = find_nvidia_smi()
    smi, smi_problems = smi_info(exe, budget) if exe else (None, [])
    if smi is not None:
        # NVML failed where nvidia-smi worked: say so, the GPU facts are still good.
        problems = ([f"{nvml_problem} (GPU facts read from nvidia-smi)"] if nvml_problem else []) + smi_problems
        return smi, "; ".join(problems) or None
    if nvml is not None:  # NVML got part of the way; nvidia-smi added nothing
        return nvml, "; ".join(filter(None, [nvml_problem] + smi_problems))
    if no_driver and not smi_problems:
        # Nothing to talk to and nothing broken: a machine without an NVIDIA driver (a fact).
        return NvidiaInfo(error=f"no NVIDIA driver found: {nvml_problem}; nvidia-smi not found"), None
    problem = "; ".join(filter(None, [nvml_problem] + smi_problems
                               + ([] if exe else ["nvidia-smi not found"])))
    return NvidiaInfo(error=problem), problem
