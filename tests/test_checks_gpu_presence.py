"""gpu_presence: no GPU/driver, torch missing, CPU build, CUDA unavailable, CUDA_VISIBLE_DEVICES."""
from __future__ import annotations

import pytest

from checks.gpu_presence import CPU_BUILD, CUDA_UNAVAILABLE, HIDDEN, NO_GPU, TORCH_MISSING, gpu_presence
from checks_helpers import linux_gpu, reference_config, set_packages, snapshot
from doctor.config.model import TrainingConfig
from doctor.facts import ProbeStatus
from doctor.findings import Severity


def test_cpu_laptop_without_unsloth_is_a_warning():
    (f,) = gpu_presence(snapshot("cpu-only-laptop.json"), None)
    assert f.id == NO_GPU and f.severity is Severity.WARNING
    assert f.evidence["nvidia.error"].startswith("NVML Shared Library Not Found")
    assert "nvidia-smi" in f.commands


def test_no_gpu_is_critical_when_unsloth_is_installed_or_configured():
    facts = set_packages(snapshot("cpu-only-laptop.json"), unsloth="2025.1.5")
    assert gpu_presence(facts, None)[0].severity is Severity.CRITICAL
    laptop = snapshot("cpu-only-laptop.json")
    assert gpu_presence(laptop, TrainingConfig(framework="unsloth"))[0].severity is Severity.CRITICAL
    assert gpu_presence(laptop, TrainingConfig(framework="transformers"))[0].severity is Severity.WARNING


def test_no_gpu_is_not_claimed_when_the_nvidia_probe_timed_out_or_on_wsl1():
    facts = snapshot("cpu-only-laptop.json")
    facts.nvidia.error = None
    facts.probes = [p if p.name != "nvidia" else ProbeStatus("nvidia", ok=False, timed_out=True) for p in facts.probes]
    assert gpu_presence(facts, None) == []
    wsl1 = snapshot("cpu-only-laptop.json")
    wsl1.platform.is_wsl, wsl1.platform.wsl_version = True, 1
    assert gpu_presence(wsl1, None) == []      # the wsl check reports WSL1 with its own fix


def test_torch_not_installed_is_a_warning_and_only_when_the_probe_says_so():
    facts = set_packages(linux_gpu(), torch=None)
    facts.torch.importable = False
    (f,) = gpu_presence(facts, None)
    assert f.id == TORCH_MISSING and f.severity is Severity.WARNING
    assert f.commands == ["pip install torch --index-url https://download.pytorch.org/whl/cu128"]
    del facts.packages["torch"]             # the packages probe did not run: unknown, not missing
    assert gpu_presence(facts, None) == []


@pytest.mark.parametrize("version,cuda", [("2.5.1+cpu", None), ("2.5.1", None)])
def test_cpu_build_with_a_gpu_is_critical_and_reinstalls_the_same_torch_for_the_driver(version, cuda):
    facts = linux_gpu(name="Tesla T4", cap=(7, 5), driver="550.54.15", cuda_driver="12.4", torch=version, cuda=cuda,
                      arch=[])
    (f,) = gpu_presence(facts, None)
    assert f.id == CPU_BUILD and f.severity is Severity.CRITICAL and f.failure_mode == "FM-10"
    # cu124 is the newest flavour this 12.4 driver runs that publishes torch 2.5.
    assert f.commands == ["pip install --force-reinstall torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"]


def test_cpu_build_on_windows_explains_pypi():
    facts = linux_gpu(torch="2.10.0+cpu", cuda=None, arch=[])
    facts.platform.system, facts.platform.is_windows_native = "Windows", True
    (f,) = gpu_presence(facts, None)
    assert "PyPI always gives the CPU build" in f.why


def test_driver_too_old_snapshot_reports_cuda_unavailable_with_torchs_words():
    (f,) = gpu_presence(snapshot("driver-too-old.json"), None)
    assert f.id == CUDA_UNAVAILABLE and f.severity is Severity.CRITICAL
    assert "too old (found version 11080)" in f.why
    assert "driver is too old" in f.title
    assert f.evidence["nvidia.driver_version"] == "520.56.06"


@pytest.mark.parametrize("value", ["", "-1", "3", "NoDevFiles", "GPU-ffffffff"])
def test_cuda_visible_devices_hiding_every_gpu(value):
    facts = linux_gpu(count=2)
    facts.env["CUDA_VISIBLE_DEVICES"] = value
    facts.torch.cuda_available, facts.torch.device_count = False, 0
    (f,) = gpu_presence(facts, None)
    assert f.id == HIDDEN and f.severity is Severity.CRITICAL
    assert f.commands[0] == "unset CUDA_VISIBLE_DEVICES"


@pytest.mark.parametrize("value", ["0", "1,0", "GPU-00000001", "0,7"])
def test_cuda_visible_devices_that_leave_a_gpu(value):
    facts = linux_gpu(count=2)
    facts.env["CUDA_VISIBLE_DEVICES"] = value
    assert gpu_presence(facts, None) == []


def test_healthy_machines_have_no_presence_findings():
    assert gpu_presence(linux_gpu(), reference_config()) == []
    assert gpu_presence(snapshot("h100-healthy.json"), None) == []
    assert gpu_presence(snapshot("wsl2-2080ti-unsloth-2024.8.json"), None) == []


def test_rocm_build_is_out_of_scope():
    facts = linux_gpu(torch="2.5.1+rocm6.2", cuda=None)
    facts.torch.hip_version = "6.2"
    assert gpu_presence(facts, None) == []
