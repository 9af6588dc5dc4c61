"""Driver <-> torch's CUDA runtime (FM-09).

Three tiers, from checks/data/driver_cuda.json:
  below the minor-version-compatibility floor of torch's CUDA major -> critical: CUDA cannot
      initialise ("The NVIDIA driver on your system is too old", unslothai/unsloth#2499);
  below the GA row of torch's exact CUDA minor (and the driver does not itself report that CUDA)
      -> warning: plain torch runs (minor-version
      compatibility), but anything that JIT-compiles PTX for that CUDA (Triton, Unsloth's kernels,
      bitsandbytes) fails with error 222 "the provided PTX was compiled with an unsupported toolchain";
  the driver's own max CUDA below torch's, when the table has no row to judge by -> the same two
      tiers by major/minor.
On WSL2 and native Windows the driver is the Windows one, so the Windows column applies, and the
fix is a Windows driver update: never a Linux driver inside WSL.
"""
from __future__ import annotations

from typing import Optional

from checks import check
from checks._cuda_compat import compat_floor, ga_minimum, reinstall_torch_command, suggest_flavour
from checks._machine import NVIDIA_WSL_GUIDE, driver_column
from doctor.knowledge.versions import cuda_tuple, driver_below
from doctor.facts import Facts
from doctor.findings import Finding, Severity

TOO_OLD = "driver.too-old-for-torch-cuda"
BELOW_GA = "driver.below-cuda-minor-ga"
MAX_CUDA = "driver.max-cuda-below-torch"

LINKS = ["https://github.com/unslothai/unsloth/issues/2499",
         "https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html",
         "https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html"]
LINK_PTX = "https://github.com/MadryLab/trak/issues/68"


@check(id="driver-cuda", title="the NVIDIA driver is new enough for torch's CUDA runtime",
       finding_ids=(TOO_OLD, BELOW_GA, MAX_CUDA), order=20)
def driver_cuda(facts: Facts, config=None) -> list[Finding]:
    t, nv = facts.torch, facts.nvidia
    cuda = t.cuda_version
    if not cuda or cuda_tuple(cuda) is None or not (nv.driver_version or nv.cuda_driver_version):
        return []
    column = driver_column(facts)
    driver = nv.driver_version
    evidence = {"torch.version": t.version, "torch.cuda_version": cuda,
                "nvidia.driver_version": driver, "nvidia.cuda_driver_version": nv.cuda_driver_version,
                "driver column": column}

    floor = compat_floor(cuda, column)
    if driver and floor and driver_below(driver, floor):
        return [_finding(facts, TOO_OLD, Severity.CRITICAL, floor, evidence,
                         f"driver {driver} is too old for torch's CUDA {cuda}: CUDA cannot start",
                         f"CUDA {cuda_tuple(cuda)[0]}.x needs at least driver {floor} ({column}); below "
                         "that torch.cuda.is_available() is False and Unsloth stops with 'No NVIDIA GPU "
                         "found?'.")]
    have, want = cuda_tuple(nv.cuda_driver_version), cuda_tuple(cuda)
    driver_says_ok = have is not None and want is not None and have >= want
    ga = ga_minimum(cuda, column)
    if driver and ga and driver_below(driver, ga) and not driver_says_ok:
        return [_finding(facts, BELOW_GA, Severity.WARNING, ga, evidence,
                         f"driver {driver} is older than CUDA {cuda} needs ({ga}): JIT-compiled kernels "
                         "may fail",
                         "torch itself runs through CUDA minor-version compatibility, but Triton, "
                         "Unsloth's kernels and bitsandbytes compile PTX for CUDA "
                         f"{cuda}, which this driver cannot load: 'the provided PTX was compiled with "
                         "an unsupported toolchain' (CUDA error 222).", confidence=0.75)]

    if have and want and have < want and not (driver and ga):
        major = have[0] < want[0]
        return [_finding(facts, MAX_CUDA, Severity.CRITICAL if major else Severity.WARNING, None, evidence,
                         f"the driver supports CUDA up to {nv.cuda_driver_version}, torch was built "
                         f"with CUDA {cuda}",
                         ("A driver for an older CUDA major cannot run this torch at all."
                          if major else
                          "torch may run through minor-version compatibility, but JIT-compiled "
                          "kernels (Triton, Unsloth, bitsandbytes) need a driver for CUDA "
                          f"{cuda}: error 222 otherwise."),
                         confidence=0.85 if major else 0.7)]
    return []


def _finding(facts: Facts, fid: str, severity: Severity, needed: Optional[str], evidence: dict,
             title: str, why: str, confidence: float = 0.9) -> Finding:
    wsl, windows = facts.platform.is_wsl, facts.platform.is_windows_native
    where = ("Update the NVIDIA driver on the Windows side (nvidia.com/Download or the NVIDIA app); "
             "WSL2 uses the Windows driver. Never install a Linux driver inside WSL: install only "
             "cuda-toolkit-12-x there, never the cuda or cuda-drivers packages."
             if wsl else
             "Update the NVIDIA driver (nvidia.com/Download or the NVIDIA app)." if windows else
             "Update the NVIDIA driver with your distribution's packages (e.g. "
             "`sudo ubuntu-drivers install` on Ubuntu) or NVIDIA's installer, then reboot.")
    target = f" to {needed} or newer" if needed else ""
    torch = facts.torch.version
    alt = suggest_flavour(facts, keep_torch=torch)
    commands = ["nvidia-smi"] if not wsl else ["wsl --shutdown  # in Windows, after updating the driver",
                                                "nvidia-smi"]
    remediation = where.replace("Update the NVIDIA driver", f"Update the NVIDIA driver{target}", 1)
    if alt and alt["tag"] != _tag(facts.torch.cuda_version):
        remediation += (f" Or keep this driver and install a torch built for CUDA {alt['cuda']} "
                        "(then reinstall xformers/bitsandbytes/unsloth to match).")
        commands.append(reinstall_torch_command(alt, keep_torch=torch))
    links = LINKS + ([LINK_PTX] if fid != TOO_OLD else []) + ([NVIDIA_WSL_GUIDE] if wsl else [])
    return Finding(id=fid, severity=severity, title=title, why=why, remediation=remediation,
                   commands=commands, evidence=evidence, links=links, failure_mode="FM-09",
                   confidence=confidence, fix_cost=2)


def _tag(cuda: Optional[str]) -> Optional[str]:
    t = cuda_tuple(cuda)
    return f"cu{t[0]}{t[1]}" if t else None
