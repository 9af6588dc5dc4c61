"""What a training script says about its workload beyond single keywords: which trainer runs
(GRPO, DPO, SFT ...), whether DPO gets a separate reference model, whether the model is a
vision-language model, the processor's image budget, and the model a TRL trainer loads from a string.

Plain keyword settings (num_generations, use_vllm, fast_inference, precompute_ref_log_probs ...) are
in doctor/config/keys.py like every other setting; this pass reads the call structure around them.
"""
from __future__ import annotations

import ast
from typing import Optional

from doctor.config import keys
from doctor.config.model import TrainingConfig
from doctor.config.python_ast import dotted

# Model classes that load a vision-language model (besides *ForConditionalGeneration).
VISION_CLASSES = ("FastVisionModel", "AutoModelForVision2Seq", "AutoModelForImageTextToText")
# Trainers that generate completions inside the training step.
GENERATING_TRAINERS = ("GRPOTrainer", "RLOOTrainer", "OnlineDPOTrainer")
PREFERENCE_TRAINERS = ("DPOTrainer", "ORPOTrainer", "KTOTrainer", "CPOTrainer")


def _const(node: Optional[ast.AST]):
    return node.value if isinstance(node, ast.Constant) else None


def _kw(call: ast.Call, name: str) -> Optional[ast.keyword]:
    return next((k for k in call.keywords if k.arg == name), None)


def read_workload(cfg: TrainingConfig, an) -> TrainingConfig:
    """Fill the workload fields of cfg from a python_parser.Analysis (pure; never raises on odd code)."""
    trainers = [c for c in an.calls if c.kind == "trainer"]
    if trainers:
        cfg.trainer_class = trainers[-1].name
        trainer = trainers[-1].node
        ref = _kw(trainer, "ref_model")
        if ref is not None:
            cfg.ref_model = "none" if isinstance(ref.value, ast.Constant) and ref.value.value is None else "separate"
        model_kw = _kw(trainer, "model")
        if cfg.model_name is None and model_kw is not None and isinstance(_const(model_kw.value), str):
            # GRPOTrainer(model="Qwen/Qwen2-0.5B-Instruct", ...): TRL loads it itself
            cfg.model_name = model_kw.value.value
            has_peft = any(c.kind in ("peft", "peft_get", "peft_unsloth") for c in an.calls) or \
                _kw(trainer, "peft_config") is not None
            if cfg.full_finetune is None:
                cfg.full_finetune = not has_peft
    loads = [c for c in an.calls if c.kind == "model_load"]
    if loads:
        owner = loads[0].name.split(".")[0]
        if owner in VISION_CLASSES or owner.endswith("ForConditionalGeneration"):
            cfg.vision_model = True
    if cfg.vision_model and _freezes_vision(an.tree):
        cfg.finetune_vision_layers = False
    for node in ast.walk(an.tree):   # processor(max_pixels=...) / AutoProcessor.from_pretrained(..., max_pixels=)
        if isinstance(node, ast.Call) and cfg.max_pixels is None:
            kw = _kw(node, "max_pixels")
            if kw is not None and "processor" in dotted(node.func).lower():
                val = an.resolver.resolve(kw.value, node.lineno)
                try:
                    cfg.max_pixels = keys.coerce("max_pixels", val.value) if val.ok else None
                except keys.Unresolvable:
                    cfg.max_pixels = None
    return cfg


_VISION_ATTRS = ("visual", "vision_tower", "vision_model", "vision_encoder")


def _freezes_vision(tree: ast.Module) -> bool:
    """`model.visual.requires_grad_(False)` or `for p in model.vision_tower.parameters(): p.requires_grad = False`."""
    def vision(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Attribute) and n.attr in _VISION_ATTRS for n in ast.walk(node))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "requires_grad_"
                and node.args and _const(node.args[0]) is False and vision(node.func.value)):
            return True
        if isinstance(node, ast.For) and vision(node.iter) and any(
                isinstance(st, ast.Assign) and _const(st.value) is False and any(
                    isinstance(t, ast.Attribute) and t.attr == "requires_grad" for t in st.targets)
                for st in ast.walk(node)):
            return True
    return False


def is_grpo(cfg: TrainingConfig) -> bool:
    return cfg.trainer_class in GENERATING_TRAINERS or cfg.args_class == "GRPOConfig" or \
        cfg.num_generations is not None


def is_dpo(cfg: TrainingConfig) -> bool:
    return cfg.trainer_class == "DPOTrainer" or cfg.args_class == "DPOConfig"
