"""libcuda: on WSL2 a Linux libcuda must not shadow the Windows driver's in /usr/lib/wsl/lib."""
from __future__ import annotations

from checks.libcuda import FIX_PATH, MISSING, SHADOW, libcuda
from checks_helpers import as_wsl2, linux_gpu, snapshot
from doctor.facts import LibcudaInfo, ProbeStatus
from doctor.findings import Severity


def wsl_with(lc: LibcudaInfo):
    facts = as_wsl2(linux_gpu())
    facts.libcuda = lc
    return facts


def test_loaded_linux_libcuda_on_wsl_is_an_error_with_the_path_fix():
    facts = wsl_with(LibcudaInfo(ldconfig_paths=["/usr/lib/wsl/lib/libcuda.so.1"],
                                 resolved="/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05", wsl_lib_present=True))
    (f,) = libcuda(facts, None)
    assert f.id == SHADOW and f.severity is Severity.ERROR and f.failure_mode == "FM-11"
    assert f.commands[0] == FIX_PATH == "export LD_LIBRARY_PATH=/usr/lib/wsl/lib:$LD_LIBRARY_PATH"
    assert "dpkg -S /usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05" in f.commands[1]
    assert f.confidence == 0.9


def test_first_in_search_order_counts_when_nothing_was_loaded():
    facts = wsl_with(LibcudaInfo(ld_library_path_hits=["/usr/local/cuda/lib64/stubs/libcuda.so"],
                                 ldconfig_paths=["/usr/lib/wsl/lib/libcuda.so.1"], wsl_lib_present=True))
    (f,) = libcuda(facts, None)
    assert f.id == SHADOW and f.confidence == 0.75 and "comes first" in f.title


def test_wsl_libcuda_first_is_fine():
    assert libcuda(snapshot("wsl2-2080ti-unsloth-2024.8.json"), None) == []
    facts = wsl_with(LibcudaInfo(ldconfig_paths=["/usr/lib/wsl/lib/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"],
                                 wsl_lib_present=True))
    assert libcuda(facts, None) == []


def test_no_libcuda_at_all_on_wsl_needs_a_clean_probe():
    facts = wsl_with(LibcudaInfo())
    (f,) = libcuda(facts, None)
    assert f.id == MISSING and "wsl.exe --update" in f.commands
    facts.probes = [p if p.name != "libcuda" else ProbeStatus("libcuda", ok=False, error="timed out") for p in facts.probes]
    assert libcuda(facts, None) == []


def test_native_linux_libcuda_is_not_this_checks_business():
    assert libcuda(linux_gpu(), None) == []
    assert libcuda(snapshot("rtx5090-old-torch.json"), None) == []
