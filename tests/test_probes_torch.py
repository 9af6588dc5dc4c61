"""torch probe: the real CPU torch here, and fake torch packages on PYTHONPATH that the real child
process imports: a Turing GPU, an old driver, an old torch API, a missing library, a hang."""
from __future__ import annotations

from importlib.metadata import version as installed_version

import pytest

from doctor.probes import torch_probe
from doctor.runner import CommandResult
from probe_helpers import write_module

FAKE_TORCH_BASE = """
import types, warnings
__version__ = "2.2.0+cu121"
version = types.SimpleNamespace(cuda="12.1", hip=None)
backends = types.SimpleNamespace(cudnn=types.SimpleNamespace(version=lambda: 8902))

class _Props:
    name = "NVIDIA GeForce RTX 2080 Ti"
    major, minor = 7, 5
    total_memory = 11811160064
"""
FAKE_TORCH_TURING = FAKE_TORCH_BASE + """
cuda = types.SimpleNamespace(
    is_available=lambda: True, device_count=lambda: 2, get_device_properties=lambda i: _Props(),
    mem_get_info=lambda i: (10737418240 - i, 11811160064), get_arch_list=lambda: ["sm_75", "sm_80", "sm_90"],
    # like torch >= 2.3: True counts emulation, including_emulation=False asks the hardware
    is_bf16_supported=lambda including_emulation=True: including_emulation,
    get_device_capability=lambda: (7, 5))
"""
FAKE_TORCH_OLD_API = FAKE_TORCH_BASE + """
def _is_bf16_supported():  # torch < 2.3: no including_emulation argument
    return True
cuda = types.SimpleNamespace(
    is_available=lambda: True, device_count=lambda: 1, get_device_properties=lambda i: _Props(),
    mem_get_info=lambda i: (1, 2), get_arch_list=lambda: ["sm_75"], is_bf16_supported=_is_bf16_supported,
    get_device_capability=lambda: (7, 5))
"""
FAKE_TORCH_OLD_DRIVER = FAKE_TORCH_BASE + """
def _is_available():
    warnings.warn("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). "
                  "Please update your GPU driver.")
    return False
cuda = types.SimpleNamespace(is_available=_is_available, get_arch_list=lambda: ["sm_50", "sm_90"])
"""


@pytest.fixture
def fake_torch(tmp_path, monkeypatch):
    def install(code: str):
        write_module(tmp_path, "torch", code)
        monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return install


def test_real_cpu_torch_on_this_machine():
    info, error = torch_probe.probe()
    assert error is None and info.error is None
    assert info.importable and info.version == installed_version("torch")
    assert info.cuda_available is False and info.device_count == 0 and info.devices == []
    assert info.bf16_supported is None and info.bf16_native is None   # no GPU: nothing to say


def test_turing_gpu_bf16_emulated_but_not_native(fake_torch):
    fake_torch(FAKE_TORCH_TURING)
    info, error = torch_probe.probe()
    assert error is None
    assert (info.version, info.cuda_version, info.cudnn_version) == ("2.2.0+cu121", "12.1", 8902)
    assert info.cuda_available and info.device_count == 2 and info.arch_list == ["sm_75", "sm_80", "sm_90"]
    assert [(d.index, d.name, d.capability, d.free_memory) for d in info.devices] == [
        (0, "NVIDIA GeForce RTX 2080 Ti", [7, 5], 10737418240), (1, "NVIDIA GeForce RTX 2080 Ti", [7, 5], None)]
    assert info.bf16_supported is True and info.bf16_native is False


def test_old_torch_without_including_emulation_falls_back_to_capability(fake_torch):
    fake_torch(FAKE_TORCH_OLD_API)
    info, error = torch_probe.probe()
    assert error is None and info.bf16_supported is True and info.bf16_native is False


def test_driver_too_old_warning_is_captured(fake_torch):
    fake_torch(FAKE_TORCH_OLD_DRIVER)
    info, error = torch_probe.probe()
    assert error is None and info.importable and info.cuda_available is False
    assert info.init_warning.startswith("CUDA initialization: The NVIDIA driver on your system is too old")


def test_torch_not_installed_is_a_fact(fake_torch):
    fake_torch("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    info, error = torch_probe.probe()
    assert error is None and not info.importable and info.error == torch_probe.NOT_INSTALLED


def test_torch_that_raises_on_import_is_a_failure(fake_torch):
    fake_torch("raise ImportError('libcudnn.so.9: cannot open shared object file: No such file or directory')\n")
    info, error = torch_probe.probe()
    assert not info.importable
    assert error == info.error == ("`import torch` failed: ImportError: libcudnn.so.9: cannot open shared "
                                   "object file: No such file or directory")


def test_a_hang_after_import_keeps_the_version_and_names_the_step(fake_torch, monkeypatch):
    fake_torch(FAKE_TORCH_BASE + """
import time
def _hang():
    while True:
        time.sleep(60)
cuda = types.SimpleNamespace(get_arch_list=lambda: ["sm_90"], is_available=_hang)
""")
    monkeypatch.setenv("DOCTOR_PROBE_TIMEOUT_SCALE", "0.1")
    info, error = torch_probe.probe()
    assert info.importable and info.version == "2.2.0+cu121" and info.arch_list == ["sm_90"]
    assert error.startswith("`torch.cuda.is_available()` hung: ") and "timed out after" in error


def test_a_child_that_never_reported_is_explained():
    res = CommandResult(argv=["/opt/py/bin/python3.10"], timed_out=True, duration_s=45.0)
    info, error = torch_probe.torch_info_from(None, res)
    assert not info.importable and error == "`starting Python` hung: python3.10 timed out after 45.0 s"
