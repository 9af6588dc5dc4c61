"""Which GPU memory a training run can count on, and `--gpu NAME` what-ifs from checks/data/gpus.json."""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from typing import Optional

from doctor import exitcodes
from doctor.exitcodes import DoctorError
from doctor.facts import Facts, GPUInfo, TorchDevice

from doctor.units import GIB

# VRAM the desktop keeps when the GPU drives a display, and what Windows + WSL2 GPU-PV hold.
# WSL2: about 1.3 GiB measured (noonghunna/club-3090#102, docs/knowledge/unsloth-failure-modes.md
# §0.3); a bare display (DWM/X): 0.2-0.5 GB (docs/knowledge/vram-and-hang.md §2.7) -> 0.5 GiB.
DESKTOP_RESERVE = {"wsl": int(1.3 * GIB), "display": int(0.5 * GIB)}
RESERVE_REASON = {"wsl": "Windows desktop + WSL2 GPU-PV keep about 1.3 GiB",
                  "display": "the desktop on this GPU keeps about 0.5 GiB"}


@dataclass
class UsableMemory:
    name: str
    total: Optional[int]
    free: int                       # what the estimate is compared with
    measured_free: Optional[int]    # what the probe saw (None for a what-if)
    reserve: int = 0                # desktop/WSL reserve assumed on top of what is already used
    reserve_reason: str = ""
    whatif: bool = False


def _desktop_kind(facts: Facts, gpu: Optional[GPUInfo]) -> Optional[str]:
    if facts.platform.is_wsl or facts.platform.is_windows_native:
        return "wsl" if facts.platform.is_wsl else "display"
    if gpu is not None and gpu.display_active:
        return "display"
    return None


def selected_gpu(facts: Facts) -> Optional[GPUInfo]:
    """The GPU training will use: the first visible one (CUDA_VISIBLE_DEVICES honoured)."""
    gpus = list(facts.nvidia.gpus)
    if not gpus and facts.torch.devices:
        gpus = [GPUInfo(index=d.index, name=d.name, capability=d.capability, memory_total=d.total_memory,
                        memory_free=d.free_memory) for d in facts.torch.devices]
    if not gpus:
        return None
    visible = (facts.env.get("CUDA_VISIBLE_DEVICES") or "").split(",")[0].strip()
    if visible.isdigit():
        match = [g for g in gpus if g.index == int(visible)]
        if match:
            return match[0]
    return gpus[0]


def usable_memory(facts: Facts) -> Optional[UsableMemory]:
    """Free VRAM for training, less what a desktop/WSL will take (never counted twice):
    min(free now, total - reserve)."""
    gpu = selected_gpu(facts)
    if gpu is None:
        return None
    free = gpu.memory_free if gpu.memory_free is not None else gpu.memory_total
    if free is None:
        return None
    whatif = facts.whatif_gpu is not None
    kind = _desktop_kind(facts, gpu)
    usable, reserve, reason = free, 0, ""
    if whatif:   # apply_gpu_whatif already decided the reserve
        reserve = (gpu.memory_total or free) - free
        reason = RESERVE_REASON[kind] if kind and reserve else ""
    elif kind and gpu.memory_total:
        cap = gpu.memory_total - DESKTOP_RESERVE[kind]
        if cap < usable:
            reserve, usable = free - cap, cap
        reason = RESERVE_REASON[kind]
    return UsableMemory(name=gpu.name, total=gpu.memory_total, free=max(0, usable),
                        measured_free=None if whatif else gpu.memory_free, reserve=reserve,
                        reserve_reason=reason, whatif=whatif)


# -- what-if --------------------------------------------------------------------------------------

_NOISE = {"nvidia", "geforce", "tesla", "rtx", "gpu"}


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", name.lower())
    return [t for t in re.split(r"[\s\-_/]+", spaced) if t and t not in _NOISE]


def _rows() -> list[dict]:
    from doctor.knowledge import load

    return load("gpus")["gpus"]


def find_gpu(name: str) -> dict:
    """The table row for a user-typed GPU name; ambiguous or unknown -> DoctorError(USAGE)."""
    query = _tokens(name)
    if not query:
        raise DoctorError("--gpu: empty GPU name", exitcodes.USAGE)
    scored = []
    for row in _rows():
        spellings = [_tokens(s) for s in [row["name"], *row.get("aliases", [])]]
        extras = [len(s) - len(query) for s in spellings if all(t in s for t in query)]
        if extras:
            scored.append((min(extras), row))
    if scored:
        best = min(e for e, _ in scored)
        winners = [r for e, r in scored if e == best]
        if len(winners) == 1:
            return winners[0]
        raise DoctorError(f"--gpu {name!r} is ambiguous: " + ", ".join(r["name"] for r in winners),
                          exitcodes.USAGE)
    names = [r["name"] for r in _rows()]
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.4) or difflib.get_close_matches(
        " ".join(query), [" ".join(_tokens(n)) for n in names], n=4, cutoff=0.4)
    hint = f" (close: {', '.join(close)})" if close else " (see checks/data/gpus.json)"
    raise DoctorError(f"--gpu: unknown GPU {name!r}{hint}", exitcodes.USAGE)


def apply_gpu_whatif(facts: Facts, name: str, desktop_reserve: Optional[bool] = None) -> Facts:
    """A copy of facts whose only GPU is `name` from the table, nothing used on it yet.

    desktop_reserve: subtract what a desktop/WSL holds; None = when these facts say there is one
    (WSL, Windows, or the local GPU drives a display)."""
    row = find_gpu(name)
    out = copy.deepcopy(facts)
    local = selected_gpu(facts)
    total = int(row["memory_gib"] * GIB)
    kind = _desktop_kind(facts, local)
    if desktop_reserve is False:
        kind = None
    elif desktop_reserve and kind is None:
        kind = "display"
    free = total - (DESKTOP_RESERVE[kind] if kind else 0)
    gpu = GPUInfo(index=0, name=row["name"], capability=list(row["capability"]), memory_total=total,
                  memory_used=total - free, memory_free=free,
                  display_active=bool(kind) if desktop_reserve is not None else (local.display_active if local else None),
                  driver_model=local.driver_model if local else None)
    out.nvidia.gpus = [gpu]
    if out.torch.devices or out.torch.cuda_available:
        out.torch.devices = [TorchDevice(index=0, name=row["name"], capability=list(row["capability"]),
                                         total_memory=total, free_memory=free)]
        out.torch.device_count = 1
        out.torch.bf16_native = tuple(row["capability"]) >= (8, 0)
    out.env = {k: v for k, v in out.env.items() if k != "CUDA_VISIBLE_DEVICES"}
    out.whatif_gpu = row["name"]
    out.label = f"{facts.label + ', ' if facts.label else ''}what-if: {row['name']}"
    return out
