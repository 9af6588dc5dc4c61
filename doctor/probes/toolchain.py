"""What triton's just-in-time compile, bitsandbytes' loader and CUDA extension builds need beside the
wheels: a C compiler, Python.h, ptxas, a writable triton cache, the CUDA toolkit (nvcc, CUDA_HOME),
CUDA libraries on LD_LIBRARY_PATH, and the bitsandbytes native libraries. Nothing is imported:
packages are found with importlib.util.find_spec on their top-level name (which runs no code), and
every command runs through doctor.runner with a time limit.

The mechanisms mirror the code that fails on users' machines:
- triton/runtime/build.py: `cc = $CC, else gcc, else clang`; `-I sysconfig.get_paths()["include"]`.
- triton/backends/nvidia: ptxas from TRITON_PTXAS_PATH, else backends/nvidia/bin/ptxas.
- triton/runtime/cache.py: TRITON_CACHE_DIR, else ~/.triton/cache.
- bitsandbytes/cextension.py: libbitsandbytes_cuda{XY}.so for torch.version.cuda, BNB_CUDA_VERSION overrides.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Mapping, Optional

from doctor.facts import ToolchainInfo
from doctor.probes.timeouts import Budget, scaled
from doctor.runner import run_command

CC_S = 10.0           # compiling an empty C file: a cold disk and a slow compiler
VERSION_S = 5.0       # `ptxas --version`, `nvcc --version`
TOTAL_S = 20.0        # under the probe's thread deadline
# The libraries whose system copies break the pip wheels torch was built against
# ("undefined symbol: __nvJitLinkAddData_12_1, version libnvJitLink.so.12").
SHADOW_LIBS = ("libnvJitLink.so", "libcusparse.so", "libcublas.so", "libcublasLt.so")
_NVCC_RELEASE = re.compile(r"release (\d+\.\d+)")
_PTXAS_RELEASE = re.compile(r"release (\d+\.\d+)|V(\d+\.\d+)")


def package_dir(name: str) -> Optional[str]:
    """The folder of an installed top-level package, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return locations[0] if locations else None


_LIBRARIES = re.compile(r"^libraries\s*=\s*\[([^\]]*)\]", re.M)


def triton_libraries(triton_dir: str) -> Optional[list[str]]:
    """The `libraries = [...]` its NVIDIA driver links the launcher with, read from the source file:
    older triton links "cuda" (-lcuda, which needs the unversioned libcuda.so), newer "libcuda.so.1"."""
    try:
        text = Path(triton_dir, "backends", "nvidia", "driver.py").read_text(errors="replace")
    except OSError:
        return None
    m = _LIBRARIES.search(text)
    return re.findall(r"[\"']([^\"']+)[\"']", m.group(1)) if m else None


def find_compiler(environ: Mapping[str, str]) -> tuple[Optional[str], Optional[str]]:
    """triton's choice, in its order: $CC, else gcc, else clang on PATH."""
    if environ.get("CC"):
        return environ["CC"], "CC"
    path = environ.get("PATH", "")
    for name in ("gcc", "clang"):
        found = shutil.which(name, path=path)
        if found:
            return found, "PATH"
    return None, None


def try_compile(cc: str, environ: Mapping[str, str], timeout: float) -> tuple[bool, Optional[str]]:
    """Compile a trivial C file to an object in a private temp folder: does the compiler work?"""
    with tempfile.TemporaryDirectory(prefix="doctor-cc-") as tmp:
        src = os.path.join(tmp, "probe.c")
        Path(src).write_text("int doctor_probe(void) { return 0; }\n")
        res = run_command([cc, "-c", src, "-o", os.path.join(tmp, "probe.o")], timeout=timeout,
                          env=dict(environ), cwd=tmp)
    if res.ok:
        return True, None
    text = (res.stderr.strip() or res.stdout.strip())
    return False, (res.describe_failure() + (f" ({text.splitlines()[0][:200]})" if text and not res.timed_out else ""))


def version_of(exe: str, pattern: re.Pattern, environ: Mapping[str, str], timeout: float) -> tuple[bool, Optional[str]]:
    res = run_command([exe, "--version"], timeout=timeout, env=dict(environ))
    m = pattern.search(res.stdout + res.stderr)
    return res.ok, (next(g for g in m.groups() if g) if m else None)


def cache_writable(path: str) -> tuple[bool, Optional[str]]:
    """Can triton create and write its cache here? Checked without writing: the folder (or the
    nearest existing parent it would be created under) must be writable and not on a read-only mount."""
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return False, f"{probe} exists and is not a folder"
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return False, f"{probe} is on a read-only file system"
    except (OSError, AttributeError):   # no statvfs on Windows
        pass
    if not os.access(probe, os.W_OK | os.X_OK):
        return False, f"{probe} is not writable by this user"
    return True, None


def files_on_path(ld_library_path: str, stems: tuple[str, ...]) -> list[str]:
    out = []
    for directory in dict.fromkeys(filter(None, ld_library_path.split(os.pathsep))):
        for stem in stems:
            out.extend(sorted(glob.glob(os.path.join(directory, stem + "*"))))
    return out


def collect(environ: Mapping[str, str], include_dir: Optional[str], home: str,
            triton_dir: Optional[str], bnb_dir: Optional[str], total_s: float = TOTAL_S) -> ToolchainInfo:
    """Everything, from explicit inputs (the environment, the include dir, the package folders)."""
    budget = Budget(total_s)
    info = ToolchainInfo()
    errors = []
    info.cc, info.cc_source = find_compiler(environ)
    if info.cc:
        info.cc_works, info.cc_error = try_compile(info.cc, environ, budget.timeout(scaled(CC_S)))
    info.python_include = include_dir
    info.python_h = bool(include_dir) and os.path.isfile(os.path.join(include_dir, "Python.h"))

    info.triton_dir = triton_dir
    info.triton_libraries = triton_libraries(triton_dir) if triton_dir else None
    if environ.get("TRITON_PTXAS_PATH"):
        info.ptxas, info.ptxas_source = environ["TRITON_PTXAS_PATH"], "TRITON_PTXAS_PATH"
    elif triton_dir:
        info.ptxas, info.ptxas_source = os.path.join(triton_dir, "backends", "nvidia", "bin", "ptxas"), "triton"
    if info.ptxas:
        if os.path.isfile(info.ptxas) and os.access(info.ptxas, os.X_OK):
            info.ptxas_ok, info.ptxas_version = version_of(info.ptxas, _PTXAS_RELEASE, environ,
                                                           budget.timeout(scaled(VERSION_S)))
        else:
            info.ptxas_ok = False
    if triton_dir:
        info.triton_cache_dir = environ.get("TRITON_CACHE_DIR") or os.path.join(home, ".triton", "cache")
        info.triton_cache_writable, info.triton_cache_error = cache_writable(info.triton_cache_dir)

    info.cuda_home = environ.get("CUDA_HOME") or environ.get("CUDA_PATH") or \
        ("/usr/local/cuda" if os.path.isdir("/usr/local/cuda") else None)
    nvcc = os.path.join(info.cuda_home, "bin", "nvcc") if info.cuda_home else None
    info.nvcc = nvcc if nvcc and os.path.isfile(nvcc) else shutil.which("nvcc", path=environ.get("PATH", ""))
    if info.nvcc:
        ok, info.nvcc_version = version_of(info.nvcc, _NVCC_RELEASE, environ, budget.timeout(scaled(VERSION_S)))
        if not ok and not info.nvcc_version:
            errors.append(f"`{info.nvcc} --version` failed")
    ld_path = environ.get("LD_LIBRARY_PATH", "")
    info.cudart_on_path = files_on_path(ld_path, ("libcudart.so",))
    info.cuda_libs_on_path = [os.path.realpath(p) for p in files_on_path(ld_path, SHADOW_LIBS)
                              if os.path.isfile(p)]
    info.cuda_libs_on_path = list(dict.fromkeys(info.cuda_libs_on_path))

    info.bnb_dir = bnb_dir
    if bnb_dir:
        try:
            info.bnb_libraries = sorted(n for n in os.listdir(bnb_dir) if n.startswith("libbitsandbytes_"))
        except OSError as exc:
            errors.append(f"bitsandbytes folder: {exc}")
    info.bnb_cuda_version_env = environ.get("BNB_CUDA_VERSION") or None
    info.error = "; ".join(errors) or None
    return info


def python_include() -> Optional[str]:
    """The include dir triton passes to the compiler (Debian's posix_local scheme -> posix_prefix)."""
    try:
        scheme = sysconfig.get_default_scheme()
        if scheme == "posix_local":
            scheme = "posix_prefix"
        return sysconfig.get_paths(scheme=scheme)["include"]
    except (KeyError, AttributeError):
        return sysconfig.get_paths().get("include")


def probe() -> tuple[ToolchainInfo, Optional[str]]:
    if not sys.platform.startswith("linux"):
        # triton-windows brings its own compiler (TinyCC) and bitsandbytes loads .dll files: the rules
        # here are Linux's, so say nothing rather than something wrong.
        return ToolchainInfo(), None
    info = collect(os.environ, python_include(), os.path.expanduser("~"),
                   package_dir("triton"), package_dir("bitsandbytes"))
    return info, info.error
