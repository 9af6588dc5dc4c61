"""Which keyword (of which call, or which YAML/JSON key) sets which TrainingConfig field, and how its
value is coerced. One table per source, so the parsers and the patcher agree on every spelling."""
from __future__ import annotations

from typing import Any

from doctor.config.model import AUTO_EMULATED, AUTO_NATIVE, NOT_AUTO_EMULATED, NOT_AUTO_NATIVE

# field -> value kind (see coerce)
KINDS: dict[str, str] = {
    "model_name": "str", "max_seq_length": "int", "dtype": "dtype", "load_in_4bit": "bool",
    "load_in_8bit": "bool", "bnb_4bit_use_double_quant": "bool", "attn_implementation": "str",
    "prepare_model_for_kbit_training": "bool", "lora_r": "int", "lora_alpha": "int",
    "lora_dropout": "float", "target_modules": "list", "modules_to_save": "list",
    "use_gradient_checkpointing": "gc", "trainer_max_seq_length": "int",
    "per_device_train_batch_size": "int", "gradient_accumulation_steps": "int",
    "per_device_eval_batch_size": "int", "eval_strategy": "str", "packing": "bool",
    "fp16": "precision", "bf16": "precision", "optim": "str", "dataloader_num_workers": "int",
    "dataloader_pin_memory": "bool", "dataset_num_proc": "int", "use_liger_kernel": "bool",
    "max_steps": "int", "logging_steps": "int", "output_dir": "str", "seed": "int",
    "full_finetune": "bool", "framework": "str",
}

# Python calls, by the callee's last name. Each maps keyword -> field.
MODEL_LOAD_KEYS = {
    "model_name": "model_name", "pretrained_model_name_or_path": "model_name",
    "max_seq_length": "max_seq_length", "dtype": "dtype", "torch_dtype": "dtype",
    "load_in_4bit": "load_in_4bit", "load_in_8bit": "load_in_8bit",
    "attn_implementation": "attn_implementation", "full_finetuning": "full_finetune",
}
BNB_KEYS = {"load_in_4bit": "load_in_4bit", "load_in_8bit": "load_in_8bit",
            "bnb_4bit_use_double_quant": "bnb_4bit_use_double_quant"}
LORA_KEYS = {"r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
             "target_modules": "target_modules", "modules_to_save": "modules_to_save",
             "use_gradient_checkpointing": "use_gradient_checkpointing"}
PREPARE_KEYS = {"use_gradient_checkpointing": "use_gradient_checkpointing"}
TRAIN_ARGS_KEYS = {
    "per_device_train_batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "max_seq_length": "trainer_max_seq_length", "max_length": "trainer_max_seq_length",
    "packing": "packing", "fp16": "fp16", "bf16": "bf16", "optim": "optim",
    "dataloader_num_workers": "dataloader_num_workers",
    "dataloader_pin_memory": "dataloader_pin_memory", "dataset_num_proc": "dataset_num_proc",
    "eval_strategy": "eval_strategy", "evaluation_strategy": "eval_strategy",
    "per_device_eval_batch_size": "per_device_eval_batch_size",
    "use_liger_kernel": "use_liger_kernel", "max_steps": "max_steps",
    "logging_steps": "logging_steps", "output_dir": "output_dir", "seed": "seed",
    "gradient_checkpointing": "use_gradient_checkpointing",
    "activation_checkpointing": "use_gradient_checkpointing",
    "deepspeed": "deepspeed", "fsdp": "fsdp", "fsdp_config": "fsdp_config",
}
# Old TRL took these on SFTTrainer itself.
TRAINER_KEYS = {"max_seq_length": "trainer_max_seq_length", "packing": "packing",
                "dataset_num_proc": "dataset_num_proc"}

MODEL_CLASSES = ("FastLanguageModel", "FastModel", "FastVisionModel", "AutoModelForCausalLM",
                 "AutoModel", "AutoPeftModelForCausalLM", "AutoModelForVision2Seq")
UNSLOTH_CLASSES = ("FastLanguageModel", "FastModel", "FastVisionModel")
TRAIN_ARGS_CLASSES = ("TrainingArguments", "SFTConfig", "UnslothTrainingArguments",
                      "Seq2SeqTrainingArguments", "DPOConfig", "ORPOConfig", "GRPOConfig", "KTOConfig")
TRAINER_CLASSES = ("SFTTrainer", "Trainer", "UnslothTrainer", "DPOTrainer", "ORPOTrainer",
                   "GRPOTrainer", "KTOTrainer", "Seq2SeqTrainer")

# Where the patcher inserts a field that the file does not set: (call kind, keyword).
INSERT_AT = {
    "per_device_train_batch_size": ("train_args", "per_device_train_batch_size"),
    "gradient_accumulation_steps": ("train_args", "gradient_accumulation_steps"),
    "per_device_eval_batch_size": ("train_args", "per_device_eval_batch_size"),
    "dataloader_num_workers": ("train_args", "dataloader_num_workers"),
    "dataloader_pin_memory": ("train_args", "dataloader_pin_memory"),
    "dataset_num_proc": ("train_args", "dataset_num_proc"),
    "optim": ("train_args", "optim"),
    "packing": ("train_args", "packing"),
    "fp16": ("train_args", "fp16"), "bf16": ("train_args", "bf16"),
    "use_liger_kernel": ("train_args", "use_liger_kernel"),
    "trainer_max_seq_length": ("train_args", "max_length"),
    "max_seq_length": ("model_load", "max_seq_length"),
    "load_in_4bit": ("model_load", "load_in_4bit"),
    "lora_dropout": ("peft", "lora_dropout"),
    "lora_r": ("peft", "r"),
    "use_gradient_checkpointing": ("peft_unsloth", "use_gradient_checkpointing"),
}

_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
           "half": "float16", "float32": "float32", "fp32": "float32", "float": "float32"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class Unresolvable(ValueError):
    pass


def coerce(field: str, value: Any) -> Any:
    """value converted to what `field` holds; raises Unresolvable when it cannot be."""
    kind = KINDS.get(field, "any")
    if value is None:
        return None
    if kind == "int":
        if isinstance(value, bool):
            raise Unresolvable(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        text = value.strip() if isinstance(value, str) else ""
        digits = text[1:] if text[:1] == "-" else text
        # ASCII digits only ("²".isdigit() is True, int("²") fails), and few of them
        if digits.isascii() and digits.isdigit() and len(digits) <= 30:
            return int(text)
        raise Unresolvable(value)
    if kind == "float":
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str) and len(value) <= 64:
                return float(value)
        except (ValueError, OverflowError):
            pass
        raise Unresolvable(value)
    if kind == "bool":
        return _as_bool(value)
    if kind == "gc":
        if isinstance(value, str) and value.strip().lower() in ("unsloth", "offload"):
            return "unsloth"
        return _as_bool(value)
    if kind == "precision":
        if value in (AUTO_NATIVE, NOT_AUTO_NATIVE, AUTO_EMULATED, NOT_AUTO_EMULATED):
            return value
        return _as_bool(value)
    if kind == "dtype":
        text = str(value).split(".")[-1].lower()
        if text in ("auto", "none"):
            return None
        if text in _DTYPES:
            return _DTYPES[text]
        raise Unresolvable(value)
    if kind == "list":
        if isinstance(value, str):   # "q_proj,v_proj" (LLaMA-Factory) or "all-linear"
            items = [v.strip() for v in value.split(",") if v.strip()]
            return ["all-linear" if v in ("all", "all-linear") else v for v in items]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise Unresolvable(value)
    if kind == "str":
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value).split(".")[-1].lower() if field == "eval_strategy" else str(value)
        raise Unresolvable(value)
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise Unresolvable(value)


# -- workloads: GRPO, DPO, vLLM, vision (doctor/config/workloads.py reads the rest) ------------------
KINDS.update({
    "num_generations": "int", "max_prompt_length": "int", "max_completion_length": "int",
    "use_vllm": "bool", "vllm_mode": "str", "vllm_gpu_memory_utilization": "float",
    "fast_inference": "bool", "gpu_memory_utilization": "float", "precompute_ref_log_probs": "bool",
    "finetune_vision_layers": "bool", "max_pixels": "int", "beta": "float",
})
TRAIN_ARGS_KEYS.update({
    "num_generations": "num_generations", "max_prompt_length": "max_prompt_length",
    "max_completion_length": "max_completion_length", "use_vllm": "use_vllm", "vllm_mode": "vllm_mode",
    "vllm_gpu_memory_utilization": "vllm_gpu_memory_utilization",
    "precompute_ref_log_probs": "precompute_ref_log_probs", "beta": "beta",
})
MODEL_LOAD_KEYS.update({"fast_inference": "fast_inference", "gpu_memory_utilization": "gpu_memory_utilization"})
MODEL_CLASSES += ("AutoModelForImageTextToText",)
LORA_KEYS.update({"finetune_vision_layers": "finetune_vision_layers"})
INSERT_AT.update({"vllm_gpu_memory_utilization": ("train_args", "vllm_gpu_memory_utilization"),
                  "gpu_memory_utilization": ("model_load", "gpu_memory_utilization"),
                  "use_vllm": ("train_args", "use_vllm")})
KINDS["vllm_enable_sleep_mode"] = "bool"
TRAIN_ARGS_KEYS["vllm_enable_sleep_mode"] = "vllm_enable_sleep_mode"
