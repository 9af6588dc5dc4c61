"""Bad input to `doctor attach`: each case gets one line on stderr and its own exit code."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from attach_helpers import FIXTURES, kill_and_assert_gone, start_target, tree_pids
from doctor import exitcodes
from doctor.attach import pyspy
from doctor.attach.api import diagnose_pid
from doctor.cli import app
from doctor.exitcodes import DoctorError

runner = CliRunner()


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("doctor: error: ")
    return lines[0]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_no_such_process():
    pid = _dead_pid()
    result = runner.invoke(app, ["attach", str(pid)])
    assert result.exit_code == exitcodes.NO_SUCH_PROCESS == 3
    assert f"no process with pid {pid}" in _one_line(result)


def test_no_pid_at_all_is_a_usage_error():
    result = runner.invoke(app, ["attach"])
    assert result.exit_code == exitcodes.USAGE
    assert "give a PID" in _one_line(result)


def test_not_a_python_process(spawn):
    proc = spawn(["sleep", "100"])
    result = runner.invoke(app, ["attach", str(proc.pid), "--no-gpu"])
    assert result.exit_code == exitcodes.NOT_PYTHON == 5
    line = _one_line(result)
    assert f"pid {proc.pid} (sleep) is not running Python" in line and "Failed to find python version" in line
    kill_and_assert_gone(proc, [proc.pid])


def test_shell_wrapper_with_a_python_child_is_diagnosed_through_the_child(spawn):
    """`sh -c "python train.py"`: the shell is listed and skipped, the Python child is sampled."""
    proc = spawn(["sh", "-c", f"{sys.executable} {FIXTURES / 'sleeping.py'}; true"], cwd=str(FIXTURES))
    from attach_helpers import wait_ready
    wait_ready(proc)
    pids = tree_pids(proc.pid)
    report = diagnose_pid(proc.pid, gpu=False)
    shell = next(p for p in report.processes if p.pid == proc.pid)
    assert shell.role == "non-python" and "not a Python process (sh)" in shell.skipped
    assert report.cause == "sleeping"
    assert any(f.id == "attach.skipped-processes" for f in report.findings)
    kill_and_assert_gone(proc, pids)


def test_process_exits_while_being_sampled(spawn):
    proc = start_target(spawn, "exits_soon.py", "1.0", stuck_state=None)
    with pytest.raises(DoctorError) as err:
        diagnose_pid(proc.pid, samples=50, interval_s=0.1, gpu=False)
    assert err.value.exit_code == exitcodes.PROCESS_EXITED == 6
    assert "exited" in err.value.message
    kill_and_assert_gone(proc, [proc.pid])


def test_pyspy_missing(monkeypatch, spawn):
    monkeypatch.setenv(pyspy.ENV_OVERRIDE, "/nonexistent/py-spy")
    proc = start_target(spawn, "sleeping.py")
    result = runner.invoke(app, ["attach", str(proc.pid)])
    assert result.exit_code == exitcodes.PYSPY_MISSING == 7
    assert "py-spy not found" in _one_line(result) and "pip install py-spy" in result.stderr
    kill_and_assert_gone(proc, [proc.pid])


def test_pyspy_found_beside_the_interpreter(monkeypatch):
    monkeypatch.delenv(pyspy.ENV_OVERRIDE, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")      # not on PATH: found beside sys.executable
    found = pyspy.find_pyspy()
    assert found is not None and os.path.dirname(found) == os.path.dirname(sys.executable)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root (to drop to another user) and setpriv")
def test_permission_denied_as_another_user(spawn):
    """The doctor runs as `nobody` against a root-owned Python process: py-spy may not read it."""
    proc = start_target(spawn, "sleeping.py")
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-m", "doctor", "attach", str(proc.pid), "--no-gpu"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": "/tmp"})
    assert res.returncode == exitcodes.PERMISSION_DENIED == 4, res.stderr
    line = res.stderr.strip().splitlines()
    assert len(line) == 1 and "not permitted to trace pid" in line[0]
    assert "CAP_SYS_PTRACE" in line[0] and "the user that runs the training" in line[0]
    assert f"sudo env \"PATH=$PATH\" doctor attach {proc.pid}" in line[0]
    kill_and_assert_gone(proc, [proc.pid])


# py-spy 0.4.3's real stderr for each case (recorded on Linux 6.x with RUST_BACKTRACE unset)
RECORDED_STDERR = {
    pyspy.NO_PROCESS: "Error: Failed to get process executable name. Check that the process is running.\n\n"
                      "Caused by:\n    0: No such file or directory (os error 2)\n",
    pyspy.PERMISSION: "Permission Denied: Try running again with elevated permissions by going "
                      "'sudo env \"PATH=$PATH\" !!'\n",
    pyspy.NOT_PYTHON: "Error: Failed to find python version from target process\n",
    pyspy.FAILED: "Error: Failed to get stack traces\n\nCaused by:\n    0: Failed to suspend process\n"
                  "    1: unexpected waitpid result PtraceEvent(Pid(6656), SIGSTOP, 128) to 6656\n\n"
                  "Stack backtrace:\n   0: anyhow::error\n",
}


@pytest.mark.parametrize("kind", sorted(RECORDED_STDERR))
def test_pyspy_error_kinds(kind):
    assert pyspy.error_kind(RECORDED_STDERR[kind]) == kind


def test_pyspy_error_line_drops_the_rust_backtrace():
    line = pyspy.first_error_line(RECORDED_STDERR[pyspy.FAILED])
    assert line == "Error: Failed to get stack traces (Failed to suspend process)"


def test_pyspy_found_through_its_installed_distribution(monkeypatch, tmp_path):
    """`pip install --target DIR` puts the binary in DIR/bin: neither beside python nor on PATH."""
    monkeypatch.delenv(pyspy.ENV_OVERRIDE, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    found = pyspy.find_pyspy()
    assert found is not None and found.endswith("/py-spy") and os.access(found, os.X_OK)


def test_permission_message_explains_ptrace_scope(monkeypatch):
    from doctor.attach import procinfo, sampler

    monkeypatch.setattr(procinfo, "ptrace_scope", lambda: 1)
    monkeypatch.setattr(procinfo, "in_container", lambda: False)
    msg = sampler._permission_message(77)
    assert "ptrace_scope 1: only descendants may be traced" in msg
    assert "echo 0 | sudo tee /proc/sys/kernel/yama/ptrace_scope" in msg and "--cap-add" not in msg
    monkeypatch.setattr(procinfo, "ptrace_scope", lambda: 0)
    monkeypatch.setattr(procinfo, "in_container", lambda: True)
    msg = sampler._permission_message(77)
    assert "ptrace_scope 0" in msg and "--cap-add SYS_PTRACE" in msg and "tee" not in msg
