"""The driver library as every loader sees it. On WSL2, the libcuda that loads must be the Windows
driver's, under /usr/lib/wsl (FM-11). Everywhere on Linux: a libcuda.so.1 on LD_LIBRARY_PATH that is
not the driver's (a toolkit stub, a stale copy) shadows it; triton's `-lcuda` needs the unversioned
libcuda.so beside the libcuda.so.1 it finds; a dangling libcuda symlink breaks both.

WSL2 mounts the Windows driver's libcuda.so* into /usr/lib/wsl/lib. A Linux libcuda (from a
distro driver package or the `cuda`/`cuda-drivers` meta-packages, which must not be installed
inside WSL) found first by dlopen shadows it: CUDA fails to initialise, or Triton/bitsandbytes
report "libcuda.so cannot found" / "CUDA Setup failed despite GPU being available".
dlopen order: LD_LIBRARY_PATH, then the ldconfig cache; the probe also records what a child
actually mapped (`resolved`), which wins when present.
"""
from __future__ import annotations

import os
from typing import Optional

from checks import check
from checks._machine import NVIDIA_WSL_GUIDE, is_wsl2
from doctor.facts import Facts
from doctor.findings import Finding, Severity

SHADOW = "libcuda.linux-libcuda-shadows-wsl"
MISSING = "libcuda.wsl-libcuda-missing"
LD_SHADOW = "libcuda.ld-library-path-shadows-driver"
UNVERSIONED = "libcuda.no-unversioned-libcuda"
DANGLING = "libcuda.dangling-symlink"
LINKS_LINK = ["https://github.com/pytorch/pytorch/issues/103417", "https://github.com/pytorch/pytorch/issues/94585",
              "https://github.com/triton-lang/triton/blob/main/third_party/nvidia/backend/driver.py"]

WSL_PREFIX = "/usr/lib/wsl/"
FIX_PATH = "export LD_LIBRARY_PATH=/usr/lib/wsl/lib:$LD_LIBRARY_PATH"
LINKS = ["https://github.com/unslothai/unsloth/issues/679", "https://github.com/NVIDIA/cuda-python/issues/17",
         "https://github.com/microsoft/WSL/issues/5663", NVIDIA_WSL_GUIDE]


@check(id="libcuda", title="the driver's libcuda as every loader sees it: WSL2's /usr/lib/wsl/lib, LD_LIBRARY_PATH "
                           "shadows, the unversioned libcuda.so for triton's -lcuda, dangling links",
       finding_ids=(SHADOW, MISSING, LD_SHADOW, UNVERSIONED, DANGLING), order=70)
def libcuda(facts: Facts, config=None) -> list[Finding]:
    out = [f for f in (_dangling(facts), _unversioned(facts)) if f is not None]
    if not is_wsl2(facts):
        f = _ld_shadow(facts)
        return ([f] if f else []) + out
    return _wsl(facts) + out


def _wsl(facts: Facts) -> list[Finding]:
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


def _ld_shadow(facts: Facts) -> Optional[Finding]:
    """Native Linux and containers: a libcuda.so.1 in an LD_LIBRARY_PATH folder wins over the driver's
    in the ld cache. Fires when the child really mapped it, or dlopen failed on it."""
    lc = facts.libcuda
    hits = [p for p in lc.ld_library_path_hits if os.path.basename(p) == "libcuda.so.1"]
    if not hits or facts.platform.system not in ("Linux", ""):
        return None
    first = hits[0]
    folder = os.path.dirname(first)
    failed_on_it = bool(lc.load_error) and folder in (lc.load_error or "")
    loaded_it = bool(lc.resolved) and os.path.dirname(lc.resolved) == folder
    driver = facts.nvidia.driver_version
    foreign = bool(lc.resolved) and ("stub" in lc.resolved or
                                     (driver is not None and os.path.basename(lc.resolved) != f"libcuda.so.{driver}"))
    if not (failed_on_it or (loaded_it and foreign)):
        return None     # the driver's own libcuda, reached through LD_LIBRARY_PATH (NGC images do this)
    stub = "stub" in (lc.resolved or first)
    return Finding(
        id=LD_SHADOW, severity=Severity.ERROR,
        title=f"LD_LIBRARY_PATH puts {first} ahead of the driver's libcuda"
              + (" (a CUDA toolkit stub)" if stub else ""),
        why="The dynamic loader searches LD_LIBRARY_PATH before the ld cache, so every CUDA program (torch, "
            "triton, bitsandbytes) loads this file instead of the libcuda installed with the driver. A stub or "
            "a copy from another driver version makes CUDA initialisation fail ('CUDA driver is a stub "
            "library', 'CUDA driver version is insufficient', 'no CUDA-capable device')."
            + (f" dlopen said: {lc.load_error}" if lc.load_error else ""),
        remediation="Remove that folder from LD_LIBRARY_PATH (toolkit stubs are for linking only, never for "
                    "running), or delete the stray libcuda copy.",
        commands=["echo $LD_LIBRARY_PATH", f"ls -la {folder}/libcuda.so*", "ldconfig -p | grep libcuda"],
        evidence={"libcuda.ld_library_path_hits": lc.ld_library_path_hits, "libcuda.resolved": lc.resolved,
                  "libcuda.load_error": lc.load_error, "libcuda.ldconfig_paths": lc.ldconfig_paths},
        links=["https://github.com/pytorch/pytorch/issues/92745"], failure_mode="FM-11", confidence=0.85, fix_cost=1)


def _unversioned(facts: Facts) -> Optional[Finding]:
    """triton (before it linked libcuda.so.1 by name) links its launcher with -lcuda against the folders
    of libcuda.so.1; the linker needs libcuda.so there: 'cannot find -lcuda'."""
    lc, t = facts.libcuda, facts.toolchain
    if not lc.so1_dirs or lc.unversioned or lc.triton_libcuda_path or not t.triton_libraries:
        return None
    if "cuda" not in t.triton_libraries or not facts.torch.cuda_version:
        return None
    target = lc.chain[-1] if lc.chain else os.path.join(lc.so1_dirs[0], "libcuda.so.1")
    return Finding(
        id=UNVERSIONED, severity=Severity.ERROR,
        title=f"no unversioned libcuda.so beside {os.path.join(lc.so1_dirs[0], 'libcuda.so.1')}: triton's -lcuda "
              "link fails",
        why="This triton links its launcher with -lcuda in the folders where it finds libcuda.so.1; the linker "
            "only looks for libcuda.so. Without it the first kernel (torch.compile, Unsloth) fails with "
            "'/usr/bin/ld: cannot find -lcuda' or 'libcuda.so cannot found!'. Driver packages in containers and "
            "minimal installs often ship only libcuda.so.1.",
        remediation="Point TRITON_LIBCUDA_PATH at a folder with a libcuda.so link, or create the link (as root).",
        commands=[f"sudo ln -s {target} {os.path.join(lc.so1_dirs[0], 'libcuda.so')} && sudo ldconfig",
                  "mkdir -p ~/.libcuda && ln -sf " + target + " ~/.libcuda/libcuda.so && "
                  "export TRITON_LIBCUDA_PATH=~/.libcuda"],
        evidence={"libcuda.so1_dirs": lc.so1_dirs, "libcuda.unversioned": lc.unversioned, "libcuda.chain": lc.chain,
                  "toolchain.triton_libraries": t.triton_libraries, "packages.triton.version": facts.version("triton")},
        links=LINKS_LINK, failure_mode="FM-11", confidence=0.85, fix_cost=1)


def _dangling(facts: Facts) -> Optional[Finding]:
    lc = facts.libcuda
    if not lc.dangling:
        return None
    return Finding(
        id=DANGLING, severity=Severity.WARNING,
        title=f"{lc.dangling[0]} is a symlink to a file that no longer exists",
        why="A driver upgrade or removal left this link behind; a loader or linker that finds it first fails "
            "instead of moving on to the real libcuda.",
        remediation="Remove the stale link (or point it at the installed driver's libcuda.so.<version>) and "
                    "refresh the ld cache.",
        commands=[f"ls -la {lc.dangling[0]}", "sudo ldconfig"],
        evidence={"libcuda.dangling": lc.dangling, "libcuda.chain": lc.chain},
        links=LINKS_LINK[:1], failure_mode="FM-11", confidence=0.7, fix_cost=1)
