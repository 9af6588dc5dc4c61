"""Builds a Facts snapshot (+ TrainingConfig) from a record of the real-report corpus.

A record (tests/reports_corpus/records.jsonl) keeps the environment as its report gave it, in a
compact form: GPU name and capability, driver, torch, packages, OS (linux | wsl2 | windows | colab),
container and /dev/shm, and what torch said at CUDA initialisation. Anything the report did not
give is filled with a healthy default and named in the record's "assumed" list. The record's
log excerpt goes through the log matcher the CLI uses (`doctor run --log`), into the facts.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from checks_helpers import ARCH_CU124, ARCH_CU128, GIB, as_wsl2, linux_gpu, set_packages
from doctor.config.model import TrainingConfig
from doctor.facts import Facts

CORPUS = Path(__file__).resolve().parent / "reports_corpus" / "records.jsonl"
MIB = 1024 ** 2


def load_records(path: Path = CORPUS) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sufficient(records: list[dict]) -> list[dict]:
    return [r for r in records if not r.get("insufficient")]


def _default_driver(cuda: Optional[str]) -> tuple[str, str]:
    """A driver new enough for the torch build (the report named none): 580 for CUDA 13, 575 for
    12.9, else 570."""
    if cuda and int(cuda.split(".")[0]) >= 13:
        return "580.82.07", "13.0"
    if cuda == "12.9":
        return "575.57.08", "12.9"
    return "570.133.07", "12.8"


def _arch(cuda: Optional[str]) -> list[str]:
    """Archs a stock wheel of that CUDA flavour carries: sm_120 only from CUDA 12.8."""
    if not cuda:
        return []
    major, minor = (int(x) for x in cuda.split(".")[:2])
    return list(ARCH_CU128 if (major, minor) >= (12, 8) else ARCH_CU124)


def record_facts(rec: dict) -> Facts:
    env = rec["env"]
    cuda = env.get("torch_cuda")
    driver, cuda_driver = env.get("driver"), env.get("cuda_driver")
    if not driver:
        driver, cuda_driver = _default_driver(cuda)
    torch_version = env.get("torch", "2.6.0+cu124")
    f = linux_gpu(name=env.get("gpu", "NVIDIA A100-SXM4-80GB"), cap=tuple(env.get("cap", [8, 0])),
                  count=env.get("count", 1), driver=driver, cuda_driver=cuda_driver, torch=torch_version,
                  cuda=cuda, arch=env.get("arch", _arch(cuda)), memory=int(env.get("vram_gib", 24) * GIB))
    f.label = f"{rec['id']}: {rec['title']} ({rec['link']})"
    f.platform.python_version = env.get("python", "3.11.9")
    t = f.torch
    if cuda is None:
        t.cuda_available, t.device_count, t.devices, t.arch_list = False, 0, [], []
    if env.get("cuda_available") is False:
        t.cuda_available, t.device_count, t.devices = False, 0, []
    t.init_warning = env.get("init_warning")
    if "bf16_supported" in env:
        t.bf16_supported = env["bf16_supported"]
    os_kind = env.get("os", "linux")
    if os_kind == "wsl2":
        f = as_wsl2(f, driver=driver, cuda_driver=cuda_driver)
        f.platform.os_name = "Ubuntu 22.04.4 LTS"
        if env.get("ldconfig") is not None:
            f.libcuda.ldconfig_paths = list(env["ldconfig"])
    elif os_kind == "windows":
        p = f.platform
        p.system, p.is_windows_native, p.kernel_release, p.os_name = "Windows", True, "10.0.22631", "Windows 11"
        p.shm_total = p.shm_free = None
        for g in f.nvidia.gpus:
            g.driver_model, g.display_active = "WDDM", True
        f.libcuda.ldconfig_paths, f.libcuda.resolved = [], None      # no ldconfig on Windows
    elif os_kind == "colab":
        f.platform.colab = True
        f.platform.os_name = "Ubuntu 22.04.4 LTS"
    if env.get("container"):
        f.platform.container = env["container"]
    if env.get("shm_mib") is not None:
        f.platform.shm_total = f.platform.shm_free = int(env["shm_mib"] * MIB)
    set_packages(f, **{k: v for k, v in env.get("packages", {}).items()})
    if rec.get("log"):
        from doctor.knowledge.logmatch import match_text

        f.log_matches = match_text(rec["log"], source="report excerpt")
    return f


def record_config(rec: dict) -> Optional[TrainingConfig]:
    cfg = rec.get("config")
    return TrainingConfig(**cfg) if cfg else None
