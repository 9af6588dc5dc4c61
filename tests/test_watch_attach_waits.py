"""The waits `doctor attach` (and so `doctor watch`) names since issue 13, on live processes: a rank at
rendezvous, a prompt for input, a file lock. Each target is started, left to block, sampled, and
its tree killed."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doctor.attach.api import diagnose_pid
from doctor.attach.snapshot import ProcessSample
from doctor.proctree import kill_tree
from tests.attach_helpers import wait_ready

SCRIPTS = Path(__file__).parent / "watch_scripts"
# the rendezvous address comes from ProcessSample.dist_env, which the rank line-up work (attach/ranks.py)
# reads from /proc/<pid>/environ; on a tree without it the address is "?:?"
HAS_DIST_ENV = "dist_env" in ProcessSample.__dataclass_fields__


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def started():
    procs = []
    yield procs
    for p in procs:
        kill_tree(p.pid, grace_s=1.0)
        p.wait(timeout=10)


def _start(started, args, env=None, stdin=subprocess.DEVNULL):
    p = subprocess.Popen([sys.executable, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))
    started.append(p)
    return p


def _diagnose_when_stuck(pid: int, cause: str, tries: int = 10):
    report = None
    for _ in range(tries):                 # the target may still be importing: sample until it blocks
        report = diagnose_pid(pid, gpu=False, timeout_s=30.0)
        if report.cause == cause:
            return report
        time.sleep(1.0)
    return report


def test_rank_waiting_at_rendezvous_names_world_size_address_and_missing(started):
    port = str(_port())
    p = _start(started, [str(SCRIPTS / "rendezvous.py")],
               env={"RANK": "0", "WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
    r = _diagnose_when_stuck(p.pid, "rendezvous-wait")
    assert r.cause == "rendezvous-wait", r.cause
    f = r.findings[0]
    assert f.id == "attach.rendezvous-wait"
    assert "WORLD_SIZE=3" in f.title and "2 other rank(s)" in f.title
    assert (f"127.0.0.1:{port}" in f.title) == HAS_DIST_ENV, f.title


def test_a_prompt_is_named_with_the_variable_that_answers_it(started):
    p = _start(started, [str(SCRIPTS / "tiny_train.py"), "--prompt"], stdin=subprocess.PIPE)
    r = _diagnose_when_stuck(p.pid, "terminal-input")
    assert r.cause == "terminal-input", r.cause
    assert "WANDB_MODE=offline" in r.findings[0].title
    assert "Enter your choice" in r.findings[0].evidence.get("details", "")


def test_a_file_lock_wait_is_named(started, tmp_path):
    lock = str(tmp_path / "model.safetensors.lock")
    holder = _start(started, [str(SCRIPTS / "lock_wait.py"), "hold", lock])
    wait_ready(holder)
    waiter = _start(started, [str(SCRIPTS / "lock_wait.py"), "wait", lock])
    wait_ready(waiter)
    r = _diagnose_when_stuck(waiter.pid, "file-lock-wait")
    assert r.cause == "file-lock-wait", r.cause
    assert r.findings[0].severity.value == "error"
