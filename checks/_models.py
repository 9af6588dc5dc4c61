"""The config's model shape and checkpoint size, for the host-memory checks. Checks do no I/O:
the shape is the one the config loader already resolved, or the bundled table's (owned by
doctor/config/model_shapes.py; this is a thin, never-raising view of it)."""
from __future__ import annotations

from typing import Optional

# Below this much host RAM even an 8B model cannot be loaded in bf16 (about 16 GiB): the generic
# low-memory note when the config's model is unknown.
SMALL_HOST_RAM = 16 * 1024 ** 3


def model_shape(config) -> Optional[object]:
    """The ModelShape the config loader resolved (local config.json, table, hub), else the bundled
    table's entry for config.model_name, else None."""
    if config is None:
        return None
    resolved = getattr(config, "model_shape", None)
    if resolved is not None:
        return resolved
    name = getattr(config, "model_name", None)
    if not name:
        return None
    try:
        from doctor.config.model_shapes import table_lookup

        return table_lookup(name)
    except Exception:  # a table or module problem must not take the check down with it
        return None


def is_prequantized_name(name: Optional[str]) -> bool:
    """'unsloth/Meta-Llama-3.1-8B-bnb-4bit': a checkpoint saved in 4 bits (about 1/4 of bf16)."""
    return bool(name) and any(tag in name.lower() for tag in ("bnb-4bit", "-4bit", "awq", "gptq"))


def is_prequantized(config) -> bool:
    """The checkpoint on disk is already 4-bit (config.json says so, or the name does)."""
    shape = model_shape(config)
    return getattr(shape, "prequantized", None) == "4bit" or is_prequantized_name(getattr(config, "model_name", None))


def checkpoint_bytes(config) -> Optional[int]:
    """Approximate size of the checkpoint as loaded from disk: 2 bytes/param (bf16), or about
    0.55 bytes/param for pre-quantised 4-bit uploads (weights 0.5 + embeddings/norms kept in 16 bit)."""
    shape = model_shape(config)
    if shape is None:
        return None
    params = shape.total_params
    if is_prequantized(config):
        return int(shape.linear_params * 0.5 + (params - shape.linear_params) * 2)
    return params * 2


def load_ram_need(config) -> Optional[int]:
    """Host RAM that loading the config's model wants: twice the checkpoint it reads (loading peaks
    near the checkpoint size, unsloth-on-the-gpu-machine.md; 2x leaves room for the OS, the dataset
    and the page cache: the heuristic of unsloth-failure-modes.md section 4.4)."""
    ckpt = checkpoint_bytes(config)
    return 2 * ckpt if ckpt is not None else None
