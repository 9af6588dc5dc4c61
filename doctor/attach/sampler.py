"""Sample a live process tree into a Snapshot: py-spy dumps of every Python process (concurrently,
several over a short window), /proc and psutil state, per-thread kernel waits, and NVML.

Bad input becomes a DoctorError with its exit code. Children that exit or refuse to be read are
recorded and skipped: a DataLoader that restarts its workers must not abort the diagnosis.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import psutil

from doctor import exitcodes
from doctor.attach import procinfo, pyspy
from doctor.attach.snapshot import GpuSample, ProcessSample, Snapshot
from doctor.exitcodes import DoctorError

MANY_THREADS = 50            # above this, pausing every thread costs more than a torn stack risks
SOURCE_FRAMES = 8            # innermost frames per thread whose source line we read
DESCRIBE_TIMEOUT_S = 3.0     # reading one process's /proc entries


@dataclass
class SampleOptions:
    samples: int = 3
    interval_s: float = 0.25
    native: Optional[bool] = None
    include_children: bool = True
    timeout_s: float = 20.0
    gpu: bool = True
    locals: bool = False         # py-spy --locals on every Python sample (can hold tokens and data)
    dump_timeout_s: float = 8.0  # one py-spy call; the whole run is bounded by timeout_s


def _permission_message(pid: int) -> str:
    scope = procinfo.ptrace_scope()
    scope_text = {0: "ptrace_scope 0: same-user processes may be traced", 1: "ptrace_scope 1: only descendants "
                  "may be traced", 2: "ptrace_scope 2: only CAP_SYS_PTRACE may trace", 3: "ptrace_scope 3: no "
                  "process may be traced"}.get(scope, "no Yama ptrace_scope: only the same user or CAP_SYS_PTRACE")
    hint = (f"run the doctor as the user that runs the training, or with CAP_SYS_PTRACE: "
            f"`sudo env \"PATH=$PATH\" doctor attach {pid}`")
    if scope in (1, 2):
        hint += "; or allow same-user tracing: `echo 0 | sudo tee /proc/sys/kernel/yama/ptrace_scope`"
    if procinfo.in_container():
        hint += "; in a container, root is not enough: start it with `--cap-add SYS_PTRACE`"
    return f"not permitted to trace pid {pid} ({scope_text}): {hint}"


def _is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _root(pid: int) -> psutil.Process:
    try:
        proc = psutil.Process(pid)
        status = proc.status()
    except psutil.NoSuchProcess:
        raise DoctorError(f"no process with pid {pid}", exitcodes.NO_SUCH_PROCESS)
    except psutil.AccessDenied:
        raise DoctorError(_permission_message(pid), exitcodes.PERMISSION_DENIED)
    if status == psutil.STATUS_ZOMBIE:
        raise DoctorError(f"pid {pid} has already exited (a zombie waiting for its parent to reap it)",
                          exitcodes.PROCESS_EXITED)
    return proc


def fix_roles(procs: list[ProcessSample]) -> None:
    """A rank's own children inherit RANK; they are that rank's workers, not ranks."""
    by_pid = {p.pid: p for p in procs}
    for p in procs:
        parent = by_pid.get(p.ppid) if p.ppid is not None else None
        if p.role.startswith("rank ") and parent is not None and parent.rank == p.rank:
            p.role = "child"


def _read_source(path: str, line: int, pid: int, cache: dict) -> Optional[str]:
    if path not in cache:
        text = None
        for candidate in (path, f"/proc/{pid}/root{path}"):
            try:
                if os.path.isfile(candidate) and os.path.getsize(candidate) < 4_000_000:
                    text = Path(candidate).read_text(errors="replace").splitlines()
                    break
            except OSError:
                continue
        cache[path] = text
    lines = cache[path]
    if not lines or not (1 <= line <= len(lines)):
        return None
    return lines[line - 1].strip()[:200]


def collect_source(ps: ProcessSample, cache: dict) -> None:
    """Source line of the innermost Python frames: `.item()` or `time.sleep(` live there."""
    stacks = list(ps.dumps) + ([ps.native_dump] if ps.native_dump else [])
    for threads in stacks:
        for th in threads:
            for fr in (th.get("frames") or [])[:SOURCE_FRAMES]:
                fn, ln = fr.get("filename") or "", fr.get("line") or 0
                key = f"{fn}:{ln}"
                if fr.get("module") or ln <= 0 or not fn.startswith("/") or key in ps.source:
                    continue
                text = _read_source(fn, ln, ps.pid, cache)
                if text is not None:
                    ps.source[key] = text


class _Sampler:
    def __init__(self, pid: int, opts: SampleOptions):
        self.pid, self.opts = pid, opts
        self.deadline = time.monotonic() + opts.timeout_s
        self.binary = pyspy.find_pyspy()
        if self.binary is None:
            where = os.environ.get(pyspy.ENV_OVERRIDE) or f"{Path(sys.executable).parent}/py-spy or PATH"
            raise DoctorError(f"py-spy not found ({where}): install it with `pip install py-spy`",
                              exitcodes.PYSPY_MISSING)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def dump(self, ps: ProcessSample, native: bool = False) -> pyspy.DumpResult:
        timeout = min(self.opts.dump_timeout_s, max(0.5, self.left()))
        res = pyspy.dump(self.binary, ps.pid, native=native, nonblocking=ps.nonblocking and not native,
                         locals_=self.opts.locals and not native, timeout=timeout)
        if res.kind in (pyspy.TIMEOUT, pyspy.FAILED) and not ps.nonblocking and not native \
                and self.left() > 0.5 and not _is_gone(ps.pid):
            # blocked ptrace (D state, issue #565) or "Failed to suspend process": read without pausing
            ps.nonblocking = True
            ps.errors.append(f"{res.message}; retried with --nonblocking")
            res = pyspy.dump(self.binary, ps.pid, nonblocking=True, locals_=self.opts.locals,
                             timeout=min(self.opts.dump_timeout_s, max(0.5, self.left())))
        return res

    def root_error(self, ps: ProcessSample, res: pyspy.DumpResult) -> None:
        """Errors on the target itself end the run with their exit code."""
        if res.kind == pyspy.NOT_PYTHON:
            raise DoctorError(f"pid {ps.pid} ({ps.name or '?'}) is not running Python (py-spy: {res.message})",
                              exitcodes.NOT_PYTHON)
        if res.kind == pyspy.PERMISSION:
            raise DoctorError(_permission_message(ps.pid), exitcodes.PERMISSION_DENIED)
        if res.kind == pyspy.NO_PROCESS or _is_gone(ps.pid):
            raise DoctorError(f"pid {ps.pid} exited while it was being sampled", exitcodes.PROCESS_EXITED)

    def sample_one(self, ps: ProcessSample) -> None:
        if ps.exited or ps.skipped:
            return
        res = self.dump(ps)
        waits = procinfo.thread_waits(ps.pid)
        state = procinfo.proc_state(ps.pid)
        if state in ("T", "t") and ps.state_before not in ("T", "t"):
            self._resume(ps)             # never leave training paused between our samples
            state = procinfo.proc_state(ps.pid)
        if res.kind == pyspy.OK:
            ps.dumps.append(res.threads)
            ps.kernel.append(waits)
            ps.states.append(state or "?")
            return
        if ps.pid == self.pid:
            self.root_error(ps, res)
        elif _is_gone(ps.pid):
            ps.exited = True
            ps.errors.append("exited during sampling")
            return
        elif res.kind == pyspy.NOT_PYTHON and not ps.dumps:
            ps.python, ps.role = False, "non-python"
            ps.skipped = "not a Python process (py-spy found no interpreter)"
            return
        elif res.kind == pyspy.PERMISSION and not ps.dumps:
            ps.skipped = "not permitted to trace it"
            return
        ps.errors.append(res.message)

    def run(self) -> Snapshot:
        t_start = time.monotonic()
        samples, targets = self._describe_tree()
        snap = Snapshot(target_pid=self.pid, samples=self.opts.samples, interval_s=self.opts.interval_s,
                        taken_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        arch=platform.machine(), wsl=_is_wsl(), native_requested=self.opts.native,
                        include_children=self.opts.include_children, gpu_requested=self.opts.gpu,
                        pyspy={"path": self.binary, "version": None}, processes=samples)
        gpu_box: dict = {}
        gpu_thread = None
        if self.opts.gpu:
            window = self.opts.interval_s * max(0, self.opts.samples - 1) + 0.2
            gpu_thread = threading.Thread(target=self._gpu, args=(gpu_box, [s.pid for s in samples], window, snap.wsl),
                                          daemon=True)
            gpu_thread.start()
        try:
            self._sample_window(snap, targets)
        finally:   # whatever happened (the target exited, a DoctorError), leave nothing stopped
            for s in targets:
                if s.state_before not in ("T", "t") and not s.exited:
                    self._resume(s)
        cache: dict = {}
        for s in samples:
            self._after(s)
            collect_source(s, cache)
        if gpu_thread is not None:
            gpu_thread.join(max(0.1, self.left() + 2))
            snap.gpu = gpu_box.get("gpu") or GpuSample(unavailable=["NVML sampling did not finish in time"])
        else:
            snap.gpu = GpuSample(unavailable=["GPU sampling turned off (--no-gpu)"])
        snap.flight_records = _flight_records(samples)
        snap.pyspy["version"] = pyspy.pyspy_version(self.binary, timeout=max(0.5, min(3.0, self.left())))
        snap.duration_s = time.monotonic() - t_start
        return snap

    def _describe_tree(self) -> tuple[list[ProcessSample], list[ProcessSample]]:
        """Every process of the tree described, and the ones to dump."""
        _root(self.pid)
        try:
            procs = procinfo.tree(self.pid, self.opts.include_children)
        except psutil.NoSuchProcess:
            raise DoctorError(f"pid {self.pid} exited before it could be sampled", exitcodes.PROCESS_EXITED)
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(procs)))) as pool:
            samples = list(pool.map(lambda p: procinfo.describe_with_deadline(p, self.pid, DESCRIBE_TIMEOUT_S),
                                    procs))
        fix_roles(samples)
        root_s = samples[0]
        if root_s.exited:
            raise DoctorError(f"pid {self.pid} exited before it could be sampled", exitcodes.PROCESS_EXITED)
        targets = [s for s in samples if not s.skipped and not s.exited]
        if root_s.python is False and not targets:
            # nothing else to sample: let py-spy judge the target (a static or renamed interpreter
            # has no "python" in its name and no libpython in its maps)
            root_s.skipped, root_s.role = None, "main"
            targets = [root_s]
        for s in targets:
            s.nonblocking = (s.num_threads or 0) > MANY_THREADS or s.state_before in ("D", "T", "t")
        return samples, targets

    def _sample_window(self, snap: Snapshot, targets: list[ProcessSample]) -> None:
        """The py-spy samples of every target (concurrently), CPU over the window, the --native pass."""
        cpu0 = {s.pid: procinfo.cpu_seconds(s.pid) for s in targets}
        t_cpu0 = time.monotonic()
        times = []
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(targets)))) as pool:
            for i in range(self.opts.samples):
                if i and self.left() <= 0:
                    snap.errors.append(f"stopped after {i} samples: the {self.opts.timeout_s:.0f} s limit was reached")
                    break
                t0 = time.monotonic()
                times.append(t0)
                for fut in [pool.submit(self.sample_one, s) for s in targets]:
                    fut.result()     # re-raises the root's DoctorError
                if i < self.opts.samples - 1:
                    time.sleep(max(0.0, min(self.opts.interval_s - (time.monotonic() - t0), self.left())))
            min_window = max(0.2, self.opts.interval_s)
            if time.monotonic() - t_cpu0 < min_window:     # a CPU% over a few ms means nothing
                time.sleep(min_window - (time.monotonic() - t_cpu0))
            t_cpu1 = time.monotonic()
            for s in targets:
                self._cpu(s, cpu0.get(s.pid), t_cpu1 - t_cpu0)
            self._native_pass(pool, targets)
        snap.window_s = (times[-1] - times[0]) if len(times) > 1 else 0.0

    def _gpu(self, box: dict, pids: list[int], window: float, wsl: bool) -> None:
        from doctor.attach.gpu import sample_gpu

        try:
            box["gpu"] = sample_gpu(pids, window, max(2, self.opts.samples),
                                    timeout_s=max(3.0, min(10.0, self.left())), wsl=wsl)
        except Exception as exc:  # noqa: BLE001 - an odd NVML payload must not cost the diagnosis
            box["gpu"] = GpuSample(unavailable=[f"NVML sampling failed: {type(exc).__name__}: {exc}"])

    @staticmethod
    def _cpu(s: ProcessSample, before, wall: float) -> None:
        if before is None or before[0] is None or wall <= 0:
            return
        total1, threads1 = procinfo.cpu_seconds(s.pid)
        if total1 is None:
            return
        s.cpu_window_s = round(wall, 3)
        s.cpu_percent = round(100.0 * (total1 - before[0]) / wall, 1)
        s.thread_cpu_s = {tid: round(t1 - before[1].get(tid, t1), 4) for tid, t1 in threads1.items()
                          if tid in before[1]}

    def _native_pass(self, pool: ThreadPoolExecutor, targets: list[ProcessSample]) -> None:
        from doctor.attach.threads import wants_native

        if self.opts.native is False:
            return
        chosen = [s for s in targets if s.dumps and not s.exited and s.state_before not in ("D",)
                  and (self.opts.native or wants_native(s, platform.machine()))]
        if not chosen or self.left() < 1.0:
            return

        def one(s: ProcessSample):
            res = pyspy.dump(self.binary, s.pid, native=True,
                             timeout=min(self.opts.dump_timeout_s, max(0.5, self.left())))
            if res.kind == pyspy.OK:
                s.native_dump = res.threads
            else:   # libunwind trouble on torch processes is common (py-spy #336, #398): Python frames stand
                s.errors.append(f"--native: {res.message}")
        list(pool.map(one, chosen))

    @staticmethod
    def _resume(s: ProcessSample) -> None:
        if procinfo.resume_if_stopped(s.pid):
            if not s.resumed:
                s.errors.append("was left stopped (state T) by py-spy; sent SIGCONT")
            s.resumed = True

    def _after(self, s: ProcessSample) -> None:
        if s.exited or s.skipped:
            return
        # a py-spy killed while it held ptrace can leave the target stopped; only resume what we stopped
        if s.state_before not in ("T", "t"):
            self._resume(s)
        s.state_after = procinfo.proc_state(s.pid)
        if "D" in s.states or s.state_before == "D":
            s.open_files = procinfo.open_files(s.pid)
        s.rss = _rss(s.pid, s.rss)
        if s.state_after is None and _is_gone(s.pid):
            s.exited = True


def _rss(pid: int, default: Optional[int]) -> Optional[int]:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return default


def _is_wsl() -> bool:
    try:
        return "microsoft" in Path("/proc/version").read_text().lower()
    except OSError:
        return False


def _flight_records(samples: list[ProcessSample]) -> dict[str, dict]:
    """The flight recorder dumps the ranks wrote (when the job has it on), read safely."""
    from doctor.attach import flight_recorder

    wanted = []
    for s in samples:
        if s.role.startswith("rank ") and s.rank is not None:
            try:
                proc = psutil.Process(s.pid)
                cwd, started = proc.cwd(), proc.create_time()
            except psutil.Error:
                cwd, started = None, 0.0
            wanted.append((s.rank, s.dist_env, cwd, started))
    return flight_recorder.collect(wanted)


def sample_tree(pid: int, opts: SampleOptions) -> Snapshot:
    """Sample the tree of pid. A rank of a torchrun/accelerate/mp.spawn job is sampled through its
    launcher, so that every rank is lined up (not with --no-children: then only that pid)."""
    launcher = procinfo.launcher_of(pid) if opts.include_children else None
    if launcher is None:
        return _Sampler(pid, opts).run()
    snap = _Sampler(launcher, opts).run()
    snap.walked_up_from = pid
    return snap
