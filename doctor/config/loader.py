"""load_config: a training script / YAML / JSON and the command-line flags -> one TrainingConfig.

Flags override what the file says (and are remembered in `overrides`). The model's shape is looked
up here, once, so that the checks and the estimator stay pure functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from doctor import exitcodes, limits
from doctor.config import keys
from doctor.config.flags import ConfigOverrides
from doctor.config.model import TrainingConfig
from doctor.exitcodes import DoctorError

SUFFIXES = {".py": "python", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}

# flag attribute -> (setting(s) it sets, flag spelling)
_FLAG_SETTINGS = {
    "model": (("model_name",), "--model"),
    "batch_size": (("per_device_train_batch_size",), "--batch-size"),
    "seq_len": (("max_seq_length", "trainer_max_seq_length"), "--seq-len"),
    "grad_accum": (("gradient_accumulation_steps",), "--grad-accum"),
    "lora_r": (("lora_r",), "--lora-r"),
    "load_in_4bit": (("load_in_4bit",), "--load-in-4bit"),
    "gc": (("use_gradient_checkpointing",), "--gc"),
    "optim": (("optim",), "--optim"),
    "framework": (("framework",), "--framework"),
    "packing": (("packing",), "--packing"),
    "num_workers": (("dataloader_num_workers",), "--num-workers"),
}


def read_config_file(path: Path) -> TrainingConfig:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DoctorError(f"{path}: unsupported config type '{path.suffix or '(none)'}' "
                          "(expected a .py training script, .yaml/.yml or .json)", exitcodes.CONFIG_INVALID)
    if not path.exists():
        raise DoctorError(f"config not found: {path}", exitcodes.CONFIG_INVALID)
    if not path.is_file():
        raise DoctorError(f"{path}: not a file", exitcodes.CONFIG_INVALID)
    text = read_limited_text(path, limits.MAX_CONFIG_BYTES, "config", exitcodes.CONFIG_INVALID)
    if kind == "python":
        from doctor.config.python_parser import parse_python

        return parse_python(text, str(path))
    from doctor.config import structured

    return structured.parse_yaml(text, str(path)) if kind == "yaml" else structured.parse_json(text, str(path))


def read_sharding_file(path: Path, what: str) -> str:
    """An accelerate / DeepSpeed config (a user file): the config limits, exit code 8."""
    return read_limited_text(path, limits.MAX_CONFIG_BYTES, what, exitcodes.CONFIG_INVALID)


def read_limited_text(path: Path, max_bytes: int, what: str, exit_code: int,
                      max_line: Optional[int] = limits.MAX_LINE_CHARS) -> str:
    """A UTF-8 text file within the stated size and line-length limits, checked before parsing;
    DoctorError (one line, `exit_code`) otherwise."""
    if not path.is_file():   # a FIFO or /dev/stdin would block the read forever; a device never ends
        raise DoctorError(f"{path}: not a regular file", exit_code)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DoctorError(f"{path}: {size:,} bytes, over the {max_bytes:,}-byte limit for a {what} file",
                              exit_code)
        with path.open("rb") as fh:   # a file that grew since stat, or a pipe: read one byte past
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise DoctorError(f"{path}: over the {max_bytes:,}-byte limit for a {what} file", exit_code)
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DoctorError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", exit_code)
    except OSError as exc:
        raise DoctorError(f"cannot read {path}: {exc.strerror or exc}", exit_code)
    lineno, length = limits.longest_line(text) if max_line is not None else (0, 0)
    if max_line is not None and length > max_line:
        raise DoctorError(f"{path}:{lineno}: a line of {length:,} characters, over the "
                          f"{max_line:,}-character limit", exit_code)
    return text


def apply_overrides(cfg: TrainingConfig, ov: ConfigOverrides) -> TrainingConfig:
    for attr, (settings, flag) in _FLAG_SETTINGS.items():
        value = getattr(ov, attr)
        if value is None:
            continue
        for setting in settings:
            if setting == "trainer_max_seq_length" and cfg.trainer_max_seq_length is None:
                continue   # --seq-len sets the trainer's length only where the file has one
            try:
                setattr(cfg, setting, keys.coerce(setting, value))
            except keys.Unresolvable:
                raise DoctorError(f"{flag}: cannot use {value!r} (expected "
                                  f"{'true, false or unsloth' if attr == 'gc' else keys.KINDS[setting]})",
                                  exitcodes.USAGE)
            cfg.unresolved.pop(setting, None)
            cfg.overrides[setting] = flag
    if ov.framework is not None and ov.framework not in ("unsloth", "transformers"):
        raise DoctorError(f"--framework: expected unsloth or transformers, got {ov.framework!r}", exitcodes.USAGE)
    if ov.precision is not None:
        _apply_precision(cfg, ov.precision.lower())
    if ov.lora_r is not None:
        cfg.full_finetune = False
    return cfg


def _apply_precision(cfg: TrainingConfig, precision: str) -> None:
    choices = {"bf16": (True, False, "bfloat16"), "fp16": (False, True, "float16"),
               "fp32": (False, False, "float32")}
    if precision not in choices:
        raise DoctorError(f"--precision: expected bf16, fp16 or fp32, got {precision!r}", exitcodes.USAGE)
    cfg.bf16, cfg.fp16, dtype = choices[precision]
    if not (cfg.load_in_4bit or cfg.load_in_8bit):
        cfg.dtype = dtype
    for setting in ("bf16", "fp16"):
        cfg.unresolved.pop(setting, None)
        cfg.overrides[setting] = "--precision"


def load_config(path: Optional[Path], overrides: Optional[ConfigOverrides] = None,
                resolve_shape: bool = True) -> TrainingConfig:
    """The TrainingConfig for `doctor run/vram`: file (if any) + flags, with the model shape."""
    if path is not None:
        cfg = read_config_file(Path(path))
    else:
        cfg = TrainingConfig(source_kind="flags")
    if overrides is not None:
        apply_overrides(cfg, overrides)
    if path is None and cfg.framework is None:
        cfg.framework = "transformers"
    from doctor.config.sharding import resolve as resolve_sharding   # multi-GPU: accelerate / DeepSpeed / FSDP

    ov = overrides or ConfigOverrides()
    cfg.sharding = resolve_sharding(cfg, read_sharding_file, ov.accelerate_config, ov.deepspeed, ov.num_gpus,
                                    Path(path).parent if path is not None else None)
    from doctor.config.validate import validate_config

    validate_config(cfg)
    if resolve_shape:
        attach_shape(cfg)
    return cfg


def attach_shape(cfg: TrainingConfig) -> TrainingConfig:
    from doctor.config.model_shapes import resolve_shape

    lookup = resolve_shape(cfg.model_name)
    cfg.model_shape, cfg.model_shape_tried = lookup.shape, lookup.tried
    return cfg
