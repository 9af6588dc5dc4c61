"""A cache of the torch child's facts, so a second `doctor run` does not pay for `import torch`
(1.6 s on a CPU laptop, 4-6 s with CUDA initialisation on an H100/H200).

What is cached: what torch says about itself and the GPUs (version, CUDA/cuDNN, compiled archs,
device names, capabilities, total memory, bf16). What is not: free memory, which changes between
runs (NVML's probe re-reads it every run; a cached TorchDevice has free_memory None).

The key is everything that can change those answers, read with cheap stat calls and small reads,
never by importing torch: the torch package the child would import (found on the child's path:
cwd, PYTHONPATH, this interpreter's sys.path), its dist-info RECORD, version.py, __init__.py and
every file in torch/lib (size + mtime); the driver (/proc/driver/nvidia/version, the WSL libcuda);
the GPU device nodes; the boot (a reboot, a GPU swap, a reloaded driver module start afresh); the
interpreter; the environment variables that steer CUDA; and the child script's own text (a new
doctor that asks torch more questions does not read an old answer).

Only a complete, clean answer is stored (no error, no init warning): a machine with a problem is
probed afresh every time. A file that is unreadable, too large, from another schema or for another
key is ignored and replaced. Files are written atomically (temp file + os.replace) under
$XDG_CACHE_HOME/finetune-doctor (default ~/.cache/finetune-doctor). Bypass: `doctor run --no-cache`
or DOCTOR_NO_CACHE=1.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from doctor.facts import TorchInfo
from doctor.serde import from_jsonable, to_jsonable

CACHE_SCHEMA = 1                 # bump when the file layout or the meaning of a cached field changes
BYPASS_ENV = "DOCTOR_NO_CACHE"   # any value but "" or "0" turns the cache off
MAX_FILE_BYTES = 1 << 20         # a cache file larger than this is not ours: ignore it
KEEP_FILES = 16                  # one file per environment (venv, driver); the oldest beyond go
PREFIX = "torch-facts-"
# The driver and the devices, by cheap reads. Module-level so a test can point them at its own files.
DRIVER_FILES = ("/proc/driver/nvidia/version", "/sys/module/nvidia/version")
WSL_DRIVER_GLOB = ("/usr/lib/wsl/lib", "libcuda.so*")
BOOT_ID = "/proc/sys/kernel/random/boot_id"
# Variables that change what torch sees or loads (CUDA_VISIBLE_DEVICES changes the device list).
KEY_ENV = ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "LD_PRELOAD", "CUDA_VISIBLE_DEVICES",
           "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "PYTORCH_NVML_BASED_CUDA_CHECK", "CUDA_HOME",
           "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")

_enabled = True


def set_enabled(flag: bool) -> None:
    """`doctor run --no-cache` turns it off for this process (set on every call, so it never leaks)."""
    global _enabled
    _enabled = bool(flag)


def enabled() -> bool:
    return _enabled and os.environ.get(BYPASS_ENV, "") in ("", "0")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"   # XDG: relative is invalid
    return root / "finetune-doctor"


def _stat(path: Path) -> Optional[list]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_small(path: str, limit: int = 4096) -> Optional[str]:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def find_torch_dir() -> Optional[Path]:
    """The torch package the child (`python -c`) would import: cwd first, then PYTHONPATH, then ours."""
    candidates = [os.getcwd()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + sys.path
    for entry in candidates:
        pkg = Path(entry or os.getcwd()) / "torch"
        if (pkg / "__init__.py").is_file():
            return pkg.resolve()
    return None


def _torch_files(pkg: Path) -> dict[str, Any]:
    files: dict[str, Any] = {name: _stat(pkg / name) for name in ("__init__.py", "version.py")}
    try:
        libs = sorted(os.scandir(pkg / "lib"), key=lambda e: e.name)
        files["lib"] = {e.name: [e.stat().st_size, e.stat().st_mtime_ns] for e in libs if e.is_file()}
    except OSError:
        files["lib"] = None
    try:   # the dist-info beside the package: pip rewrites RECORD on every install of torch
        records = sorted(str(p) for p in pkg.parent.glob("torch-*.dist-info/RECORD"))
    except OSError:
        records = []
    files["RECORD"] = {p: _stat(Path(p)) for p in records}
    return files


def _driver() -> dict[str, Any]:
    wsl_dir, wsl_glob = WSL_DRIVER_GLOB
    try:
        wsl = {str(p): _stat(p) for p in sorted(Path(wsl_dir).glob(wsl_glob))}
    except OSError:
        wsl = {}
    try:   # /dev/nvidia0, nvidia1 ...: one per GPU. Not nvidia-uvm, which the first CUDA use creates.
        nodes = sorted(n for n in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", n))
    except OSError:
        nodes = []
    return {"files": {p: _read_small(p) for p in DRIVER_FILES}, "wsl": wsl, "nodes": nodes,
            "boot": _read_small(BOOT_ID)}


def compute_key() -> Optional[dict[str, Any]]:
    """Everything the cached answer depends on; None when torch is not found (nothing worth caching)."""
    pkg = find_torch_dir()
    if pkg is None:
        return None
    from doctor.probes.child import SCRIPTS   # the child script's text is part of the key

    script = _read_small(str(SCRIPTS / "torch_info.py"), limit=1 << 20) or ""
    return {
        "schema": CACHE_SCHEMA,
        "python": [sys.executable, sys.version],
        "torch_dir": str(pkg),
        "torch_files": _torch_files(pkg),
        "driver": _driver(),
        "env": {k: os.environ.get(k) for k in KEY_ENV},
        "script": hashlib.sha256(script.encode()).hexdigest(),
    }


def _path_for(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return cache_dir() / f"{PREFIX}{digest}.json"


def lookup() -> tuple[Optional[TorchInfo], Optional[dict]]:
    """(cached TorchInfo or None, key to store under or None). Never raises: a cache is only a shortcut."""
    if not enabled():
        return None, None
    try:
        key = compute_key()
    except Exception:
        return None, None
    if key is None:
        return None, None
    try:
        return _read(_path_for(key), key), key
    except Exception:   # missing, unreadable, malformed, another version's layout: probe afresh, rewrite
        return None, key


def _read(path: Path, key: dict) -> Optional[TorchInfo]:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))   # a planted symlink is not followed
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        return None
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA or data.get("key") != key:
        return None
    info = from_jsonable(TorchInfo, data["torch"])
    if not isinstance(info, TorchInfo) or not info.importable:
        return None
    info.from_cache = str(data.get("written_at") or "unknown time")
    return info


def store(key: Optional[dict], info: TorchInfo) -> Optional[Path]:
    """Write a clean, complete answer atomically; None (and nothing written) otherwise or on any error."""
    if key is None or not enabled() or not info.importable or info.error or info.init_warning:
        return None
    fresh = replace(info, devices=[replace(d, free_memory=None) for d in info.devices], from_cache=None)
    body = {"schema": CACHE_SCHEMA, "key": key, "torch": to_jsonable(fresh),
            "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    path = _path_for(key)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh, sort_keys=True, default=str)
        os.replace(tmp, path)   # atomic; replaces a symlink itself, never writes through it
        tmp = None
        _prune(path.parent)
        return path
    except Exception:
        return None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _prune(folder: Path) -> None:
    """Keep the KEEP_FILES most recent cache files (one per environment); only ours are touched."""
    files = []
    for p in folder.glob(f"{PREFIX}*.json"):
        try:
            files.append((p.lstat().st_mtime_ns, p))
        except OSError:
            pass
    for _, p in sorted(files, reverse=True)[KEEP_FILES:]:
        try:
            p.unlink()
        except OSError:
            pass
