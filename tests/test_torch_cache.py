"""The torch facts cache: a real torch child the first time, no `import torch` the second; any change
of the key (torch's files, the driver, the visible devices, the child script) probes afresh.

The fake torch packages are real packages that the real child process imports; each import appends
to a sentinel file beside it, so "torch was not imported" is counted, not assumed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from doctor.probes import torch_cache, torch_probe
from probe_helpers import write_module

ROOT = Path(__file__).resolve().parent.parent

# every fake counts its imports in imports.log beside it
FAKE_TORCH_BASE = """
import os, types, warnings
with open(os.path.join(os.path.dirname(__file__), "imports.log"), "a") as _fh:
    _fh.write("imported\\n")
__version__ = "2.5.1+cu124"
version = types.SimpleNamespace(cuda="12.4", hip=None)
backends = types.SimpleNamespace(cudnn=types.SimpleNamespace(version=lambda: 90100))
"""
FAKE_TORCH = FAKE_TORCH_BASE + """
class _Props:
    name = "NVIDIA GeForce RTX 4090"
    major, minor = 8, 9
    total_memory = 25386352640

cuda = types.SimpleNamespace(
    is_available=lambda: True, device_count=lambda: 1, get_device_properties=lambda i: _Props(),
    mem_get_info=lambda i: (20000000000, 25386352640), get_arch_list=lambda: ["sm_80", "sm_86", "sm_89", "sm_90"],
    is_bf16_supported=lambda including_emulation=True: True, get_device_capability=lambda: (8, 9))
"""
FAKE_TORCH_OLD_DRIVER = FAKE_TORCH_BASE + """
def _is_available():
    warnings.warn("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040).")
    return False
cuda = types.SimpleNamespace(is_available=_is_available, get_arch_list=lambda: ["sm_90"])
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache folder and driver file; the cache on (as for a plain `doctor run`)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(torch_cache.BYPASS_ENV, raising=False)
    driver = tmp_path / "driver-version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14\n")
    monkeypatch.setattr(torch_cache, "DRIVER_FILES", (str(driver),))
    torch_cache.set_enabled(True)
    yield {"dir": tmp_path / "xdg" / "finetune-doctor", "driver": driver}
    torch_cache.set_enabled(True)


@pytest.fixture
def fake_torch(tmp_path, monkeypatch):
    site = tmp_path / "site"

    def install(code: str = FAKE_TORCH) -> Path:
        pkg = write_module(site, "torch", code).parent
        monkeypatch.setenv("PYTHONPATH", str(site))
        return pkg
    return install


def imports(pkg: Path) -> int:
    log = pkg / "imports.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_real_cpu_torch_second_probe_reads_the_cache_without_a_child(cache, monkeypatch):
    first, err = torch_probe.probe()
    assert err is None and first.from_cache is None and first.importable
    assert len(list(cache["dir"].glob("torch-facts-*.json"))) == 1

    def no_child(*a, **kw):
        raise AssertionError("the torch child ran on a cache hit")
    monkeypatch.setattr(torch_probe, "run_script", no_child)
    second, err = torch_probe.probe()
    assert err is None and second.from_cache            # says it came from the cache, and when
    second.from_cache = None
    assert second == first


def test_fake_torch_imported_once_then_again_when_its_files_change(cache, fake_torch):
    pkg = fake_torch()
    first, _ = torch_probe.probe()
    second, _ = torch_probe.probe()
    assert imports(pkg) == 1
    assert second.from_cache and not first.from_cache
    assert (second.version, second.cuda_version, second.arch_list) == ("2.5.1+cu124", "12.4",
                                                                       ["sm_80", "sm_86", "sm_89", "sm_90"])
    assert [(d.name, d.capability, d.total_memory) for d in second.devices] == [
        ("NVIDIA GeForce RTX 4090", [8, 9], 25386352640)]
    # free memory changes between runs: probed the first time, never served from the cache
    assert first.devices[0].free_memory == 20000000000 and second.devices[0].free_memory is None

    (pkg / "__init__.py").write_text(FAKE_TORCH.replace("2.5.1+cu124", "2.6.0+cu124"))   # pip upgraded torch
    # ... and removed the old bytecode, as pip does: a rewrite of the same size within the second of the
    # first import would otherwise pass Python's own .pyc check (whole-second mtime + size) and load stale
    shutil.rmtree(pkg / "__pycache__", ignore_errors=True)
    third, _ = torch_probe.probe()
    assert imports(pkg) == 2 and third.version == "2.6.0+cu124" and not third.from_cache
    (pkg / "lib").mkdir()
    (pkg / "lib" / "libtorch_cuda.so").write_bytes(b"\0" * 64)          # a library swapped in place
    torch_probe.probe()
    assert imports(pkg) == 3
    torch_probe.probe()
    assert imports(pkg) == 3                                               # and cached again


def test_a_new_driver_or_other_visible_devices_probe_afresh(cache, fake_torch, monkeypatch):
    pkg = fake_torch()
    torch_probe.probe()
    cache["driver"].write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  560.35.03\n")
    info, _ = torch_probe.probe()
    assert imports(pkg) == 2 and not info.from_cache
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    torch_probe.probe()
    assert imports(pkg) == 3
    torch_probe.probe()
    assert imports(pkg) == 3


def test_bypass_by_flag_or_environment(cache, fake_torch, monkeypatch):
    pkg = fake_torch()
    torch_probe.probe()
    monkeypatch.setenv(torch_cache.BYPASS_ENV, "1")
    assert not torch_probe.probe()[0].from_cache and imports(pkg) == 2
    monkeypatch.delenv(torch_cache.BYPASS_ENV)
    torch_cache.set_enabled(False)                     # what `doctor run --no-cache` does
    assert not torch_probe.probe()[0].from_cache and imports(pkg) == 3
    torch_cache.set_enabled(True)
    assert torch_probe.probe()[0].from_cache and imports(pkg) == 3


def test_a_machine_with_a_problem_is_never_cached(cache, fake_torch):
    pkg = fake_torch(FAKE_TORCH_OLD_DRIVER)
    for _ in range(2):
        info, _ = torch_probe.probe()
        assert info.init_warning and not info.from_cache
    assert imports(pkg) == 2 and not list(cache["dir"].glob("torch-facts-*.json"))


@pytest.mark.parametrize("content", [b"{not json", b"[]", json.dumps({"schema": 999}).encode(), b"\0" * 100],
                         ids=["truncated", "not-an-object", "other-schema", "binary"])
def test_an_unreadable_or_foreign_file_is_ignored_and_replaced(cache, fake_torch, content):
    pkg = fake_torch()
    torch_probe.probe()
    [path] = cache["dir"].glob("torch-facts-*.json")
    path.write_bytes(content)
    assert not torch_probe.probe()[0].from_cache and imports(pkg) == 2
    assert torch_probe.probe()[0].from_cache and imports(pkg) == 2      # rewritten, read again


def test_an_entry_for_another_key_is_not_trusted(cache, fake_torch):
    pkg = fake_torch()
    torch_probe.probe()
    [path] = cache["dir"].glob("torch-facts-*.json")
    data = json.loads(path.read_text())
    data["key"]["torch_dir"] = "/somewhere/else/torch"
    path.write_text(json.dumps(data))
    assert not torch_probe.probe()[0].from_cache and imports(pkg) == 2


def test_a_planted_symlink_is_neither_read_nor_written_through(cache, fake_torch, tmp_path):
    pkg = fake_torch()
    torch_probe.probe()
    [path] = cache["dir"].glob("torch-facts-*.json")
    forged = tmp_path / "forged.json"
    forged.write_text(path.read_text().replace("2.5.1+cu124", "9.9.9"))
    before = forged.read_text()
    path.unlink()
    path.symlink_to(forged)
    info, _ = torch_probe.probe()
    assert info.version == "2.5.1+cu124" and not info.from_cache and imports(pkg) == 2
    assert forged.read_text() == before and not path.is_symlink()


def test_an_unwritable_cache_folder_changes_nothing_but_speed(cache, fake_torch, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    pkg = fake_torch()
    for _ in range(2):
        info, err = torch_probe.probe()
        assert err is None and info.version == "2.5.1+cu124" and not info.from_cache
    assert imports(pkg) == 2


def test_relative_xdg_cache_home_is_ignored(monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")   # the XDG spec: relative paths are invalid
    assert torch_cache.cache_dir() == Path.home() / ".cache" / "finetune-doctor"


def test_old_files_are_pruned(cache, fake_torch, monkeypatch):
    pkg = fake_torch()
    for i in range(torch_cache.KEEP_FILES + 3):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", str(i))   # one environment each
        torch_probe.probe()
    assert imports(pkg) == torch_cache.KEEP_FILES + 3
    assert len(list(cache["dir"].glob("torch-facts-*.json"))) == torch_cache.KEEP_FILES


def _doctor_run(*args: str, env: dict) -> dict:
    res = subprocess.run([sys.executable, "-m", "doctor", "run", "--json", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    return json.loads(res.stdout)["facts"]["torch"]


def test_doctor_run_twice_reads_the_cache_and_no_cache_bypasses_it(cache, fake_torch):
    import os

    pkg = fake_torch()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ["PYTHONPATH"]]))
    assert _doctor_run(env=env)["from_cache"] is None and imports(pkg) == 1
    assert _doctor_run(env=env)["from_cache"] and imports(pkg) == 1
    assert _doctor_run("--no-cache", env=env)["from_cache"] is None and imports(pkg) == 2
