"""gpu_arch: compiled arch list vs device capability, the Triton floor, FlashAttention-2."""
from __future__ import annotations

import pytest

from checks.gpu_arch import NO_FA2, NO_KERNELS, TOO_OLD, gpu_arch, kernels_for
from checks_helpers import ARCH_CU124, changes, ids, linux_gpu, set_packages, snapshot
from doctor.config.model import TrainingConfig
from doctor.findings import Severity


@pytest.mark.parametrize("cap,arch,expected", [
    ((8, 6), ["sm_80"], True),            # SASS runs on a higher minor of the same major
    ((8, 6), ["sm_86"], True),
    ((8, 0), ["sm_86"], False),           # ... but not on a lower one
    ((12, 0), ARCH_CU124, False),         # RTX 5090 on a cu124 torch
    ((12, 0), ARCH_CU124 + ["compute_90"], True),   # PTX JIT-compiles forward
    ((9, 0), ["sm_90a"], True),
    ((7, 5), [], None),
])
def test_kernels_for(cap, arch, expected):
    assert kernels_for(cap, arch) is expected


def test_rtx5090_with_cu124_torch_is_critical_with_the_cu128_remedy():
    findings = gpu_arch(snapshot("rtx5090-old-torch.json"), None)
    assert ids(findings) == [NO_KERNELS]
    f = findings[0]
    assert f.severity is Severity.CRITICAL and f.failure_mode == "FM-08"
    assert "sm_120" in f.title and "no kernel image is available" in f.title
    assert "torch >= 2.7" in f.remediation
    assert f.commands == ["pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu128"]
    assert f.evidence["torch.arch_list"] == ARCH_CU124


def test_blackwell_on_a_driver_too_old_for_cu128_says_update_the_driver_first():
    facts = linux_gpu(name="NVIDIA GeForce RTX 5090", cap=(12, 0), driver="560.35.03", cuda_driver="12.6",
                      torch="2.5.1+cu124", cuda="12.4", arch=ARCH_CU124)
    (f,) = gpu_arch(facts, None)
    assert "update it first (>= 570)" in f.remediation
    assert f.commands == ["nvidia-smi", "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu128"]


def test_pascal_is_below_the_triton_floor():
    facts = linux_gpu(name="NVIDIA GeForce GTX 1080", cap=(6, 1), torch="2.5.1+cu124", cuda="12.4", arch=ARCH_CU124)
    (f,) = gpu_arch(facts, None)
    assert f.id == TOO_OLD and f.severity is Severity.WARNING
    set_packages(facts, unsloth="2025.1.5")
    (f,) = gpu_arch(facts, None)
    assert f.severity is Severity.ERROR and "no Unsloth kernels" in f.title


def test_turing_cannot_use_fa2_info_warning_and_config_change():
    t4 = snapshot("turing-bf16.json")
    (f,) = gpu_arch(t4, None)
    assert f.id == NO_FA2 and f.severity is Severity.INFO and not f.config_changes
    (f,) = gpu_arch(t4, TrainingConfig(attn_implementation="flash_attention_2"))
    assert f.severity is Severity.WARNING and changes(f) == {"attn_implementation": "sdpa"}
    (f,) = gpu_arch(t4, TrainingConfig(attn_implementation="sdpa"))
    assert f.severity is Severity.INFO and not f.config_changes       # already the fix
    (f,) = gpu_arch(set_packages(t4, flash_attn="2.6.3"), None)
    assert f.severity is Severity.WARNING and "cannot run on this GPU" in f.remediation


def test_healthy_gpus_have_no_arch_findings():
    assert gpu_arch(snapshot("h100-healthy.json"), TrainingConfig(attn_implementation="flash_attention_2")) == []
    assert gpu_arch(linux_gpu(), None) == []
    assert gpu_arch(snapshot("cpu-only-laptop.json"), None) == []
