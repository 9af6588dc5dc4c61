"""GPU architecture <-> torch's compiled kernels and the stack's capability floors (FM-08).

A device can run torch's kernels when torch.cuda.get_arch_list() has a cubin for its major with a
minor <= the device's (SASS is compatible within a major, the rule torch's own warning uses), or
PTX (compute_XY) for an older or equal architecture that the driver can JIT. An RTX 5090 (sm_120)
with a cu124 torch (sm_50..sm_90) has neither: "no kernel image is available for execution on the
device" (pytorch/pytorch#150733). Floors (checks/data/gpu_arch.json): Triton, hence Unsloth's
kernels and torch.compile, needs 7.0; FlashAttention-2 needs 8.0 (bf16 is checks/bf16.py).
"""
from __future__ import annotations

import re
from typing import Optional

from checks import check
from checks._cuda_compat import flavour_for_cuda, reinstall_torch_command, suggest_flavour
from doctor.knowledge import load
from checks._machine import Gpu, arch_row, cap_str, gpus, sm, unsloth_in_use
from doctor.knowledge.versions import driver_tuple
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity

NO_KERNELS = "arch.no-kernel-image"
TOO_OLD = "arch.too-old-for-triton"
NO_FA2 = "arch.no-flash-attention-2"

LINKS_NEW = ["https://github.com/pytorch/pytorch/issues/150733",
             "https://github.com/pytorch/pytorch/issues/167244",
             "https://github.com/unslothai/unsloth-zoo/issues/166"]
LINK_TOO_OLD = "https://github.com/unslothai/unsloth/issues/1998"
LINK_FA2 = "https://github.com/Dao-AILab/flash-attention"


@check(id="gpu-arch", title="the GPU's architecture has kernels in this torch and meets Triton/FA2 floors",
       finding_ids=(NO_KERNELS, TOO_OLD, NO_FA2), order=30)
def gpu_arch(facts: Facts, config=None) -> list[Finding]:
    devices = [g for g in gpus(facts) if g.capability]
    if not devices:
        return []
    out: list[Finding] = []
    arch_list = facts.torch.arch_list if facts.torch.importable else []
    if arch_list:
        missing = [g for g in devices if kernels_for(g.capability, arch_list) is False]
        if missing:
            out.append(_no_kernels(facts, missing, arch_list))
    floors = {r["feature"]: tuple(r["min_capability"]) for r in load("gpu_arch")["floors"]}
    old = [g for g in devices if g.capability < floors["triton"]]
    if old:
        out.append(_too_old(facts, config, old, floors["triton"]))
    no_fa2 = [g for g in devices if floors["triton"] <= g.capability < floors["flash_attention_2"]]
    if no_fa2:
        out.append(_no_fa2(facts, config, no_fa2))
    return out


def _arch_num(entry: str) -> Optional[tuple[str, tuple[int, int]]]:
    """'sm_86' -> ('sm', (8, 6)); 'compute_90' -> ('compute', (9, 0)); 'sm_120a' -> ('sm', (12, 0))."""
    m = re.fullmatch(r"(sm|compute)_(\d+)[a-z]?", entry.strip())
    if not m or len(m.group(2)) < 2:
        return None
    digits = m.group(2)
    return m.group(1), (int(digits[:-1]), int(digits[-1]))


def kernels_for(cap: tuple[int, int], arch_list: list[str]) -> Optional[bool]:
    """Can a device of this capability run kernels from a torch with this arch list?"""
    parsed = [p for p in (_arch_num(a) for a in arch_list) if p]
    if not parsed:
        return None
    for kind, (major, minor) in parsed:
        if kind == "sm" and major == cap[0] and minor <= cap[1]:
            return True
        if kind == "compute" and (major, minor) <= cap:
            return True
    return False


def _names(devs: list[Gpu]) -> str:
    seen = []
    for g in devs:
        label = f"{g.name or 'GPU ' + str(g.index)} ({sm(g.capability)})"
        if label not in seen:
            seen.append(label)
    return ", ".join(seen)


def _no_kernels(facts: Facts, devs: list[Gpu], arch_list: list[str]) -> Finding:
    t = facts.torch
    rows = [arch_row(g.capability) for g in devs]
    min_cuda = max((r["min_cuda"] for r in rows if r and r["min_cuda"]),
                   key=lambda c: tuple(map(int, c.split("."))), default=None)
    arch_names = sorted({r["name"] for r in rows if r})
    fits = suggest_flavour(facts)
    needed = flavour_for_cuda(min_cuda) if min_cuda else None
    blackwell = load("gpu_arch")["blackwell"]
    is_blackwell = any("Blackwell" in n for n in arch_names)
    remediation = (f"Install a torch built with CUDA {min_cuda} or newer"
                   + (f" (torch >= {blackwell['min_torch']}, a cu128/cu129/cu130 build)" if is_blackwell else "")
                   if min_cuda else "Install a newer torch build that includes this architecture")
    remediation += ", then reinstall what is built against torch (xformers, bitsandbytes, unsloth) so it matches."
    commands = []
    if fits:
        commands.append(reinstall_torch_command(fits, with_torchvision=bool(facts.version("torchvision"))))
    else:
        drv = driver_tuple(facts.nvidia.driver_version)
        branch = blackwell["min_driver_branch"] if is_blackwell else None
        remediation += (" Your driver is too old for such a build: update it first"
                        + (f" (>= {branch})" if branch and (drv is None or drv[0] < branch) else "") + ".")
        commands.append("nvidia-smi")
        if needed:
            commands.append(reinstall_torch_command(needed))
    return Finding(
        id=NO_KERNELS, severity=Severity.CRITICAL,
        title=f"torch {t.version} has no kernels for {_names(devs)}: 'no kernel image is available'",
        why=f"This torch was compiled for {', '.join(arch_list)}; "
            f"{' / '.join(arch_names) or 'this GPU'} needs {', '.join(sorted({sm(g.capability) for g in devs}))} "
            "(or PTX for an older architecture). Every CUDA kernel launch fails with 'no kernel image is "
            "available for execution on the device', after torch warns the GPU 'is not compatible "
            "with the current PyTorch installation'.",
        remediation=remediation, commands=commands,
        evidence={"torch.version": t.version, "torch.arch_list": arch_list,
                  **{f"{g.source}.capability": cap_str(g.capability) for g in devs},
                  "nvidia.driver_version": facts.nvidia.driver_version},
        links=LINKS_NEW, failure_mode="FM-08", confidence=0.95, fix_cost=2)


def _too_old(facts: Facts, config, devs: list[Gpu], floor: tuple[int, int]) -> Finding:
    unsloth = unsloth_in_use(facts, config)
    return Finding(
        id=TOO_OLD, severity=Severity.ERROR if unsloth else Severity.WARNING,
        title=f"{_names(devs)} is below compute capability {floor[0]}.{floor[1]}: no Triton"
              + (", so no Unsloth kernels" if unsloth else ""),
        why="Triton (used by Unsloth's kernels and by torch.compile) supports only capability >= 7.0: "
            "'Triton only supports devices of CUDA Capability >= 7.0'; Unsloth's vLLM path raises "
            "'Your GPU is too old!'. Plain transformers + PEFT without torch.compile can still train, "
            "slowly, and without bf16.",
        remediation="Use a GPU of compute capability 7.0 or newer (Volta, Turing or later; a free "
                    "Colab/Kaggle T4 is 7.5). On this GPU, train with plain transformers + PEFT, fp16, "
                    "and no torch.compile.",
        evidence={f"{g.source}.capability": cap_str(g.capability) for g in devs},
        links=[LINK_TOO_OLD], failure_mode="FM-08", confidence=0.9, fix_cost=3)


def _no_fa2(facts: Facts, config, devs: list[Gpu]) -> Finding:
    wants_fa2 = config is not None and config.attn_implementation == "flash_attention_2"
    installed = facts.version("flash-attn")
    changes = [ConfigChange("attn_implementation", "sdpa",
                            "FlashAttention-2 needs compute capability >= 8.0; SDPA works on this GPU")
               ] if wants_fa2 else []
    return Finding(
        id=NO_FA2, severity=Severity.WARNING if (wants_fa2 or installed) else Severity.INFO,
        title=f"{_names(devs)} cannot use FlashAttention-2 (needs compute capability 8.0)"
              + (": the config asks for it" if wants_fa2 else ""),
        why="FlashAttention-2 kernels exist only for Ampere and newer ('FlashAttention only supports "
            "Ampere GPUs or newer'). Unsloth falls back to xformers/SDPA by itself; a transformers "
            "config with attn_implementation='flash_attention_2' fails at model load.",
        remediation=("Use attn_implementation='sdpa'." if wants_fa2 else
                     "Nothing to do unless you ask for flash_attention_2: SDPA and xformers work here."
                     + (" The installed flash-attn cannot run on this GPU." if installed else "")),
        evidence={**{f"{g.source}.capability": cap_str(g.capability) for g in devs},
                  "packages.flash-attn.version": installed,
                  "config.attn_implementation": config.attn_implementation if config is not None else None},
        config_changes=changes, links=[LINK_FA2], failure_mode="FM-08",
        confidence=0.95, fix_cost=1)
