"""Runs the user's command as a child and watches it.

The child gets the user's environment and terminal: stdin and stdout are inherited (progress bars,
prompts and colours untouched); stderr goes through a relay thread that writes every byte on to our
stderr unchanged and keeps a bounded tail, because a crash is read from it. Two variables are added:
PYTHONPATH gets doctor/watch/instrument/ in front (its sitecustomize installs the step-report hook,
then chains to any sitecustomize it shadows), and DOCTOR_WATCH_EVENTS names the event file.

The child stays in our process group, so Ctrl-C reaches it as it would without the doctor; the
doctor then reports and returns the child's exit code. A second Ctrl-C stops the whole tree.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import psutil

from doctor import exitcodes
from doctor.exitcodes import DoctorError
from doctor.proctree import kill_survivors, kill_tree, remember_tree, same_process
from doctor.repro import host
from doctor.repro.events import EventReader
from doctor.repro.result import StallInfo
from doctor.repro.supervisor import Sampler, sample_into
from doctor.repro.watchdog import StallPolicy, Watch
from doctor.watch import ranks as rank_view
from doctor.watch.diagnose import rank_focus
from doctor.watch.result import StallRecord

POLL_S = 0.2
CPU_POLL_S = 1.0
CPU_ACTIVE_S = 0.05              # CPU seconds of the tree per poll that count as activity
TAIL_BYTES = 64 * 1024           # the stderr tail kept in memory (crash classification)
LOG_MAX_BYTES = 16 << 20         # stderr.log in --out stops growing here
INSTRUMENT_DIR = Path(__file__).resolve().parent / "instrument"
ENV_EVENTS = "DOCTOR_WATCH_EVENTS"

EventHook = Callable[[dict], None]


def child_env(events_path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(INSTRUMENT_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[ENV_EVENTS] = str(events_path)
    return env


class StderrRelay(threading.Thread):
    """Child stderr -> our stderr, byte for byte; keeps a bounded tail, a capped log and the time of
    the last output."""

    def __init__(self, fd: int, log_path: Path):
        super().__init__(name="doctor-watch-stderr", daemon=True)
        self.fd, self.log_path = fd, log_path
        self.tail = bytearray()
        self.last_output = 0.0
        self.lock = threading.Lock()

    def run(self) -> None:
        logged = 0
        with open(self.log_path, "wb") as log:
            while True:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                _write_all(2, chunk)
                with self.lock:
                    self.tail += chunk
                    if len(self.tail) > TAIL_BYTES:
                        del self.tail[:len(self.tail) - TAIL_BYTES]
                    self.last_output = time.time()
                if logged < LOG_MAX_BYTES:
                    log.write(chunk[:LOG_MAX_BYTES - logged])
                    log.flush()
                    logged += len(chunk)
        try:
            os.close(self.fd)
        except OSError:
            pass

    def text(self) -> str:
        with self.lock:
            return bytes(self.tail).decode(errors="replace")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return                   # our stderr is gone: keep draining the child's anyway
        view = view[n:]


class Runner:
    """One command under watch: events and activity in, stalls out; the tree always stopped."""

    def __init__(self, argv: list[str], out: Path, policy: StallPolicy, kill_on_stall: bool,
                 sampler: Optional[Sampler], on_event: Optional[EventHook], max_stalls: int = 5):
        self.argv, self.out, self.policy = argv, out, policy
        self.kill_on_stall, self.sampler, self.max_stalls = kill_on_stall, sampler, max_stalls
        self.on_event = on_event or (lambda e: None)
        self.events: list[dict] = []
        self.stalls: list[StallRecord] = []
        self.known: dict[int, float] = {}
        self._cpu: dict[int, float] = {}          # pid -> CPU seconds at the last poll
        self.proc: Optional[subprocess.Popen] = None
        self.relay: Optional[StderrRelay] = None
        self.events_path = (out / "events.jsonl").resolve()
        self.killed_on_stall = False
        self._interrupts = 0

    def start(self) -> None:
        if self.events_path.exists():
            self.events_path.unlink()        # a reused --out must not replay an old run
        self.events_path.touch()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=None, stdout=None, stderr=subprocess.PIPE,
                                         env=child_env(self.events_path))
        except FileNotFoundError:
            raise DoctorError(f"command not found: {self.argv[0]}", exitcodes.USAGE)
        except PermissionError:
            raise DoctorError(f"command not executable: {self.argv[0]}", exitcodes.USAGE)
        self.relay = StderrRelay(os.dup(self.proc.stderr.fileno()), self.out / "stderr.log")
        self.proc.stderr.close()
        self.relay.start()
        self._remember()

    def _remember(self) -> None:
        remember_tree(self.proc.pid, self.known)

    def _cpu_moved(self) -> bool:
        """Did any process of the tree use CPU since the last poll? Per process, so a worker that
        exits (taking its CPU time out of any total) cannot hide the others' work."""
        moved = 0.0
        for pid, created in list(self.known.items()):
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - created) >= 0.5:
                    continue
                t = p.cpu_times()
                now = t.user + t.system
            except psutil.Error:
                continue
            moved += now - self._cpu.get(pid, 0.0)
            self._cpu[pid] = now
        return moved >= CPU_ACTIVE_S

    def watch(self) -> None:
        reader = EventReader(self.events_path)
        w = Watch(self.policy, started=time.time())
        last_cpu_poll, last_out = 0.0, 0.0
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, self._on_sigint) if main else None
        try:
            while True:
                for ev in reader.read_new():
                    self._feed(w, ev)
                now = time.time()
                out_t = self.relay.last_output if self.relay else 0.0
                if out_t > last_out:
                    last_out = out_t
                    w.feed({"kind": "activity", "t": out_t, "what": "output"})
                if now - last_cpu_poll >= CPU_POLL_S:
                    self._remember()
                    if self._cpu_moved():
                        w.feed({"kind": "activity", "t": now, "what": "cpu"})
                    last_cpu_poll = now
                if self.proc.poll() is not None:
                    break
                if w.overdue(now) and len(self.stalls) < self.max_stalls and self._still_overdue(w):
                    self._stall(w, now)
                    if self.kill_on_stall:
                        self.killed_on_stall = True
                        break
                last = self.stalls[-1] if self.stalls else None
                if last is not None and not last.recovered and w.last_progress > last.info.detected_at:
                    last.recovered = True
                time.sleep(POLL_S)
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        if self.relay is not None:
            self.relay.join(timeout=2.0 if not self.killed_on_stall else 0.1)
        for ev in reader.read_new():
            self._feed(w, ev)

    def _still_overdue(self, w: Watch) -> bool:
        """Look once more before calling it a stall: on a loaded machine this loop itself can go
        unscheduled for seconds, and the child's CPU use or exit in that gap is not a stall."""
        self._remember()
        if self._cpu_moved():
            w.feed({"kind": "activity", "t": time.time(), "what": "cpu"})
        return self.proc.poll() is None and w.overdue(time.time())

    def _on_sigint(self, signum, frame) -> None:
        # the child got the same Ctrl-C from the terminal; a second one stops the whole tree
        self._interrupts += 1
        if self._interrupts >= 2 and self.proc is not None:
            threading.Thread(target=self._terminate, daemon=True).start()

    def _feed(self, w: Watch, ev: dict) -> None:
        self.events.append(ev)
        w.feed(ev)
        if isinstance(ev.get("pid"), int) and ev["pid"] not in self.known:
            try:
                self.known[ev["pid"]] = psutil.Process(ev["pid"]).create_time()
            except psutil.Error:
                pass
        self.on_event(ev)

    def _stall(self, w: Watch, now: float) -> None:
        d = w.deadline()
        training = w.phase == "training"
        info = StallInfo(step=w.last_step + 1 if training else 0, phase=w.phase, waited_s=now - d.since,
                         deadline_s=d.seconds, reason=d.reason, detected_at=now)
        self.on_event({"kind": "stall", "t": now, "step": info.step, "phase": w.phase, "waited_s": info.waited_s,
                       "n": len(self.stalls) + 1})
        rec = StallRecord(info=info, ranks=rank_view.rank_progress(self.events))
        # the whole tree (the launcher and every rank): attach lines the ranks up (doctor.attach.ranks)
        sample_into(rec, self.sampler, self.proc.pid)
        first = rank_view.first_stopped(rec.ranks, ((rec.diagnosis or {}).get("ranks") or {}).get("first"))
        if first is not None:
            rec.first_stopped_rank = first["rank"]
        snap = host.host_snapshot(self.proc.pid)
        snap["root_pid"] = self._training_pid(rec)
        rec.host = snap
        rec.report_s = round(time.time() - now, 3)
        self.stalls.append(rec)
        self.on_event({"kind": "stall-diagnosed", "t": time.time(), "n": len(self.stalls),
                       "cause": (rank_focus(rec) or {}).get("cause"), "first_stopped_rank": rec.first_stopped_rank,
                       "stall": rec})
        w.acknowledge()

    def _training_pid(self, rec: StallRecord) -> int:
        """The process that reports steps (under a launcher: the rank that stopped first), else the child."""
        first = next((r for r in rec.ranks if r["rank"] == rec.first_stopped_rank), None)
        if first is not None and isinstance(first.get("pid"), int):
            return first["pid"]
        pids = [e.get("pid") for e in self.events if e.get("kind") == "step"]
        return pids[-1] if pids else self.proc.pid

    def stop(self) -> list[int]:
        """Stop what is left of the tree (reparented DataLoader workers included); return survivors."""
        if self.proc is None:
            return []
        self._remember()
        if self.proc.poll() is None:
            self._terminate()
        return kill_survivors(self.known)

    def _terminate(self, grace_s: float = 3.0) -> None:
        """SIGTERM the child, then its tree. Through Popen, not psutil: psutil would reap the child and
        Popen would then report exit code 0 instead of the signal."""
        self._remember()
        try:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        except OSError:
            pass
        for pid, created in list(self.known.items()):
            if pid != self.proc.pid and same_process(pid, created):
                kill_tree(pid, grace_s=grace_s)

    def exit_status(self) -> tuple[Optional[int], Optional[int]]:
        """(exit code as a shell reports it, signal) of the child."""
        rc = self.proc.returncode if self.proc else None
        if rc is None:
            return None, None
        return (128 - rc, -rc) if rc < 0 else (rc, None)

