"""Driver <-> CUDA arithmetic over checks/data/driver_cuda.json and torch_cuda_wheels.json:
the driver a CUDA version needs, and the newest PyTorch wheel index a driver and a GPU accept."""
from __future__ import annotations

from typing import Optional

from doctor.knowledge import load
from doctor.knowledge.versions import cuda_tuple, driver_below, parse

PYTORCH_INDEX = "https://download.pytorch.org/whl/"


def ga_minimum(cuda: str, column: str) -> Optional[str]:
    """The driver the GA release of this CUDA minor needs ('12.1', 'linux') -> '530.30.02'."""
    want = cuda_tuple(cuda)
    for row in load("driver_cuda")["toolkits"]:
        if cuda_tuple(row["cuda"]) == want and row["release"] == "GA":
            return row.get(column)
    return None


def compat_floor(cuda: str, column: str) -> Optional[str]:
    """The minor-version-compatibility floor for this CUDA major: below it, nothing runs."""
    t = cuda_tuple(cuda)
    if t is None:
        return None
    for row in load("driver_cuda")["minor_version_floors"]:
        if row["major"] == t[0]:
            return row.get(column)
    return None


def driver_runs(driver: Optional[str], cuda: str, column: str,
                cuda_driver_version: Optional[str] = None) -> Optional[bool]:
    """Does this driver fully support this CUDA minor? The driver's own max CUDA
    (cuDriverGetVersion) decides when known; the GA table row is the fallback."""
    have, want = cuda_tuple(cuda_driver_version), cuda_tuple(cuda)
    if have and want:
        return have >= want
    ga = ga_minimum(cuda, column)
    if driver and ga:
        return not driver_below(driver, ga)
    return None


def covers(row: dict, torch_version: Optional[str]) -> bool:
    """Does this wheel flavour publish this torch release (by major.minor)?"""
    v = parse(torch_version)
    if v is None:
        return False
    mm = v.release[:2]
    lo = parse(row["torch_min"]).release[:2]
    hi = parse(row["torch_max"]).release[:2] if row.get("torch_max") else None
    return lo <= mm and (hi is None or mm <= hi)


def best_flavour(driver: Optional[str], column: str, cuda_driver_version: Optional[str] = None,
                 min_cuda: Optional[str] = None, keep_torch: Optional[str] = None) -> Optional[dict]:
    """The newest wheel flavour (cu118 ... cu130) the driver runs and the GPU needs (>= min_cuda);
    among them, one that publishes keep_torch's release when there is one. None when none fits
    (the driver must be updated first) or nothing is known about the driver."""
    fits = fitting_flavours(driver, column, cuda_driver_version, min_cuda)
    same_torch = [r for r in fits if covers(r, keep_torch)]
    return max(same_torch or fits, key=lambda r: cuda_tuple(r["cuda"]), default=None)


def fitting_flavours(driver: Optional[str], column: str, cuda_driver_version: Optional[str] = None,
                     min_cuda: Optional[str] = None) -> list[dict]:
    """Every wheel flavour the driver runs and the GPU needs (>= min_cuda); [] when nothing is
    known about the driver."""
    if not driver and not cuda_driver_version:
        return []
    floor = cuda_tuple(min_cuda) if min_cuda else None
    return [row for row in load("torch_cuda_wheels")["flavours"]
            if not (floor and cuda_tuple(row["cuda"]) < floor)
            and driver_runs(driver, row["cuda"], column, cuda_driver_version)]


def flavour_for_cuda(min_cuda: str) -> Optional[dict]:
    """The oldest published flavour at or above min_cuda (what a new GPU needs at the least)."""
    floor = cuda_tuple(min_cuda)
    rows = [r for r in load("torch_cuda_wheels")["flavours"] if cuda_tuple(r["cuda"]) >= floor]
    return min(rows, key=lambda r: cuda_tuple(r["cuda"]), default=None)


def reinstall_torch_command(flavour: Optional[dict], with_torchvision: bool = False, force: bool = True,
                            keep_torch: Optional[str] = None) -> str:
    """pip command for torch from the PyTorch index of this flavour (PyPI's default without one),
    pinned to keep_torch's release when the flavour publishes it, so nothing built against torch
    (xformers, bitsandbytes) moves. torchvision is left unpinned: pip picks the one for that torch."""
    v = parse(keep_torch)
    pin = f"=={v.public}" if v is not None and flavour and covers(flavour, keep_torch) else ""
    pkgs = f"torch{pin}" + (" torchvision" if with_torchvision else "")
    cmd = f"pip install {'--force-reinstall ' if force else ''}{pkgs}"
    return f"{cmd} --index-url {PYTORCH_INDEX}{flavour['tag']}" if flavour else cmd


def torch_cuda_tag(torch_version: Optional[str]) -> Optional[str]:
    """'2.2.0+cu121' -> 'cu121' (None for PyPI wheels without a local label)."""
    v = parse(torch_version)
    return v.local if v is not None and v.local else None


def suggest_flavour(facts, keep_torch: Optional[str] = None) -> Optional[dict]:
    """The wheel flavour to recommend on this machine: the driver runs it, every GPU has kernels,
    and (when possible) it publishes the keep_torch release."""
    from checks._machine import driver_column, min_cuda_for_gpus

    return best_flavour(facts.nvidia.driver_version, driver_column(facts), facts.nvidia.cuda_driver_version,
                        min_cuda=min_cuda_for_gpus(facts), keep_torch=keep_torch)
