"""The multi-GPU sharding a run is configured with: an accelerate config YAML, a DeepSpeed JSON, or
TrainingArguments' deepspeed= / fsdp= / fsdp_config=. These are user files: read within
doctor/limits.py's limits (size, line length, nesting, YAML aliases) through the loader's helpers.

The result is a plain dict (TrainingConfig.sharding, JSON round-trips) that doctor/vram/sharding.py
turns into per-rank memory:
  kind      none | ddp | zero | fsdp
  stage     0-3: what is sharded (ZeRO stage; FSDP FULL_SHARD = 3, SHARD_GRAD_OP = 2, NO_SHARD = 0)
  world     ranks the state is sharded over (num_processes x num_machines, or --num-gpus)
  offload_optimizer / offload_param: "cpu" | "nvme" | "none"
  source    where it was read
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from doctor import exitcodes
from doctor.exitcodes import DoctorError

# (path, what) -> the file's text within doctor/limits.py's limits. The loader passes its
# read_limited_text (this module is below the loader: importing it back would be a cycle).
Reader = Callable[[Path, str], str]

# FSDP sharding strategy -> the ZeRO stage it matches (PyTorch FSDP docs, ShardingStrategy:
# FULL_SHARD shards parameters, gradients and optimizer state; SHARD_GRAD_OP keeps parameters
# unsharded outside forward/backward; NO_SHARD is DDP). accelerate writes the enum's name or its
# 1-based number (1 FULL_SHARD, 2 SHARD_GRAD_OP, 3 NO_SHARD, 4 HYBRID_SHARD, 5 _HYBRID_SHARD_ZERO2).
FSDP_STAGE = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2, "NO_SHARD": 0, "HYBRID_SHARD": 3,
              "_HYBRID_SHARD_ZERO2": 2, "1": 3, "2": 2, "3": 0, "4": 3, "5": 2}


def _device(v: Any) -> str:
    v = str(v).lower() if v is not None else "none"
    return v if v in ("cpu", "nvme") else "none"


def _int(v: Any, name: str, default: int, top: int = 100_000) -> int:
    if v is None or v == "auto":
        return default
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):   # NaN, Infinity (json.loads takes both)
        raise DoctorError(f"{name}: expected a whole number, got {v!r}", exitcodes.CONFIG_INVALID)
    if not 0 <= n <= top:
        raise DoctorError(f"{name}: {n} out of range", exitcodes.CONFIG_INVALID)
    return n


def from_deepspeed(ds: dict, source: str) -> dict:
    """A DeepSpeed config mapping (zero_optimization.stage, offload_optimizer.device,
    offload_param.device; DeepSpeed docs, "ZeRO Configurations")."""
    z = ds.get("zero_optimization") or {}
    if not isinstance(z, dict):
        z = {}
    off_o, off_p = z.get("offload_optimizer") or {}, z.get("offload_param") or {}
    stage = _int(z.get("stage"), f"{source}: zero_optimization.stage", 0)
    if stage > 3:
        raise DoctorError(f"{source}: zero_optimization.stage {stage}: DeepSpeed has stages 0-3", exitcodes.CONFIG_INVALID)
    bf16 = bool((ds.get("bf16") or {}).get("enabled")) if isinstance(ds.get("bf16"), dict) else False
    fp16 = (ds.get("fp16") or {}).get("enabled") if isinstance(ds.get("fp16"), dict) else False
    def bucket(key: str):   # elements; "auto": transformers fills hidden_size^2 (its DeepSpeed integration)
        v = z.get(key)
        return "auto" if v == "auto" else None if v is None else _int(v, f"{source}: zero_optimization.{key}", 0, top=10 ** 12)

    return {"kind": "zero", "stage": stage, "world": 0, "source": source,
            "overlap_comm": z.get("overlap_comm") is True, "allgather_bucket_size": bucket("allgather_bucket_size"),
            "reduce_bucket_size": bucket("reduce_bucket_size"),
            "offload_optimizer": _device(off_o.get("device") if isinstance(off_o, dict) else None),
            "offload_param": _device(off_p.get("device") if isinstance(off_p, dict) else None),
            "mixed_precision": bool(bf16 or fp16 is True)}


def read_deepspeed(path: Path, read: Reader) -> dict:
    from doctor.config.structured import load_json_mapping

    return from_deepspeed(load_json_mapping(read(path, "DeepSpeed config"), str(path)), str(path))


def from_fsdp(strategy: Any, offload: Any, source: str) -> dict:
    key = str(strategy).strip().upper() if strategy is not None else "FULL_SHARD"
    if key in ("TRUE", "FALSE"):   # FSDP2's fsdp_reshard_after_forward: True = FULL_SHARD
        key = "FULL_SHARD" if key == "TRUE" else "SHARD_GRAD_OP"
    key = key.split()[0] if key else "FULL_SHARD"   # TrainingArguments fsdp="full_shard auto_wrap"
    if key not in FSDP_STAGE:
        raise DoctorError(f"{source}: unknown FSDP sharding strategy {strategy!r}", exitcodes.CONFIG_INVALID)
    off = offload is True or str(offload).lower() in ("true", "offload")
    return {"kind": "fsdp", "stage": FSDP_STAGE[key], "world": 0, "source": source,
            "offload_optimizer": "cpu" if off else "none", "offload_param": "cpu" if off else "none",
            "mixed_precision": True}


def read_accelerate(path: Path, read: Reader) -> dict:
    """accelerate's config YAML (`accelerate config` writes ~/.cache/huggingface/accelerate/default_config.yaml)."""
    from doctor.config.structured import load_yaml_mapping

    data = load_yaml_mapping(read(path, "accelerate config"), str(path))
    kind = str(data.get("distributed_type") or "NO").upper()
    world = _int(data.get("num_processes"), f"{path}: num_processes", 1) * max(
        1, _int(data.get("num_machines"), f"{path}: num_machines", 1))
    src = str(path)
    if kind == "DEEPSPEED":
        ds = data.get("deepspeed_config") or {}
        ds = ds if isinstance(ds, dict) else {}
        file = ds.get("deepspeed_config_file")
        if file and str(file).lower() != "none":
            p = Path(str(file)).expanduser()
            out = read_deepspeed(p if p.is_absolute() else path.parent / p, read)
        else:
            out = from_deepspeed({"zero_optimization": {
                "stage": ds.get("zero_stage"),
                "offload_optimizer": {"device": ds.get("offload_optimizer_device")},
                "offload_param": {"device": ds.get("offload_param_device")}}}, src)
            out["mixed_precision"] = str(data.get("mixed_precision", "no")).lower() in ("bf16", "fp16")
    elif kind == "FSDP":
        fc = data.get("fsdp_config") or {}
        fc = fc if isinstance(fc, dict) else {}
        strategy = fc.get("fsdp_sharding_strategy")
        if strategy is None and "fsdp_reshard_after_forward" in fc:   # FSDP2 (fsdp_version: 2)
            strategy = fc["fsdp_reshard_after_forward"]
        out = from_fsdp(strategy, fc.get("fsdp_offload_params"), src)
    elif kind in ("MULTI_GPU", "MULTI_NPU", "MULTI_XPU"):
        out = {"kind": "ddp", "stage": 0, "world": 0, "source": src, "offload_optimizer": "none",
               "offload_param": "none", "mixed_precision": False}
    else:
        out = {"kind": "none", "stage": 0, "world": 1, "source": src, "offload_optimizer": "none",
               "offload_param": "none", "mixed_precision": False}
    out["world"] = out["world"] or world
    out["source"] = src
    return out


def resolve(cfg, read: Reader, accelerate: Optional[Path] = None, deepspeed: Optional[Path] = None,
            num_gpus: Optional[int] = None, base: Optional[Path] = None) -> Optional[dict]:
    """The sharding for this run: flags first, then what the script names (deepspeed= path or dict,
    fsdp=); None when nothing is configured. `base`: the script's folder (relative paths)."""
    out = None
    if deepspeed is not None:
        out = read_deepspeed(Path(deepspeed), read)
    elif accelerate is not None:
        out = read_accelerate(Path(accelerate), read)
    elif isinstance(cfg.deepspeed, dict):
        out = from_deepspeed(cfg.deepspeed, "deepspeed= (the script's dict)")
    elif isinstance(cfg.deepspeed, str) and cfg.deepspeed:
        p = Path(cfg.deepspeed).expanduser()
        p = p if p.is_absolute() or base is None else base / p
        if p.is_file():
            out = read_deepspeed(p, read)
        else:
            cfg.notes.append(f"deepspeed={cfg.deepspeed!r} not found next to the script: sharding not estimated")
    elif cfg.fsdp:   # TrainingArguments fsdp="full_shard auto_wrap offload", a list of them, or True
        opts = " ".join(map(str, cfg.fsdp)) if isinstance(cfg.fsdp, (list, tuple)) else str(cfg.fsdp)
        opts = opts.lower() if isinstance(cfg.fsdp, (str, list, tuple)) else "full_shard"
        fc = cfg.fsdp_config if isinstance(cfg.fsdp_config, dict) else {}
        strategy = fc.get("sharding_strategy") or fc.get("fsdp_sharding_strategy") or next(
            (w for w in opts.split() if w.upper() in FSDP_STAGE), "FULL_SHARD")
        out = from_fsdp(strategy, "offload" in opts.split() or fc.get("offload_params") or fc.get("fsdp_offload_params"),
                        "fsdp=")
    if num_gpus is not None:
        out = out or {"kind": "ddp", "stage": 0, "world": 0, "source": "--num-gpus", "offload_optimizer": "none",
                      "offload_param": "none", "mixed_precision": False}
        out["world"] = num_gpus
    if out is not None and not out.get("world"):
        out["world"] = 1
        cfg.notes.append("number of GPUs not given (--num-gpus): 1 assumed, nothing sharded")
    return out
