"""doctor attach against real stuck processes started here: each is classified correctly, and its
whole process tree is gone afterwards."""
from __future__ import annotations

import pytest

from attach_helpers import kill_and_assert_gone, start_target, tree_pids
from doctor.attach.api import diagnose_pid

pytestmark = pytest.mark.slow


def _diagnose(proc, **kw):
    pids = tree_pids(proc.pid)
    report = diagnose_pid(proc.pid, gpu=False, **kw)
    return report, pids


def _main_view(report):
    return next(p for p in report.processes if p.pid == report.pid)


def test_lock_held_by_a_sleeping_thread(spawn):
    proc = start_target(spawn, "lock_wait.py")
    report, pids = _diagnose(proc)
    assert report.cause == "lock-wait"
    top = report.findings[0]
    assert top.id == "attach.lock-wait" and top.severity.value == "error"
    # it names the holder and what the holder is doing
    assert "thread holder is sleeping" in top.title
    main = next(t for t in _main_view(report).threads if t.main)
    assert main.stuck and not main.busy and main.kernel_wait == "futex"
    kill_and_assert_gone(proc, pids)


def test_two_lock_deadlock(spawn):
    proc = start_target(spawn, "deadlock.py")
    report, pids = _diagnose(proc)
    assert report.cause == "lock-wait"
    assert "deadlock" in report.findings[0].title
    kill_and_assert_gone(proc, pids)


def test_queue_get_on_a_hung_multiprocessing_worker(spawn):
    proc = start_target(spawn, "mp_queue_hang.py")
    report, pids = _diagnose(proc)
    assert len(pids) == 2
    assert report.cause == "worker-queue-wait"
    worker = next(p for p in report.processes if p.pid != proc.pid)
    assert worker.cause == "sleeping"
    # the finding says which worker is stuck, and where
    assert f"pid {worker.pid} is stuck in produce (mp_queue_hang.py:" in report.findings[0].title
    kill_and_assert_gone(proc, pids)


def test_dataloader_worker_hangs_in_getitem(spawn):
    proc = start_target(spawn, "dataloader_hang.py")
    report, pids = _diagnose(proc)
    assert report.cause == "dataloader-worker-hang"
    roles = sorted(p.role for p in report.processes)
    assert roles == ["dataloader-worker", "dataloader-worker", "main"]
    workers = [p for p in report.processes if p.role == "dataloader-worker"]
    stuck = [w for w in workers if w.cause != "worker-idle"]
    assert len(stuck) == 1, [(w.pid, w.cause, w.where) for w in workers]
    assert "__getitem__ (dataloader_hang.py:" in stuck[0].where
    title = report.findings[0].title
    assert f"pid {stuck[0].pid} is stuck in HangingDataset.__getitem__" in title
    assert report.findings[0].config_changes[0].setting == "dataloader_num_workers"
    assert report.findings[0].failure_mode == "FM-14"
    kill_and_assert_gone(proc, pids)


def test_busy_in_pure_python(spawn):
    proc = start_target(spawn, "busy_python.py", stuck_state="R")
    report, pids = _diagnose(proc)
    assert report.cause == "busy-python"
    assert report.situation.endswith("host busy")
    assert "crunch (busy_python.py:" in report.findings[0].title
    assert _main_view(report).cpu_percent > 30
    kill_and_assert_gone(proc, pids)


def test_sleeping(spawn):
    proc = start_target(spawn, "sleeping.py")
    report, pids = _diagnose(proc)
    assert report.cause == "sleeping"
    main = next(t for t in _main_view(report).threads if t.main)
    assert main.kernel_wait == "sleep" and main.stuck
    kill_and_assert_gone(proc, pids)


def test_tiny_llama_training_runs_normally(spawn):
    proc = start_target(spawn, "tiny_llama_train.py", stuck_state=None)
    report, pids = _diagnose(proc, samples=4)
    assert report.cause == "running-normally", report.findings[0].title
    top = report.findings[0]
    assert top.severity.value == "info"
    assert report.report().code == 0
    main = next(t for t in _main_view(report).threads if t.main)
    assert main.busy
    # Either the stack moved between samples, or every sample landed inside one C++ backward
    # (one Python line for most of a step): the classifier must call both training.
    assert main.moved or any("backward" in f for f in main.key_frames), main
    kill_and_assert_gone(proc, pids)


def test_torch_compile_recompiling(spawn, tmp_path):
    proc = start_target(spawn, "compiling.py", str(tmp_path / "inductor"), stuck_state=None)
    report, pids = _diagnose(proc)
    assert report.cause == "compile", report.findings[0].title
    top = report.findings[0]
    assert top.id == "attach.compile" and top.failure_mode == "FM-17"
    main = next(t for t in _main_view(report).threads if t.main)
    # the frame the classifier matched is Dynamo's or Inductor's own
    assert main.busy and ("torch/_dynamo/" in main.matched or "torch/_inductor/" in main.matched), main
    kill_and_assert_gone(proc, tree_pids(proc.pid) + pids)


def test_no_children_samples_only_the_target(spawn):
    proc = start_target(spawn, "mp_queue_hang.py")
    report, pids = _diagnose(proc, include_children=False)
    assert [p.pid for p in report.processes] == [proc.pid]
    assert report.cause == "worker-queue-wait"
    assert "not sampled (--no-children)" in report.findings[0].title
    kill_and_assert_gone(proc, pids)


def test_locals_only_when_asked(spawn):
    import json

    from typer.testing import CliRunner

    from doctor.cli import app

    proc = start_target(spawn, "lock_wait.py")
    pids = tree_pids(proc.pid)

    def frames(*flags):
        res = CliRunner().invoke(app, ["attach", str(proc.pid), "--no-gpu", "--samples", "1", "--json", *flags])
        assert res.exit_code == 1, res.output          # a lock wait is an error-level finding
        dumps = json.loads(res.stdout)["sections"]["attach"]["raw_dumps"][str(proc.pid)]
        return [fr for sample in dumps for th in sample for fr in th["frames"]]

    assert not any(fr.get("locals") for fr in frames())      # py-spy writes "locals": null
    run = next(fr for fr in frames("--locals") if fr["name"] == "Thread.run")     # the lock holder's thread
    assert [v["name"] for v in run["locals"]] == ["self"] and run["locals"][0]["repr"].startswith("<Thread")
    kill_and_assert_gone(proc, pids)
