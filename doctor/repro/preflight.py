"""`doctor repro` pre-flight: before a child starts, say whether it can run here and how long it
will take. The training stack must import (else: what to install, not "crashed while importing");
a model built on the CPU must fit in the RAM available (the 8b shape in fp32 is 32 GB); and the
expected duration is printed up front, because a default run takes minutes on a loaded laptop.

The duration model is deliberately coarse, from the runs in benchmarks/repro.md: on CPU the tiny
model's step time is overhead per token (0.82 s for 16k tokens, 2 shared cores), larger shapes
scale with parameters x tokens; on a GPU, the H100 8b step (1.74 s for 16k tokens at 8.0e9
parameters) gives parameters x tokens per second.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from doctor import exitcodes
from doctor.exitcodes import DoctorError

STACK = ("torch", "transformers", "peft", "trl", "datasets")   # torch + the [train] extra
CPU_TOKENS_PER_S = 20_000              # tiny model, benchmarks/repro.md (16,384 tokens in 0.82 s)
CPU_PARAM_TOKENS_PER_S = 1.0e10        # past the tiny model: fp32 training on a few cores
GPU_PARAM_TOKENS_PER_S = 7.5e13        # 8.0e9 params x 16,384 tokens / 1.74 s (H100, Unsloth 4-bit)
# imports, model build, trainer set-up (+ compile on the first GPU step): the reference config on
# CPU took ~60 s wall for 20 steps of 0.82 s in benchmarks/repro.md
STARTUP_S = {"cpu": 40.0, "gpu": 60.0}
BUSY_FACTOR = 3                        # the issue measured 4-6 min for that run on a loaded laptop
RAM_MARGIN = 1.25                      # weights, plus LoRA/optimizer/activations on top


@dataclass
class Plan:
    device: str              # cpu | gpu (a guess from /dev, before torch is imported)
    params: int
    weight_bytes: int
    seconds: float
    step_s: float


def missing_modules(backend: str) -> list[str]:
    needed = ("torch", "transformers") if backend == "torch" else STACK
    return [m for m in needed if importlib.util.find_spec(m) is None]


def gpu_visible() -> bool:
    """An NVIDIA device node (native Linux) or WSL2's GPU paravirtualisation device."""
    return Path("/dev/nvidia0").exists() or Path("/dev/dxg").exists()


def param_count(shape: dict) -> int:
    """Parameters of a Llama-architecture model from its LlamaConfig keyword arguments."""
    h, inter, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    heads, kv = shape["num_attention_heads"], shape.get("num_key_value_heads") or shape["num_attention_heads"]
    hd = shape.get("head_dim") or h // heads
    vocab = shape["vocab_size"]
    attn = h * heads * hd * 2 + h * kv * hd * 2          # q, o; k, v
    mlp = 3 * h * inter
    embed = vocab * h * (1 if shape.get("tie_word_embeddings") else 2)
    return embed + layers * (attn + mlp + 2 * h) + h


def plan(shape: dict, device: str, steps: int, tokens_per_step: int) -> Plan:
    on_gpu = device == "cuda" or (device == "auto" and gpu_visible())
    params = param_count(shape)
    weight_bytes = params * (2 if on_gpu else 4)            # bf16 on the GPU, fp32 on the CPU
    if on_gpu:
        step_s = max(0.05, params * tokens_per_step / GPU_PARAM_TOKENS_PER_S)
    else:
        step_s = max(0.01, tokens_per_step / CPU_TOKENS_PER_S, params * tokens_per_step / CPU_PARAM_TOKENS_PER_S)
    kind = "gpu" if on_gpu else "cpu"
    return Plan(device=kind, params=params, weight_bytes=weight_bytes, step_s=step_s,
                seconds=STARTUP_S[kind] + steps * step_s)


def human_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check(shape: dict, *, model_size: str, device: str, backend: str, steps: int,
          tokens_per_step: int, available_ram: Optional[int]) -> Plan:
    """DoctorError (exit 1: this machine cannot run it) when the stack is missing or the model
    cannot fit in RAM; otherwise the plan, whose duration the caller prints."""
    missing = missing_modules(backend)
    if missing:
        what = "torch" if missing == ["torch"] else ("torch and " if "torch" in missing else "") + \
            "the training stack"
        raise DoctorError(f"doctor repro needs {what} ({', '.join(missing)} not importable here): "
                          "pip install torch 'finetune-doctor[train]' in the environment you train in",
                          exitcodes.UNHEALTHY)
    p = plan(shape, device, steps, tokens_per_step)
    need = int(p.weight_bytes * RAM_MARGIN)
    if p.device == "cpu" and available_ram is not None and need > available_ram:
        gib = 1024 ** 3
        raise DoctorError(f"--model-size {model_size} on the CPU needs about {need / gib:.0f} GiB of RAM "
                          f"({p.params / 1e9:.1f}B parameters in fp32), {available_ram / gib:.0f} GiB available: "
                          "use --model-size tiny here, or run it on a GPU machine", exitcodes.UNHEALTHY)
    return p
