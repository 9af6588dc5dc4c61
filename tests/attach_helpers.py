"""Helpers for the attach tests: start a stuck-process target and wait until it is stuck; check that a
process tree is really gone afterwards."""
from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from doctor.proctree import alive, kill_tree, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "attach"
READY_TIMEOUT_S = 120.0      # a torch import on a loaded 2-core CI box can take a while


def wait_ready(proc: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S, tag: bytes = b"READY") -> None:
    """Block until the target prints READY (it does once it reached its stuck state)."""
    deadline = time.monotonic() + timeout_s
    buf = b""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"target exited with {proc.returncode} before READY:\n{err[-2000:]}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = proc.stdout.readline()
            buf += chunk
            if tag in chunk:
                return
    raise AssertionError(f"target not READY after {timeout_s:.0f} s; stdout so far: {buf[-500:]!r}")


def start_target(spawn, script: str, *args: str, stuck_state: str = "S") -> subprocess.Popen:
    """Start tests/fixtures/attach/<script>, wait for READY, then until its main thread is in
    stuck_state ("S" waiting, "R" running, None: do not wait)."""
    proc = spawn([sys.executable, str(FIXTURES / script), *args], cwd=str(FIXTURES))
    wait_ready(proc)
    if stuck_state:
        assert wait_for(lambda: _state(proc.pid) == stuck_state, 30.0), \
            f"{script} never reached state {stuck_state} (now {_state(proc.pid)})"
    return proc


def _state(pid: int):
    try:
        return {"sleeping": "S", "running": "R", "disk-sleep": "D", "stopped": "T"}.get(psutil.Process(pid).status())
    except psutil.Error:
        return None


def tree_pids(pid: int) -> list[int]:
    try:
        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return [pid]


def kill_and_assert_gone(proc: subprocess.Popen, pids: list[int]) -> None:
    """Kill the whole tree and assert that not one of its processes survives."""
    kill_tree(proc.pid)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    assert wait_for(lambda: not any(alive(p) for p in pids), 10.0), \
        f"survivors: {[p for p in pids if alive(p)]}"


# ---- building snapshots by hand, for classifier unit tests (shapes as py-spy 0.4 prints them)

SITE = "/usr/lib/python3.12/site-packages/"


def frame(name: str, filename: str, line: int = 10, module=None) -> dict:
    short = filename.split("site-packages/")[-1] if "site-packages/" in filename else filename.rsplit("/", 1)[-1]
    return {"name": name, "filename": filename, "module": module, "short_filename": short, "line": line,
            "locals": None}


def native(name: str, lib: str = "/usr/lib/x86_64-linux-gnu/libcuda.so.1") -> dict:
    return {"name": name, "filename": lib, "module": lib, "short_filename": lib.rsplit("/", 1)[-1], "line": 0,
            "locals": None}


def thread(frames: list, name: str = "MainThread", tid: int = 100, active: bool = False) -> dict:
    return {"pid": tid, "thread_id": tid * 1000, "thread_name": name, "os_thread_id": tid, "active": active,
            "owns_gil": active, "frames": frames, "process_info": None}


def process(pid: int, samples: list, ppid: int = 1, cpu: float = 0.0, role: str = "main", native_dump=None,
            state: str = "S", source=None, kernel=None, **kw):
    """samples: per sample, the list of thread dicts. cpu: the process's and each thread's CPU %."""
    from doctor.attach.snapshot import KernelWait, ProcessSample

    tids = {str(t["os_thread_id"]) for s in samples for t in s}
    return ProcessSample(
        pid=pid, ppid=ppid, name="python", cmdline=["python", "train.py"], role=role, python=True,
        states=[state] * len(samples), state_before=state, state_after=state, cpu_percent=cpu, cpu_window_s=0.5,
        thread_cpu_s={t: cpu / 100 * 0.5 for t in tids}, dumps=samples, native_dump=native_dump,
        kernel=[{t: KernelWait(state=state, **(kernel or {})) for t in tids} for _ in samples],
        source=source or {}, **kw)


def snapshot(*procs, target=None, gpu=None, **kw):
    from doctor.attach.snapshot import GpuSample, Snapshot

    return Snapshot(target_pid=target or procs[0].pid, samples=len(procs[0].dumps), interval_s=0.25,
                    window_s=0.5, arch="x86_64", processes=list(procs), gpu=gpu or GpuSample(), **kw)


def gpu_sample(util: int, power_w: float, limit_w: float = 700, pids=(), reasons: int = 0x4,
               used=None, total=80 * 2**30):
    from doctor.attach.gpu import decode_reasons
    from doctor.attach.snapshot import GpuDevice, GpuSample

    dev = GpuDevice(index=0, name="NVIDIA H100 80GB HBM3", util=[util] * 3, power_mw=[int(power_w * 1000)] * 3,
                    power_limit_mw=int(limit_w * 1000), sm_clock_mhz=[1980] * 3, sm_clock_max_mhz=1980,
                    clock_event_reasons=reasons, clock_event_names=decode_reasons(reasons),
                    memory_used=used, memory_total=total,
                    processes=[{"pid": p, "used_memory": 10 * 2**30} for p in pids])
    return GpuSample(available=True, driver="580.159.04", devices=[dev])


# ---- torchrun jobs of gloo ranks on CPU (tests/fixtures/attach/ranks_job.py)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks_job(spawn, mode: str, nproc: int, odd: int, env_extra: dict | None = None) -> subprocess.Popen:
    """torchrun (python -m torch.distributed.run) with nproc gloo ranks; returns once every live rank
    printed READY and every rank process sleeps (in its collective, or its DataLoader)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(_free_port()), "--monitor_interval", "0.5", str(FIXTURES / "ranks_job.py"), mode, str(odd)]
    proc = spawn(cmd, env=env, cwd=str(FIXTURES), stderr=subprocess.DEVNULL)
    want = nproc - (1 if mode == "dead" else 0)
    seen: set[str] = set()
    buf = b""
    deadline = time.monotonic() + READY_TIMEOUT_S * 2
    fd = proc.stdout.fileno()
    while len(seen) < want:
        assert time.monotonic() < deadline, f"only {sorted(seen)} of {want} ranks READY"
        assert proc.poll() is None, f"torchrun exited with {proc.returncode}"
        if select.select([fd], [], [], 0.5)[0]:      # raw reads: several ranks' lines come in one chunk
            buf += os.read(fd, 65536)
            seen |= {ln.split()[1].decode() for ln in buf.splitlines() if ln.startswith(b"READY ")}

    def ranks_asleep() -> bool:
        kids = psutil.Process(proc.pid).children(recursive=True)
        return len(kids) >= want and all(k.status() in ("sleeping", "disk-sleep", "zombie") for k in kids)
    assert wait_for(ranks_asleep, 60.0), "the ranks never settled"
    time.sleep(1.0)         # READY comes just before the blocking call
    return proc


def rank_pids(proc) -> dict[int, int]:
    out = {}
    for k in psutil.Process(proc.pid).children():
        try:
            out[int(k.environ()["RANK"])] = k.pid
        except (KeyError, psutil.Error):
            pass
    return out
