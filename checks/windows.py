"""Hazards of the Windows NVIDIA driver, under WSL2 and on native Windows (FM-01, FM-05, FM-12,
FM-24, FM-25): VRAM spilling into shared system memory on drivers >= 536.40 (an OOM turns into a
crawl or a stall), TDR resets on a GPU that drives the display, and native Windows as the riskiest
platform (triton-windows, spawn re-running the script in datasets.map)."""
from __future__ import annotations

from typing import Optional

from checks import check
from doctor.knowledge import load
from checks._machine import gpus, windows_driver
from doctor.knowledge.versions import driver_below
from doctor.facts import Facts
from doctor.findings import Finding, Severity

SYSMEM = "windows.sysmem-fallback"
TDR = "windows.tdr-display-gpu"
NATIVE = "windows.native-tier"
SPAWN = "windows.spawn-main-guard"

LINK_1010 = "https://github.com/unslothai/unsloth/issues/1010"
LINKS_SYSMEM = ["https://nvidia.custhelp.com/app/answers/detail/a_id/5490",
                "https://github.com/microsoft/WSL/issues/10452", "https://github.com/microsoft/WSL/issues/11050"]
LINK_TDR = "https://learn.microsoft.com/windows-hardware/drivers/display/tdr-registry-keys"
LINKS_NATIVE = ["https://github.com/unslothai/unsloth/issues/2742", "https://github.com/unslothai/unsloth/issues/1237"]
LINK_SPAWN = "https://github.com/unslothai/unsloth/pull/3999"


@check(id="windows", title="Windows driver hazards (WSL2 and native): sysmem fallback, TDR, native-Windows risks",
       finding_ids=(SYSMEM, TDR, NATIVE, SPAWN), order=65)
def windows(facts: Facts, config=None) -> list[Finding]:
    if not windows_driver(facts) or (facts.platform.is_wsl and facts.platform.wsl_version == 1):
        return []           # WSL1 has no GPU at all: the wsl check says so
    out = [f for f in (_sysmem(facts), _tdr(facts)) if f is not None]
    if facts.platform.is_windows_native:
        out.append(_native(facts))
        if config is not None and (config.dataset_num_proc or 0) > 1:
            out.append(_spawn(facts, config))
    return out


def _feature_driver(feature: str) -> str:
    return next(r["min_windows_driver"] for r in load("driver_cuda")["windows_memory_features"]
                if r["feature"] == feature)


def _sysmem(facts: Facts) -> Optional[Finding]:
    driver = facts.nvidia.driver_version
    fallback = _feature_driver("sysmem_fallback")
    if not driver or driver_below(driver, fallback) is not False:
        return None
    policy = _feature_driver("sysmem_fallback_policy_setting")
    has_policy = driver_below(driver, policy) is False
    where = "WSL2" if facts.platform.is_wsl else "Windows"
    return Finding(
        id=SYSMEM, severity=Severity.WARNING,
        title=f"Windows driver {driver} spills VRAM into system memory: an OOM becomes a crawl or a stall",
        why=f"Since driver {fallback}, a CUDA allocation that does not fit in VRAM falls back to shared "
            f"system memory over PCIe instead of failing. Under {where} a run that slightly exceeds VRAM "
            "does not raise OOM: steps get 10-100x slower or never return, with the GPU looking idle "
            "(microsoft/WSL#10452, #40732). The Windows desktop also holds VRAM on a display GPU.",
        remediation=("In the NVIDIA Control Panel: Manage 3D settings > Global Settings > 'CUDA - Sysmem "
                     "Fallback Policy' > 'Prefer No Sysmem Fallback', so running out of VRAM fails loudly "
                     "(whether WSL2 honours it is disputed, microsoft/WSL#11050)."
                     if has_policy else
                     f"Update the Windows driver to {policy} or newer to get the 'CUDA - Sysmem Fallback "
                     "Policy' setting, then set it to 'Prefer No Sysmem Fallback'.")
                    + " Keep 1-1.5 GB of VRAM headroom (`doctor run train.py` estimates the peak), and watch "
                      "Task Manager's 'Shared GPU memory' during training.",
        commands=["nvidia-smi --query-gpu=memory.used,memory.total --format=csv"],
        evidence={"nvidia.driver_version": driver, "sysmem fallback since": fallback,
                  "policy setting since": policy, "platform.is_wsl": facts.platform.is_wsl},
        links=LINKS_SYSMEM + [LINK_1010], failure_mode="FM-01", confidence=0.7, fix_cost=1)


def _tdr(facts: Facts) -> Optional[Finding]:
    display = [g for g in gpus(facts) if g.display_active]
    if not display:
        return None
    g = display[0]
    return Finding(
        id=TDR, severity=Severity.WARNING,
        title=f"{g.name or 'the GPU'} also drives the display: Windows TDR can reset it mid-training",
        why="Windows resets a GPU whose kernel runs longer than TdrDelay (2 s by default); WSL2 inherits "
            "this. Long kernels (long sequences on a small GPU) then die with 'the launch timed out and "
            "was terminated' or 'device not ready'. The desktop also takes VRAM from training.",
        remediation="Train on a GPU that does not drive a monitor, or raise TdrDelay in the Windows registry "
                    "(elevated prompt, then reboot); shorter sequences shorten each kernel.",
        commands=['reg add "HKLM\\SYSTEM\\CurrentControlSet\\Control\\GraphicsDrivers" /v TdrDelay '
                  '/t REG_DWORD /d 60 /f   # elevated Windows prompt, then reboot'],
        evidence={f"{g.source}.display_active": True, "nvidia.driver_version": facts.nvidia.driver_version},
        links=[LINK_TDR, LINK_1010], failure_mode="FM-05", confidence=0.5, fix_cost=2)


def _native(facts: Facts) -> Finding:
    return Finding(
        id=NATIVE, severity=Severity.WARNING,
        title="native Windows is the highest-risk platform for Unsloth/Triton training",
        why="Native Windows needs triton-windows matched to torch, and reports include ptxas failures "
            "(error code 4294967295), 'Fatal Python error: none_dealloc' crashes and hangs after thousands "
            "of steps, plus multiprocessing spawn loops in datasets.map.",
        remediation="Prefer WSL2 (same machine, Linux wheels) or native Linux. If you stay on Windows, install "
                    "torch from the PyTorch CUDA index (PyPI's Windows torch is CPU-only) and a triton-windows "
                    "that matches it.",
        commands=["wsl --install   # in an elevated Windows PowerShell"],
        evidence={"platform.is_windows_native": True, "packages.triton-windows.version": facts.version("triton-windows")},
        links=LINKS_NATIVE, failure_mode="FM-25", confidence=0.6, fix_cost=3)


def _spawn(facts: Facts, config) -> Finding:
    return Finding(
        id=SPAWN, severity=Severity.WARNING,
        title=f"dataset_num_proc={config.dataset_num_proc} on native Windows: spawn re-runs your script",
        why="Windows starts worker processes with spawn, which re-imports __main__: without an "
            "`if __name__ == \"__main__\":` guard every worker re-runs the training script (the Unsloth "
            "banner repeats, 'One of the subprocesses has abruptly died during map operation').",
        remediation="Put the training code under `if __name__ == \"__main__\":`, and use dataset_num_proc=1 "
                    "(or pre-tokenise once); upgrading Unsloth past PR #3999 makes it ignore num_proc there.",
        evidence={"platform.is_windows_native": True, "config.dataset_num_proc": config.dataset_num_proc},
        links=[LINK_SPAWN, "https://github.com/unslothai/unsloth/issues/4490"], failure_mode="FM-12",
        confidence=0.7, fix_cost=1)
