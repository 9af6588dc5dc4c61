"""LoRA settings that cost speed or memory under Unsloth."""
from __future__ import annotations

from checks import check
from doctor.config.model import TrainingConfig
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity


@check(id="config-lora", title="lora_dropout > 0 under Unsloth (slow path, more activation memory)",
       finding_ids=("config.unsloth-lora-dropout",), needs_config=True, order=75)
def config_lora(facts: Facts, config: TrainingConfig) -> list[Finding]:
    if config.framework != "unsloth" or not config.lora_dropout:
        return []
    return [Finding(
        id="config.unsloth-lora-dropout", severity=Severity.WARNING,
        title=f"lora_dropout = {config.lora_dropout} turns off Unsloth's fast LoRA kernels",
        why="Unsloth's fused LoRA path needs lora_dropout = 0 (\"Supports any, but = 0 is optimized\"); with "
            "dropout PEFT also keeps a dropped copy and a mask of every adapted input, about 66% more "
            "activation memory per layer on Llama 8B (docs/knowledge/vram-and-hang.md C6).",
        remediation="Use lora_dropout = 0 unless you measured that dropout helps your data.",
        evidence={"framework": "unsloth", "lora_dropout": config.lora_dropout},
        config_changes=[ConfigChange("lora_dropout", 0, "Unsloth's optimized LoRA path")],
        confidence=0.8, fix_cost=1)]
