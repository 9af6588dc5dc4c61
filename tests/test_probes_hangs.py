"""Issue 2's must-hold cases: the real `doctor run` (a subprocess) finishes, with a finding that names
the probe, when nvidia-smi hangs, `import torch` hangs or segfaults, NVML is missing, or a package's
metadata is corrupt. Fakes are real executables on PATH and real modules on PYTHONPATH.

DOCTOR_PROBE_TIMEOUT_SCALE keeps the hanging cases to seconds (at 0.1 torch's 45 s limit is 4.5 s).
"""
from __future__ import annotations

import pytest

from probe_helpers import (FAKE_SMI_HANGING, FAKE_SMI_WORKING, probe_env, run_doctor, write_dist_info,
                           write_exe, write_module)

pytestmark = pytest.mark.slow

PYNVML_NO_LIBRARY = """
class NVMLError(Exception):
    value = 12
class NVMLError_LibraryNotFound(NVMLError):
    def __str__(self):
        return "NVML Shared Library Not Found"
def nvmlInit():
    raise NVMLError_LibraryNotFound()
"""


def _finished(run):
    assert run.returncode in (0, 1), f"exit {run.returncode}; stderr: {run.stderr[-2000:]}"
    assert not run.leftovers, f"the doctor left processes behind: {run.leftovers}"
    report = run.json()
    assert report["schema_version"] >= 1
    return report


def test_hanging_nvidia_smi_without_nvml_becomes_a_timed_out_probe(tmp_path):
    write_exe(tmp_path / "bin", "nvidia-smi", FAKE_SMI_HANGING)
    write_module(tmp_path / "py", "pynvml", PYNVML_NO_LIBRARY)
    # 0.25: nvidia-smi gets 1.25 s, and NVML's 2 s leave room for a slow Python start on a loaded machine.
    env = probe_env([tmp_path / "bin"], [tmp_path / "py"], scale=0.25)

    run = run_doctor(["run", "--json"], env)

    _finished(run)
    status = run.probe("nvidia")
    assert status["timed_out"] and not status["ok"]
    assert "nvidia-smi timed out" in status["error"] and "NVML Shared Library Not Found" in status["error"]
    (finding,) = [f for f in run.findings("probe.") if "probe nvidia" in f["title"]]
    assert finding["id"] == "probe.timed-out" and finding["severity"] == "error"
    assert finding["commands"] == ["nvidia-smi"]
    assert run.json()["facts"]["nvidia"]["source"] is None


def test_hanging_import_torch_becomes_a_timed_out_probe(tmp_path):
    write_module(tmp_path / "py", "torch", "import time\nwhile True:\n    time.sleep(60)\n")
    run = run_doctor(["run", "--json"], probe_env(python_dirs=[tmp_path / "py"], scale=0.1))

    report = _finished(run)
    assert run.probe("torch")["timed_out"]
    (finding,) = [f for f in run.findings("probe.") if "probe torch" in f["title"]]
    assert finding["id"] == "probe.timed-out" and finding["severity"] == "error"
    assert "`import torch` hung" in finding["title"]
    assert report["facts"]["torch"]["importable"] is False
    assert report["exit_code"] == 1 == run.returncode


def test_segfaulting_import_torch_becomes_a_crashed_probe(tmp_path):
    write_module(tmp_path / "py", "torch", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    run = run_doctor(["run", "--json"], probe_env(python_dirs=[tmp_path / "py"], scale=0.5))

    report = _finished(run)
    status = run.probe("torch")
    assert not status["ok"] and not status["timed_out"] and "SIGSEGV" in status["error"]
    (finding,) = [f for f in run.findings("probe.") if "probe torch" in f["title"]]
    assert finding["id"] == "probe.crashed" and finding["severity"] == "error"
    assert "`import torch` crashed" in finding["title"] and "SIGSEGV" in finding["title"]
    assert report["facts"]["torch"]["importable"] is False


def test_missing_nvml_falls_back_to_nvidia_smi_and_says_so(tmp_path):
    write_exe(tmp_path / "bin", "nvidia-smi", FAKE_SMI_WORKING)
    write_module(tmp_path / "py", "pynvml", "raise ImportError('libnvidia-ml bindings missing')\n")
    run = run_doctor(["run", "--json"], probe_env([tmp_path / "bin"], [tmp_path / "py"]))

    report = _finished(run)
    nvidia = report["facts"]["nvidia"]
    assert nvidia["source"] == "nvidia-smi"
    assert nvidia["driver_version"] == "560.94" and nvidia["cuda_driver_version"] == "12.6"
    (gpu,) = nvidia["gpus"]
    assert gpu["name"] == "NVIDIA GeForce RTX 2080 Ti" and gpu["capability"] == [7, 5]
    assert gpu["memory_total"] == 11264 * 1024 * 1024 and gpu["power_limit_w"] is None
    assert gpu["processes"] == [{"pid": 4242, "used_memory": None, "name": None, "kind": "compute"}]
    (finding,) = [f for f in run.findings("probe.") if "probe nvidia" in f["title"]]
    # NVML's absence is reported, but the GPU facts are good, so it is only a warning.
    assert finding["id"] == "probe.failed" and finding["severity"] == "warning"
    assert "cannot import pynvml" in finding["title"] and "read from nvidia-smi" in finding["title"]


def test_corrupt_package_metadata_becomes_a_finding(tmp_path):
    site = tmp_path / "site"
    write_dist_info(site, "peft", "9.9.9", metadata=b"\xff\xfe\x00\x81garbage that is not METADATA")
    write_dist_info(site, "accelerate", "1.0.0", metadata=b"Metadata-Version: 2.1\nName: accelerate\n")
    run = run_doctor(["run", "--json"], probe_env(python_dirs=[site], scale=0.5))

    report = _finished(run)
    packages = report["facts"]["packages"]
    assert "unreadable metadata in peft-9.9.9.dist-info" in packages["peft"]["error"]
    assert packages["accelerate"]["error"] == "corrupt metadata in accelerate-1.0.0.dist-info: no Version field"
    assert packages["peft"]["version"] is None
    (finding,) = run.findings("packages.corrupt-metadata")
    assert finding["title"] == "corrupt package metadata: accelerate, peft"
    assert finding["commands"] == ["python -m pip install --force-reinstall --no-deps accelerate",
                                   "python -m pip install --force-reinstall --no-deps peft"]
    # The real copies in the venv sit behind the broken ones: reported as shadowed.
    shadowed = {f["evidence"]["packages.peft.shadows"][0] for f in run.findings("packages.shadowed")
                if "packages.peft.shadows" in f["evidence"]}
    assert shadowed and next(iter(shadowed)).startswith("0.")
