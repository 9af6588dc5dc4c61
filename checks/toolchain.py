"""What triton's just-in-time compile needs beside the wheel (a C compiler, Python.h, ptxas, a
writable cache), system CUDA libraries on LD_LIBRARY_PATH that shadow the pip nvidia-* wheels, and a
CUDA toolkit whose nvcc differs from torch's CUDA.

Triton builds a small C launcher with the host compiler the first time any kernel runs (Unsloth's
kernels, torch.compile, cut_cross_entropy), so a machine without gcc fails at the first training
step, not at install time. None in the facts means "not probed": those rules stay silent.
"""
from __future__ import annotations

import os
import re
from typing import Optional

from checks import check
from doctor.facts import Facts
from doctor.findings import Finding, Severity

NO_CC = "toolchain.no-c-compiler"
CC_BROKEN = "toolchain.c-compiler-broken"
NO_HEADERS = "toolchain.python-headers-missing"
NO_PTXAS = "toolchain.ptxas-missing"
CACHE = "toolchain.triton-cache-unwritable"
SHADOW = "toolchain.cuda-libs-shadow-wheels"
NVCC = "toolchain.nvcc-differs-from-torch"

TRITON_BUILD = "https://github.com/triton-lang/triton/blob/main/python/triton/runtime/build.py"
TRITON_CACHE = "https://github.com/triton-lang/triton/blob/main/python/triton/runtime/cache.py"
TRITON_NVIDIA = "https://github.com/triton-lang/triton/blob/main/third_party/nvidia/backend/compiler.py"
LINKS_CC = [TRITON_BUILD, "https://github.com/apple/ml-cross-entropy/issues/5",
            "https://github.com/kijai/ComfyUI-HunyuanVideoWrapper/issues/23"]
LINKS_HEADERS = [TRITON_BUILD, "https://github.com/sgl-project/sglang/issues/1117"]
LINKS_SHADOW = ["https://github.com/pytorch/pytorch/issues/111469", "https://github.com/pytorch/pytorch/issues/152783",
                "https://github.com/pytorch/pytorch/issues/134929"]
LINK_CPP_EXT = "https://github.com/pytorch/pytorch/blob/main/torch/utils/cpp_extension.py"

# pip wheel (canonical name prefix) -> the library file stem it ships
WHEEL_OF = {"libnvJitLink.so": "nvidia-nvjitlink", "libcusparse.so": "nvidia-cusparse",
            "libcublas.so": "nvidia-cublas", "libcublasLt.so": "nvidia-cublas"}
_LIB_VERSION = re.compile(r"^(lib\w+\.so)\.(\d+)\.(\d+)")


def _needs_triton(facts: Facts) -> bool:
    """Linux, triton installed and a CUDA build of torch: the JIT path will run (and the probe ran:
    on Windows, triton-windows brings its own compiler and the probe records nothing)."""
    return facts.platform.system == "Linux" and bool(facts.version("triton")) and bool(facts.torch.cuda_version)


@check(id="toolchain", title="triton's JIT needs: C compiler, Python.h, ptxas, a writable cache; CUDA libraries "
                             "on LD_LIBRARY_PATH; nvcc vs torch's CUDA",
       finding_ids=(NO_CC, CC_BROKEN, NO_HEADERS, NO_PTXAS, CACHE, SHADOW, NVCC), order=72)
def toolchain(facts: Facts, config=None) -> list[Finding]:
    out = []
    status = facts.probe("toolchain")
    if status is None or status.timed_out:
        return out          # an older snapshot, or a probe that never finished: nothing is known
    if _needs_triton(facts):
        for fn in (_compiler, _headers, _ptxas, _cache):
            f = fn(facts)
            if f is not None:
                out.append(f)
    for fn in (_shadow, _nvcc):
        f = fn(facts)
        if f is not None:
            out.append(f)
    return out


def _triton_evidence(facts: Facts) -> dict:
    return {"packages.triton.version": facts.version("triton"), "torch.cuda_version": facts.torch.cuda_version}


def _compiler(facts: Facts) -> Optional[Finding]:
    t = facts.toolchain
    if t.cc is None and t.cc_works is None:
        return Finding(
            id=NO_CC, severity=Severity.ERROR,
            title="no C compiler: triton cannot build its launcher, so the first GPU kernel fails",
            why="Triton compiles a small C launcher with $CC, else gcc, else clang the first time a kernel runs "
                "(Unsloth's kernels, torch.compile). Without one the first training step dies with "
                "'RuntimeError: Failed to find C compiler. Please specify via CC environment variable.'",
            remediation="Install a C compiler (Debian/Ubuntu: build-essential), or point CC at one.",
            commands=["sudo apt-get install -y build-essential", "export CC=/usr/bin/gcc"],
            evidence={**_triton_evidence(facts), "env.CC": None, "gcc/clang on PATH": None},
            links=LINKS_CC, failure_mode="FM-17", confidence=0.9, fix_cost=1)
    if t.cc_works is False:
        return Finding(
            id=CC_BROKEN, severity=Severity.ERROR,
            title=f"the C compiler triton would use ({t.cc}) fails to compile an empty file",
            why="Triton compiles its launcher with this compiler; when it fails, every kernel launch raises "
                "'CalledProcessError ... returned non-zero exit status 1' from triton/runtime/build.py.",
            remediation="Fix or replace the compiler (a broken CC variable, a wrapper script, a partial "
                        "toolchain), or unset CC to let triton pick gcc.",
            commands=[f"{t.cc} --version", "unset CC", "sudo apt-get install -y build-essential"],
            evidence={**_triton_evidence(facts), "toolchain.cc": t.cc, "toolchain.cc_source": t.cc_source,
                      "toolchain.cc_error": t.cc_error},
            links=LINKS_CC, failure_mode="FM-17", confidence=0.9, fix_cost=1)
    return None


def _headers(facts: Facts) -> Optional[Finding]:
    t = facts.toolchain
    if t.python_h is not False:
        return None
    return Finding(
        id=NO_HEADERS, severity=Severity.ERROR,
        title="Python.h is missing: triton's launcher cannot compile",
        why=f"Triton compiles its launcher against the Python headers in {t.python_include}; without them "
            "the first kernel fails with 'fatal error: Python.h: No such file or directory'.",
        remediation="Install the development headers of this Python (Debian/Ubuntu: python3.X-dev for the "
                    "interpreter you train with; conda and uv Pythons ship them).",
        commands=["sudo apt-get install -y python3-dev   # match your Python version, e.g. python3.12-dev",
                  f"ls {t.python_include}/Python.h"],
        evidence={**_triton_evidence(facts), "toolchain.python_include": t.python_include, "toolchain.python_h": False},
        links=LINKS_HEADERS, failure_mode="FM-17", confidence=0.85, fix_cost=1)


def _ptxas(facts: Facts) -> Optional[Finding]:
    t = facts.toolchain
    if t.ptxas is None or t.ptxas_ok is not False:
        return None
    where = "TRITON_PTXAS_PATH points at" if t.ptxas_source == "TRITON_PTXAS_PATH" else "triton's bundled"
    return Finding(
        id=NO_PTXAS, severity=Severity.ERROR,
        title=f"{where} ptxas ({t.ptxas}) is missing or does not run",
        why="Triton turns every kernel's PTX into GPU code with ptxas; without a working one each compile fails "
            "('PTXASError' / 'ptxas ... not found').",
        remediation="Unset TRITON_PTXAS_PATH (triton ships its own ptxas) or point it at a CUDA toolkit's "
                    "bin/ptxas; if the bundled one is missing, reinstall triton.",
        commands=["unset TRITON_PTXAS_PATH", "pip install --force-reinstall --no-deps triton"],
        evidence={**_triton_evidence(facts), "toolchain.ptxas": t.ptxas, "toolchain.ptxas_source": t.ptxas_source},
        links=[TRITON_NVIDIA], failure_mode="FM-17", confidence=0.8, fix_cost=1)


def _cache(facts: Facts) -> Optional[Finding]:
    t = facts.toolchain
    if t.triton_cache_writable is not False:
        return None
    return Finding(
        id=CACHE, severity=Severity.ERROR,
        title=f"triton's cache folder {t.triton_cache_dir} is not writable",
        why="Triton writes every compiled kernel (and its launcher) into this cache; when it cannot, the "
            f"first kernel fails with 'PermissionError' or 'Read-only file system' ({t.triton_cache_error}). "
            "Containers with a read-only home and shared machines with another user's ~/.triton hit this.",
        remediation="Point TRITON_CACHE_DIR at a writable folder (and TORCHINDUCTOR_CACHE_DIR for "
                    "torch.compile), or fix the folder's owner.",
        commands=["export TRITON_CACHE_DIR=/tmp/triton-cache-$USER",
                  "export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cache-$USER", f"ls -ld {t.triton_cache_dir}"],
        evidence={**_triton_evidence(facts), "toolchain.triton_cache_dir": t.triton_cache_dir,
                  "toolchain.triton_cache_error": t.triton_cache_error, "env.TRITON_CACHE_DIR":
                  facts.env.get("TRITON_CACHE_DIR")},
        links=[TRITON_CACHE], failure_mode="FM-17", confidence=0.85, fix_cost=1)


def lib_version(path: str) -> Optional[tuple[str, int, int]]:
    """/usr/local/cuda-12.1/lib64/libnvJitLink.so.12.1.105 -> ("libnvJitLink.so", 12, 1)."""
    m = _LIB_VERSION.match(os.path.basename(path))
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def _wheel_version(facts: Facts, prefix: str) -> Optional[tuple[str, tuple[int, int]]]:
    for name, info in facts.packages.items():
        if name.startswith(prefix) and info.version:
            parts = re.findall(r"\d+", info.version)
            if len(parts) >= 2:
                return name, (int(parts[0]), int(parts[1]))
    return None


def _shadow(facts: Facts) -> Optional[Finding]:
    """A system libnvJitLink (or cuSPARSE/cuBLAS) older than the pip wheel torch needs, found first
    through LD_LIBRARY_PATH: the pip cuSPARSE then asks for a symbol the old nvJitLink lacks."""
    older = []
    for path in facts.toolchain.cuda_libs_on_path:
        v = lib_version(path)
        wheel = _wheel_version(facts, WHEEL_OF.get(v[0], "-")) if v else None
        if v and wheel and (v[1], v[2]) < wheel[1]:
            older.append((path, wheel))
    if not older:
        return None
    path, (wheel, wv) = older[0]
    return Finding(
        id=SHADOW, severity=Severity.ERROR,
        title=f"LD_LIBRARY_PATH puts an older {os.path.basename(path)} before the {wheel} {wv[0]}.{wv[1]} wheel torch uses",
        why="torch loads the CUDA libraries of its pip nvidia-* wheels, but a folder on LD_LIBRARY_PATH wins. "
            "An older system copy lacks the versioned symbols the wheel's libraries need: 'import torch' fails "
            "with 'undefined symbol: __nvJitLinkAddData_12_x, version libnvJitLink.so.12' (or a cuBLAS symbol).",
        remediation="Take the CUDA toolkit's lib64 off LD_LIBRARY_PATH for training (torch does not need it), "
                    "or put the wheel's folder first.",
        commands=["echo $LD_LIBRARY_PATH", "unset LD_LIBRARY_PATH   # or remove only the CUDA toolkit folder"],
        evidence={"toolchain.cuda_libs_on_path": facts.toolchain.cuda_libs_on_path,
                  f"packages.{wheel}.version": facts.version(wheel), "torch.version": facts.torch.version},
        links=LINKS_SHADOW, failure_mode="FM-10", confidence=0.8, fix_cost=1)


def _nvcc(facts: Facts) -> Optional[Finding]:
    t, torch_cuda = facts.toolchain, facts.torch.cuda_version
    if not t.nvcc_version or not torch_cuda:
        return None
    if t.nvcc_version.split(".")[0] == torch_cuda.split(".")[0]:
        return None
    return Finding(
        id=NVCC, severity=Severity.INFO,
        title=f"the CUDA toolkit's nvcc is {t.nvcc_version}, torch is built for CUDA {torch_cuda}",
        why="Training with pip wheels does not use the toolkit, but anything built from source against it "
            "(flash-attn, deepspeed ops, a bitsandbytes or xformers source build) fails in torch's extension "
            "builder: 'The detected CUDA version mismatches the version that was used to compile PyTorch'.",
        remediation="Build extensions with a toolkit of torch's CUDA major version (set CUDA_HOME to it), or "
                    "prefer prebuilt wheels.",
        commands=[f"{t.nvcc} --version", "export CUDA_HOME=/usr/local/cuda-" + torch_cuda],
        evidence={"toolchain.nvcc": t.nvcc, "toolchain.nvcc_version": t.nvcc_version,
                  "toolchain.cuda_home": t.cuda_home, "torch.cuda_version": torch_cuda},
        links=[LINK_CPP_EXT], failure_mode="FM-10", confidence=0.6, fix_cost=2)
