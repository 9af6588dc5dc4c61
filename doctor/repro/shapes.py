"""The Llama-3.x-architecture models the repro builds with random weights (nothing is downloaded).

tiny: our own, small enough for CPU CI (milliseconds per step). 1b and 8b take their dimensions
from checks/data/model_shapes.json (Llama-3.2-1B, Llama-3.1-8B, with sources); `config` takes the
shape of the config's own model_name (local config.json, HF cache, or that table; never the hub).
"""
from __future__ import annotations

from typing import Any, Optional

from doctor import exitcodes
from doctor.exitcodes import DoctorError

SIZES = ("tiny", "1b", "8b", "config")
TABLE_MODEL = {"1b": "meta-llama/Llama-3.2-1B", "8b": "meta-llama/Llama-3.1-8B"}

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, tie_word_embeddings=False)
# Llama 3.x positional settings (the same in every published Llama 3.1/3.2 config.json); they do not
# change memory or step time, only what the random model computes.
LLAMA3 = dict(max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5)


def llama_kwargs(shape) -> dict[str, Any]:
    """doctor.config.model_shapes.ModelShape -> LlamaConfig keyword arguments."""
    return dict(hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim, vocab_size=shape.vocab,
                tie_word_embeddings=shape.tied_embeddings)


def model_shape(size: str, model_name: Optional[str] = None) -> dict[str, Any]:
    if size == "tiny":
        return dict(TINY, **LLAMA3)
    from doctor.config.model_shapes import resolve_shape, table_lookup

    if size in TABLE_MODEL:
        shape = table_lookup(TABLE_MODEL[size])
        if shape is None:
            raise DoctorError(f"{TABLE_MODEL[size]} is missing from checks/data/model_shapes.json",
                              exitcodes.INTERNAL)
        return dict(llama_kwargs(shape), **LLAMA3)
    if size == "config":
        lookup = resolve_shape(model_name, allow_network=False)
        if lookup.shape is None:
            raise DoctorError(f"--model-size config: no shape known for model {model_name!r} "
                              f"(looked in: {'; '.join(lookup.tried)}); use tiny, 1b or 8b", exitcodes.USAGE)
        return dict(llama_kwargs(lookup.shape), **LLAMA3)
    raise DoctorError(f"unknown --model-size {size!r}: expected one of {', '.join(SIZES)}", exitcodes.USAGE)
