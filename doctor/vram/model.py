"""The estimator's vocabulary, below estimator.py, inputs.py and workloads.py (which all use it):
the Inputs the arithmetic takes, a Component of the breakdown, the byte constants and the
optimizer-state lookup. Moved out of estimator.py unchanged (issue 14: no import cycles)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# bnb 4-bit bytes per weight: packed nibbles + fp32 absmax per 64-block, or with double quant an
# 8-bit absmax + one fp32 per 256 blocks (QLoRA paper; vram-and-hang.md C2).
NF4_BYTES = 0.5 + 4 / 64
NF4_DQ_BYTES = 0.5 + (1 + 4 / 256) / 64
LORA_BYTES = 4            # PEFT autocast_adapter_dtype=True keeps adapters in fp32 (C4)


@dataclass(frozen=True)
class Inputs:
    """Everything the arithmetic needs; inputs.py derives it from a TrainingConfig + Facts."""
    batch_size: int
    seq_len: int
    framework: str = "transformers"     # unsloth | transformers
    quant: str = "none"                 # none | 4bit | 8bit
    double_quant: bool = False
    param_bytes: int = 2                # non-quantized parameters: 2 (bf16/fp16) or 4 (fp32)
    upcast: bool = False                # prepare_model_for_kbit_training: non-quantized params -> fp32
    full_finetune: bool = False
    lora_r: int = 16
    lora_targets: tuple[str, ...] = ALL_PROJECTIONS
    lora_dropout: float = 0.0
    modules_to_save: tuple[str, ...] = ()
    optim: str = "adamw_torch"
    gc: str = "hf"                      # off | hf | unsloth (checkpoints offloaded to host RAM)
    attn: str = "sdpa"                  # sdpa | flash_attention_2 | eager
    loss: str = "hf"                    # hf | liger | fused | unsloth-logits
    autocast: bool = True               # the step runs under torch.autocast (Trainer bf16/fp16=True)
    grads_persist: bool = True          # gradients alive through backward (accumulation > 1, or unknown);
                                        # False: zero_grad(set_to_none) freed them, so the backward peak
                                        # holds only the output head's (full fine-tuning)
    workload: Optional[object] = None   # doctor/vram/workloads.Workload (GRPO, DPO, vLLM, vision) # workloads hook
    sharding: tuple = ()                # multi-GPU: TrainingConfig.sharding's items (doctor/vram/sharding.py)

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len


@dataclass
class Component:
    key: str
    label: str
    bytes: float
    at_peak: bool = True                # False: computed, but released before the peak
    token_dependent: bool = False
    note: str = ""


# -- helpers --------------------------------------------------------------------------------------

def _optimizer_row(optim: str, rows: list[dict]) -> Optional[dict]:
    """The row of checks/data/optimizer_state.json naming this TrainingArguments `optim` value."""
    name = (optim or "").lower().split(".")[-1]
    return next((row for row in rows if name in row["names"]), None)


def optimizer_step_temporary(optim: str, param_bytes: float) -> float:
    """Bytes per trainable parameter the optimizer's step() allocates on top of its state
    (checks/data/optimizer_state.json "step_temporaries"; unknown names: one parameter's worth)."""
    from doctor.knowledge import load

    row = _optimizer_row(optim, load("optimizer_state")["step_temporaries"]["rows"])
    return (row["param_multiple"] if row else 1) * param_bytes


def optimizer_bytes(optim: str, param_bytes: float) -> tuple[float, bool]:
    """(state bytes per trainable param, known?) from checks/data/optimizer_state.json."""
    from doctor.knowledge import load

    row = _optimizer_row(optim, load("optimizer_state")["optimizers"])
    if row is None:
        return 2 * param_bytes, False
    return (row["bytes"] if "bytes" in row else row["param_multiple"] * param_bytes), True
