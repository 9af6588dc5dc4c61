"""What the kernel and psutil say about the target tree: roles, /proc state, CPU, memory, waits.

Everything here is best effort: a process that vanishes or that we may not read yields None
fields, never an exception, because the caller is in the middle of sampling a live tree.
"""
from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path
from typing import Optional

import psutil

from doctor.attach.snapshot import KernelWait, ProcessSample

# torchrun / torch.distributed.launch / accelerate / deepspeed launchers: they are not workers.
_LAUNCHER = re.compile(r"(^|/)(torchrun|accelerate|deepspeed)$|torch\.distributed\.(run|launch)|"
                       r"accelerate\.commands\.(launch|accelerate_cli)|deepspeed\.launcher")
_PYTHON_EXE = re.compile(r"^(python|pypy)[0-9.]*[a-z]*$")


def proc_state(pid: int, tid: Optional[int] = None) -> Optional[str]:
    """The one-letter state from /proc/<pid>[/task/<tid>]/stat (R S D T t Z I X)."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    tail = text[text.rfind(")") + 2:]   # comm may contain spaces and parentheses
    return tail[:1] or None


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _syscall(text: Optional[str]) -> Optional[int]:
    # "/proc/.../syscall": "running", "-1 sp pc" (blocked outside a syscall) or "NR args... sp pc"
    if not text or text.startswith("running"):
        return None
    try:
        nr = int(text.split()[0])
    except ValueError:
        return None
    return nr if nr >= 0 else None


def thread_waits(pid: int) -> dict[str, KernelWait]:
    """tid -> where the kernel has that thread (state, wchan, syscall number)."""
    out: dict[str, KernelWait] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        wchan = _read(base + "/wchan")
        out[tid] = KernelWait(state=proc_state(pid, int(tid)),
                              wchan=None if wchan in (None, "", "0") else wchan,
                              syscall=_syscall(_read(base + "/syscall")))
    return out


def cpu_seconds(pid: int) -> tuple[Optional[float], dict[str, float]]:
    """(process user+system seconds, tid -> thread user+system seconds)."""
    try:
        p = psutil.Process(pid)
        t = p.cpu_times()
        threads = {str(th.id): th.user_time + th.system_time for th in p.threads()}
        return t.user + t.system, threads
    except (psutil.Error, OSError):
        return None, {}


def vm_swap(pid: int) -> Optional[int]:
    text = _read(f"/proc/{pid}/status")
    if not text:
        return None
    m = re.search(r"^VmSwap:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) * 1024 if m else None


def _environ_int(env: dict, key: str) -> Optional[int]:
    try:
        return int(env[key])
    except (KeyError, ValueError, TypeError):
        return None


def looks_like_python(proc: psutil.Process) -> Optional[bool]:
    """True for a python executable or a binary that maps libpython; None if we may not look."""
    try:
        exe = proc.exe()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        exe = ""
    except psutil.Error:
        return None
    if exe and _PYTHON_EXE.match(os.path.basename(exe)):
        return True
    try:
        with open(f"/proc/{proc.pid}/maps") as fh:
            return any("libpython" in line for line in fh)
    except OSError:
        return None if not exe else False


def is_launcher(cmdline: list[str]) -> bool:
    return any(_LAUNCHER.search(arg) for arg in cmdline[:3])


def describe(proc: psutil.Process, root_pid: int) -> ProcessSample:
    """Static facts about one process of the tree, and its role."""
    s = ProcessSample(pid=proc.pid)
    try:
        with proc.oneshot():
            s.ppid = proc.ppid()
            s.name = proc.name()
            s.cmdline = proc.cmdline()
            s.num_threads = proc.num_threads()
            s.rss = proc.memory_info().rss
    except psutil.NoSuchProcess:
        s.exited = True
        return s
    except psutil.Error:
        pass
    try:
        s.exe = proc.exe()
    except psutil.Error:
        pass
    s.swap = vm_swap(proc.pid)
    s.wchan = _read(f"/proc/{proc.pid}/wchan") or None
    s.state_before = proc_state(proc.pid)
    s.python = looks_like_python(proc)
    try:
        env = proc.environ()
    except psutil.Error:
        env = {}
    s.rank, s.local_rank = _environ_int(env, "RANK"), _environ_int(env, "LOCAL_RANK")
    s.world_size = _environ_int(env, "WORLD_SIZE")
    s.cuda_visible_devices = env.get("CUDA_VISIBLE_DEVICES")
    if s.python is False:
        s.role = "non-python"
        s.skipped = f"not a Python process ({s.name or os.path.basename(s.exe or '?')})"
    elif is_launcher(s.cmdline):
        s.role = "launcher"
    elif s.rank is not None and s.world_size != 1:
        s.role = f"rank {s.rank}"         # a rank's own children inherit RANK: see sampler.fix_roles
    elif proc.pid == root_pid:
        s.role = "main"
    else:
        s.role = "child"                 # refined to dataloader-worker etc. from its stack
    return s


def describe_with_deadline(proc: psutil.Process, root_pid: int, timeout_s: float) -> ProcessSample:
    """describe() in a daemon thread: reading /proc/<pid>/cmdline, environ or maps blocks while a
    process in D state holds its memory lock (the classic hanging `ps`), and the doctor must not."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("s", describe(proc, root_pid)), daemon=True)
    t.start()
    t.join(timeout_s)
    if "s" in box:
        return box["s"]
    s = ProcessSample(pid=proc.pid, state_before=proc_state(proc.pid), python=None)
    s.errors.append(f"reading /proc/{proc.pid} took over {timeout_s:.0f} s (memory lock held, state D?)")
    return s


def tree(pid: int, include_children: bool) -> list[psutil.Process]:
    root = psutil.Process(pid)
    if not include_children:
        return [root]
    try:
        kids = root.children(recursive=True)
    except psutil.Error:
        kids = []
    # attaching to a shell that started the doctor: the doctor and its own helpers are inside the
    # tree, and are not the target (when the doctor is the target's parent, as in repro, keep all)
    me = os.getpid()
    if any(k.pid == me for k in kids):
        try:
            mine = {me} | {p.pid for p in psutil.Process(me).children(recursive=True)}
        except psutil.Error:
            mine = {me}
        kids = [k for k in kids if k.pid not in mine]
    return [root] + kids


def open_files(pid: int) -> list[str]:
    try:
        return [f.path for f in psutil.Process(pid).open_files()][:20]
    except psutil.Error:
        return []


def resume_if_stopped(pid: int) -> bool:
    """SIGCONT a process left in state T (a py-spy interrupted while it held ptrace does that)."""
    if proc_state(pid) not in ("T", "t"):
        return False
    try:
        os.kill(pid, signal.SIGCONT)
    except OSError:
        return False
    return True


def ptrace_scope() -> Optional[int]:
    text = _read("/proc/sys/kernel/yama/ptrace_scope")
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def in_container() -> bool:
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    cg = _read("/proc/1/cgroup") or ""
    return any(k in cg for k in ("docker", "kubepods", "containerd", "libpod"))
