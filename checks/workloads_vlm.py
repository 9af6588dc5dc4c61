"""A vision-language model whose vision tower trains with gradient checkpointing off: every ViT layer
keeps its activations for every patch of every image in the batch."""
from __future__ import annotations

from checks import check
from doctor.config.model import TrainingConfig
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity
from doctor.units import gib
from doctor.vram.estimator import estimate_for

VISION_GC = "workloads.vlm-vision-no-checkpointing"


@check(id="workloads-vlm", title="VLM with gradient checkpointing off on a trained vision tower",
       finding_ids=(VISION_GC,), needs_config=True, order=64)
def workloads_vlm(facts: Facts, config: TrainingConfig) -> list[Finding]:
    shape = config.model_shape
    if shape is None or not shape.is_vlm:
        return []
    est = estimate_for(facts, config)
    wl = est.inputs.workload if est is not None else None
    if wl is None or not wl.vision_trained or est.inputs.gc != "off":
        return []
    vision_act = est.mid.part("vision-activations")
    text_act = est.mid.part("activations")
    value = "unsloth" if config.framework == "unsloth" else True
    return [Finding(
        id=VISION_GC, severity=Severity.WARNING,
        title=f"The vision tower trains without gradient checkpointing: {gib(vision_act)} of vision activations "
              f"(+ {gib(text_act)} in the language model)",
        why=f"With checkpointing off every one of the {shape.vision_layers} vision layers keeps its activations for "
            f"all {wl.patches_per_image} patches of each image until the backward pass, on top of the language "
            "model's layers; a larger image (dynamic-resolution models take it as it comes) multiplies it.",
        remediation="Turn gradient checkpointing on (Unsloth: use_gradient_checkpointing=\"unsloth\" in "
                    "get_peft_model; transformers: gradient_checkpointing=True), or freeze the vision tower "
                    "(finetune_vision_layers=False), or cap the image size (the processor's max_pixels).",
        evidence={"model": config.model_name, "config.use_gradient_checkpointing": config.use_gradient_checkpointing,
                  "config.finetune_vision_layers": config.finetune_vision_layers,
                  "patches per image": wl.patches_per_image, "vision activations": gib(vision_act)},
        config_changes=[ConfigChange("use_gradient_checkpointing", value,
                                     "recomputes vision and language layers in backward")],
        links=["https://docs.unsloth.ai/basics/vision-fine-tuning"], confidence=0.7, fix_cost=1)]
