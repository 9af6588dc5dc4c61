"""The target is never left stopped (state T) by the sampling, and a process that was already
stopped before we came is reported as such, not resumed behind the user's back."""
from __future__ import annotations

import os
import signal
import stat
import sys
import textwrap

import psutil

from attach_helpers import kill_and_assert_gone, start_target
from doctor.attach import pyspy
from doctor.attach.api import diagnose_pid
from doctor.proctree import wait_for


def _stopping_pyspy(tmp_path) -> str:
    """A py-spy that dumps, then leaves its target stopped, as an interrupted py-spy can (py-spy #416)."""
    wrapper = tmp_path / "py-spy"
    wrapper.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, signal, subprocess, sys
        res = subprocess.run([{pyspy.find_pyspy()!r}] + sys.argv[1:])
        if "dump" in sys.argv:
            os.kill(int(sys.argv[sys.argv.index("--pid") + 1]), signal.SIGSTOP)
        sys.exit(res.returncode)
        """))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


def _status(pid):
    return psutil.Process(pid).status()


def test_target_left_stopped_by_pyspy_is_continued(spawn, tmp_path, monkeypatch):
    proc = start_target(spawn, "sleeping.py")
    monkeypatch.setenv(pyspy.ENV_OVERRIDE, _stopping_pyspy(tmp_path))
    report = diagnose_pid(proc.pid, gpu=False)
    assert _status(proc.pid) != psutil.STATUS_STOPPED
    view = report.processes[0]
    assert view.resumed
    assert any(f.id == "attach.resumed-stopped-process" for f in report.findings)
    # our own SIGSTOPs do not turn the diagnosis into "process stopped"
    assert report.cause == "sleeping"
    kill_and_assert_gone(proc, [proc.pid])


def test_normal_sampling_leaves_no_target_stopped(spawn):
    proc = start_target(spawn, "dataloader_hang.py")
    report = diagnose_pid(proc.pid, gpu=False, native=True)
    for p in report.processes:
        assert _status(p.pid) != psutil.STATUS_STOPPED, p
        assert not p.resumed
    kill_and_assert_gone(proc, [p.pid for p in report.processes])


def test_already_stopped_process_is_reported_not_resumed(spawn):
    proc = start_target(spawn, "sleeping.py")
    os.kill(proc.pid, signal.SIGSTOP)
    assert wait_for(lambda: _status(proc.pid) == psutil.STATUS_STOPPED, 10)
    report = diagnose_pid(proc.pid, gpu=False)
    assert report.cause == "process-stopped"
    assert f"kill -CONT {proc.pid}" in report.findings[0].commands
    assert _status(proc.pid) == psutil.STATUS_STOPPED      # the user's choice stands
    assert report.processes[0].threads, "a stopped process is still dumped (with --nonblocking)"
    kill_and_assert_gone(proc, [proc.pid])
