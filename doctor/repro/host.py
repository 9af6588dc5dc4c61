"""Host-side state at the moment of a stall or crash: memory, swap, and the child tree's processes.

psutil only (no subprocess, nothing that can hang). The attach snapshot has per-process detail too;
this adds the machine-wide numbers (MemAvailable, swap) the host-memory diagnosis needs.
"""
from __future__ import annotations

import time
from typing import Optional

import psutil


def host_memory() -> dict:
    vm = psutil.virtual_memory()
    out = {"total": vm.total, "available": vm.available, "used": vm.used}
    try:
        sw = psutil.swap_memory()
        out.update(swap_total=sw.total, swap_used=sw.used)
    except (OSError, RuntimeError):
        pass
    return out


def tree_processes(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def tree_state(pid: int) -> dict:
    """Per process: status, RSS, threads; plus the tree's total RSS."""
    procs = []
    total = 0
    for p in tree_processes(pid):
        try:
            with p.oneshot():
                rss = p.memory_info().rss
                procs.append({"pid": p.pid, "ppid": p.ppid(), "status": p.status(), "rss": rss,
                              "threads": p.num_threads(), "name": p.name()})
            total += rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return {"processes": procs, "rss_total": total}


def host_snapshot(pid: int) -> dict:
    return {"t": time.time(), "memory": host_memory(), "tree": tree_state(pid)}


def root_rss(snapshot: Optional[dict], pid: int) -> Optional[int]:
    if not snapshot:
        return None
    for p in snapshot.get("tree", {}).get("processes", []):
        if p.get("pid") == pid:
            return p.get("rss")
    return None
