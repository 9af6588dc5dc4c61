"""The `probes` check on hand-written facts: which finding, which severity, which remediation."""
from __future__ import annotations

from checks import get_check
from checks.probe_health import probe_health
from doctor.engine import run_checks
from doctor.facts import Facts, NvidiaInfo, PackageInfo, ProbeStatus, TorchInfo
from doctor.findings import Severity


def _facts(*probes: ProbeStatus, **fields) -> Facts:
    names = ("platform", "packages", "env", "nvidia", "torch", "libcuda")
    given = {p.name for p in probes}
    return Facts(probes=list(probes) + [ProbeStatus(n) for n in names if n not in given], **fields)


def test_healthy_probes_give_no_findings():
    assert probe_health(_facts(), None) == []


def test_torch_import_hang_is_an_error_naming_probe_and_step():
    status = ProbeStatus("torch", ok=False, timed_out=True, duration_s=45.1,
                         error="`import torch` hung: python timed out after 45.0 s")
    (f,) = probe_health(_facts(status), None)
    assert (f.id, f.severity) == ("probe.timed-out", Severity.ERROR)
    assert f.title == "probe torch: `import torch` hung: python timed out after 45.0 s"
    assert f.commands == ["python -c \"import torch; print(torch.__version__, torch.cuda.is_available())\""]
    assert "py-spy dump" in f.remediation
    assert f.evidence["probes.torch.timed_out"] is True and f.evidence["probes.torch.duration_s"] == 45.1


def test_thread_deadline_message_is_not_repeated():
    status = ProbeStatus("platform", ok=False, timed_out=True, duration_s=10.0,
                         error="probe platform did not finish within 10 s")
    (f,) = probe_health(_facts(status), None)
    assert f.title == "probe platform did not finish within 10 s"
    assert f.severity == Severity.WARNING and "doctor bug" in f.why


def test_torch_segfault_is_a_crash():
    status = ProbeStatus("torch", ok=False, error="`import torch` crashed: python3 was killed by SIGSEGV")
    (f,) = probe_health(_facts(status), None)
    assert (f.id, f.severity, f.failure_mode) == ("probe.crashed", Severity.ERROR, "FM-10")


def test_torch_import_error_is_an_error():
    status = ProbeStatus("torch", ok=False, error="`import torch` failed: ImportError: libcudnn.so.9: cannot open")
    (f,) = probe_health(_facts(status, torch=TorchInfo(importable=False)), None)
    assert (f.id, f.severity) == ("probe.failed", Severity.ERROR)
    assert "training cannot start" in f.why


def test_nvml_crash_with_nvidia_smi_fallback_is_only_a_warning():
    status = ProbeStatus("nvidia", ok=False, error="NVML `nvmlDeviceGetPowerManagementLimit(0)` crashed: python "
                                                   "was killed by SIGSEGV (GPU facts read from nvidia-smi)")
    degraded = probe_health(_facts(status, nvidia=NvidiaInfo(source="nvidia-smi")), None)
    blind = probe_health(_facts(status, nvidia=NvidiaInfo(source=None)), None)
    assert [(f.id, f.severity) for f in degraded] == [("probe.crashed", Severity.WARNING)]
    assert [(f.id, f.severity) for f in blind] == [("probe.crashed", Severity.ERROR)]
    assert "https://github.com/microsoft/WSL/issues/11277" in degraded[0].links


def test_nvidia_smi_hang_stays_an_error_even_with_partial_facts():
    status = ProbeStatus("nvidia", ok=False, timed_out=True, error="nvidia-smi timed out after 5.0 s")
    (f,) = probe_health(_facts(status, nvidia=NvidiaInfo(source="nvml")), None)
    assert (f.id, f.severity, f.failure_mode) == ("probe.timed-out", Severity.ERROR, "FM-04")
    assert "wsl --shutdown" in f.remediation


def test_libcuda_failure_is_a_warning():
    status = ProbeStatus("libcuda", ok=False, error="`ldconfig -p`: ldconfig exited with 1")
    (f,) = probe_health(_facts(status), None)
    assert (f.id, f.severity, f.failure_mode) == ("probe.failed", Severity.WARNING, "FM-11")


def test_corrupt_metadata_is_one_finding_listing_each_package():
    packages = {"peft": PackageInfo("peft", error="unreadable metadata in peft-9.9.9.dist-info: UnicodeDecodeError"),
                "accelerate": PackageInfo("accelerate", error="corrupt metadata in accelerate-1.0.dist-info: no Version field",
                                          location="/venv/site-packages"),
                "torch": PackageInfo("torch", version="2.4.1")}
    (f,) = probe_health(_facts(packages=packages), None)
    assert (f.id, f.severity) == ("packages.corrupt-metadata", Severity.WARNING)
    assert f.title == "corrupt package metadata: accelerate, peft"
    assert f.commands == ["python -m pip install --force-reinstall --no-deps accelerate",
                          "python -m pip install --force-reinstall --no-deps peft"]
    assert f.evidence["packages.accelerate.location"] == "/venv/site-packages"


def test_shadowed_package_names_both_copies():
    packages = {"torch": PackageInfo("torch", version="2.2.0", location="/home/me/.local/lib/python3.10/site-packages",
                                     shadows=["2.4.1 at /venv/lib/python3.10/site-packages"])}
    (f,) = probe_health(_facts(packages=packages), None)
    assert f.id == "packages.shadowed"
    assert f.title == ("torch is installed more than once: 2.2.0 at /home/me/.local/lib/python3.10/site-packages "
                       "wins over 2.4.1 at /venv/lib/python3.10/site-packages")


def test_registered_ids_cover_everything_emitted_and_engine_runs_it():
    spec = get_check("probes")
    facts = _facts(ProbeStatus("torch", ok=False, timed_out=True, error="`import torch` hung: x timed out"),
                   ProbeStatus("nvidia", ok=False, error="x was killed by SIGABRT"),
                   ProbeStatus("env", ok=False, error="KeyError: 'x'"),
                   packages={"a": PackageInfo("a", error="bad", shadows=["1 at /x"])})
    findings = run_checks(facts, only=["probes"])
    assert {f.id for f in findings} == set(spec.finding_ids)
    assert all(f.check == "probes" for f in findings)
    assert [f.severity for f in findings][:2] == [Severity.ERROR, Severity.ERROR]   # ranked first
