"""windows: sysmem fallback and TDR (WSL2 and native), the native-Windows tier and the spawn guard."""
from __future__ import annotations

from checks.windows import NATIVE, SPAWN, SYSMEM, TDR, windows
from checks_helpers import as_wsl2, ids, linux_gpu, one, snapshot
from doctor.config.model import TrainingConfig
from doctor.findings import Severity

REF = "wsl2-2080ti-unsloth-2024.8.json"


def test_sysmem_fallback_by_windows_driver_version():
    f = one(windows(snapshot(REF), None), SYSMEM)
    assert f.severity is Severity.WARNING and "Prefer No Sysmem Fallback" in f.remediation
    mid = as_wsl2(linux_gpu(), driver="537.58")
    assert "546.01 or newer" in one(windows(mid, None), SYSMEM).remediation
    assert SYSMEM not in ids(windows(as_wsl2(linux_gpu(), driver="531.14"), None))
    assert SYSMEM not in ids(windows(linux_gpu(driver="560.35.03"), None))      # a Linux driver: no fallback
    native = linux_gpu(driver="560.94")
    native.platform.system, native.platform.is_windows_native = "Windows", True
    assert SYSMEM in ids(windows(native, None))


def test_tdr_only_when_the_gpu_drives_a_display():
    assert one(windows(snapshot(REF), None), TDR).failure_mode == "FM-05"
    assert TDR not in ids(windows(as_wsl2(linux_gpu(), display=False), None))


def test_native_windows_tier_and_spawn_guard():
    facts = linux_gpu(driver="531.00")
    facts.platform.system, facts.platform.is_windows_native = "Windows", True
    assert ids(windows(facts, None)) == [NATIVE]
    f = one(windows(facts, TrainingConfig(dataset_num_proc=4)), SPAWN)
    assert 'if __name__ == "__main__":' in f.remediation and f.failure_mode == "FM-12"
    assert SPAWN not in ids(windows(facts, TrainingConfig(dataset_num_proc=1)))


def test_wsl1_and_native_linux_have_no_windows_findings():
    wsl1 = as_wsl2(linux_gpu())
    wsl1.platform.wsl_version = 1
    assert windows(wsl1, None) == []
    assert windows(linux_gpu(driver="560.35.03"), None) == []
