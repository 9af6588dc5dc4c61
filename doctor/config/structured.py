"""YAML (axolotl, LLaMA-Factory, HF-style recipes) and JSON (SFTConfig / TrainingArguments /
adapter_config / our own TrainingConfig) configs -> TrainingConfig, with the span of each value."""
from __future__ import annotations

import json
import re
from dataclasses import fields
from typing import Callable, Optional

from doctor import exitcodes, limits
from doctor.config import keys
from doctor.config.model import AUTO_EMULATED, SourceSpan, TrainingConfig
from doctor.exitcodes import DoctorError

# -- key tables per style (the first key naming a field is the one the patcher inserts) ---------------

AXOLOTL_KEYS = {
    "base_model": "model_name", "sequence_len": "max_seq_length",
    "micro_batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "load_in_4bit": "load_in_4bit", "load_in_8bit": "load_in_8bit", "lora_r": "lora_r",
    "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
    "lora_target_modules": "target_modules", "lora_modules_to_save": "modules_to_save",
    "optimizer": "optim", "gradient_checkpointing": "use_gradient_checkpointing",
    "bf16": "bf16", "fp16": "fp16", "sample_packing": "packing",
    "dataloader_num_workers": "dataloader_num_workers",
    "dataloader_pin_memory": "dataloader_pin_memory", "dataset_processes": "dataset_num_proc",
    "eval_batch_size": "per_device_eval_batch_size", "output_dir": "output_dir", "seed": "seed",
    "max_steps": "max_steps", "logging_steps": "logging_steps",
    "liger_fused_linear_cross_entropy": "use_liger_kernel",
}
LLAMAFACTORY_KEYS = {
    "model_name_or_path": "model_name", "cutoff_len": "max_seq_length",
    "per_device_train_batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps", "lora_rank": "lora_r",
    "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout", "lora_target": "target_modules",
    "additional_target": "modules_to_save", "optim": "optim", "bf16": "bf16", "fp16": "fp16",
    "packing": "packing", "dataloader_num_workers": "dataloader_num_workers",
    "dataloader_pin_memory": "dataloader_pin_memory",
    "preprocessing_num_workers": "dataset_num_proc",
    "per_device_eval_batch_size": "per_device_eval_batch_size", "eval_strategy": "eval_strategy",
    "output_dir": "output_dir", "seed": "seed", "max_steps": "max_steps",
    "logging_steps": "logging_steps", "enable_liger_kernel": "use_liger_kernel",
    "double_quantization": "bnb_4bit_use_double_quant",
}
# SFTConfig / TrainingArguments / adapter_config.json keys, as HF writes them.
HF_KEYS = {**keys.TRAIN_ARGS_KEYS, **keys.LORA_KEYS, **keys.BNB_KEYS,
           "model_name_or_path": "model_name", "base_model_name_or_path": "model_name",
           "model_name": "model_name", "attn_implementation": "attn_implementation",
           "torch_dtype": "dtype", "dtype": "dtype"}
CANONICAL_KEYS = {f.name: f.name for f in fields(TrainingConfig) if f.name in keys.KINDS}

STYLE_KEYS = {"axolotl": AXOLOTL_KEYS, "llama-factory": LLAMAFACTORY_KEYS, "hf": HF_KEYS,
              "doctor": CANONICAL_KEYS}


def detect_style(data: dict) -> str:
    if {"base_model", "micro_batch_size", "sequence_len", "adapter"} & data.keys():
        return "axolotl"
    if {"cutoff_len", "finetuning_type", "lora_rank", "quantization_bit", "stage"} & data.keys():
        return "llama-factory"
    if "source_kind" in data or {"lora_r", "trainer_max_seq_length"} & data.keys():
        return "doctor"
    return "hf"


# -- special keys: one key that decides another setting --------------------------------------------

def _axolotl_special(cfg: TrainingConfig, data: dict) -> None:
    adapter = str(data.get("adapter") or "").lower()
    if "adapter" in data:
        cfg.full_finetune = adapter not in ("lora", "qlora")
        if adapter == "qlora" and cfg.load_in_4bit is None:
            cfg.load_in_4bit = True
    if data.get("lora_target_linear") is True and not cfg.target_modules:
        cfg.target_modules = ["all-linear"]
    for key, impl in (("flash_attention", "flash_attention_2"), ("sdp_attention", "sdpa"),
                      ("eager_attention", "eager")):
        if data.get(key) is True:
            cfg.attn_implementation = impl
    if any(data.get(k) for k in ("val_set_size", "evals_per_epoch", "eval_steps")):
        cfg.eval_strategy = cfg.eval_strategy or "steps"
    if cfg.per_device_eval_batch_size is None and cfg.per_device_train_batch_size is not None:
        cfg.per_device_eval_batch_size = cfg.per_device_train_batch_size   # axolotl: eval_batch_size defaults to micro_batch_size
    if str(data.get("bf16", "")).lower() == "auto":   # axolotl: bf16 if torch says it is supported
        cfg.bf16 = AUTO_EMULATED
        cfg.unresolved.pop("bf16", None)
    cfg.prepare_model_for_kbit_training = bool(cfg.load_in_4bit or cfg.load_in_8bit) or None


def _llamafactory_special(cfg: TrainingConfig, data: dict) -> None:
    bits = data.get("quantization_bit")
    if bits in (4, "4"):
        cfg.load_in_4bit = True
    elif bits in (8, "8"):
        cfg.load_in_8bit = True
    if "finetuning_type" in data:
        cfg.full_finetune = str(data["finetuning_type"]).lower() != "lora"
    if data.get("use_unsloth") is True:
        cfg.framework = "unsloth"
    if data.get("use_unsloth_gc") is True:
        cfg.use_gradient_checkpointing = "unsloth"
    elif data.get("disable_gradient_checkpointing") is True:
        cfg.use_gradient_checkpointing = False
    else:   # LLaMA-Factory checkpoints unless told not to
        cfg.use_gradient_checkpointing = True
    flash = str(data.get("flash_attn", "")).lower()
    cfg.attn_implementation = {"fa2": "flash_attention_2", "sdpa": "sdpa", "disabled": "eager"}.get(
        flash, cfg.attn_implementation)
    if data.get("val_size") and not cfg.eval_strategy:
        cfg.eval_strategy = "steps"
    if data.get("enable_liger_kernel") is not None:
        cfg.use_liger_kernel = bool(data["enable_liger_kernel"])
    # whether LLaMA-Factory's own model preparation upcasts like peft's prepare_model_for_kbit_training
    # is not established here: leave it unknown, the estimate's band covers both


def _hf_special(cfg: TrainingConfig, data: dict) -> None:
    quant = data.get("quantization_config")
    if isinstance(quant, dict):
        for key, setting in keys.BNB_KEYS.items():
            if key in quant and getattr(cfg, setting) is None:
                try:
                    setattr(cfg, setting, keys.coerce(setting, quant[key]))
                except keys.Unresolvable:
                    cfg.unresolved[setting] = repr(quant[key])
    if "peft_type" in data or "r" in data:    # adapter_config.json
        cfg.full_finetune = False


SPECIAL: dict[str, Callable[[TrainingConfig, dict], None]] = {
    "axolotl": _axolotl_special, "llama-factory": _llamafactory_special, "hf": _hf_special,
}


def config_from_mapping(data: dict, style: str, kind: str, path: Optional[str],
                        spans: Optional[dict[str, SourceSpan]] = None) -> TrainingConfig:
    """Fill a TrainingConfig from a flat mapping of `style` keys; spans: key -> where its value is."""
    cfg = TrainingConfig(source_path=path, source_kind=kind)
    if style == "doctor":
        cfg = TrainingConfig.from_dict({k: v for k, v in data.items() if k not in ("spans", "model_shape")})
        cfg.source_path, cfg.source_kind = path, kind
    cfg.args_class = {"axolotl": "axolotl", "llama-factory": "llama-factory"}.get(style, cfg.args_class)
    keymap = STYLE_KEYS[style]
    for key, value in data.items():
        setting = keymap.get(key)
        if setting is None:
            continue
        if spans and key in spans:
            cfg.spans[setting] = spans[key]
        if setting in ("trainer_max_seq_length", "eval_strategy", "use_gradient_checkpointing", "dtype"):
            cfg.source_keys[setting] = key
        try:
            setattr(cfg, setting, keys.coerce(setting, value))
        except keys.Unresolvable:
            cfg.unresolved[setting] = json.dumps(value, default=str)
    special = SPECIAL.get(style)
    if special:
        special(cfg, data)
    if cfg.framework is None and style != "doctor":
        cfg.framework = "transformers"
    return cfg


# -- YAML -----------------------------------------------------------------------------------------

def safe_loader():
    """PyYAML's safe loader, in C (libyaml) when available: the pure-Python one takes seconds per
    MB, and a YAML config is read three times (pre-scan, values, spans)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_top_level_spans(text: str) -> dict[str, SourceSpan]:
    """key -> span of its value, for the top-level mapping (yaml marks are 0-based)."""
    import yaml

    root = yaml.compose(text, Loader=safe_loader())
    out: dict[str, SourceSpan] = {}
    if not isinstance(root, yaml.MappingNode):
        return out
    for key_node, value_node in root.value:
        if isinstance(key_node, yaml.ScalarNode):
            start, end = value_node.start_mark, value_node.end_mark
            out[str(key_node.value)] = SourceSpan(
                line=start.line + 1, col=start.column, end_line=end.line + 1, end_col=end.column,
                text=text[start.index:end.index], call=str(key_node.value))
    return out


def yaml_prescan(text: str, name: str, exit_code: int = exitcodes.CONFIG_INVALID) -> None:
    """Refuse, from the event stream and before anything is built, YAML that nests too deeply,
    references itself (an alias inside its own anchor: a cycle) or expands past MAX_YAML_NODES
    through aliases (billion laughs: nine aliases of nine aliases ... of a list). PyYAML's
    parser is iterative; its composer and constructor recurse and expand aliases in memory."""
    import yaml

    sizes: dict[str, int] = {}        # anchor -> nodes it expands to
    stack: list[list] = []            # open collections: [anchor, nodes inside so far, itself included]
    total = aliases = 0               # nodes the constructor would build, aliases expanded

    def add(n: int) -> None:
        nonlocal total
        total += n
        if stack:
            stack[-1][1] += n
        if total > limits.MAX_YAML_NODES:
            how = " through aliases (refused: an alias bomb)" if aliases else ""
            raise DoctorError(f"{name}: more than {limits.MAX_YAML_NODES:,} YAML nodes{how}", exit_code)

    for event in yaml.parse(text, Loader=safe_loader()):
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            add(1)
            stack.append([event.anchor, 1])
            if len(stack) > limits.MAX_NESTING:
                raise DoctorError(f"{name}: line {line}: nested more than {limits.MAX_NESTING} "
                                  "levels deep", exit_code)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, n = stack.pop()
            if anchor is not None:
                sizes[anchor] = n
            if stack:
                stack[-1][1] += n - 1          # its own node was counted at its start
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            add(1)
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.MAX_YAML_ALIASES:
                raise DoctorError(f"{name}: more than {limits.MAX_YAML_ALIASES:,} YAML aliases", exit_code)
            if any(open_anchor == event.anchor for open_anchor, _ in stack):
                raise DoctorError(f"{name}: line {line}: alias *{event.anchor} refers to itself "
                                  "(a cycle)", exit_code)
            add(sizes.get(event.anchor, 1))


def load_yaml_mapping(text: str, name: str) -> dict:
    import yaml

    try:
        yaml_prescan(text, name)
        data = yaml.load(text, Loader=safe_loader())   # the safe loader; libyaml's when built in
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DoctorError(f"{name}: malformed YAML{where}: {problem}", exitcodes.CONFIG_INVALID)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:   # e.g. a date like 2024-02-30
        raise DoctorError(f"{name}: unreadable YAML value: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                          exitcodes.CONFIG_INVALID)
    if not isinstance(data, dict):
        raise DoctorError(f"{name}: expected a YAML mapping of settings, got {type(data).__name__}",
                          exitcodes.CONFIG_INVALID)
    if limits.nesting_depth(data) > limits.MAX_NESTING:
        raise DoctorError(f"{name}: nested more than {limits.MAX_NESTING} levels deep", exitcodes.CONFIG_INVALID)
    return data


def parse_yaml(text: str, path: Optional[str] = None) -> TrainingConfig:
    data = load_yaml_mapping(text, path or "<yaml>")
    return config_from_mapping(data, detect_style(data), "yaml", path, yaml_top_level_spans(text))


# -- JSON -----------------------------------------------------------------------------------------

# Objects that are values, not sections of settings (their keys mean something else inside).
NOT_A_SECTION = frozenset({"quantization_config"})


def json_top_level_spans(text: str) -> dict[str, tuple[int, int, int, int]]:
    """key -> (key start, key end, value start, value end) character offsets, top-level object."""
    return json_object_spans(text, _skip_ws(text, 0))


def json_config_spans(text: str) -> dict[str, tuple[int, int, int, int, Optional[str]]]:
    """The members parse_json reads, with the section they sit in (None: top level):
    key -> (key start, key end, value start, value end, section). Top-level keys win over nested
    ones, and the first section over later ones, as in parse_json."""
    top = json_top_level_spans(text)
    out = {k: (*span, None) for k, span in top.items()}
    for section, (_ks, _ke, vs, _ve) in top.items():
        if section in NOT_A_SECTION or text[vs:vs + 1] != "{":
            continue
        for k, span in json_object_spans(text, vs).items():
            out.setdefault(k, (*span, section))
    return out


def json_object_spans(text: str, i: int) -> dict[str, tuple[int, int, int, int]]:
    """Members of the JSON object that starts at offset i (absolute offsets; {} if none starts there)."""
    dec = json.JSONDecoder()
    out = {}
    if i >= len(text) or text[i] != "{":
        return out
    i = _skip_ws(text, i + 1)
    while i < len(text) and text[i] != "}":
        key, kend = dec.raw_decode(text, i)
        j = _skip_ws(text, kend)
        j = _skip_ws(text, j + 1)           # past ':'
        _value, vend = dec.raw_decode(text, j)
        out[key] = (i, kend, j, vend)
        i = _skip_ws(text, vend)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
    return out


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def offset_to_linecol(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1)
    return line, col


def line_index(text: str):
    """offset -> (line, col) for many offsets of one text: line starts found once, then a bisect
    each (offset_to_linecol per key rescans the text: quadratic in the number of keys)."""
    import bisect

    starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def linecol(offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(starts, offset) - 1
        return i + 1, offset - starts[i]

    return linecol


def load_json_value(text: str, name: str, exit_code: int = exitcodes.CONFIG_INVALID):
    """json.loads within the nesting limit; DoctorError (one line, exit_code) otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DoctorError(f"{name}: not valid JSON at line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg}", exit_code)
    except RecursionError:
        data = None
    except ValueError as exc:   # an integer past Python's 4,300-digit limit
        raise DoctorError(f"{name}: unreadable JSON: {str(exc).splitlines()[0]}", exit_code)
    if data is None and text.strip() != "null" or limits.nesting_depth(data) > limits.MAX_NESTING:
        raise DoctorError(f"{name}: nested more than {limits.MAX_NESTING} levels deep", exit_code)
    return data


def load_json_mapping(text: str, name: str) -> dict:
    data = load_json_value(text, name)
    if not isinstance(data, dict):
        raise DoctorError(f"{name}: expected a JSON object of settings, got {type(data).__name__}",
                          exitcodes.CONFIG_INVALID)
    return data


def parse_json(text: str, path: Optional[str] = None) -> TrainingConfig:
    data = load_json_mapping(text, path or "<json>")
    # A report envelope or our own dump nests the config: take it from there.
    if isinstance(data.get("sections"), dict) and isinstance(data["sections"].get("config"), dict):
        data = data["sections"]["config"]
    spans = {}
    linecol = line_index(text)
    for key, (_ks, _ke, vs, ve, _section) in json_config_spans(text).items():
        line, col = linecol(vs)
        end_line, end_col = linecol(ve)
        spans[key] = SourceSpan(line=line, col=col, end_line=end_line, end_col=end_col,
                                text=text[vs:ve], call=key)
    style = detect_style(data)
    flat = dict(data)
    for key, value in data.items():   # {"model": {...}, "training": {...}}: read nested sections too
        if isinstance(value, dict) and key not in NOT_A_SECTION and style != "doctor":
            for k, v in value.items():
                flat.setdefault(k, v)
    return config_from_mapping(flat, style, "json", path, spans)
