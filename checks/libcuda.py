"""On WSL2, the libcuda that loads must be the Windows driver's, under /usr/lib/wsl (FM-11).

WSL2 mounts the Windows driver's libcuda.so* into /usr/lib/wsl/lib. A Linux libcuda (from a
distro driver package or the `cuda`/`cuda-drivers` meta-packages, which must not be installed
inside WSL) found first by dlopen shadows it: CUDA fails to initialise, or Triton/bitsandbytes
report "libcuda.so cannot found" / "CUDA Setup failed despite GPU being available".
dlopen order: LD_LIBRARY_PATH, then the ldconfig cache; the probe also records what a child
actually mapped (`resolved`), which wins when present.
"""
from __future__ import annotations

from typing import Optional

from checks import check
from checks._machine import NVIDIA_WSL_GUIDE, is_wsl2
from doctor.facts import Facts
from doctor.findings import Finding, Severity

SHADOW = "libcuda.linux-libcuda-shadows-wsl"
MISSING = "libcuda.wsl-libcuda-missing"

WSL_PREFIX = "/usr/lib/wsl/"
FIX_PATH = "export LD_LIBRARY_PATH=/usr/lib/wsl/lib:$LD_LIBRARY_PATH"
LINKS = ["https://github.com/unslothai/unsloth/issues/679", "https://github.com/NVIDIA/cuda-python/issues/17",
         "https://github.com/microsoft/WSL/issues/5663", NVIDIA_WSL_GUIDE]


@check(id="libcuda", title="on WSL2, libcuda comes from the Windows driver (/usr/lib/wsl/lib), not a Linux driver",
       finding_ids=(SHADOW, MISSING), order=70)
def libcuda(facts: Facts, config=None) -> list[Finding]:
    if not is_wsl2(facts):
        return []
    lc = facts.libcuda
    candidates = lc.ld_library_path_hits + lc.ldconfig_paths
    first: Optional[str] = lc.resolved or (candidates[0] if candidates else None)
    if first and not first.startswith(WSL_PREFIX):
        return [_shadow(facts, first, measured=bool(lc.resolved))]
    probe = facts.probe("libcuda")
    if not first and not lc.wsl_lib_present and probe is not None and probe.ok:
        return [_missing(facts)]    # only when the probe ran cleanly: empty defaults prove nothing
    return []


def _shadow(facts: Facts, path: str, measured: bool) -> Finding:
    lc = facts.libcuda
    return Finding(
        id=SHADOW, severity=Severity.ERROR,
        title=f"a Linux libcuda ({path}) {'is loaded' if measured else 'comes first'} instead of WSL's",
        why="On WSL2 only the Windows driver's libcuda in /usr/lib/wsl/lib can talk to the GPU. A Linux "
            "libcuda found first makes CUDA initialisation fail, or Triton and bitsandbytes report "
            "'libcuda.so cannot found' / 'CUDA Setup failed despite GPU being available'.",
        remediation="Put /usr/lib/wsl/lib first on the library path, and remove the Linux driver package that "
                    "installed this libcuda (inside WSL install only cuda-toolkit-12-x, never cuda or "
                    "cuda-drivers); then refresh the linker cache.",
        commands=[FIX_PATH, f"dpkg -S {path}   # which package installed it", "sudo ldconfig"],
        evidence={"libcuda.resolved": lc.resolved, "libcuda.ldconfig_paths": lc.ldconfig_paths,
                  "libcuda.ld_library_path_hits": lc.ld_library_path_hits,
                  "libcuda.wsl_lib_present": lc.wsl_lib_present},
        links=LINKS, failure_mode="FM-11", confidence=0.9 if measured else 0.75, fix_cost=1)


def _missing(facts: Facts) -> Finding:
    return Finding(
        id=MISSING, severity=Severity.ERROR,
        title="WSL2 has no libcuda: /usr/lib/wsl/lib lacks the Windows driver's CUDA library",
        why="WSL2 gets CUDA from the Windows NVIDIA driver, which mounts libcuda.so into /usr/lib/wsl/lib. "
            "Without it no CUDA program can start.",
        remediation="Install or update the NVIDIA driver on Windows (a WSL-capable one), update WSL, and "
                    "restart it.",
        commands=["wsl.exe --update", "wsl.exe --shutdown", "ls -la /usr/lib/wsl/lib/"],
        evidence={"libcuda.wsl_lib_present": False, "libcuda.ldconfig_paths": facts.libcuda.ldconfig_paths,
                  "nvidia.driver_version": facts.nvidia.driver_version},
        links=[NVIDIA_WSL_GUIDE], failure_mode="FM-11", confidence=0.8, fix_cost=2)
