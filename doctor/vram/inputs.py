"""TrainingConfig + Facts -> the estimator's Inputs, applying each library's defaults for what the
config leaves unset (checks/data/library_defaults.json). Unknowns that move memory (is the Unsloth
loss fused? does the script upcast with prepare_model_for_kbit_training?) widen the band instead of
being guessed: the low edge takes the cheaper reading, the high edge the dearer one."""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from doctor.config import defaults
from doctor.config.model import TrainingConfig
from doctor.vram.model import ALL_PROJECTIONS, Inputs


def effective_seq_len(cfg: TrainingConfig, notes: Optional[list[str]] = None) -> int:
    """The padded length of one training sample, as the trainer will cut it."""
    notes = notes if notes is not None else []
    unsloth = cfg.framework == "unsloth"
    if cfg.trainer_max_seq_length:
        return cfg.trainer_max_seq_length
    if cfg.max_seq_length:
        return cfg.max_seq_length
    if unsloth:
        notes.append(f"max_seq_length not set: Unsloth's default {defaults.value('unsloth.max-seq-length')}")
        return defaults.value("unsloth.max-seq-length")
    if cfg.args_class in ("SFTConfig", None):
        n = defaults.value("trl.sft-max-length")
        notes.append(f"sequence length not set: TRL SFTConfig truncates at {n} by default")
        return n
    notes.append("sequence length not set: assumed 2048 (the script's tokenization decides)")
    return 2048


def _quant(cfg: TrainingConfig) -> str:
    if cfg.load_in_4bit:
        return "4bit"
    if cfg.load_in_8bit:
        return "8bit"
    shape = cfg.model_shape
    if shape is not None and shape.prequantized:
        return shape.prequantized
    name = (cfg.model_name or "").lower()
    if "bnb-4bit" in name or "-4bit" in name:
        return "4bit"
    if cfg.framework == "unsloth" and cfg.load_in_4bit is None and cfg.load_in_8bit is None and not cfg.full_finetune:
        return "4bit" if defaults.value("unsloth.load-in-4bit") else "none"
    return "none"


def _gc(cfg: TrainingConfig, facts, notes: list[str]) -> str:
    gc = cfg.use_gradient_checkpointing
    if gc == "unsloth":
        return "unsloth" if cfg.framework == "unsloth" else "hf"
    if gc is True:
        return "hf"
    if gc is False:
        return "off"
    if cfg.framework == "unsloth" and not cfg.full_finetune:
        notes.append("gradient checkpointing not set: Unsloth's get_peft_model default \"unsloth\" (offloaded)")
        return "unsloth" if defaults.value("unsloth.use-gradient-checkpointing") == "unsloth" else "hf"
    if cfg.prepare_model_for_kbit_training and _quant(cfg) != "none":
        return "hf"
    if cfg.args_class == "SFTConfig" or cfg.args_class is None and cfg.source_kind != "python":
        on = defaults.holds("trl.sft-gradient-checkpointing", facts.version("trl") if facts else None)
        if on:
            notes.append("gradient checkpointing not set: TRL's SFTConfig turns it on by default")
            return "hf"
    return "off"


def _param_bytes(cfg: TrainingConfig, facts, quant: str, notes: list[str]) -> int:
    if cfg.dtype == "float32":
        return 4
    if cfg.dtype in ("bfloat16", "float16") or cfg.framework == "unsloth" or quant != "none":
        return 2   # bitsandbytes loading forces a 16-bit dtype when none is given
    if cfg.source_kind in ("yaml", "flags"):
        return 2   # axolotl / LLaMA-Factory / flags: the run's bf16/fp16 dtype
    auto = defaults.holds("hf.from-pretrained-dtype-auto", facts.version("transformers") if facts else None)
    if auto is False:
        notes.append("no dtype given to from_pretrained: transformers < 5 loads float32 weights")
        return 4
    return 2


def inputs_for(cfg: TrainingConfig, facts) -> tuple[Inputs, Inputs, Inputs, list[str]]:
    """(low, mid, high) Inputs and the assumptions made on the way."""
    notes: list[str] = []
    unsloth = cfg.framework == "unsloth"
    batch = cfg.per_device_train_batch_size
    if batch is None:
        batch = defaults.value("hf.per-device-train-batch-size")
        notes.append(f"per_device_train_batch_size not set: the Trainer default {batch}")
    seq = effective_seq_len(cfg, notes)
    window = cfg.model_shape.max_position if cfg.model_shape is not None else None
    if window and seq > window:
        notes.append(f"sequence length {seq} exceeds the model's context window ({window} positions): "
                     "estimated as given; fit suggestions stay within the window")
    quant = _quant(cfg)
    double_quant = cfg.bnb_4bit_use_double_quant
    if double_quant is None and cfg.model_shape is not None and cfg.model_shape.double_quant is not None:
        double_quant = cfg.model_shape.double_quant
    if double_quant is None:
        double_quant = (unsloth and defaults.value("unsloth.double-quant")) or cfg.args_class in ("axolotl", "llama-factory")
    full = bool(cfg.full_finetune)
    r = cfg.lora_r or defaults.value("unsloth.lora-r" if unsloth else "peft.lora-r")
    if cfg.lora_r is None and not full:
        notes.append(f"LoRA r not set: default {r}")
    targets = tuple(cfg.target_modules or defaults.value(
        "unsloth.lora-target-modules" if unsloth else "peft.lora-target-modules"))
    optim = cfg.optim or defaults.value("hf.optim")
    from doctor.vram.model import optimizer_bytes

    if not optimizer_bytes(optim, 4)[1]:
        notes.append(f"optimizer {optim!r} not in the table: assumed AdamW-sized state")
    if cfg.use_liger_kernel:
        loss = "liger"
    elif unsloth:
        fused = defaults.holds("unsloth.fused-loss", facts.version("unsloth") if facts else None)
        loss = "fused" if fused else "unsloth-logits" if fused is False else "unknown-unsloth"
    else:
        loss = "hf"
    attn = cfg.attn_implementation or _default_attn(cfg, unsloth, notes)
    mid = Inputs(batch_size=batch, seq_len=seq, framework=cfg.framework or "transformers", quant=quant,
                 double_quant=bool(double_quant), param_bytes=_param_bytes(cfg, facts, quant, notes),
                 upcast=False, full_finetune=full, lora_r=r, lora_targets=targets,
                 lora_dropout=cfg.lora_dropout or 0.0, modules_to_save=tuple(cfg.modules_to_save or ()),
                 optim=optim, gc=_gc(cfg, facts, notes), attn=attn, loss=loss)
    autocast = _autocast(cfg)
    mid = replace(mid, autocast=autocast is not False)
    if full and (cfg.gradient_accumulation_steps or 1) == 1 and not cfg.sharding:
        # the Trainer's model.zero_grad() (set_to_none=True, torch >= 2.0) frees every gradient after
        # the step: none exists at the backward peak but the output head's (sets 8-10)
        mid = replace(mid, grads_persist=False)
    low, high = mid, mid
    if autocast is None and not unsloth and quant != "none":
        notes.append("mixed precision (bf16/fp16) not set: the high edge assumes none, where an fp32-upcast "
                     "model can run SDPA's math path (seq^2 scores)")
        high = replace(high, autocast=False)
    if quant != "none" and not unsloth:
        prep = cfg.prepare_model_for_kbit_training
        if prep is None:
            notes.append("unknown whether prepare_model_for_kbit_training upcasts embeddings to fp32: "
                         "the band covers both")
            mid, high = replace(mid, upcast=True), replace(high, upcast=True)
        elif prep:
            low, mid, high = replace(low, upcast=True), replace(mid, upcast=True), replace(high, upcast=True)
    if loss == "unknown-unsloth":
        notes.append("unsloth version unknown: fused loss (>= 2024.12) assumed, full bf16 logits in the high edge")
        low, mid = replace(low, loss="fused"), replace(mid, loss="fused")
        high = replace(high, loss="unsloth-logits")
    if not targets or not set(t.split(".")[-1] for t in targets) & (set(ALL_PROJECTIONS) | {
            "all-linear", "qkv_proj", "gate_up_proj"}):
        notes.append(f"target_modules {list(targets)} not recognized: no adapter memory counted")
    return low, mid, high, notes


def _autocast(cfg: TrainingConfig):
    """Does the step run under autocast? The Trainer autocasts when bf16 or fp16 is on (a True or an
    is_bf16_supported() marker on either side: one of the pair is on); both off or absent in a
    TrainingArguments means no mixed precision (its default); None when it cannot be told."""
    vals = [cfg.bf16, cfg.fp16]
    if any(v is True or (isinstance(v, str) and v.startswith("auto:")) for v in vals):
        return True
    if all(v is False for v in vals) or (all(v in (None, False) for v in vals) and cfg.args_class == "TrainingArguments"):
        return False
    return None


def _default_attn(cfg: TrainingConfig, unsloth: bool, notes: list[str]) -> str:
    """What an unset attn_implementation becomes: SDPA, except for the families transformers has no
    SDPA path for (Gemma 2), which run eager attention and store every layer's score matrix."""
    model_type = cfg.model_shape.model_type if cfg.model_shape is not None else ""
    if not unsloth and model_type in defaults.value("transformers.no-sdpa-model-types"):
        notes.append(f"attn_implementation not set: transformers runs {model_type} with eager attention "
                     "(no SDPA), which stores batch x heads x seq^2 attention scores per layer")
        return "eager"
    return "sdpa"
