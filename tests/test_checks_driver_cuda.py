"""driver_cuda: the compat floor, the GA row per CUDA minor (Linux vs Windows column), max CUDA."""
from __future__ import annotations

from checks.driver_cuda import BELOW_GA, MAX_CUDA, TOO_OLD, driver_cuda
from checks_helpers import as_wsl2, linux_gpu, snapshot
from doctor.findings import Severity


def test_driver_520_with_cu124_is_below_the_cuda12_floor():
    (f,) = driver_cuda(snapshot("driver-too-old.json"), None)
    assert f.id == TOO_OLD and f.severity is Severity.CRITICAL and f.failure_mode == "FM-09"
    assert "525.60.13" in f.why and "525.60.13 or newer" in f.remediation
    assert "ubuntu-drivers" in f.remediation
    # The alternative keeps torch 2.6.0 and picks the CUDA the driver itself reports (11.8).
    assert f.commands[-1] == ("pip install --force-reinstall torch==2.6.0 "
                              "--index-url https://download.pytorch.org/whl/cu118")


def test_wsl_uses_the_windows_column_and_says_where_to_update():
    # 531.00: above Linux's 12.1 GA (530.30.02) but below Windows' (531.14).
    linux = linux_gpu(driver="531.00", cuda_driver=None, torch="2.2.0+cu121", cuda="12.1")
    assert driver_cuda(linux, None) == []
    (f,) = driver_cuda(as_wsl2(linux, driver="531.00", cuda_driver=None), None)
    assert f.id == BELOW_GA and f.severity is Severity.WARNING
    assert "531.14" in f.title and f.evidence["driver column"] == "windows"
    assert "Windows side" in f.remediation and "Never install a Linux driver inside WSL" in f.remediation
    assert any(c.startswith("wsl --shutdown") for c in f.commands)


def test_below_ga_is_silent_when_the_driver_reports_that_cuda_itself():
    facts = linux_gpu(driver="530.10", cuda_driver="12.1", torch="2.2.0+cu121", cuda="12.1")
    assert driver_cuda(facts, None) == []
    facts.nvidia.cuda_driver_version = "12.0"
    (f,) = driver_cuda(facts, None)
    assert f.id == BELOW_GA and "error 222" in f.why


def test_max_cuda_judges_what_the_table_does_not_know():
    minor = linux_gpu(driver="580.65.06", cuda_driver="13.0", torch="2.12.0+cu131", cuda="13.1")
    (f,) = driver_cuda(minor, None)
    assert f.id == MAX_CUDA and f.severity is Severity.WARNING
    major = linux_gpu(driver="", cuda_driver="12.8", torch="2.11.0+cu130", cuda="13.0")
    major.nvidia.driver_version = None
    (f,) = driver_cuda(major, None)
    assert f.id == MAX_CUDA and f.severity is Severity.CRITICAL


def test_healthy_drivers_are_silent():
    assert driver_cuda(snapshot("h100-healthy.json"), None) == []
    assert driver_cuda(snapshot("wsl2-2080ti-unsloth-2024.8.json"), None) == []   # 560.94 >= 531.14
    assert driver_cuda(snapshot("rtx5090-old-torch.json"), None) == []
    assert driver_cuda(snapshot("cpu-only-laptop.json"), None) == []              # no CUDA torch


def test_hard_floor_on_windows_column():
    facts = as_wsl2(linux_gpu(torch="2.5.1+cu124", cuda="12.4"), driver="526.98", cuda_driver="12.0")
    (f,) = driver_cuda(facts, None)
    assert f.id == TOO_OLD and "527.41" in f.why
