"""The toolchain probe against real fakes (a compiler script that exits 1, an empty include folder, a
triton package folder with its driver source and a ptxas script, a bitsandbytes folder lacking the
right binary, a CUDA toolkit folder on LD_LIBRARY_PATH), then the checks on the facts it produced."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from checks_helpers import ids, linux_gpu, one, set_packages
from doctor.engine import run_checks
from doctor.facts import ProbeStatus
from doctor.probes import toolchain as tc

CHECKS = ("toolchain", "bnb-binary", "libcuda")


def exe(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def headers(tmp_path: Path) -> str:
    inc = tmp_path / "include"
    inc.mkdir(exist_ok=True)
    (inc / "Python.h").write_text("/* fake */\n")
    return str(inc)


def fake_triton(tmp_path: Path, libraries: str = '["cuda"]', ptxas: bool = True) -> str:
    root = tmp_path / "site" / "triton"
    (root / "backends" / "nvidia").mkdir(parents=True)
    (root / "backends" / "nvidia" / "driver.py").write_text(
        "import os\ndirname = os.path.dirname(__file__)\nlibraries = " + libraries + "\n")
    if ptxas:
        exe(root / "backends" / "nvidia" / "bin" / "ptxas",
            'echo "ptxas: NVIDIA (R) Ptx optimizing assembler"; echo "Cuda compilation tools, release 12.8, V12.8.93"')
    return str(root)


def fake_bnb(tmp_path: Path, *names: str) -> str:
    root = tmp_path / "site" / "bitsandbytes"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    for n in names:
        (root / n).write_bytes(b"\x7fELF")
    return str(root)


def env(tmp_path: Path, **extra: str) -> dict:
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    # CUDA_HOME at an empty folder: the machine's own /usr/local/cuda stays out of the test
    return {"PATH": str(empty), "HOME": str(tmp_path / "home"), "CUDA_HOME": str(empty), **extra}


def facts_with(info, torch_cuda: str = "12.8", **packages):
    f = set_packages(linux_gpu(torch=f"2.7.0+cu{torch_cuda.replace('.', '')}", cuda=torch_cuda),
                     triton="3.3.0", **packages)
    f.toolchain = info
    f.probes.append(ProbeStatus("toolchain"))
    return f


def test_no_compiler_on_path_is_named(tmp_path):
    info = tc.collect(env(tmp_path), headers(tmp_path), str(tmp_path / "home"), fake_triton(tmp_path), None)
    assert info.cc is None and info.cc_works is None
    f = one(run_checks(facts_with(info), None, only=CHECKS), "toolchain.no-c-compiler")
    assert "Failed to find C compiler" in f.why and "build-essential" in " ".join(f.commands)


def test_a_compiler_that_fails_is_broken_not_missing(tmp_path):
    bin_dir = tmp_path / "bin"
    exe(bin_dir / "gcc", 'echo "gcc: fatal error: cannot execute cc1: No such file" >&2; exit 1')
    info = tc.collect({**env(tmp_path), "PATH": str(bin_dir)}, headers(tmp_path), str(tmp_path / "home"),
                      fake_triton(tmp_path), None)
    assert info.cc == str(bin_dir / "gcc") and info.cc_source == "PATH"
    assert info.cc_works is False and "exited with 1" in info.cc_error and "cc1" in info.cc_error
    found = run_checks(facts_with(info), None, only=CHECKS)
    assert "toolchain.no-c-compiler" not in ids(found)
    assert one(found, "toolchain.c-compiler-broken").evidence["toolchain.cc_source"] == "PATH"


def test_cc_wins_over_path_as_in_triton(tmp_path):
    bad = exe(tmp_path / "wrapper" / "mycc", "exit 1")
    exe(tmp_path / "bin" / "gcc", "exit 0")
    info = tc.collect({**env(tmp_path), "PATH": str(tmp_path / "bin"), "CC": str(bad)}, headers(tmp_path),
                      str(tmp_path / "home"), None, None)
    assert (info.cc, info.cc_source, info.cc_works) == (str(bad), "CC", False)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_a_real_compiler_works(tmp_path):
    info = tc.collect({"PATH": os.environ["PATH"]}, headers(tmp_path), str(tmp_path), None, None)
    assert info.cc_works is True and info.cc_error is None


def test_missing_python_headers_via_an_empty_include_folder(tmp_path):
    empty = tmp_path / "include-empty"
    empty.mkdir()
    info = tc.collect(env(tmp_path), str(empty), str(tmp_path / "home"), fake_triton(tmp_path), None)
    assert info.python_h is False
    f = one(run_checks(facts_with(info), None, only=CHECKS), "toolchain.python-headers-missing")
    assert str(empty) in f.why


def test_this_pythons_include_dir_has_python_h():
    inc = tc.python_include()
    assert inc and os.path.isfile(os.path.join(inc, "Python.h"))


def test_bundled_ptxas_and_what_triton_links(tmp_path):
    info = tc.collect(env(tmp_path), headers(tmp_path), str(tmp_path / "home"), fake_triton(tmp_path), None)
    assert info.ptxas_source == "triton" and info.ptxas_ok is True and info.ptxas_version == "12.8"
    assert info.triton_libraries == ["cuda"]
    newer = tc.triton_libraries(fake_triton(tmp_path / "new", libraries='["libcuda.so.1"]'))
    assert newer == ["libcuda.so.1"]


def test_ptxas_missing_or_pointing_nowhere(tmp_path):
    triton = fake_triton(tmp_path, ptxas=False)
    info = tc.collect(env(tmp_path), headers(tmp_path), str(tmp_path / "home"), triton, None)
    assert info.ptxas_ok is False
    assert one(run_checks(facts_with(info), None, only=CHECKS), "toolchain.ptxas-missing")
    info = tc.collect(env(tmp_path, TRITON_PTXAS_PATH=str(tmp_path / "nope")), headers(tmp_path),
                      str(tmp_path / "home"), fake_triton(tmp_path / "b"), None)
    assert (info.ptxas_source, info.ptxas_ok) == ("TRITON_PTXAS_PATH", False)
    assert "TRITON_PTXAS_PATH" in one(run_checks(facts_with(info), None, only=CHECKS), "toolchain.ptxas-missing").title


def test_triton_cache_under_a_file_is_unwritable(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    info = tc.collect(env(tmp_path, TRITON_CACHE_DIR=str(blocker / "cache")), headers(tmp_path),
                      str(tmp_path / "home"), fake_triton(tmp_path), None)
    assert info.triton_cache_writable is False and "not a folder" in info.triton_cache_error
    f = one(run_checks(facts_with(info), None, only=CHECKS), "toolchain.triton-cache-unwritable")
    assert "TRITON_CACHE_DIR" in " ".join(f.commands)


def test_default_triton_cache_is_created_under_home(tmp_path):
    info = tc.collect(env(tmp_path), headers(tmp_path), str(tmp_path / "home"), fake_triton(tmp_path), None)
    assert info.triton_cache_dir == str(tmp_path / "home" / ".triton" / "cache")
    assert info.triton_cache_writable is True     # home does not exist yet: its parent is writable


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_cache_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert tc.cache_writable(str(ro / "cache"))[0] is False
    finally:
        ro.chmod(0o755)


def test_healthy_toolchain_is_silent(tmp_path):
    exe(tmp_path / "bin" / "gcc", "exit 0")
    info = tc.collect({**env(tmp_path), "PATH": str(tmp_path / "bin")}, headers(tmp_path), str(tmp_path / "home"),
                      fake_triton(tmp_path, libraries='["libcuda.so.1"]'),
                      fake_bnb(tmp_path, "libbitsandbytes_cuda128.so", "libbitsandbytes_cpu.so"))
    assert info.cc_works is True
    assert run_checks(facts_with(info, bitsandbytes="0.50.2"), None, only=CHECKS) == []


@pytest.mark.parametrize("torch_cuda, override, want", [
    ("13.0", None, "bnb.binary-missing"),          # a bitsandbytes without a build for this CUDA
    ("12.8", "118", "bnb.binary-missing"),         # BNB_CUDA_VERSION pointing at a missing binary
    ("13.0", "128", "bnb.cuda-version-override"),  # pointing at a present one for another CUDA
    ("12.8", None, None),
])
def test_bitsandbytes_binary_for_this_cuda(tmp_path, torch_cuda, override, want):
    extra = {"BNB_CUDA_VERSION": override} if override else {}
    info = tc.collect(env(tmp_path, **extra), headers(tmp_path), str(tmp_path / "home"), None,
                      fake_bnb(tmp_path, "libbitsandbytes_cpu.so", "libbitsandbytes_cuda128.so"))
    assert info.bnb_libraries == ["libbitsandbytes_cpu.so", "libbitsandbytes_cuda128.so"]
    found = [f for f in run_checks(facts_with(info, torch_cuda, bitsandbytes="0.50.2"), None, only=("bnb-binary",))]
    assert ids(found) == ([want] if want else [])
    if want == "bnb.binary-missing":
        expected = f"libbitsandbytes_cuda{override or torch_cuda.replace('.', '')}.so"
        assert found[0].evidence["expected library"] == expected and expected in found[0].title


def test_package_dir_finds_without_importing(tmp_path, monkeypatch):
    root = tmp_path / "site" / "bitsandbytes"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("raise SystemExit('imported!')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert tc.package_dir("bitsandbytes") == str(root)
    assert "bitsandbytes" not in sys.modules or sys.modules["bitsandbytes"].__file__ != str(root / "__init__.py")
    assert tc.package_dir("surely_not_installed_pkg") is None


def test_old_system_nvjitlink_on_ld_library_path_shadows_the_wheel(tmp_path):
    lib = tmp_path / "cuda-12.1" / "lib64"
    lib.mkdir(parents=True)
    (lib / "libnvJitLink.so.12.1.105").write_bytes(b"\x7fELF")
    (lib / "libnvJitLink.so.12").symlink_to("libnvJitLink.so.12.1.105")
    info = tc.collect(env(tmp_path, LD_LIBRARY_PATH=f"{lib}:/nonexistent"), headers(tmp_path),
                      str(tmp_path / "home"), None, None)
    assert info.cuda_libs_on_path == [str(lib / "libnvJitLink.so.12.1.105")]
    f = facts_with(info, "12.4", nvidia_nvjitlink_cu12="12.4.127")
    finding = one(run_checks(f, None, only=CHECKS), "toolchain.cuda-libs-shadow-wheels")
    assert "nvidia-nvjitlink-cu12 12.4" in finding.title
    newer = facts_with(info, "12.1", nvidia_nvjitlink_cu12="12.1.105")
    assert "toolchain.cuda-libs-shadow-wheels" not in ids(run_checks(newer, None, only=CHECKS))


def test_nvcc_of_another_major_version(tmp_path):
    home = tmp_path / "cuda-11.8"
    exe(home / "bin" / "nvcc", 'echo "Cuda compilation tools, release 11.8, V11.8.89"')
    (home / "lib64").mkdir()
    (home / "lib64" / "libcudart.so.11.0").write_bytes(b"")
    info = tc.collect(env(tmp_path, CUDA_HOME=str(home), LD_LIBRARY_PATH=str(home / "lib64")), headers(tmp_path),
                      str(tmp_path / "home"), None, None)
    assert (info.nvcc, info.nvcc_version) == (str(home / "bin" / "nvcc"), "11.8")
    assert info.cudart_on_path == [str(home / "lib64" / "libcudart.so.11.0")]
    f = one(run_checks(facts_with(info, "12.8"), None, only=CHECKS), "toolchain.nvcc-differs-from-torch")
    assert f.severity.value == "info"


def test_old_snapshots_without_the_probe_stay_silent():
    f = set_packages(linux_gpu(), triton="3.3.0")
    assert run_checks(f, None, only=("toolchain",)) == []


def test_windows_with_triton_windows_is_not_told_to_install_gcc(tmp_path):
    from doctor.facts import ToolchainInfo

    f = facts_with(ToolchainInfo())     # what the probe returns off Linux
    f.platform.system, f.platform.is_windows_native = "Windows", True
    assert run_checks(f, None, only=("toolchain",)) == []
