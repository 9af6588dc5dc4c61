"""bf16 on GPUs without bf16 hardware (FM-07).

bf16 needs compute capability >= 8.0. torch.cuda.is_bf16_supported() counts emulation and says
True on Turing (T4, RTX 20xx), so `bf16 = torch.cuda.is_bf16_supported()` (AUTO_EMULATED) picks bf16
there and fails in ptxas ("Feature '.bf16' requires .target sm_80") or crawls in emulation.
Unsloth's is_bfloat16_supported() (AUTO_NATIVE) checks the capability and is right: nothing to say.
"""
from __future__ import annotations

from typing import Optional

from checks import check
from doctor.knowledge import load
from checks._machine import Gpu, cap_str, gpus, sm
from doctor.config.model import AUTO_EMULATED, NOT_AUTO_NATIVE
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity

UNSUPPORTED = "bf16.unsupported-gpu"
EMULATED = "bf16.is-bf16-supported-lies"

LINKS = ["https://github.com/unslothai/unsloth/issues/434", "https://github.com/OptimalScale/LMFlow/issues/88"]


@check(id="bf16", title="bf16 is only asked for on GPUs with bf16 hardware (compute capability >= 8.0)",
       finding_ids=(UNSUPPORTED, EMULATED), order=40)
def bf16(facts: Facts, config=None) -> list[Finding]:
    floor = tuple(next(r["min_capability"] for r in load("gpu_arch")["floors"] if r["feature"] == "bf16"))
    old = [g for g in gpus(facts) if g.capability and g.capability < floor]
    if not old:
        return []
    asks = _asks_for_bf16(config)
    if asks:
        return [_unsupported(facts, config, old, asks)]
    t = facts.torch
    if t.bf16_supported and t.bf16_native is not True:
        return [_emulated(facts, config, old)]
    return []


def _asks_for_bf16(config) -> Optional[str]:
    """Which setting asks for bf16, as the user wrote it, or None."""
    if config is None:
        return None
    if config.bf16 is True:
        return "bf16=True"
    if config.bf16 == AUTO_EMULATED:
        return "bf16=torch.cuda.is_bf16_supported() (True on this GPU through emulation)"
    if config.dtype == "bfloat16":
        return "dtype=torch.bfloat16"
    return None


def _fp16_on_this_gpu(value) -> bool:
    """Will this fp16 value be True on a GPU without native bf16?"""
    return value is True or value == NOT_AUTO_NATIVE


def _unsupported(facts: Facts, config, devs: list[Gpu], asks: str) -> Finding:
    changes = []
    if config.bf16 is True or config.bf16 == AUTO_EMULATED:
        changes.append(ConfigChange("bf16", False, f"{sm(devs[0].capability)} has no bf16 hardware"))
        if not _fp16_on_this_gpu(config.fp16):
            changes.append(ConfigChange("fp16", True, "fp16 mixed precision with loss scaling is what "
                                                      "this GPU runs natively"))
    if config.dtype == "bfloat16":
        # Unsloth's dtype=None picks fp16 here by itself; transformers' torch_dtype takes the string.
        changes.append(ConfigChange("dtype", None, "let Unsloth choose: fp16 on a GPU without bf16")
                       if config.is_unsloth else
                       ConfigChange("dtype", "float16", "load the weights in fp16 on a GPU without bf16"))
    return Finding(
        id=UNSUPPORTED, severity=Severity.ERROR,
        title=f"the config asks for bf16 ({asks.split(' ')[0]}) on {devs[0].name or 'a GPU'} "
              f"(compute capability {cap_str(devs[0].capability)}), which has no bf16",
        why=f"The config sets {asks}. bf16 needs compute capability 8.0 (Ampere); on this GPU Triton "
            "kernels fail to compile (\"Feature '.bf16' requires .target sm_80 or higher\"), transformers "
            "refuses bf16=True, or bf16 runs in slow emulation (cuBLAS falls back to CUDA cores).",
        remediation="Use fp16 here. The portable idiom is Unsloth's `fp16 = not is_bfloat16_supported()`, "
                    "`bf16 = is_bfloat16_supported()` (it checks the capability); never "
                    "torch.cuda.is_bf16_supported(), which counts emulation.",
        evidence={f"{devs[0].source}.capability": cap_str(devs[0].capability), "config.bf16": config.bf16,
                  "config.fp16": config.fp16, "config.dtype": config.dtype,
                  "torch.bf16_supported": facts.torch.bf16_supported, "torch.bf16_native": facts.torch.bf16_native},
        config_changes=changes, links=LINKS, failure_mode="FM-07", confidence=0.95, fix_cost=1)


def _emulated(facts: Facts, config, devs: list[Gpu]) -> Finding:
    # A config that does not use it makes the lie only context; without a config it is a hazard.
    return Finding(
        id=EMULATED, severity=Severity.WARNING if config is None else Severity.INFO,
        title=f"torch.cuda.is_bf16_supported() says True on {devs[0].name or 'this GPU'} "
              f"(compute capability {cap_str(devs[0].capability)}): it counts emulation",
        why="Scripts that choose bf16 with torch.cuda.is_bf16_supported() will pick bf16 on this GPU, "
            "then fail in ptxas or run in slow emulation. The hardware answer is "
            "torch.cuda.is_bf16_supported(including_emulation=False), which is False here.",
        remediation="Choose precision with Unsloth's is_bfloat16_supported() or "
                    "torch.cuda.is_bf16_supported(including_emulation=False); use fp16 on this GPU.",
        evidence={"torch.bf16_supported": facts.torch.bf16_supported,
                  "torch.bf16_native": facts.torch.bf16_native,
                  f"{devs[0].source}.capability": cap_str(devs[0].capability)},
        links=LINKS, failure_mode="FM-07", confidence=0.9, fix_cost=1)
