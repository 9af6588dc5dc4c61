"""Small reads of Facts that several checks share: which GPUs exist, their capabilities, which
driver column applies, whether this is WSL2. Pure functions; no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from doctor.facts import Facts

# Links that several checks cite (documents named in docs/knowledge/).
NVIDIA_WSL_GUIDE = "https://docs.nvidia.com/cuda/wsl-user-guide/index.html"
PYTORCH_INSTALL = "https://pytorch.org/get-started/locally/"
# The maintainers' own upgrade command (printed by unsloth's _gpu_init.py): both packages together.
UNSLOTH_UPGRADE = "pip install --upgrade --force-reinstall --no-cache-dir --no-deps unsloth unsloth_zoo"


@dataclass(frozen=True)
class Gpu:
    """One GPU as the checks see it: NVML's view, completed by torch's where NVML is silent."""
    index: int
    name: str
    capability: Optional[tuple[int, int]]
    memory_total: Optional[int]
    display_active: Optional[bool]
    source: str                      # fact path the values came from, for evidence


def gpus(facts: Facts) -> list[Gpu]:
    """GPUs from NVML/nvidia-smi, or from torch when the NVML probe saw none (e.g. it timed out)."""
    out = []
    if facts.nvidia.gpus:
        by_index = {d.index: d for d in facts.torch.devices}
        for g in facts.nvidia.gpus:
            cap = g.capability or (by_index[g.index].capability if g.index in by_index else None)
            out.append(Gpu(g.index, g.name, _cap(cap), g.memory_total, g.display_active,
                           f"nvidia.gpus[{g.index}]"))
        return out
    for d in facts.torch.devices:
        out.append(Gpu(d.index, d.name, _cap(d.capability), d.total_memory, None, f"torch.devices[{d.index}]"))
    return out


def _cap(cap) -> Optional[tuple[int, int]]:
    if not cap or len(cap) < 2:
        return None
    try:
        return int(cap[0]), int(cap[1])
    except (TypeError, ValueError):
        return None


def cap_str(cap: Optional[tuple[int, int]]) -> str:
    return f"{cap[0]}.{cap[1]}" if cap else "?"


def sm(cap: tuple[int, int]) -> str:
    return f"sm_{cap[0]}{cap[1]}"


def gpu_present(facts: Facts) -> bool:
    return bool(facts.nvidia.gpus) or facts.torch.device_count > 0 or bool(facts.torch.devices)


def is_wsl2(facts: Facts) -> bool:
    p = facts.platform
    return p.is_wsl and p.wsl_version != 1


def windows_driver(facts: Facts) -> bool:
    """The reported driver is a Windows driver: WSL2 shows the host's, and native Windows is one."""
    return facts.platform.is_wsl or facts.platform.is_windows_native


def driver_column(facts: Facts) -> str:
    return "windows" if windows_driver(facts) else "linux"


def unsloth_in_use(facts: Facts, config=None) -> bool:
    """Unsloth is installed, or the training config uses it."""
    return bool(facts.version("unsloth")) or bool(config is not None and config.is_unsloth)


def arch_row(cap: Optional[tuple[int, int]]) -> Optional[dict]:
    """checks/data/gpu_arch.json row for a capability (exact, else the nearest lower minor)."""
    if cap is None:
        return None
    from doctor.knowledge import load

    rows = [r for r in load("gpu_arch")["architectures"]
            if r["capability"][0] == cap[0] and r["capability"][1] <= cap[1]]
    return max(rows, key=lambda r: r["capability"][1], default=None)


def min_cuda_for_gpus(facts: Facts) -> Optional[str]:
    """The oldest CUDA that can build kernels for every GPU here (12.8 for Blackwell)."""
    from doctor.knowledge.versions import cuda_tuple

    needs = [r["min_cuda"] for r in (arch_row(g.capability) for g in gpus(facts)) if r and r["min_cuda"]]
    return max(needs, key=cuda_tuple, default=None)


def alloc_conf(env: dict[str, str]) -> dict[str, Optional[bool]]:
    """expandable_segments as set by the user in each allocator variable: True/False/None (unset)."""
    import re

    out: dict[str, Optional[bool]] = {}
    for var in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
        m = re.search(r"expandable_segments\s*:\s*(\w+)", env.get(var, ""), re.I)
        out[var] = None if not m else m.group(1).lower() == "true"
    return out
