"""doctor repro end to end on CPU with the tiny model: a clean run, each injected fault caught within
its deadline and classified as that fault, vram-squeeze not applicable, Ctrl-C, and no process left.

The runs start together (threads) so the file stays fast: each child spends most of its life
waiting for the watchdog's floor, not computing.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from doctor import exitcodes
from doctor.config.model import TrainingConfig
from doctor.proctree import wait_for
from doctor.repro.api import ReproOptions, run_repro

pytestmark = pytest.mark.slow

FLOOR = 8.0          # generous against CPU jitter on a shared 2-core machine; steps take ~0.02 s
SLACK = 15.0         # the watchdog polls every 0.2 s; this only bounds a runaway, it is not a benchmark
FAULT_STEP = 3


def tiny_config() -> TrainingConfig:
    return TrainingConfig(framework="unsloth", max_seq_length=32, per_device_train_batch_size=1,
                          gradient_accumulation_steps=1, use_gradient_checkpointing=False, optim="adamw_8bit",
                          lora_r=8, load_in_4bit=True, seed=3407)


def options(tmp, name, steps, inject=()):
    cfg = tiny_config()
    if name == "crash":
        cfg.optim = "no_such_optimizer"     # TrainingArguments raises while the trainer is built
    return ReproOptions(config=cfg, steps=steps, inject=list(inject), stall_floor_s=FLOOR,
                        stall_factor=5.0, first_step_grace_s=120.0, startup_grace_s=120.0, device="cpu",
                        out_dir=tmp / name, squeeze_limit=384 << 20)


RUNS = {
    "clean": (20, ()),
    "dataloader-hang": (FAULT_STEP + 2, (f"dataloader-hang@{FAULT_STEP}",)),
    "cuda-stall": (FAULT_STEP + 2, (f"cuda-stall@{FAULT_STEP}",)),
    "host-memory": (FAULT_STEP + 2, (f"host-memory@{FAULT_STEP}",)),
    "long-sample": (FAULT_STEP + 2, (f"long-sample@{FAULT_STEP}",)),
    "vram-squeeze": (FAULT_STEP + 1, (f"vram-squeeze@{FAULT_STEP}",)),
    "crash": (3, ()),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repro")
    # six children on a small machine: one intra-op thread each, or OpenMP spin-waits eat the cores
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    try:
        return _run_all(tmp)
    finally:
        mp.undo()


def _run_all(tmp):
    with ThreadPoolExecutor(max_workers=len(RUNS)) as pool:
        futures = {name: pool.submit(run_repro, options(tmp, name, steps, inject))
                   for name, (steps, inject) in RUNS.items()}
        return {name: f.result() for name, f in futures.items()}


def _is_repro_child(pid: int) -> bool:
    """Alive and one of ours: the training child and its forked workers run doctor.repro.child."""
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and "doctor.repro.child" in " ".join(p.cmdline())
    except psutil.Error:
        return False


def assert_tree_gone(result):
    assert result.pids_seen, "the run never saw its child"
    assert result.leftover_pids == []
    assert [p for p in result.pids_seen if _is_repro_child(p)] == []


def test_clean_run_has_no_stall(runs):
    r = runs["clean"]
    assert r.completed and not r.stalled and not r.crashed, r.log_tail[-2000:]
    assert [s.step for s in r.steps] == list(range(1, 21))
    assert all(s.duration_s and s.duration_s > 0 and s.loss is not None and s.host_rss for s in r.steps)
    assert all(s.tokens == 32 and s.max_len == 32 for s in r.steps)
    assert r.cause == "none"
    assert not [f for f in r.findings if f.severity.is_failure]
    assert r.report().code == exitcodes.OK
    # adamw_8bit and 4-bit cannot run on CPU: the result says what ran instead
    assert r.info["optim"] == "adamw_torch" and r.info["device"] == "cpu"
    assert any("adamw_8bit" in n for n in r.notes) and any("4-bit" in n for n in r.notes)
    assert r.wsl["applicable"] in (True, False)
    assert_tree_gone(r)


@pytest.mark.parametrize("fault", ["dataloader-hang", "host-memory"])
def test_stall_fault_is_caught_in_time_and_classified(runs, fault):
    r = runs[fault]
    assert r.stalled and not r.crashed, r.log_tail[-2000:]
    assert r.stall_step == FAULT_STEP and r.stall.phase == "training"
    # the promised deadline: max(floor, factor x median step); under CI load steps can slow down
    assert r.stall.deadline_s == pytest.approx(max(FLOOR, 5.0 * r.median_step_s()), rel=1e-6)
    assert r.stall.deadline_s <= r.detection_latency_s < r.stall.deadline_s + SLACK
    assert r.cause == fault
    assert r.findings[0].id == f"repro.stall.{fault}" and r.findings[0].evidence["stalled_step"] == FAULT_STEP
    assert r.fault(fault).injected
    assert r.report().code == exitcodes.UNHEALTHY
    assert "most recent call first" in r.stack_dump        # faulthandler: the ptrace-free view
    assert_tree_gone(r)


def test_dataloader_hang_names_the_worker(runs):
    r = runs["dataloader-hang"]
    assert r.diagnosis and r.diagnosis["cause"] == "dataloader-worker-hang"
    roles = {p["pid"]: p.get("role") for p in r.diagnosis["processes"]}
    assert "dataloader-worker" in roles.values()
    assert len(r.pids_seen) >= 2                              # the child and its worker, both stopped


def test_cuda_stall_stand_in_on_cpu_is_caught_in_time_and_not_claimed_as_cuda(runs):
    """What the CPU stand-in covers: the injection, the stall detector's deadline and the tree
    teardown. Its stack (a blocking read in doctor/repro/emulated_cuda.py) matches no CUDA sync
    signature, so the diagnosis does not call it a CUDA stall and the report says the planted fault
    was missed. That a real CUDA sync wait is classified cuda-stall is covered by the stack
    signature tests on recorded stacks and the GPU run (benchmarks/gpu/repro_runs.py)."""
    r = runs["cuda-stall"]
    assert r.stalled and not r.crashed, r.log_tail[-2000:]
    assert r.stall_step == FAULT_STEP and r.stall.phase == "training"
    assert r.stall.deadline_s == pytest.approx(max(FLOOR, 5.0 * r.median_step_s()), rel=1e-6)
    assert r.stall.deadline_s <= r.detection_latency_s < r.stall.deadline_s + SLACK
    assert r.fault("cuda-stall").injected and r.fault("cuda-stall").emulated
    first = r.findings[0]
    assert r.cause != "cuda-stall" and first.id in ("repro.stall.other", "repro.stall.unknown")
    assert "emulated_cuda" in first.evidence["emulated"] and "CPU stand-in" in first.title
    assert any(f.id == "repro.fault-missed" for f in r.findings)
    assert r.report().code == exitcodes.UNHEALTHY
    assert_tree_gone(r)


def test_host_memory_reports_the_squeeze(runs):
    r = runs["host-memory"]
    f = r.findings[0]
    assert f.evidence["growth"] >= 256 << 20
    assert r.fault("host-memory").data["allocated"] <= 384 << 20


def test_long_sample_is_diagnosed_from_the_step_log(runs):
    r = runs["long-sample"]
    assert r.completed and not r.stalled, r.log_tail[-2000:]
    assert r.cause == "long-sample"
    step = next(s for s in r.steps if s.step == FAULT_STEP)
    assert step.max_len == 4 * 32 and step.tokens == 4 * 32
    f = next(f for f in r.findings if f.id == "repro.long-sample")
    assert f.evidence["step"] == FAULT_STEP and f.evidence["max_seq_length"] == 32
    assert_tree_gone(r)


def test_vram_squeeze_is_not_applicable_on_cpu(runs):
    r = runs["vram-squeeze"]
    assert r.completed and not r.stalled and r.cause == "none"
    assert "not applicable" in r.fault("vram-squeeze").skipped
    assert any(f.id == "repro.fault-not-applicable" for f in r.findings)
    assert_tree_gone(r)


def test_a_crash_in_the_child_comes_back_with_its_traceback(runs):
    r = runs["crash"]
    assert r.crashed and not r.stalled and not r.completed
    assert r.crash.type and "no_such_optimizer" in r.crash.message
    assert "Traceback (most recent call last)" in r.crash.traceback and r.crash.exit_code == 1
    assert r.cause == "exception" and r.findings[0].id == "repro.crash.exception"
    assert r.crash.step is None and r.crash.phase == "building-trainer"
    assert "while building-trainer" in r.findings[0].title
    assert r.report().code == exitcodes.UNHEALTHY
    assert_tree_gone(r)


def test_outputs_are_written(runs):
    r = runs["dataloader-hang"]
    out = json.loads(open(r.out_dir + "/result.json").read())
    assert out["stall_step"] == FAULT_STEP and out["cause"] == "dataloader-hang"
    lines = open(r.step_log_path).read().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, FAULT_STEP))
    if r.chart_path:                                          # matplotlib is optional
        assert open(r.chart_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_stops_the_whole_tree(spawn, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sigint"
    cmd = [sys.executable, "-m", "doctor", "repro", "--device", "cpu", "--seq-len", "32", "--batch-size", "1",
           "--grad-accum", "1", "--gc", "false", "--num-workers", "1", "--steps", "100000",
           "--stall-floor", "300", "--out", str(out)]
    parent = spawn(cmd)
    events = out / "events.jsonl"
    assert wait_for(lambda: events.exists() and '"kind": "step"' in events.read_text(), timeout_s=120), \
        parent.stderr.read1(4000) if parent.poll() is not None else "no step in time"
    tree = [parent.pid] + [p.pid for p in psutil.Process(parent.pid).children(recursive=True)]
    assert len(tree) >= 3                                     # doctor, training child, DataLoader worker
    parent.send_signal(signal.SIGINT)
    assert parent.wait(timeout=60) == exitcodes.INTERRUPTED
    time.sleep(0.2)
    alive = [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert b"interrupted" in parent.stderr.read()
