"""torch's view of CUDA, from `import torch` in a child process only: an import that hangs (a wedged
driver, a deadlocking plugin) or segfaults (a binary mismatch) must not take the doctor with it.

The child (scripts/torch_info.py) reports each step before it runs it, so a hang or a crash is
named by the step: `import torch`, `torch.cuda.is_available()`, `torch.cuda.mem_get_info(0)` ...
"""
from __future__ import annotations

from typing import Optional

from doctor.facts import TorchDevice, TorchInfo
from doctor.probes import torch_cache  # torch facts cache (issue 14)
from doctor.probes.child import run_script, unfinished
from doctor.probes.timeouts import TORCH_IMPORT_S, scaled
from doctor.runner import CommandResult

NOT_INSTALLED = "torch is not installed"


def torch_info_from(payload: Optional[dict], res: CommandResult) -> tuple[TorchInfo, Optional[str]]:
    """The child's last report (+ how it ended) -> (TorchInfo, error line or None)."""
    p = payload or {}
    info = TorchInfo()
    stopped = unfinished(payload, res)
    if p.get("installed") is False:
        info.error = NOT_INSTALLED
        return info, None  # a fact about this machine, not a probe failure
    if p.get("import_error"):
        info.error = f"`import torch` failed: {p['import_error']}"
        return info, info.error
    if stopped and p.get("stage") in (None, "import torch"):
        info.error = stopped
        return info, stopped
    info.importable = True
    info.version = p.get("version")
    info.cuda_version = p.get("cuda_version")
    info.hip_version = p.get("hip_version")
    info.cudnn_version = p.get("cudnn_version")
    info.arch_list = list(p.get("arch_list") or [])
    info.cuda_available = p.get("cuda_available")
    info.init_warning = p.get("init_warning")
    info.device_count = int(p.get("device_count") or 0)
    info.devices = [TorchDevice(index=d.get("index", i), name=d.get("name", ""), capability=d.get("capability"),
                                total_memory=d.get("total_memory"), free_memory=d.get("free_memory"))
                    for i, d in enumerate(p.get("devices") or [])]
    info.bf16_supported = p.get("bf16_supported")
    info.bf16_native = p.get("bf16_native")
    info.nccl_version = p.get("nccl_version")
    info.nccl_library = p.get("nccl_library")
    problems = ([stopped] if stopped else []) + list(p.get("errors") or [])
    info.error = "; ".join(problems) or None
    return info, info.error


def probe() -> tuple[TorchInfo, Optional[str]]:
    cached, key = torch_cache.lookup()   # torch facts cache (issue 14): a hit skips `import torch`
    if cached is not None:
        return cached, None
    res, payload = run_script("torch_info", timeout=scaled(TORCH_IMPORT_S))
    info, error = torch_info_from(payload, res)
    torch_cache.store(key, info)         # torch facts cache (issue 14): only a clean, complete answer
    return info, error
