"""Env probe: the allowlist, and credentials recorded only as "<set>"."""
from __future__ import annotations

from doctor.probes.env import ALLOWED_ENV_PATTERNS, SECRET_PLACEHOLDER, is_allowed, select_env


def test_allowlist_keeps_what_matters_and_drops_the_rest():
    environ = {
        "CUDA_VISIBLE_DEVICES": "0,1", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "LD_LIBRARY_PATH": "/usr/local/cuda/lib64:/usr/lib/wsl/lib", "NCCL_P2P_DISABLE": "1",
        "TORCH_NCCL_BLOCKING_WAIT": "1", "UNSLOTH_COMPILE_DISABLE": "1", "ACCELERATE_MIXED_PRECISION": "bf16",
        "HF_HOME": "/data/hf", "TOKENIZERS_PARALLELISM": "false", "WSL_DISTRO_NAME": "Ubuntu",
        "CUDA_PATH_V12_4": r"C:\CUDA\v12.4", "LOCAL_RANK": "0",
        "PATH": "/usr/bin", "HOME": "/home/me", "AWS_SECRET_ACCESS_KEY": "abc", "SSH_AUTH_SOCK": "/tmp/x",
        "NCCL": "not a prefix match", "RANKING": "not RANK",
    }
    selected = select_env(environ)
    assert set(selected) == {"CUDA_VISIBLE_DEVICES", "PYTORCH_CUDA_ALLOC_CONF", "LD_LIBRARY_PATH",
                             "NCCL_P2P_DISABLE", "TORCH_NCCL_BLOCKING_WAIT", "UNSLOTH_COMPILE_DISABLE",
                             "ACCELERATE_MIXED_PRECISION", "HF_HOME", "TOKENIZERS_PARALLELISM",
                             "WSL_DISTRO_NAME", "CUDA_PATH_V12_4", "LOCAL_RANK"}
    assert selected["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert list(selected) == sorted(selected)


def test_credential_like_names_inside_the_allowlist_are_masked():
    environ = {"UNSLOTH_HF_TOKEN": "hf_abcdef", "ACCELERATE_API_KEY": "k", "NCCL_SECRET": "s",
               "UNSLOTH_DB_PASSWORD": "p", "UNSLOTH_RETURN_LOGITS": "1"}
    selected = select_env(environ)
    assert selected == {"ACCELERATE_API_KEY": SECRET_PLACEHOLDER, "NCCL_SECRET": SECRET_PLACEHOLDER,
                        "UNSLOTH_DB_PASSWORD": SECRET_PLACEHOLDER, "UNSLOTH_HF_TOKEN": SECRET_PLACEHOLDER,
                        "UNSLOTH_RETURN_LOGITS": "1"}
    assert "hf_abcdef" not in repr(selected)


def test_names_are_matched_case_insensitively_for_windows():
    assert is_allowed("Cuda_Path") and is_allowed("nccl_debug")
    assert all(p == p.upper() for p in ALLOWED_ENV_PATTERNS)
