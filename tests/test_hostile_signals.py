"""Signals and pipes against the real CLI (real processes): Ctrl-C while the doctor is still
importing, SIGTERM handled like Ctrl-C (and a repro keeps its result.json), a closed output pipe,
and the repro pre-flight."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doctor import exitcodes
from doctor.exitcodes import DoctorError
from doctor.repro import preflight
from doctor.repro.shapes import model_shape
from tests.conftest import FACT_SNAPSHOTS, ROOT

H100 = FACT_SNAPSHOTS / "h100-real.json"
ENV = dict(os.environ, PYTHONPATH=str(ROOT), DOCTOR_OFFLINE="1", OMP_NUM_THREADS="1")


def doctor(*args) -> list[str]:
    return [sys.executable, "-m", "doctor", *map(str, args)]


def _catches_sigterm(pid: int) -> bool:
    """SigCgt has SIGTERM's bit once doctor.entry installed its handlers (Python alone never
    catches SIGTERM): the moment the slow imports start."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_imports_prints_one_line_and_exits_130(spawn, signum):
    p = spawn(doctor("run", "--facts", H100), env=ENV)
    deadline = time.monotonic() + 60
    while not _catches_sigterm(p.pid) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert p.poll() is None, "the doctor finished before the handler was seen"
    p.send_signal(signum)
    _, err = p.communicate(timeout=60)
    assert p.returncode == exitcodes.INTERRUPTED, err
    assert b"Traceback" not in err and err.strip() == b"doctor: interrupted"


def test_sigterm_during_a_command_is_handled_like_ctrl_c(spawn, tmp_path):
    """A command under way (probing this machine: children started) stops them and says so."""
    p = spawn(doctor("run"), env=ENV)
    time.sleep(3)           # well into the probes on a loaded machine, or already done
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert b"Traceback" not in err
    assert p.returncode in (exitcodes.INTERRUPTED, exitcodes.OK, exitcodes.UNHEALTHY), err
    if p.returncode == exitcodes.INTERRUPTED:
        assert err.strip().endswith(b"doctor: interrupted")


@pytest.mark.parametrize("args", [("checks", "--json"), ("checks",),
                                  ("run", "--facts", H100, "--json"), ("run", "--facts", H100)])
def test_a_closed_pipe_exits_quietly_with_141(args):
    read_end, write_end = os.pipe()
    os.close(read_end)                   # the reader is gone before the first byte
    try:
        p = subprocess.run(doctor(*args), stdout=write_end, stderr=subprocess.PIPE, env=ENV, timeout=120)
    finally:
        os.close(write_end)
    assert p.returncode == exitcodes.BROKEN_PIPE and p.stderr == b"", p.stderr


def test_head_c_100_reads_the_start_and_the_doctor_exits_quietly():
    p = subprocess.run(f"{sys.executable} -m doctor checks --json | head -c 100", shell=True,
                       capture_output=True, env=ENV, timeout=120)
    assert p.stdout.startswith(b"[") and len(p.stdout) == 100 and p.stderr == b""


def test_repro_sigterm_leaves_a_result_json(spawn, tmp_path):
    out = tmp_path / "r"
    p = spawn(doctor("repro", "--steps", "500", "--seq-len", "32", "--batch-size", "1", "--grad-accum", "1",
                     "--gc", "false", "--out", out), env=ENV)
    events = out / "events.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None:
        if events.exists() and '"kind": "step"' in events.read_text(errors="replace"):
            break
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()[1][-2000:]
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == exitcodes.INTERRUPTED, err[-2000:]
    assert b"Traceback" not in err and b"repro: expect " in err
    result = json.loads((out / "result.json").read_text())
    assert result["interrupted"] is True and result["signal"] == "SIGTERM" and result["steps_done"] >= 1
    time.sleep(0.5)
    leftover = subprocess.run(["pgrep", "-f", f"doctor.repro.child.*{out}"], capture_output=True)
    assert leftover.stdout == b""


# -- pre-flight (pure: the RAM available is a parameter) ---------------------------------------------

def test_the_8b_shape_on_the_cpu_is_refused_when_ram_is_short():
    shape = model_shape("8b")
    assert 7.5e9 < preflight.param_count(shape) < 8.5e9      # Llama 3.1 8B: 8.03B parameters
    with pytest.raises(DoctorError) as err:
        preflight.check(shape, model_size="8b", device="cpu", backend="auto", steps=20,
                        tokens_per_step=16384, available_ram=24 * 2 ** 30)
    assert err.value.exit_code == exitcodes.UNHEALTHY and "GiB of RAM" in err.value.message
    plan = preflight.check(model_shape("tiny"), model_size="tiny", device="cpu", backend="auto", steps=20,
                           tokens_per_step=16384, available_ram=24 * 2 ** 30)
    assert plan.device == "cpu" and 10 < plan.seconds < 600        # benchmarks/repro.md: ~60 s


def test_a_missing_training_stack_says_what_to_install(monkeypatch):
    monkeypatch.setattr(preflight, "STACK", ("torch", "no_such_module_for_the_doctor"))
    with pytest.raises(DoctorError) as err:
        preflight.check(model_shape("tiny"), model_size="tiny", device="cpu", backend="auto", steps=1,
                        tokens_per_step=1, available_ram=None)
    assert "pip install" in err.value.message and "no_such_module_for_the_doctor" in err.value.message
