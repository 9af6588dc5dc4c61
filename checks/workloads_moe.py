"""A mixture-of-experts model loaded in 4 bits where the library in use leaves the experts (most of the
weights) in 16 bits: the model takes 3-4x the memory the user planned for."""
from __future__ import annotations

from checks import check
from doctor.config.model import TrainingConfig
from doctor.facts import Facts
from doctor.findings import Finding, Severity
from doctor.units import gib
from doctor.vram.estimator import NF4_BYTES, estimate_for
from doctor.vram.workloads import expert_params, experts_stay_16bit, moe_extra_params

EXPERTS = "workloads.moe-4bit-experts-unquantized"


@check(id="workloads-moe", title="MoE loaded in 4-bit where the expert layers are not quantised",
       finding_ids=(EXPERTS,), needs_config=True, order=63)
def workloads_moe(facts: Facts, config: TrainingConfig) -> list[Finding]:
    shape = config.model_shape
    if shape is None or not shape.is_moe:
        return []
    est = estimate_for(facts, config)
    if est is None or est.inputs.quant != "4bit":
        return []
    why = experts_stay_16bit(facts, config, shape)
    if why is None:
        return []
    experts = expert_params(shape)
    extra = experts * (est.inputs.param_bytes - NF4_BYTES)
    unsloth = config.framework == "unsloth"
    return [Finding(
        id=EXPERTS, severity=Severity.WARNING,
        title=f"{shape.name or config.model_name}: the 4-bit load leaves {shape.num_experts} experts per layer "
              f"in 16 bits (about {gib(extra)} more than planned)",
        why=f"{why.capitalize()}. The experts are {experts / 1e9:.1f}B of the model's "
            f"{(shape.total_params + moe_extra_params(shape)) / 1e9:.1f}B parameters, so the 'quantized' model "
            "is close to its 16-bit size (bitsandbytes-foundation/bitsandbytes#1849).",
        remediation=("Update Unsloth (its loader quantizes fused experts), " if unsloth else
                     "Use Unsloth's loader (it quantizes fused experts), ") +
                    "or stay on transformers < 5 for this model, or budget the 16-bit experts.",
        commands=["pip install --upgrade unsloth unsloth_zoo"] if unsloth else [],
        evidence={"model": config.model_name, "packages.transformers.version": facts.version("transformers"),
                  "packages.unsloth.version": facts.version("unsloth"), "quantization": "4bit",
                  "experts stored in 16 bits": gib(experts * est.inputs.param_bytes)},
        links=["https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1849",
               "https://github.com/unslothai/unsloth/issues/4032"],
        confidence=0.7, fix_cost=2)]
