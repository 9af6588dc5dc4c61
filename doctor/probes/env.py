"""The environment variables that matter for fine-tuning, by allowlist (never the whole environment).

ALLOWED_ENV_PATTERNS is the one list: the probe records these, and the bundle redactor imports it.
A variable whose name looks like a credential is recorded as "<set>", never with its value.
"""
from __future__ import annotations

import fnmatch
import os
import re
from typing import Mapping

# fnmatch patterns, matched case-sensitively against upper-cased names (Windows names vary in case).
ALLOWED_ENV_PATTERNS: tuple[str, ...] = (
    # which GPUs and which CUDA
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_HOME", "CUDA_PATH", "CUDA_PATH_V*",
    "CUDA_LAUNCH_BLOCKING", "CUDA_MODULE_LOADING", "LD_LIBRARY_PATH", "BNB_CUDA_VERSION",
    # the allocator (expandable_segments on WSL: FM-03) and torch's NVML check
    "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF", "PYTORCH_NVML_BASED_CUDA_CHECK",
    # Hugging Face caches and offline mode (an apparent hang may be a download: FM-23)
    "HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE", "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER",
    # threads and tokenisers (fork-after-threads deadlocks: FM-13)
    "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS",
    # distributed runs (FM-20)
    "NCCL_*", "TORCH_NCCL_*", "TORCH_DISTRIBUTED_DEBUG", "WORLD_SIZE", "RANK", "LOCAL_RANK",
    "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_*",
    # compile caches (FM-17) and Unsloth's own switches
    "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "UNSLOTH_*",
    "WSL_DISTRO_NAME",
)

# A name with a part (split on "_", "-", ".") ending in one of these is a credential: record only
# that it is set. Whole parts, not substrings, so TOKENIZERS_PARALLELISM keeps its value while
# HF_TOKEN, WANDB_API_KEY and AWS_SECRET_ACCESS_KEY do not.
SECRET_NAME_PARTS: tuple[str, ...] = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL",
                                      "CREDENTIALS", "COOKIE", "AUTH", "PAT")
SECRET_PLACEHOLDER = "<set>"


def is_allowed(name: str) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in ALLOWED_ENV_PATTERNS)


def is_secret_name(name: str) -> bool:
    parts = re.split(r"[_.\-]+", name.upper())
    return any(part.endswith(secret) for part in parts for secret in SECRET_NAME_PARTS)


def select_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The allowlisted variables of environ, credentials masked, sorted by name."""
    return {name: (SECRET_PLACEHOLDER if is_secret_name(name) else value)
            for name, value in sorted(environ.items()) if is_allowed(name)}


def probe() -> dict[str, str]:
    return select_env(os.environ)
