"""Process-tree helpers shared by attach, repro and the tests: list and stop a whole tree.

A DataLoader whose parent is killed leaves its workers alive, so stopping "the training" always
means stopping the tree, children first found, then all of them.
"""
from __future__ import annotations

import signal
import time

import psutil


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def kill_tree(pid: int, grace_s: float = 3.0, include_root: bool = True) -> list[int]:
    """SIGTERM the tree (root last-found included), wait grace_s, SIGKILL the rest.

    Stopped (state T) processes are sent SIGCONT so they can act on SIGTERM.
    Returns the pids that were signalled.
    """
    procs = descendants(pid)
    if include_root:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        try:
            p.send_signal(signal.SIGCONT)
            p.terminate()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return [p.pid for p in procs]


def alive(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll predicate() until true or timeout; for tests and watchdogs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def create_time(pid: int) -> float:
    """psutil's create time, 0.0 when the process is gone: with the pid it names one process."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def same_process(pid: int, created: float) -> bool:
    """Alive, not a zombie, and not a new process that reused the pid."""
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and abs(p.create_time() - created) < 0.5
    except psutil.Error:
        return False


def remember_tree(pid: int, known: dict[int, float]) -> None:
    """Add pid and its descendants to known (pid -> create time); first sight wins, so a stop
    later finds workers that were reparented away from the tree."""
    try:
        p = psutil.Process(pid)
        for q in [p] + p.children(recursive=True):
            known.setdefault(q.pid, q.create_time())
    except psutil.Error:
        pass


def kill_survivors(known: dict[int, float]) -> list[int]:
    """SIGKILL every remembered process (pid -> create time) still alive, a reused pid spared;
    return the pids that survived. The last sweep of a stop: reparented workers are found by it."""
    for pid, created in list(known.items()):
        if same_process(pid, created):
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
    time.sleep(0.1)
    return sorted(pid for pid, created in known.items() if same_process(pid, created))
