"""bf16 requested (or decided by an emulation-counting idiom) on a GPU without bf16 hardware (FM-07)."""
from __future__ import annotations

from typing import Optional

from checks import check
from doctor.config.model import AUTO_EMULATED, NOT_AUTO_EMULATED, TrainingConfig
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity
from doctor.vram.gpus import selected_gpu


def _capability(facts: Facts) -> Optional[tuple[int, int]]:
    gpu = selected_gpu(facts)
    return tuple(gpu.capability) if gpu is not None and gpu.capability else None


@check(id="config-precision", title="bf16 in the config on a GPU below compute capability 8.0",
       finding_ids=("config.bf16-without-hardware-support",), needs_config=True, order=65)
def config_precision(facts: Facts, config: TrainingConfig) -> list[Finding]:
    cc = _capability(facts)
    if cc is None or cc >= (8, 0):
        return []
    asks = []
    if config.bf16 is True:
        asks.append("bf16=True")
    elif config.bf16 == AUTO_EMULATED:
        asks.append("bf16=torch.cuda.is_bf16_supported() (True on this GPU: it counts emulation)")
    if config.dtype == "bfloat16":
        asks.append("dtype=torch.bfloat16")
    if not asks:
        return []
    changes = []
    if config.bf16 in (True, AUTO_EMULATED):
        changes.append(ConfigChange("bf16", False, f"sm_{cc[0]}{cc[1]} has no bf16 hardware"))
        if config.fp16 in (None, False, NOT_AUTO_EMULATED):
            changes.append(ConfigChange("fp16", True, "native half precision on this GPU"))
    return [Finding(
        id="config.bf16-without-hardware-support", severity=Severity.ERROR,
        title=f"The config trains in bf16 on a compute capability {cc[0]}.{cc[1]} GPU",
        why="bf16 needs compute capability >= 8.0. torch.cuda.is_bf16_supported() says True on Turing because "
            "it counts emulation: the run is several times slower, or Triton fails with \"Feature '.bf16' "
            "requires .target sm_80\".",
        remediation="Use fp16 (Unsloth's is_bfloat16_supported() idiom decides correctly), or dtype=None.",
        evidence={"gpu capability": f"{cc[0]}.{cc[1]}", "config": "; ".join(asks)},
        config_changes=changes, failure_mode="FM-07", confidence=0.9, fix_cost=1)]
