"""Range and type checks on every setting the estimator and the checks consume, for values from a
file and from flags alike: a value that parses but cannot be a real setting
(`per_device_train_batch_size = -2**63`, a LoRA dropout of 7) is an error naming where it is
written, never an estimate. One table, so the flags and the files agree."""
from __future__ import annotations

import math
from typing import Any, Optional

from doctor import exitcodes
from doctor.config.keys import KINDS
from doctor.config.model import TrainingConfig
from doctor.exitcodes import DoctorError

# setting -> inclusive (low, high). Generous: far beyond any real run, tight enough that the
# estimator's arithmetic stays finite and meaningful.
RANGES: dict[str, tuple[float, float]] = {
    "max_seq_length": (1, 1 << 24),
    "trainer_max_seq_length": (1, 1 << 24),
    "per_device_train_batch_size": (1, 1 << 16),
    "per_device_eval_batch_size": (1, 1 << 16),
    "gradient_accumulation_steps": (1, 1 << 20),
    "lora_r": (1, 1 << 16),
    "lora_alpha": (0, 1 << 20),
    "lora_dropout": (0.0, 1.0),
    "dataloader_num_workers": (0, 4096),
    "dataset_num_proc": (1, 4096),
    "max_steps": (-1, 1 << 40),              # -1: transformers' "not set"
    "logging_steps": (0, 1 << 40),
    "seed": (-(1 << 63), (1 << 64) - 1),     # what torch.manual_seed accepts
}
ENUMS: dict[str, tuple[str, ...]] = {
    "framework": ("unsloth", "transformers"),
    "dtype": ("bfloat16", "float16", "float32"),
}
MAX_TEXT = 4096                              # a model name or path, an optimizer name ...

_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dtype": (str,)}


def problem(setting: str, value: Any) -> Optional[str]:
    """Why `value` cannot be `setting` (None when it can)."""
    if value is None:
        return None
    kind = KINDS.get(setting)
    allowed = _TYPES.get(kind or "")
    if allowed and (not isinstance(value, allowed) or (kind != "bool" and isinstance(value, bool))):
        return f"expected {'an integer' if kind == 'int' else 'a number' if kind == 'float' else 'a ' + kind}, " \
               f"got {type(value).__name__}"
    if kind == "list" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return "expected a list of names"
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return f"{len(value):,} characters (at most {MAX_TEXT:,})"
    if setting in ENUMS and value not in ENUMS[setting]:
        return f"expected one of {', '.join(ENUMS[setting])}"
    if setting in RANGES:
        low, high = RANGES[setting]
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a number from {low} to {high}"
        if not low <= value <= high:
            what = "an integer" if KINDS.get(setting) == "int" else "a number"
            return f"expected {what} from {low:,} to {high:,}"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_config(cfg: TrainingConfig, exit_code: int = exitcodes.CONFIG_INVALID) -> TrainingConfig:
    """DoctorError for the first setting out of range, with its file and line (or its flag)."""
    for setting in KINDS:
        value = getattr(cfg, setting, None)
        why = problem(setting, value)
        if why is None:
            continue
        flag = cfg.overrides.get(setting)
        if flag:
            raise DoctorError(f"{flag}: cannot use {_shown(value)} for {setting}: {why}", exitcodes.USAGE)
        span = cfg.spans.get(setting)
        where = cfg.source_path or "config"
        if span is not None and span.line:
            where += f":{span.line}"
        raise DoctorError(f"{where}: {setting} = {_shown(value)}: {why}", exit_code)
    return cfg
