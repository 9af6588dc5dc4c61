"""Config flags shared by `doctor run`, `doctor vram` and `doctor repro`, defined once.

`with_config_flags` adds the flags to a typer command's signature and hands the command one
ConfigOverrides object, so every command spells and documents them the same way.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass, fields
from typing import Any, Optional

import typer
from typing_extensions import Annotated

PANEL = "Training config overrides"


@dataclass
class ConfigOverrides:
    model: Optional[str] = None
    batch_size: Optional[int] = None
    seq_len: Optional[int] = None
    grad_accum: Optional[int] = None
    lora_r: Optional[int] = None
    load_in_4bit: Optional[bool] = None
    gc: Optional[str] = None
    optim: Optional[str] = None
    precision: Optional[str] = None
    framework: Optional[str] = None
    packing: Optional[bool] = None
    num_workers: Optional[int] = None
    accelerate_config: Optional[str] = None
    deepspeed: Optional[str] = None
    num_gpus: Optional[int] = None

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


_FLAG_PARAMS = [
    ("model", Annotated[Optional[str], typer.Option("--model", help="Model name or path, e.g. unsloth/Meta-Llama-3.1-8B-bnb-4bit.", rich_help_panel=PANEL)]),
    ("batch_size", Annotated[Optional[int], typer.Option("--batch-size", min=1, help="per_device_train_batch_size.", rich_help_panel=PANEL)]),
    ("seq_len", Annotated[Optional[int], typer.Option("--seq-len", min=1, help="max_seq_length (padded tokens per sample).", rich_help_panel=PANEL)]),
    ("grad_accum", Annotated[Optional[int], typer.Option("--grad-accum", min=1, help="gradient_accumulation_steps.", rich_help_panel=PANEL)]),
    ("lora_r", Annotated[Optional[int], typer.Option("--lora-r", min=1, help="LoRA rank r.", rich_help_panel=PANEL)]),
    ("load_in_4bit", Annotated[Optional[bool], typer.Option("--load-in-4bit/--no-load-in-4bit", help="QLoRA 4-bit base weights.", show_default=False, rich_help_panel=PANEL)]),
    ("gc", Annotated[Optional[str], typer.Option("--gc", help="Gradient checkpointing: true, false or unsloth.", rich_help_panel=PANEL)]),
    ("optim", Annotated[Optional[str], typer.Option("--optim", help="Optimizer, e.g. adamw_8bit, adamw_torch.", rich_help_panel=PANEL)]),
    ("precision", Annotated[Optional[str], typer.Option("--precision", help="bf16, fp16 or fp32.", rich_help_panel=PANEL)]),
    ("framework", Annotated[Optional[str], typer.Option("--framework", help="unsloth or transformers.", rich_help_panel=PANEL)]),
    ("packing", Annotated[Optional[bool], typer.Option("--packing/--no-packing", help="SFT packing.", show_default=False, rich_help_panel=PANEL)]),
    ("num_workers", Annotated[Optional[int], typer.Option("--num-workers", min=0, help="dataloader_num_workers.", rich_help_panel=PANEL)]),
    ("accelerate_config", Annotated[Optional[str], typer.Option("--accelerate-config", help="accelerate config YAML (DeepSpeed / FSDP / multi-GPU): per-rank VRAM.", rich_help_panel=PANEL)]),
    ("deepspeed", Annotated[Optional[str], typer.Option("--deepspeed", help="DeepSpeed config JSON (ZeRO stage, offload): per-rank VRAM.", rich_help_panel=PANEL)]),
    ("num_gpus", Annotated[Optional[int], typer.Option("--num-gpus", min=1, max=100000, help="Ranks the run uses (overrides the accelerate config's num_processes).", rich_help_panel=PANEL)]),
]


def with_config_flags(fn):
    """Decorator: append the config flags to fn's CLI signature; fn receives `overrides=`."""
    sig = inspect.signature(fn)
    # cli.py uses postponed annotations: resolve them, since typer reads __signature__ as is
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = sig.replace(parameters=[p.replace(annotation=hints.get(n, p.annotation))
                                  for n, p in sig.parameters.items()])
    params = [p for name, p in sig.parameters.items() if name != "overrides"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
             for name, ann in _FLAG_PARAMS]
    # keyword-only parameters must come after positional ones
    positional = [p for p in params if p.kind != inspect.Parameter.KEYWORD_ONLY]
    kwonly = [p for p in params if p.kind == inspect.Parameter.KEYWORD_ONLY]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        ov = ConfigOverrides(**{name: kwargs.pop(name, None) for name, _ in _FLAG_PARAMS})
        return fn(*args, overrides=ov, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=positional + kwonly + extra)
    return wrapper
