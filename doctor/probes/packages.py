"""Installed versions of the fine-tuning stack, read with importlib.metadata only: importing a
package to learn its version can hang, crash or take seconds (torch, unsloth), reading its
METADATA cannot.

A distribution whose metadata is unreadable or lacks a Version becomes PackageInfo(error=...).
Two copies of one distribution on sys.path are reported in `shadows`: the first one wins.
"""
from __future__ import annotations

import os
from importlib import metadata
from typing import Iterable, Optional, Sequence

from doctor.facts import PackageInfo, canonical_name

# Distribution names as published; keys of Facts.packages are their canonical (PEP 503) forms.
PACKAGES: tuple[str, ...] = (
    "unsloth", "unsloth_zoo", "torch", "torchvision", "torchaudio", "triton", "triton-windows",
    "xformers", "bitsandbytes", "transformers", "trl", "peft", "accelerate", "datasets",
    "flash-attn", "torchao", "tokenizers", "safetensors", "huggingface-hub", "cut-cross-entropy",
    "liger-kernel", "deepspeed", "nvidia-ml-py", "pynvml", "numpy",
    "vllm",   # GRPO generation (checks/workloads_vllm.py: its exact torch pin)
    # the CUDA libraries torch's wheel depends on: their versions tell when a system copy on
    # LD_LIBRARY_PATH is older (checks/toolchain.py) and which NCCL comes with torch
    "nvidia-nvjitlink-cu12", "nvidia-cusparse-cu12", "nvidia-cublas-cu12", "nvidia-nccl-cu12",
    "nvidia-nvjitlink", "nvidia-cusparse", "nvidia-cublas", "nvidia-nccl-cu13",
)


def _dist_label(dist: metadata.Distribution) -> str:
    path = getattr(dist, "_path", None)  # PathDistribution keeps its .dist-info folder here
    return os.path.basename(str(path)) if path else "distribution"


def _location(dist: metadata.Distribution) -> Optional[str]:
    try:
        return str(dist.locate_file(""))
    except Exception:
        return None


def _valid_version(text: str) -> bool:
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # packaging is a dependency; without it, accept any non-empty string
        return bool(text.strip())
    try:
        Version(text)
        return True
    except InvalidVersion:
        return False


def read_distribution(name: str, dist: metadata.Distribution) -> PackageInfo:
    """One distribution -> PackageInfo; corrupt metadata becomes error=..., never an exception."""
    info = PackageInfo(name=canonical_name(name), location=_location(dist))
    label = _dist_label(dist)
    try:
        meta = dist.metadata
        version = meta["Version"] if meta is not None else None
    except Exception as exc:  # undecodable bytes, no METADATA file at all, ...
        info.error = f"unreadable metadata in {label}: {type(exc).__name__}: {exc}"
        return info
    if not version or not str(version).strip():
        info.error = f"corrupt metadata in {label}: no Version field"
        return info
    version = str(version).strip()
    if not _valid_version(version):
        info.error = f"corrupt metadata in {label}: invalid Version {version!r}"
        return info
    info.version = version
    requires_python = meta.get("Requires-Python")
    info.requires_python = str(requires_python).strip() if requires_python else None
    try:
        info.requires = list(dist.requires or [])
    except Exception as exc:
        info.error = f"unreadable Requires-Dist in {label}: {type(exc).__name__}: {exc}"
    return info


def _distinct(dists: Iterable[metadata.Distribution]) -> list[metadata.Distribution]:
    """Drop repeats of one folder (a site dir listed twice on sys.path, lib64 -> lib symlinks)."""
    seen, out = set(), []
    for dist in dists:
        path = getattr(dist, "_path", None)
        key = os.path.realpath(str(path)) if path else id(dist)
        if key not in seen:
            seen.add(key)
            out.append(dist)
    return out


def read_package(name: str, path: Optional[Sequence[str]] = None) -> PackageInfo:
    """The distribution `import` would see first on path (default sys.path), plus any it shadows."""
    kwargs = {"name": name} if path is None else {"name": name, "path": list(path)}
    dists = _distinct(metadata.distributions(**kwargs))
    if not dists:
        return PackageInfo(name=canonical_name(name))
    info = read_distribution(name, dists[0])
    for other in dists[1:]:
        shadowed = read_distribution(name, other)
        info.shadows.append(f"{shadowed.version or 'unknown version'} at {shadowed.location}")
    return info


def read_packages(names: Iterable[str] = PACKAGES,
                  path: Optional[Sequence[str]] = None) -> dict[str, PackageInfo]:
    out = {}
    for name in names:
        try:
            out[canonical_name(name)] = read_package(name, path)
        except Exception as exc:  # a broken path entry must not hide the other packages
            out[canonical_name(name)] = PackageInfo(name=canonical_name(name),
                                                    error=f"{type(exc).__name__}: {exc}")
    return out


def probe() -> dict[str, PackageInfo]:
    return read_packages()
