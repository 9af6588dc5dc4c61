"""The NVML sampling child and its decoding, driven through a stand-in pynvml
(tests/fixtures/attach/fake_nvml) since this machine has no GPU; the GPU run
(benchmarks/gpu/attach_states.py) exercises the real one."""
from __future__ import annotations

from attach_helpers import FIXTURES
from doctor.attach.gpu import decode_reasons, sample_gpu


def _fake(monkeypatch, mode: str, pid: int = 4242):
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES / "fake_nvml"))
    monkeypatch.setenv("FAKE_NVML_MODE", mode)
    monkeypatch.setenv("FAKE_NVML_PID", str(pid))


def test_two_gpus_target_on_gpu0(monkeypatch):
    _fake(monkeypatch, "h100")
    gpu = sample_gpu([4242, 4243], duration_s=0.2, n=3, timeout_s=20)
    assert gpu.available and gpu.driver == "580.159.04" and len(gpu.devices) == 2
    d0, d1 = gpu.devices
    assert d0.util == [97, 97, 97] and d0.power_mw == [610_000] * 3 and d0.power_limit_mw == 700_000
    assert d0.clock_event_names == ["SwPowerCap", "SwThermalSlowdown"] and d1.clock_event_names == ["GpuIdle"]
    assert d0.pcie_tx_kbs and d0.sm_clock_max_mhz == 1980 and d0.temperature_c == 84
    assert gpu.target_memory == {"4242": 59 * 2**30}
    assert gpu.unavailable == []


def test_wsl_says_what_it_cannot_read(monkeypatch):
    _fake(monkeypatch, "wsl")
    gpu = sample_gpu([4242], duration_s=0.1, n=2, timeout_s=20, wsl=True)
    assert gpu.available and gpu.devices[0].util == []
    text = " | ".join(gpu.unavailable)
    assert "per-process GPU memory (WSL2/WDDM does not report it)" in text
    assert "GPU utilisation: NVMLError_NotSupported (WSL2/WDDM does not report it)" in text
    assert gpu.target_memory == {"4242": None}


def test_no_driver(monkeypatch):
    _fake(monkeypatch, "nodriver")
    gpu = sample_gpu([1], duration_s=0.1, n=2, timeout_s=20)
    assert not gpu.available and gpu.unavailable == ["NVML could not start: NVML Shared Library Not Found"]


def test_a_hanging_nvml_is_a_fact_not_a_hang(monkeypatch, tmp_path):
    (tmp_path / "pynvml.py").write_text("import time\ndef nvmlInit():\n    time.sleep(60)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    gpu = sample_gpu([1], duration_s=0.1, n=2, timeout_s=1.0)
    assert not gpu.available and "timed out" in gpu.unavailable[0]


def test_decode_reasons():
    assert decode_reasons(0x1 | 0x40 | 0x80) == ["GpuIdle", "HwThermalSlowdown", "HwPowerBrakeSlowdown"]
    assert decode_reasons(None) == []
