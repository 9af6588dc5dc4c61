"""Builders for the environment-check tests: hand-written Facts for machines we do not have, the
reference training config of unslothai/unsloth#1010, and small finders over findings."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Optional

from doctor.config.model import AUTO_NATIVE, NOT_AUTO_NATIVE, TrainingConfig
from doctor.facts import (Facts, GPUInfo, LibcudaInfo, NvidiaInfo, PackageInfo, PlatformInfo, ProbeStatus,
                          TorchDevice, TorchInfo, canonical_name)
from doctor.findings import Finding
from doctor.units import GIB  # noqa: F401  (re-exported to the tests)

SNAPSHOTS = Path(__file__).resolve().parent.parent / "examples" / "facts"
REFERENCE = "wsl2-2080ti-unsloth-2024.8.json"

ARCH_CU124 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
ARCH_CU128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]


def snapshot(name: str) -> Facts:
    return Facts.from_dict(json.loads((SNAPSHOTS / name).read_text()))


def snapshot_names() -> list[str]:
    return sorted(p.name for p in SNAPSHOTS.glob("*.json"))


def linux_gpu(name: str = "NVIDIA GeForce RTX 4090", cap: tuple[int, int] = (8, 9), count: int = 1,
              driver: str = "570.133.07", cuda_driver: Optional[str] = "12.8",
              torch: str = "2.7.0+cu128", cuda: Optional[str] = "12.8", arch: Optional[list[str]] = None,
              memory: int = 24 * GIB, **packages: str) -> Facts:
    """A healthy native-Linux machine with `count` identical GPUs; packages: name=version."""
    bf16 = cap >= (8, 0)
    f = Facts(
        label="hand-written test machine",
        platform=PlatformInfo(system="Linux", kernel_release="6.8.0-57-generic", os_name="Ubuntu 24.04 LTS",
                              machine="x86_64", python_version="3.11.9", cpu_count=16, ram_total=64 * GIB,
                              ram_available=60 * GIB, swap_total=8 * GIB, swap_free=8 * GIB, shm_total=32 * GIB,
                              shm_free=32 * GIB, cwd="/home/u/ft", cwd_filesystem="ext4"),
        torch=TorchInfo(importable=True, version=torch, cuda_version=cuda, cuda_available=True,
                        device_count=count,
                        devices=[TorchDevice(i, name, list(cap), memory, memory) for i in range(count)],
                        arch_list=list(ARCH_CU128 if arch is None else arch), bf16_supported=True,
                        bf16_native=bf16),
        nvidia=NvidiaInfo(source="nvml", driver_version=driver, cuda_driver_version=cuda_driver,
                          gpus=[GPUInfo(i, name, uuid=f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd",
                                        capability=list(cap), memory_total=memory, memory_used=0,
                                        memory_free=memory, display_active=False)
                                for i in range(count)]),
        libcuda=LibcudaInfo(ldconfig_paths=["/lib/x86_64-linux-gnu/libcuda.so.1"],
                            resolved=f"/usr/lib/x86_64-linux-gnu/libcuda.so.{driver}"),
        probes=[ProbeStatus(n) for n in ("platform", "packages", "env", "nvidia", "torch", "libcuda")],
    )
    set_packages(f, torch=torch, **packages)
    return f


def set_packages(f: Facts, **packages: Optional[str]) -> Facts:
    """Install (version) or uninstall (None) packages; keyword names use _ for - ."""
    for name, version in packages.items():
        key = canonical_name(name)
        old = f.packages.get(key)
        f.packages[key] = PackageInfo(key, version, requires=list(old.requires) if old and version else [],
                                      requires_python=old.requires_python if old and version else None)
    return f


def requires(f: Facts, package: str, *lines: str, python: Optional[str] = None) -> Facts:
    info = f.packages[canonical_name(package)]
    info.requires = list(lines)
    info.requires_python = python
    return f


def as_wsl2(f: Facts, driver: str = "560.94", cuda_driver: Optional[str] = "12.6", display: bool = True) -> Facts:
    f = copy.deepcopy(f)
    p = f.platform
    p.is_wsl, p.wsl_version = True, 2
    p.kernel_release = "5.15.153.1-microsoft-standard-WSL2"
    p.wsl_signals = ["kernel release 5.15.153.1-microsoft-standard-WSL2", "/dev/dxg"]
    f.nvidia.driver_version, f.nvidia.cuda_driver_version = driver, cuda_driver
    for g in f.nvidia.gpus:
        g.display_active, g.driver_model = display, "WDDM"
    f.libcuda = LibcudaInfo(ldconfig_paths=["/usr/lib/wsl/lib/libcuda.so.1"],
                            resolved="/usr/lib/wsl/lib/libcuda.so.1", wsl_lib_present=True)
    return f


def reference_config(**overrides) -> TrainingConfig:
    """The Unsloth Llama 3.1 8B notebook the #1010 reporter ran (August-2024 README defaults)."""
    values = dict(framework="unsloth", model_name="unsloth/Meta-Llama-3.1-8B-bnb-4bit", max_seq_length=2048,
                  load_in_4bit=True, lora_r=16, lora_alpha=16, lora_dropout=0,
                  use_gradient_checkpointing="unsloth", per_device_train_batch_size=2,
                  gradient_accumulation_steps=4, fp16=NOT_AUTO_NATIVE, bf16=AUTO_NATIVE, optim="adamw_8bit",
                  logging_steps=1, max_steps=60, output_dir="outputs", seed=3407)
    values.update(overrides)
    return TrainingConfig(**values)


def ids(findings: list[Finding]) -> list[str]:
    return [f.id for f in findings]


def one(findings: list[Finding], fid: str) -> Finding:
    hits = [f for f in findings if f.id == fid]
    assert len(hits) == 1, f"expected one {fid}, got {ids(findings)}"
    return hits[0]


def changes(finding: Finding) -> dict:
    return {c.setting: c.value for c in finding.config_changes}
