"""What the training child runs: a ChildSpec, built from the user's TrainingConfig (or the reference
config) plus the repro options, and handed to `python -m doctor.repro.child --spec spec.json`.

Every setting the parent could not mirror exactly is said in `notes`; the child adds its own notes
(e.g. adamw_8bit falling back to adamw_torch on CPU) to the event log.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import doctor
from doctor import exitcodes
from doctor.config.model import AUTO_EMULATED, AUTO_NATIVE, NOT_AUTO_EMULATED, NOT_AUTO_NATIVE, TrainingConfig
from doctor.exitcodes import DoctorError
from doctor.repro.faults import Injection
from doctor.repro.shapes import model_shape
from doctor.serde import JsonRecord

# Unsloth's LoRA example targets every projection (examples/train_unsloth_llama31_8b.py).
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

@dataclass
class ChildSpec(JsonRecord):
    events_path: str
    work_dir: str
    backend: str = "auto"                  # auto | unsloth | transformers | torch
    device: str = "auto"                   # auto | cpu | cuda
    model_size: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)   # LlamaConfig kwargs
    model_cache: Optional[str] = None      # where a saved random checkpoint is kept between runs
    max_seq_length: int = 2048
    load_in_4bit: bool = False
    lora_r: int = 16                       # 0 = full fine-tuning, no adapter
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(ALL_PROJECTIONS))
    gradient_checkpointing: Any = False    # True | False | "unsloth"
    batch_size: int = 2
    grad_accum: int = 1
    optim: str = "adamw_torch"
    precision: str = "auto-native"         # bf16 | fp16 | fp32 | auto-native | auto-emulated
    num_workers: int = 0
    pin_memory: Optional[bool] = None
    packing: bool = False
    steps: int = 20
    seed: int = 3407
    learning_rate: float = 2e-4
    lengths: list[int] = field(default_factory=list)      # sample lengths to draw from; [] = all full
    injections: list[Injection] = field(default_factory=list)
    long_sample_factor: float = 4.0        # long-sample: this many times max_seq_length
    squeeze_limit: Optional[int] = None    # host-memory: bytes at most
    notes: list[str] = field(default_factory=list)






def precision_of(cfg: TrainingConfig) -> str:
    """fp16/bf16 flags (booleans or the AUTO_* idioms) -> one precision request for the child."""
    if cfg.bf16 is True:
        return "bf16"
    if cfg.fp16 is True:
        return "fp16"
    if cfg.bf16 in (AUTO_NATIVE,) or cfg.fp16 in (NOT_AUTO_NATIVE,):
        return "auto-native"
    if cfg.bf16 in (AUTO_EMULATED,) or cfg.fp16 in (NOT_AUTO_EMULATED,):
        return "auto-emulated"
    return "fp32"


def build_spec(cfg: TrainingConfig, *, events_path: Path, work_dir: Path, model_size: str, steps: int,
               injections: list[Injection], backend: str, device: str, seed: Optional[int],
               lengths: list[int], squeeze_limit: Optional[int], model_cache: Optional[Path]) -> ChildSpec:
    """Mirror cfg into a ChildSpec, noting every default the config left open."""
    notes: list[str] = []

    def pick(name: str, value, default, why: str = ""):
        if value is None:
            if name in cfg.unresolved:
                notes.append(f"{name} = {cfg.unresolved[name]!r} could not be resolved statically: "
                             f"using {default!r}")
            elif why:
                notes.append(f"{name} not set: using {default!r} ({why})")
            return default
        return value

    spec = ChildSpec(events_path=str(events_path), work_dir=str(work_dir), backend=backend, device=device,
                     model_size=model_size, model=model_shape(model_size, cfg.model_name),
                     model_cache=str(model_cache) if model_cache else None, steps=steps,
                     injections=list(injections), lengths=list(lengths), squeeze_limit=squeeze_limit)
    spec.max_seq_length = int(pick("max_seq_length", cfg.effective_seq_len, 2048, "the reference notebook's"))
    spec.batch_size = int(pick("per_device_train_batch_size", cfg.per_device_train_batch_size, 8,
                               "the TrainingArguments default"))
    spec.grad_accum = int(pick("gradient_accumulation_steps", cfg.gradient_accumulation_steps, 1,
                               "the TrainingArguments default"))
    spec.optim = str(pick("optim", cfg.optim, "adamw_torch", "the TrainingArguments default"))
    spec.load_in_4bit = bool(cfg.load_in_4bit or cfg.load_in_8bit)
    if cfg.load_in_8bit and not cfg.load_in_4bit:
        notes.append("load_in_8bit is mirrored as 4-bit loading")
    if getattr(cfg, "full_finetune", False):
        spec.lora_r = 0
    else:
        spec.lora_r = int(pick("lora_r", cfg.lora_r, 16, "no LoRA rank found: a 16-rank adapter"))
    spec.lora_alpha = int(pick("lora_alpha", cfg.lora_alpha, spec.lora_r))
    spec.lora_dropout = float(pick("lora_dropout", cfg.lora_dropout, 0.0))
    spec.target_modules = list(pick("target_modules", cfg.target_modules, list(ALL_PROJECTIONS),
                                    "every projection, as Unsloth's example"))
    gc_default = "unsloth" if cfg.is_unsloth else False
    spec.gradient_checkpointing = pick("use_gradient_checkpointing", cfg.use_gradient_checkpointing,
                                       gc_default)
    spec.precision = precision_of(cfg)
    spec.num_workers = int(cfg.dataloader_num_workers or 0)
    spec.pin_memory = cfg.dataloader_pin_memory
    spec.packing = bool(cfg.packing)
    if spec.packing:
        notes.append("packing=True is not mirrored: the repro feeds one sample per row")
    spec.seed = int(seed if seed is not None else (cfg.seed if cfg.seed is not None else 3407))
    if spec.backend == "auto" and cfg.framework == "transformers":
        spec.backend = "transformers"
    spec.notes = notes + list(cfg.notes)
    return spec


REFERENCE_SCRIPT = "train_unsloth_llama31_8b.py"


def reference_config_path() -> Path:
    """examples/ in a checkout, doctor/_examples/ in an installed wheel (pyproject force-include)."""
    pkg = Path(doctor.__file__).resolve().parent
    for base in (pkg / "_examples", pkg.parent / "examples"):
        if (base / REFERENCE_SCRIPT).is_file():
            return base / REFERENCE_SCRIPT
    raise DoctorError(f"the reference config {REFERENCE_SCRIPT} is missing from this install; "
                      "pass a training config", exitcodes.INTERNAL)


def reference_config() -> TrainingConfig:
    """The configuration of unslothai/unsloth#1010 (Unsloth's Llama 3.1 8B notebook, August 2024)."""
    from doctor.config.loader import read_config_file

    return read_config_file(reference_config_path())
