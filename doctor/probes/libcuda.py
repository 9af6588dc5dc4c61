"""Which libcuda this machine would load: ldconfig's cache, LD_LIBRARY_PATH, WSL's /usr/lib/wsl/lib,
and what a child process actually maps after dlopen("libcuda.so.1").

On WSL2 the driver's libcuda lives in /usr/lib/wsl/lib; a Linux libcuda (from a CUDA toolkit or a
distro driver package) found first shadows it, and CUDA fails to initialise (FM-11).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import sys
from typing import Optional

from doctor.facts import LibcudaInfo
from doctor.probes.child import run_script, unfinished
from doctor.probes.timeouts import LDCONFIG_S, LIBCUDA_LOAD_S, scaled
from doctor.runner import run_command

WSL_LIB_DIR = "/usr/lib/wsl/lib"
_LDCONFIG_LINE = re.compile(r"^\s*(libcuda\.so[.\d]*)\s+\(([^)]*)\)\s+=>\s+(\S.*?)\s*$")


def parse_ldconfig(text: str) -> list[str]:
    """`ldconfig -p` output -> the libcuda.so* paths it lists, in its (search) order."""
    out = []
    for line in text.splitlines():
        m = _LDCONFIG_LINE.match(line)
        if m and m.group(3) not in out:
            out.append(m.group(3))
    return out


def parse_maps(lines: list[str], library: str = "libcuda") -> Optional[str]:
    """/proc/<pid>/maps lines -> the first mapped file that is library.so* (not libcudadebugger.so)."""
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and os.path.basename(parts[5].strip()).startswith(f"{library}.so"):
            return parts[5].strip()
    return None


def ld_library_path_hits(ld_library_path: str) -> list[str]:
    hits = []
    for directory in filter(None, ld_library_path.split(os.pathsep)):
        hits.extend(sorted(glob.glob(os.path.join(directory, "libcuda.so*"))))
    return hits


def link_dirs(ldconfig_paths: list[str], ld_library_path: str) -> tuple[list[str], list[str]]:
    """triton's libcuda_dirs(): the folders of libcuda.so.1 in the ld cache, else those on
    LD_LIBRARY_PATH; and which of them hold the unversioned libcuda.so that `-lcuda` links.
    (triton/backends/nvidia/driver.py; the linker never looks at libcuda.so.1.)"""
    dirs = []
    for path in ldconfig_paths:
        if os.path.basename(path) == "libcuda.so.1" and os.path.dirname(path) not in dirs:
            dirs.append(os.path.dirname(path))
    if not dirs:
        dirs = [d for d in dict.fromkeys(filter(None, ld_library_path.split(os.pathsep)))
                if os.path.exists(os.path.join(d, "libcuda.so.1"))]
    return dirs, [os.path.join(d, "libcuda.so") for d in dirs if os.path.exists(os.path.join(d, "libcuda.so"))]


def symlink_chain(path: str, limit: int = 16) -> list[str]:
    """path, then each link target in turn, to the real file (or the first missing one)."""
    chain = [path]
    while os.path.islink(chain[-1]) and len(chain) < limit:
        target = os.readlink(chain[-1])
        chain.append(os.path.normpath(os.path.join(os.path.dirname(chain[-1]), target)))
    return chain


def dangling_links(paths: list[str]) -> list[str]:
    return [p for p in dict.fromkeys(paths) if os.path.islink(p) and not os.path.exists(p)]


def _ldconfig() -> Optional[str]:
    return shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None)


def probe() -> tuple[LibcudaInfo, Optional[str]]:
    info = LibcudaInfo()
    if not sys.platform.startswith("linux"):
        return info, None  # Windows loads nvcuda.dll from System32; nothing here applies
    errors = []
    info.ld_library_path_hits = ld_library_path_hits(os.environ.get("LD_LIBRARY_PATH", ""))
    info.wsl_lib_present = bool(glob.glob(os.path.join(WSL_LIB_DIR, "libcuda.so*")))
    ldconfig = _ldconfig()
    if ldconfig:
        res = run_command([ldconfig, "-p"], timeout=scaled(LDCONFIG_S))
        if res.ok:
            info.ldconfig_paths = parse_ldconfig(res.stdout)
        else:
            errors.append(f"`ldconfig -p`: {res.describe_failure()}")
    info.triton_libcuda_path = os.environ.get("TRITON_LIBCUDA_PATH") or None
    ld_path = os.environ.get("LD_LIBRARY_PATH", "")
    info.so1_dirs, info.unversioned = link_dirs(info.ldconfig_paths, ld_path)
    first = next((p for p in info.ld_library_path_hits + info.ldconfig_paths
                  if os.path.basename(p) == "libcuda.so.1"), None)
    info.chain = symlink_chain(first) if first else []
    info.dangling = dangling_links(info.ld_library_path_hits + info.ldconfig_paths)
    # In a child: dlopen of a broken driver library can crash or hang the process doing it.
    res, payload = run_script("libcuda_maps", timeout=scaled(LIBCUDA_LOAD_S))
    stopped = unfinished(payload, res)
    if stopped:
        errors.append(stopped)
    elif payload:
        info.resolved = parse_maps(payload.get("maps") or [])
        info.load_error = payload.get("load_error")
    info.error = "; ".join(errors) or None
    return info, info.error
