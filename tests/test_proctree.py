"""doctor.proctree's shared stop routines against real processes."""
import subprocess
import sys

from doctor.proctree import create_time, kill_survivors, remember_tree, same_process, wait_for

SLEEPER = [sys.executable, "-c", "import subprocess, sys, time; "
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"]


def test_remember_then_kill_survivors_stops_the_tree():
    proc = subprocess.Popen(SLEEPER)
    known: dict[int, float] = {}
    try:
        assert wait_for(lambda: (remember_tree(proc.pid, known), len(known) >= 2)[1], 30)
        assert proc.pid in known
        assert kill_survivors(known) == []
        proc.wait(timeout=30)
        assert not any(same_process(pid, created) for pid, created in known.items())
    finally:
        kill_survivors(known)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_survivors_spares_a_reused_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        created = create_time(proc.pid)
        # a remembered create time that does not match: another process now holds the pid
        assert kill_survivors({proc.pid: created - 100.0}) == []
        assert proc.poll() is None
        assert kill_survivors({proc.pid: created}) == []
        assert proc.wait(timeout=30) < 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
