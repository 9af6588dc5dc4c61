"""The smoke plan: which steps run on this machine, with which layer and time limit.

Limits are generous (a cold disk, a first compile) and scale with DOCTOR_PROBE_TIMEOUT_SCALE. The
order matters: cheap, low layers first (a broken driver shows in cuda_init, not as ten failures
above it), unsloth last (it patches torch on import).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from doctor.facts import Facts, SmokeStep

# name -> (layer it exercises, base limit in seconds, per GPU?)
STEPS: dict[str, tuple[str, float, bool]] = {
    "cuda_init": ("driver", 60.0, True),
    "matmul_bf16": ("library-binary", 30.0, True),
    "sdpa_flash": ("library-binary", 30.0, True),
    "sdpa_mem_efficient": ("library-binary", 30.0, True),
    "triton_jit": ("compiler", 120.0, True),
    "torch_compile": ("compiler", 240.0, True),
    "bnb_4bit": ("library-binary", 90.0, True),
    "bnb_adam8bit": ("library-binary", 60.0, True),
    "unsloth_import": ("library-binary", 240.0, False),
    "nccl_allreduce": ("interconnect", 90.0, False),
}
PRELUDE_S = 90.0            # the child's `import torch`
PRELUDE_STEP = "import_torch"
PACKAGE_OF = {"triton_jit": "triton", "bnb_4bit": "bitsandbytes", "bnb_adam8bit": "bitsandbytes",
              "unsloth_import": "unsloth"}


@dataclass(frozen=True)
class StepSpec:
    name: str
    layer: str
    limit_s: float
    device: Optional[str] = None


def plan(facts: Facts, only: Optional[list[str]] = None) -> tuple[list[StepSpec], list[SmokeStep]]:
    """(steps to run, steps skipped with the reason) for the GPUs torch sees."""
    from doctor.probes.timeouts import scaled

    count = facts.torch.device_count or len(facts.torch.devices)
    run, skipped = [], []
    for name, (layer, limit, per_gpu) in STEPS.items():
        if only and name not in only:
            continue
        package = PACKAGE_OF.get(name)
        if package and not facts.version(package):
            skipped.append(SmokeStep(name, layer=layer, status="skipped", detail=f"{package} is not installed"))
            continue
        if name == "nccl_allreduce":
            if count < 2:
                skipped.append(SmokeStep(name, layer=layer, status="skipped", detail="one GPU: no pair to test"))
            run += [StepSpec(name, layer, scaled(limit), f"{i}-{j}") for i in range(count) for j in range(i + 1, count)]
        elif per_gpu:
            run += [StepSpec(name, layer, scaled(limit), str(i)) for i in range(count)]
        else:
            run.append(StepSpec(name, layer, scaled(limit)))
    return run, skipped
