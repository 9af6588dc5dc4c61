"""Helpers for the config / VRAM / patcher tests: hand-written facts for machines we do not have."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from doctor.facts import Facts, GPUInfo, PackageInfo, PlatformInfo, TorchInfo
from doctor.units import GIB  # noqa: F401  (re-exported to the tests)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REFERENCE = EXAMPLES / "train_unsloth_llama31_8b.py"


def make_facts(gpu: Optional[str] = "NVIDIA GeForce RTX 4090", total_gib: float = 24.0,
               free_gib: Optional[float] = None, capability=(8, 9), wsl: bool = False,
               display: bool = False, ram_available_gib: Optional[float] = 64.0,
               packages: Optional[dict[str, str]] = None) -> Facts:
    """A machine with one GPU (or none when gpu=None) and the given package versions."""
    total = int(total_gib * GIB)
    free = int((free_gib if free_gib is not None else total_gib) * GIB)
    gpus = [] if gpu is None else [GPUInfo(index=0, name=gpu, capability=list(capability), memory_total=total,
                                           memory_used=total - free, memory_free=free, display_active=display)]
    facts = Facts(platform=PlatformInfo(system="Linux", is_wsl=wsl, wsl_version=2 if wsl else None,
                                        ram_total=int(2 * (ram_available_gib or 8) * GIB),
                                        ram_available=int(ram_available_gib * GIB) if ram_available_gib else None),
                  torch=TorchInfo(importable=True, version="2.5.1+cu124", cuda_available=gpu is not None))
    facts.nvidia.gpus = gpus
    for name, version in (packages or {}).items():
        facts.packages[name] = PackageInfo(name=name, version=version)
    return facts


def span_slice(source: str, span) -> str:
    """The source text a SourceSpan points at (1-based lines, character columns)."""
    lines = source.splitlines(keepends=True)
    if span.line == span.end_line:
        return lines[span.line - 1][span.col:span.end_col]
    parts = [lines[span.line - 1][span.col:]]
    parts += lines[span.line:span.end_line - 1]
    parts.append(lines[span.end_line - 1][:span.end_col])
    return "".join(parts)


def load_script(rel: str):
    """A benchmark script (not a package module) by its path from the repository root, as its own
    module; its folder goes on sys.path first, as when it runs (the GPU scripts import vram_grid)."""
    import importlib.util
    import sys

    path = ROOT / rel
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
