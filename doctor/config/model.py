"""TrainingConfig: the settings of one training run that the checks and the estimator read.

None means "not set in the file" (the library default applies). A setting whose expression could
not be resolved statically is None *and* listed in `unresolved` with its source text, so it is
reported as unknown instead of guessed.

Two special values for precision flags, because the common idioms decide at run time:
  AUTO_NATIVE    `bf16 = is_bfloat16_supported()` (Unsloth's helper: capability >= 8.0, correct)
  AUTO_EMULATED  `bf16 = torch.cuda.is_bf16_supported()` (counts emulation: True on Turing)
and their negations NOT_AUTO_NATIVE / NOT_AUTO_EMULATED for `fp16 = not ...`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from doctor.config.model_shapes import ModelShape
from doctor.serde import JsonRecord

AUTO_NATIVE = "auto:is_bfloat16_supported"
NOT_AUTO_NATIVE = "auto:not is_bfloat16_supported"
AUTO_EMULATED = "auto:torch.cuda.is_bf16_supported"
NOT_AUTO_EMULATED = "auto:not torch.cuda.is_bf16_supported"


@dataclass
class SourceSpan:
    """Where a setting's value sits in the user's file, for minimal patches."""
    line: int                    # 1-based
    col: int                     # 0-based, start of the value expression
    end_line: int
    end_col: int
    text: str = ""               # the value's source text
    call: Optional[str] = None   # enclosing call, e.g. "SFTConfig"


@dataclass
class TrainingConfig(JsonRecord):
    source_path: Optional[str] = None
    source_kind: Optional[str] = None            # python | yaml | json | flags
    framework: Optional[str] = None              # unsloth | transformers

    # model loading
    model_name: Optional[str] = None
    max_seq_length: Optional[int] = None         # FastLanguageModel.from_pretrained(max_seq_length=)
    dtype: Optional[str] = None                  # "bfloat16" | "float16" | "float32" | None (auto)
    load_in_4bit: Optional[bool] = None
    load_in_8bit: Optional[bool] = None
    bnb_4bit_use_double_quant: Optional[bool] = None
    attn_implementation: Optional[str] = None    # sdpa | flash_attention_2 | eager
    prepare_model_for_kbit_training: Optional[bool] = None

    # LoRA
    lora_r: Optional[int] = None
    lora_alpha: Optional[int] = None
    lora_dropout: Optional[float] = None
    target_modules: Optional[list[str]] = None
    modules_to_save: Optional[list[str]] = None
    use_gradient_checkpointing: Any = None       # True | False | "unsloth"

    # trainer
    trainer_max_seq_length: Optional[int] = None  # SFTConfig max_seq_length / max_length
    per_device_train_batch_size: Optional[int] = None
    gradient_accumulation_steps: Optional[int] = None
    per_device_eval_batch_size: Optional[int] = None
    eval_strategy: Optional[str] = None          # "no" | "steps" | "epoch"
    packing: Optional[bool] = None
    fp16: Any = None                             # bool or one of the AUTO_* markers
    bf16: Any = None
    optim: Optional[str] = None
    dataloader_num_workers: Optional[int] = None
    dataloader_pin_memory: Optional[bool] = None
    dataset_num_proc: Optional[int] = None
    use_liger_kernel: Optional[bool] = None
    max_steps: Optional[int] = None
    logging_steps: Optional[int] = None
    output_dir: Optional[str] = None
    seed: Optional[int] = None

    full_finetune: Optional[bool] = None         # True: no adapter (all weights train); None: unknown
    args_class: Optional[str] = None             # SFTConfig | TrainingArguments | ... (defaults differ)

    # bookkeeping
    unresolved: dict[str, str] = field(default_factory=dict)     # setting -> source text
    spans: dict[str, SourceSpan] = field(default_factory=dict)   # setting -> where it is written
    notes: list[str] = field(default_factory=list)               # parser remarks worth showing
    source_keys: dict[str, str] = field(default_factory=dict)    # setting -> key as spelled in the file,
                                                                 # where spellings differ (max_length/max_seq_length)
    overrides: dict[str, str] = field(default_factory=dict)      # setting -> the flag that set it
    model_shape: Optional[ModelShape] = None     # resolved by the loader (local cache/table/hub)
    model_shape_tried: list[str] = field(default_factory=list)   # where the loader looked for it

    # workloads beyond SFT (doctor/config/workloads.py reads what keywords alone do not say)
    trainer_class: Optional[str] = None          # SFTTrainer | GRPOTrainer | DPOTrainer | ...
    num_generations: Optional[int] = None        # GRPOConfig: completions per prompt
    max_prompt_length: Optional[int] = None      # GRPOConfig / DPOConfig
    max_completion_length: Optional[int] = None  # GRPOConfig
    use_vllm: Optional[bool] = None              # GRPOConfig: generate with vLLM
    vllm_mode: Optional[str] = None              # "colocate" | "server"
    vllm_gpu_memory_utilization: Optional[float] = None   # GRPOConfig (colocate)
    fast_inference: Optional[bool] = None        # Unsloth from_pretrained: vLLM inside, sharing weights
    gpu_memory_utilization: Optional[float] = None        # Unsloth from_pretrained (fast_inference)
    precompute_ref_log_probs: Optional[bool] = None       # DPOConfig
    ref_model: Optional[str] = None              # DPOTrainer(ref_model=): "none" | "separate"
    vision_model: Optional[bool] = None          # loaded with a vision-language class
    finetune_vision_layers: Optional[bool] = None         # Unsloth get_peft_model: train the vision tower
    max_pixels: Optional[int] = None             # processor max_pixels (Qwen-VL): image tokens
    beta: Optional[float] = None                 # GRPO / DPO KL coefficient (GRPO: 0 = no reference)
    vllm_enable_sleep_mode: Optional[bool] = None         # GRPOConfig: vLLM releases its memory while training

    # multi-GPU sharding (doctor/config/sharding.py reads the files; doctor/vram/sharding.py the memory)
    deepspeed: Any = None                        # TrainingArguments deepspeed=: a JSON path or a dict
    fsdp: Any = None                             # TrainingArguments fsdp= ("full_shard auto_wrap", ...)
    fsdp_config: Any = None                      # TrainingArguments fsdp_config= (dict)
    sharding: Optional[dict] = None              # resolved: kind, stage, world, offload_*, source


    # -- effective values, with the library defaults the checks need --
    @property
    def effective_seq_len(self) -> Optional[int]:
        return self.trainer_max_seq_length or self.max_seq_length

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_train_batch_size or 8   # HF TrainingArguments default

    @property
    def is_unsloth(self) -> bool:
        return self.framework == "unsloth"
