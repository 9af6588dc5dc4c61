"""Is there an NVIDIA GPU that this Python's torch can use at all? (FM-09, FM-10)

Order of questions: torch installed? a driver and a GPU? a CUDA build of torch? CUDA_VISIBLE_DEVICES
hiding everything? torch.cuda.is_available()? Each answer that is "no" is its own finding, because
each has a different fix. WSL1 (no GPU at all) is left to the wsl check, which names its fix.

Severity of "no NVIDIA GPU": critical when Unsloth is installed or the config uses it (Unsloth
raises "No NVIDIA GPU found? Unsloth currently only supports GPUs!", unslothai/unsloth#2499);
otherwise a warning: transformers/PEFT/TRL do run on CPU (tiny models, CI, this doctor's own
tests), just impractically slowly for LLMs, and a doctor that exits 1 on every CPU box is noise.
"""
from __future__ import annotations

import re
from typing import Optional

from checks import check
from checks._cuda_compat import reinstall_torch_command, suggest_flavour
from checks._machine import NVIDIA_WSL_GUIDE, PYTORCH_INSTALL, gpu_present, gpus, unsloth_in_use
from doctor.facts import Facts
from doctor.findings import Finding, Severity

NO_GPU = "gpu.no-nvidia-gpu"
TORCH_MISSING = "gpu.torch-missing"
CPU_BUILD = "gpu.torch-cpu-build"
CUDA_UNAVAILABLE = "gpu.cuda-unavailable"
HIDDEN = "gpu.cuda-visible-devices-hides-all"

LINK_2499 = "https://github.com/unslothai/unsloth/issues/2499"
LINK_XFORMERS_CPU = "https://github.com/facebookresearch/xformers/issues/982"

# NVML errors that mean "no driver here", as opposed to "the driver is there but failed".
_NO_DRIVER = re.compile(r"LibraryNotFound|Shared Library Not Found|not found|No such file|"
                        r"couldn't communicate|DriverNotLoaded|Driver Not Loaded", re.I)


@check(id="gpu-presence", title="an NVIDIA GPU, a driver, and a CUDA build of torch that can use them",
       finding_ids=(NO_GPU, TORCH_MISSING, CPU_BUILD, CUDA_UNAVAILABLE, HIDDEN), order=10)
def gpu_presence(facts: Facts, config=None) -> list[Finding]:
    out: list[Finding] = []
    t = facts.torch
    # Missing only when the packages probe listed torch as not installed: an absent key proves nothing.
    if "torch" in facts.packages and not facts.version("torch") and not t.importable:
        out.append(_torch_missing(facts))

    if not gpu_present(facts):
        if _no_gpu_is_known(facts):
            out.append(_no_gpu(facts, config))
        return out
    if not t.importable:
        return out      # torch absent, or its probe failed (probe_health says so)

    if t.hip_version:
        return out      # a ROCm build: out of scope for the NVIDIA checks
    if _is_cpu_build(t.version, t.cuda_version):
        out.append(_cpu_build(facts))
        return out
    hidden = _hides_all(facts.env.get("CUDA_VISIBLE_DEVICES"), facts)
    if hidden:
        out.append(_hidden(facts, hidden))
        return out
    if t.cuda_available is False:
        out.append(_cuda_unavailable(facts))
    return out


def _is_cpu_build(version: Optional[str], cuda_version: Optional[str]) -> bool:
    return bool(version and "+cpu" in version) or (bool(version) and cuda_version is None)


def _no_gpu_is_known(facts: Facts) -> bool:
    """Absent, not merely unseen: the NVIDIA probe ran and found no driver or no device, and WSL1
    (reported by the wsl check) is not the reason."""
    if facts.platform.is_wsl and facts.platform.wsl_version == 1:
        return False
    probe = facts.probe("nvidia")
    err = facts.nvidia.error
    if (probe is None and not err) or (probe is not None and probe.timed_out):
        return False
    return facts.nvidia.source is not None or err is None or bool(_NO_DRIVER.search(err))


def _torch_missing(facts: Facts) -> Finding:
    return Finding(
        id=TORCH_MISSING, severity=Severity.WARNING,
        title="torch is not installed in this Python",
        why="Every fine-tuning stack (Unsloth, transformers, PEFT, TRL) needs torch; the doctor "
            "still checks the driver and the platform, but cannot check CUDA, the GPU architecture "
            "or bf16 without it.",
        remediation="Install a CUDA build of torch from the PyTorch index that matches your driver "
                    "(see the driver findings), in the environment you train with.",
        commands=[reinstall_torch_command(suggest_flavour(facts), force=False)],
        evidence={"packages.torch.version": facts.version("torch"),
                  "platform.python_executable": facts.platform.python_executable},
        links=[PYTORCH_INSTALL], failure_mode="FM-10", confidence=0.95, fix_cost=2)


def _no_gpu(facts: Facts, config) -> Finding:
    unsloth = unsloth_in_use(facts, config)
    nv = facts.nvidia
    return Finding(
        id=NO_GPU, severity=Severity.CRITICAL if unsloth else Severity.WARNING,
        title="no NVIDIA GPU or driver found" + (": Unsloth cannot run here" if unsloth else ""),
        why=("Unsloth supports NVIDIA GPUs only and raises 'No NVIDIA GPU found?' at import. "
             if unsloth else
             "transformers/PEFT/TRL fall back to the CPU, which is far too slow for LLM fine-tuning. ")
            + "No NVIDIA driver answered (NVML and nvidia-smi found no GPU).",
        remediation="Run on a machine with an NVIDIA GPU and its driver installed (check with "
                    "`nvidia-smi`). In a container, start it with `--gpus all` and the NVIDIA "
                    "Container Toolkit; on WSL2, install the Windows NVIDIA driver, not a Linux one.",
        commands=["nvidia-smi"],
        evidence={"nvidia.source": nv.source, "nvidia.error": nv.error,
                  "torch.device_count": facts.torch.device_count,
                  "packages.unsloth.version": facts.version("unsloth")},
        links=[LINK_2499, NVIDIA_WSL_GUIDE], failure_mode="FM-09",
        confidence=0.9, fix_cost=3)


def _cpu_build(facts: Facts) -> Finding:
    t = facts.torch
    flavour = suggest_flavour(facts, keep_torch=t.version)
    tag = flavour["tag"] if flavour else None
    windows = facts.platform.is_windows_native
    return Finding(
        id=CPU_BUILD, severity=Severity.CRITICAL,
        title=f"torch {t.version} is a CPU-only build, but this machine has an NVIDIA GPU",
        why="A CPU build of torch has no CUDA at all, so training never touches the GPU; xformers and "
            "bitsandbytes built for CUDA then fail to load ('you have ...+cpu'). "
            + ("On Windows, `pip install torch` from PyPI always gives the CPU build. " if windows else
               "Installers that upgrade torch from PyPI can silently replace a CUDA build. "),
        remediation=f"Reinstall torch from the PyTorch index {tag}, the newest CUDA flavour your "
                    "driver and GPU both support; then reinstall packages "
                    "built against torch (xformers, bitsandbytes, unsloth) so they match it."
                    if tag else
                    "Reinstall torch from the PyTorch CUDA index that matches your driver "
                    "(https://download.pytorch.org/whl/cuXYZ).",
        commands=([reinstall_torch_command(flavour, with_torchvision=bool(facts.version("torchvision")),
                                           keep_torch=t.version)]
                  if tag else ["nvidia-smi"]),
        evidence={"torch.version": t.version, "torch.cuda_version": t.cuda_version,
                  "nvidia.gpus[0].name": facts.nvidia.gpus[0].name if facts.nvidia.gpus else None,
                  "nvidia.driver_version": facts.nvidia.driver_version},
        links=[PYTORCH_INSTALL, LINK_XFORMERS_CPU], failure_mode="FM-10",
        confidence=0.95, fix_cost=2)


def _cuda_unavailable(facts: Facts) -> Finding:
    t = facts.torch
    warning = t.init_warning or t.error
    too_old = bool(warning and "too old" in warning.lower())
    return Finding(
        id=CUDA_UNAVAILABLE, severity=Severity.CRITICAL,
        title="torch.cuda.is_available() is False although an NVIDIA GPU is present"
              + (": the driver is too old for this torch" if too_old else ""),
        why="torch could not initialise CUDA, so training would run on the CPU or stop at "
            "'No NVIDIA GPU found'. torch said: " + (_first_sentence(warning) or "(no warning was captured)"),
        remediation=("Update the NVIDIA driver to one that supports CUDA "
                     f"{t.cuda_version} (see the driver finding), or install a torch built for an "
                     "older CUDA." if too_old else
                     "Read torch's warning above. Common causes: a driver older than torch's CUDA "
                     "runtime, a GPU in use by another VM or container without device access, or "
                     "a Linux driver installed inside WSL2."),
        commands=["nvidia-smi",
                  "python -c \"import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())\""],
        evidence={"torch.cuda_available": t.cuda_available, "torch.init_warning": t.init_warning,
                  "torch.cuda_version": t.cuda_version, "nvidia.driver_version": facts.nvidia.driver_version,
                  "nvidia.cuda_driver_version": facts.nvidia.cuda_driver_version},
        links=[LINK_2499], failure_mode="FM-09", confidence=0.9, fix_cost=2)


def _hides_all(value: Optional[str], facts: Facts) -> Optional[str]:
    """Why CUDA_VISIBLE_DEVICES leaves no GPU visible, or None. CUDA enumerates entries up to the
    first invalid one, so an invalid first entry hides everything."""
    if value is None:
        return None
    entries = [e.strip() for e in value.split(",")]
    if not value.strip() or not entries[0]:
        return "it is set but empty"
    first = entries[0]
    count = len(gpus(facts))
    if re.fullmatch(r"-?\d+", first):
        idx = int(first)
        if idx < 0:
            return f"its first entry is {first}"
        if count and idx >= count:
            return f"its first entry is {first}, but only GPU indices 0..{count - 1} exist"
        return None
    if first.upper().startswith(("GPU-", "MIG-")):
        uuids = [g.uuid for g in facts.nvidia.gpus if g.uuid]
        if uuids and not any(u.lower().startswith(first.lower()) for u in uuids):
            return f"its first entry {first} matches no GPU's UUID"
        return None
    return f"its first entry {first!r} is not a GPU index or UUID"


def _hidden(facts: Facts, why: str) -> Finding:
    value = facts.env.get("CUDA_VISIBLE_DEVICES")
    return Finding(
        id=HIDDEN, severity=Severity.CRITICAL,
        title="CUDA_VISIBLE_DEVICES hides every GPU from torch",
        why=f"CUDA_VISIBLE_DEVICES={value!r}: {why}. CUDA then reports no device, so torch trains "
            "on the CPU or Unsloth refuses to start.",
        remediation="Unset it, or set it to the index of the GPU to use.",
        commands=["unset CUDA_VISIBLE_DEVICES", "export CUDA_VISIBLE_DEVICES=0"],
        evidence={"env.CUDA_VISIBLE_DEVICES": value, "nvidia.gpus": len(facts.nvidia.gpus),
                  "torch.cuda_available": facts.torch.cuda_available},
        failure_mode="FM-09", confidence=0.95, fix_cost=1)


def _first_sentence(text: Optional[str]) -> Optional[str]:
    """'CUDA initialization: The NVIDIA driver ... (found version 11080). Please update ...' -> first part."""
    if not text:
        return text
    head = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return head if len(head) <= 300 else head[:297] + "..."
