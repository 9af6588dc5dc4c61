"""NVIDIA probe: nvidia-smi CSV/banner parsing, NVML's report, and the probe itself against fake NVML
modules (on PYTHONPATH, seen by the real child process) and fake nvidia-smi executables (on PATH)."""
from __future__ import annotations

import os
import sys

import pytest

from doctor.probes import nvidia
from doctor.runner import CommandResult
from probe_helpers import FAKE_SMI_WORKING, write_exe, write_module

MIB = 1024 * 1024
H100_CSV = ("0, NVIDIA H100 80GB HBM3, GPU-a1b2c3d4-0000-1111-2222-333344445555, 00000000:18:00.0, 580.159.04, "
            "81559, 0, 81080, Disabled, Enabled, [N/A], 700.00, 9.0\n"
            "1, NVIDIA H100 80GB HBM3, GPU-a1b2c3d4-0000-1111-2222-333344446666, 00000000:2A:00.0, 580.159.04, "
            "81559, 40960, 40119, Disabled, Enabled, [N/A], 700.00, 9.0\n")
WDDM_CSV = ("0, NVIDIA GeForce RTX 2080 Ti, GPU-4f6d7a1e-1111-2222-3333-444455556666, 00000000:01:00.0, 560.94, "
            "11264, 1035, 10229, Enabled, [Not Supported], WDDM, [N/A], 7.5\n")

FAKE_NVML = """
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_GPU_IS_LOST = 15
MIB = 1024 * 1024

class NVMLError(Exception):
    def __init__(self, value):
        self.value = value
    def __str__(self):
        return {3: "Not Supported", 15: "GPU is lost"}[self.value]

class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)

def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlSystemGetDriverVersion(): return "560.94"
def nvmlSystemGetCudaDriverVersion(): return 12060
def nvmlSystemGetNVMLVersion(): return b"12.560.94"
def nvmlDeviceGetCount(): return 1
def nvmlDeviceGetHandleByIndex(i): return _Obj(i=i)
def nvmlDeviceGetName(h): return b"NVIDIA GeForce RTX 2080 Ti"
def nvmlDeviceGetUUID(h): return "GPU-4f6d7a1e-1111-2222-3333-444455556666"
def nvmlDeviceGetPciInfo(h): return _Obj(busId=b"00000000:01:00.0")
def nvmlDeviceGetCudaComputeCapability(h): return (7, 5)
def nvmlDeviceGetMemoryInfo(h): return _Obj(total=11264 * MIB, used=1035 * MIB, free=10229 * MIB)
def nvmlDeviceGetDisplayActive(h): return 1
def nvmlDeviceGetPersistenceMode(h): raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
def nvmlDeviceGetDriverModel(h): return [0, 0]
def nvmlDeviceGetPowerManagementLimit(h): return 250000
def nvmlDeviceGetComputeRunningProcesses(h): return [_Obj(pid=4242, usedGpuMemory=None)]
def nvmlDeviceGetGraphicsRunningProcesses(h): return [_Obj(pid=77, usedGpuMemory=300 * MIB)]
"""


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """Put tmp bin/ first on PATH (and nothing else that could hold nvidia-smi), tmp py/ on PYTHONPATH."""
    bin_dir, py_dir = tmp_path / "bin", tmp_path / "py"
    bin_dir.mkdir()
    py_dir.mkdir()
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), "/usr/bin", "/bin"]))
    monkeypatch.setenv("PYTHONPATH", str(py_dir))
    monkeypatch.setattr(nvidia, "SMI_CANDIDATES", ())
    return bin_dir, py_dir


# ---------------------------------------------------------------- parsing

def test_smi_csv_on_a_linux_h100_box():
    gpus, driver = nvidia.parse_smi_gpus(H100_CSV)
    assert driver == "580.159.04" and [g.index for g in gpus] == [0, 1]
    g = gpus[1]
    assert (g.name, g.capability, g.pci_bus_id) == ("NVIDIA H100 80GB HBM3", [9, 0], "00000000:2A:00.0")
    assert (g.memory_total, g.memory_used, g.memory_free) == (81559 * MIB, 40960 * MIB, 40119 * MIB)
    assert (g.display_active, g.persistence_mode, g.driver_model, g.power_limit_w) == (False, True, None, 700.0)


def test_smi_csv_on_wsl_with_not_available_and_not_supported_fields():
    (g,), driver = nvidia.parse_smi_gpus("WARNING: infoROM is corrupted at gpu 0000:01:00.0\n" + WDDM_CSV)
    assert driver == "560.94"
    assert g.display_active is True and g.driver_model == "WDDM"
    assert g.persistence_mode is None and g.power_limit_w is None   # [Not Supported] / [N/A] -> unknown


def test_smi_csv_from_an_old_driver_without_compute_cap():
    row = WDDM_CSV.rsplit(",", 1)[0] + "\n"
    (g,), _ = nvidia.parse_smi_gpus(row, nvidia.OLD_DRIVER_FIELDS)
    assert g.capability is None and g.memory_total == 11264 * MIB


def test_smi_banner_and_compute_apps():
    banner = "| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0     |\n"
    assert nvidia.parse_smi_header(banner) == ("580.159.04", "13.0")
    assert nvidia.parse_smi_header("No devices were found") == (None, None)
    apps = nvidia.parse_smi_apps("GPU-a, 79, [N/A]\nGPU-b, 1234, 20480\nnonsense\n")
    assert [(u, p.pid, p.used_memory) for u, p in apps] == [("GPU-a", 79, None), ("GPU-b", 1234, 20480 * MIB)]


@pytest.mark.parametrize("value, expected", [(12040, "12.4"), (13000, "13.0"), (11080, "11.8"),
                                             (0, None), (None, None), ("12.4", None)])
def test_cuda_driver_version_from_nvml_integer(value, expected):
    assert nvidia.cuda_version_string(value) == expected


def test_nvml_report_maps_to_facts():
    payload = {"stage": None, "errors": [], "driver_version": "591.44", "cuda_driver_version": 13010,
               "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "capability": [8, 9],
                         "display_active": 1, "persistence_mode": 0, "driver_model": 0, "power_limit_w": 450.0,
                         "processes": [{"pid": 79, "used_memory": None, "kind": "compute"}]}]}
    info, problem, no_driver = nvidia.nvml_info_from(payload, CommandResult(argv=["python"], returncode=0))
    assert problem is None and not no_driver
    assert (info.source, info.driver_version, info.cuda_driver_version) == ("nvml", "591.44", "13.1")
    g = info.gpus[0]
    assert (g.display_active, g.persistence_mode, g.driver_model) == (True, False, "WDDM")
    assert g.processes[0].used_memory is None


def test_nvml_report_of_a_child_that_died_midway_keeps_what_it_had():
    payload = {"stage": "nvmlDeviceGetMemoryInfo(0)", "errors": [], "driver_version": "550.54.15",
               "cuda_driver_version": 12040, "gpus": [{"index": 0, "name": "NVIDIA A100-SXM4-80GB"}]}
    res = CommandResult(argv=["/usr/bin/python3"], returncode=-11, signal=11)
    info, problem, _ = nvidia.nvml_info_from(payload, res)
    assert info.gpus[0].name == "NVIDIA A100-SXM4-80GB"
    assert problem == "NVML `nvmlDeviceGetMemoryInfo(0)` crashed: python3 was killed by SIGSEGV"


# ---------------------------------------------------------------- the probe, with real child processes

def test_probe_with_working_nvml(fakes):
    _, py_dir = fakes
    write_module(py_dir, "pynvml", FAKE_NVML)
    info, error = nvidia.probe()
    assert error is None
    assert (info.source, info.driver_version, info.cuda_driver_version, info.nvml_version) == \
        ("nvml", "560.94", "12.6", "12.560.94")
    (g,) = info.gpus
    assert (g.name, g.pci_bus_id, g.capability, g.driver_model) == \
        ("NVIDIA GeForce RTX 2080 Ti", "00000000:01:00.0", [7, 5], "WDDM")
    assert (g.memory_total, g.display_active, g.persistence_mode, g.power_limit_w) == (11264 * MIB, True, None, 250.0)
    assert [(p.pid, p.used_memory, p.kind) for p in g.processes] == [(4242, None, "compute"),
                                                                      (77, 300 * MIB, "graphics")]


def test_probe_reports_nvml_errors_other_than_not_supported(fakes):
    _, py_dir = fakes
    write_module(py_dir, "pynvml", FAKE_NVML + "\ndef nvmlDeviceGetMemoryInfo(h): raise NVMLError(NVML_ERROR_GPU_IS_LOST)\n")
    info, error = nvidia.probe()
    assert info.source == "nvml" and info.gpus[0].memory_total is None
    assert error == "NVML nvmlDeviceGetMemoryInfo(0): GPU is lost"


def test_nvml_segfault_midway_falls_back_to_nvidia_smi(fakes):
    bin_dir, py_dir = fakes
    write_module(py_dir, "pynvml", FAKE_NVML + "\nimport os, signal\n"
                 "def nvmlDeviceGetPowerManagementLimit(h): os.kill(os.getpid(), signal.SIGSEGV)\n")
    write_exe(bin_dir, "nvidia-smi", FAKE_SMI_WORKING)
    info, error = nvidia.probe()
    assert info.source == "nvidia-smi" and info.cuda_driver_version == "12.6"
    assert info.gpus[0].processes[0].pid == 4242
    assert "`nvmlDeviceGetPowerManagementLimit(0)` crashed" in error and "SIGSEGV" in error
    assert error.endswith("(GPU facts read from nvidia-smi)")


def test_nvml_segfault_without_nvidia_smi_keeps_nvml_partial_facts(fakes):
    _, py_dir = fakes
    write_module(py_dir, "pynvml", FAKE_NVML + "\nimport os, signal\n"
                 "def nvmlDeviceGetPowerManagementLimit(h): os.kill(os.getpid(), signal.SIGSEGV)\n")
    info, error = nvidia.probe()
    assert info.source == "nvml" and info.gpus[0].memory_total == 11264 * MIB
    assert "crashed" in error and "nvidia-smi" not in error


def test_old_driver_without_compute_cap_field_is_retried(fakes):
    bin_dir, py_dir = fakes
    write_module(py_dir, "pynvml", "raise ImportError('no NVML here')\n")
    old_csv = WDDM_CSV.rsplit(",", 1)[0] + "\n"
    write_exe(bin_dir, "nvidia-smi", f"""
        import sys
        args = " ".join(sys.argv[1:])
        if "compute_cap" in args:
            print('Field "compute_cap" is not a valid field to query.')
            sys.exit(2)
        sys.stdout.write({old_csv!r} if "--query-gpu" in args else "")
        """)
    info, error = nvidia.probe()
    assert info.source == "nvidia-smi" and info.gpus[0].name == "NVIDIA GeForce RTX 2080 Ti"
    assert info.gpus[0].capability is None
    assert "cannot import pynvml" in error


def test_no_driver_at_all_is_a_fact_not_a_failure(fakes):
    _, py_dir = fakes
    write_module(py_dir, "pynvml", """
        class NVMLError(Exception):
            pass
        class NVMLError_LibraryNotFound(NVMLError):
            def __str__(self):
                return "NVML Shared Library Not Found"
        def nvmlInit():
            raise NVMLError_LibraryNotFound()
        """)
    info, error = nvidia.probe()
    assert error is None and info.source is None and info.gpus == []
    assert info.error.startswith("no NVIDIA driver found: NVML: NVMLError_LibraryNotFound")


def test_a_driver_that_refuses_is_a_failure(fakes):
    bin_dir, py_dir = fakes
    write_module(py_dir, "pynvml", """
        class NVMLError(Exception):
            pass
        class NVMLError_LibRmVersionMismatch(NVMLError):
            def __str__(self):
                return "RM has detected an NVML/RM version mismatch."
        def nvmlInit():
            raise NVMLError_LibRmVersionMismatch()
        """)
    write_exe(bin_dir, "nvidia-smi", """
        import sys
        print("Failed to initialize NVML: Driver/library version mismatch")
        sys.exit(18)
        """)
    info, error = nvidia.probe()
    assert info.source is None and info.error == error
    assert "version mismatch" in error and "nvidia-smi exited with 18" in error
