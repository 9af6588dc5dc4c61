"""doctor watch without a training run: crash classification from recorded stderr tails, the shared
watchdog's activity and second-stall rules, and the in-child hook's promise never to break the
user's program (unwritable channel, a shadowed sitecustomize, no double registration)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from doctor.repro.watchdog import StallPolicy, Watch
from doctor.watch.crash import classify_crash, last_traceback
from doctor.watch.runner import INSTRUMENT_DIR

OOM_TAIL = """{'loss': 1.2}
[rank0]: Traceback (most recent call last):
[rank0]:   File "/home/u/train.py", line 88, in <module>
[rank0]:     trainer.train()
[rank0]:   File "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1751, in _call_impl
[rank0]:     return forward_call(*args, **kwargs)
[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.91 GiB. GPU 0 has a total capacity of 10.75 GiB of which 1.02 GiB is free.
"""
NCCL_TAIL = ("[rank1]:[E321 02:07:08.4 ProcessGroupNCCL.cpp:607] [Rank 1] Watchdog caught collective operation timeout: "
             "WorkNCCL(SeqNum=1580, OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600060 milliseconds before timing out.\n")


def test_oom_with_torchrun_prefixes_is_classified_with_the_user_frame():
    c = classify_crash(OOM_TAIL, 1)
    assert c.id == "cuda-oom" and c.row.get("oom")
    assert c.exc_type == "torch.OutOfMemoryError" and "Tried to allocate 3.91 GiB" in c.message
    assert c.where == "train.py:88 in <module>"           # the user's frame, not torch's


@pytest.mark.parametrize("tail,code,expected", [
    (NCCL_TAIL, -6, "nccl-timeout"),
    ("RuntimeError: CUDA error: an illegal memory access was encountered\n", 1, "cuda-illegal-access"),
    ("../aten/src/ATen/native/cuda/Indexing.cu: Assertion failed\nCUDA error: device-side assert triggered\n", 1,
     "cuda-device-assert"),
    ("torch.distributed.DistStoreError: Timed out after 1801 seconds waiting for clients. 1/2 clients joined.\n", 1,
     "rendezvous-timeout"),
    ("loading shards 3/4\n", -9, "killed"),
    ("step 3\n", -11, "segfault"),
    ('Traceback (most recent call last):\n  File "t.py", line 2, in <module>\n    f()\nKeyError: \'text\'\n', 1,
     "exception"),
    ("usage: train.py [-h]\ntrain.py: error: unrecognized arguments: --foo\n", 2, "exit"),
    ('Traceback (most recent call last):\n  File "t.py", line 3, in <module>\n    time.sleep(9)\nKeyboardInterrupt\n',
     -2, "interrupted"),
    ("", -2, "interrupted"),
])
def test_crash_rows(tail, code, expected):
    assert classify_crash(tail, code).id == expected


def test_a_clean_exit_is_no_crash_and_the_last_traceback_wins():
    assert classify_crash("Traceback (most recent call last):\nValueError: x\n", 0) is None
    tail = ('Traceback (most recent call last):\n  File "a.py", line 1, in f\nKeyError: 1\n\nDuring handling...\n'
            'Traceback (most recent call last):\n  File "b.py", line 9, in g\nTypeError: bad\n')
    tb, etype, msg, frames = last_traceback(tail)
    assert (etype, msg, frames[-1]["filename"]) == ("TypeError", "bad", "b.py")


def test_watchdog_activity_counts_only_outside_training_and_a_stall_is_reported_once():
    w = Watch(StallPolicy(floor_s=3, factor=5, first_step_grace_s=50, startup_grace_s=10), started=0.0)
    w.feed({"kind": "activity", "t": 8.0})
    assert not w.overdue(17.0) and w.overdue(18.5)         # start-up: output/CPU is progress
    w.acknowledge()
    assert not w.overdue(40.0)                             # the same stall is not reported again
    w.feed({"kind": "activity", "t": 41.0})
    assert w.overdue(51.5)                                 # progress, then quiet again: a second stall
    w.feed({"kind": "phase", "phase": "training", "t": 60.0})
    w.feed({"kind": "step", "step": 1, "duration_s": 1.0, "t": 61.0})
    w.feed({"kind": "activity", "t": 70.0})                # training: output is no step
    assert not w.overdue(65.5) and w.overdue(66.5)     # 5 x median 1 s after the step, activity or not


def _run_python(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=str(cwd), capture_output=True, text=True,
                          timeout=120)


def test_the_hook_never_breaks_the_program_and_chains_to_the_users_sitecustomize(tmp_path):
    user_site = tmp_path / "usersite"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text("import builtins\nbuiltins.USER_SITE_RAN = True\n")
    bad_channel = tmp_path / "a-directory"           # os.open(O_WRONLY) on a folder fails
    bad_channel.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(INSTRUMENT_DIR), str(user_site)]),
               DOCTOR_WATCH_EVENTS=str(bad_channel))
    r = _run_python("import builtins, sys; print(getattr(builtins, 'USER_SITE_RAN', False)); "
                    "import doctor_watch_hook as h; h.emit('step', step=1); print('ok'); sys.exit(4)", env, tmp_path)
    assert r.returncode == 4 and r.stdout.split() == ["True", "ok"], r.stderr
    assert r.stderr == ""


def test_explicit_callback_and_automatic_hook_register_once(tmp_path):
    events = tmp_path / "events.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(INSTRUMENT_DIR), str(Path(__file__).resolve().parents[1])]),
               DOCTOR_WATCH_EVENTS=str(events), OMP_NUM_THREADS="1")
    code = """
from transformers import Trainer, TrainingArguments, LlamaConfig, LlamaForCausalLM
from doctor.watch import DoctorCallback
m = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2))
t = Trainer(model=m, args=TrainingArguments(output_dir='o', report_to=[], use_cpu=True), callbacks=[DoctorCallback()])
print(sum(getattr(cb, '_doctor_watch', False) for cb in t.callback_handler.callbacks))
"""
    r = _run_python(code, env, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "1"
    kinds = [json.loads(line)["kind"] for line in events.read_text().splitlines()]
    assert "hooked" in kinds


def test_the_step_log_follows_one_rank():
    from doctor.watch.api import collect
    from doctor.watch.result import WatchResult

    events = [{"kind": "phase", "phase": "training", "t": 1.0, "pid": 10}]
    for step in (1, 2):
        for pid in (10, 11):                        # two ranks, both reporting every step
            events.append({"kind": "step", "step": step, "t": 1.0 + step, "pid": pid, "duration_s": 1.0})
            events.append({"kind": "loss", "step": step, "t": 1.0 + step, "pid": pid, "loss": float(pid)})
    r = WatchResult(command=["torchrun"], out_dir="x")
    collect(r, events)
    assert [s.step for s in r.steps] == [1, 2] and {s.loss for s in r.steps} == {10.0}
    assert r.progress == "trainer"


def test_an_oom_finding_carries_the_vram_estimate_and_the_step():
    from doctor.watch.diagnose import diagnose
    from doctor.watch.result import WatchResult, WatchStep

    c = classify_crash(OOM_TAIL, 1)
    r = WatchResult(command=["python", "train.py"], out_dir="x", progress="trainer", exit_code=1,
                    steps=[WatchStep(step=1, t_end=1.0, duration_s=2.0, mem_peak=9 << 30)],
                    crash={"id": c.id, "row": c.row, "exc_type": c.exc_type, "message": c.message,
                           "traceback": c.traceback, "where": c.where})
    cause, findings = diagnose(r, vram_line="peak 12.1 GiB (10.9-13.4 GiB) vs 10.2 GiB usable: does not fit")
    f = findings[0]
    assert cause == "crash:cuda-oom" and f.id == "watch.crash.cuda-oom"
    assert f.title == "CUDA out of memory at train.py:88 in <module> (step 2)"
    assert "does not fit" in f.why and f.evidence["vram_estimate"].startswith("peak 12.1 GiB")
    assert f.evidence["last_step_peak_vram"] == 9 << 30


def test_saving_a_checkpoint_is_a_phase_not_a_stalled_step(tmp_path, monkeypatch):
    import types

    from doctor.watch.instrument import doctor_watch_hook as h

    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(h.ENV_EVENTS, str(events))
    monkeypatch.setitem(h._state, "off", False)

    class Trainer:                                  # the two methods the hook wraps, nothing else
        def __init__(self):
            self.callback_handler = types.SimpleNamespace(callbacks=[])

        def add_callback(self, cb):
            self.callback_handler.callbacks.append(cb)

        def _save_checkpoint(self, model, trial):
            return "saved"

    h.patch_trainer(types.SimpleNamespace(Trainer=Trainer))
    t = Trainer()
    assert t._save_checkpoint(None, None) == "saved"
    assert len(t.callback_handler.callbacks) == 1
    phases = [json.loads(x).get("phase") for x in events.read_text().splitlines() if '"phase"' in x]
    assert phases == ["saving", "training"]
    w = Watch(StallPolicy(floor_s=3, factor=5, first_step_grace_s=50, startup_grace_s=100), started=0.0)
    for ev, t_ in (({"kind": "phase", "phase": "training"}, 1.0), ({"kind": "step", "step": 1, "duration_s": 0.1}, 2.0),
                   ({"kind": "phase", "phase": "saving"}, 3.0)):
        w.feed(dict(ev, t=t_))
    assert not w.overdue(60.0)                      # a long save is not a stalled step


def test_one_crash_table_serves_watch_and_repro():
    from doctor.knowledge.crashes import crash_rows, cuda_error_class
    watch_ids = {r["id"] for r in crash_rows("watch")}
    repro_ids = [r["id"] for r in crash_rows("repro")]
    # the shared CUDA rows serve both readers; repro-only rows never change what watch reports
    assert {"cuda-illegal-access", "cuda-device-assert"} <= watch_ids & set(repro_ids)
    assert "cuda-no-kernel-image" in repro_ids and "cuda-no-kernel-image" not in watch_ids
    tail = ("Traceback (most recent call last):\n  File \"/home/u/train.py\", line 3, in <module>\n"
            "RuntimeError: CUDA error: no kernel image is available for execution on the device\n")
    assert classify_crash(tail, 1).id == "exception"
    assert cuda_error_class("CUDA error: no kernel image is available") == ("no kernel image for this GPU", "FM-08")
    assert cuda_error_class("CUDA error: something new") == ("unclassified CUDA error", None)


def _rank_events(progress: dict) -> list[dict]:
    """progress: rank -> (last finished step, began the next?, time of its last step)."""
    events = []
    for rank, (last, began, t_last) in progress.items():
        for step in range(1, last + 1):
            events.append({"kind": "step", "step": step, "t": t_last - (last - step), "pid": 100 + rank,
                           "rank": rank, "local_rank": rank, "duration_s": 0.5 + rank})
        if began:
            events.append({"kind": "step-begin", "step": last + 1, "t": t_last + 0.1, "pid": 100 + rank,
                           "rank": rank, "local_rank": rank})
    return events


def test_the_rank_furthest_behind_stopped_first():
    from doctor.watch.ranks import first_stopped, rank_progress

    rows = rank_progress(_rank_events({0: (7, False, 50.0), 1: (6, True, 40.0), 2: (7, True, 51.0)}))
    assert [(r["rank"], r["pid"], r["last_step"], r["began_next"]) for r in rows] == \
        [(0, 100, 7, False), (1, 101, 6, True), (2, 102, 7, True)]
    assert rows[1]["median_step_s"] == 1.5 and rows[1]["steps"] == 6
    assert first_stopped(rows)["rank"] == 1                       # the lowest last step
    rows = rank_progress(_rank_events({0: (7, True, 50.0), 1: (7, False, 51.0)}))
    assert first_stopped(rows)["rank"] == 1                       # same step: the one that never began the next
    rows = rank_progress(_rank_events({0: (7, False, 50.0), 1: (7, False, 49.0), 2: (7, False, 51.0)}))
    assert first_stopped(rows)["rank"] == 1                       # a full tie: the oldest last step
    assert first_stopped(rows, lineup_first=2)["rank"] == 2       # unless attach's line-up names one
    assert first_stopped(rank_progress(_rank_events({0: (7, False, 50.0), 1: (5, False, 51.0)})),
                         lineup_first=0)["rank"] == 1             # ...only among the ranks tied on progress
    assert first_stopped(rank_progress(_rank_events({0: (3, False, 5.0)}))) is None    # one rank: no race


def test_a_stall_under_a_launcher_is_explained_from_the_rank_that_stopped_first():
    from doctor.repro.result import StallInfo
    from doctor.watch.diagnose import diagnose
    from doctor.watch.ranks import rank_progress
    from doctor.watch.result import StallRecord, WatchResult

    events = _rank_events({0: (4, True, 10.0), 1: (4, False, 10.0)})
    diag = {"pid": 1, "cause": "nccl-collective", "findings": [{"title": "waiting in a collective"}],
            "processes": [{"pid": 1, "cause": None, "threads": []},
                          {"pid": 100, "cause": "nccl-collective", "threads": [
                              {"main": True, "key_frames": ["all_reduce (distributed_c10d.py:1)"]}]},
                          {"pid": 101, "cause": "dataloader-fetch", "threads": [
                              {"main": True, "key_frames": ["collate (train.py:46)"]}]}],
            "ranks": {"first": 1, "rows": [{"rank": 0, "collective": "all_reduce", "site": "train.py:9"},
                                           {"rank": 1, "where": "waits in collate (train.py:46)"}]}}
    stall = StallRecord(info=StallInfo(step=5, phase="training", waited_s=5.0, deadline_s=4.0, reason="floor 4 s",
                                       detected_at=20.0), diagnosis=diag, ranks=rank_progress(events),
                        first_stopped_rank=1)
    r = WatchResult(command=["torchrun"], out_dir="x", progress="trainer", stalls=[stall], killed_on_stall=True)
    cause, findings = diagnose(r)
    f = findings[0]
    assert cause == "data-pipeline" and f.id == "watch.stall.data-pipeline"
    assert "rank 1 stopped first" in f.title and f.evidence["first_stopped_rank"] == 1
    assert f.evidence["main_thread"] == "collate (train.py:46)"
    assert "rank 0: in all_reduce at train.py:9" in f.evidence["rank_lineup"]
    stall.first_stopped_rank, stall.ranks = None, []                    # without ranks: the tree's own cause
    cause, findings = diagnose(r)
    assert cause != "data-pipeline" and "stopped first" not in findings[0].title


def test_the_hook_reports_the_rank_from_its_environment(tmp_path):
    events = tmp_path / "events.jsonl"
    code = "import doctor_watch_hook as h; h.emit('note', text='x')"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "doctor/watch/instrument"),
               DOCTOR_WATCH_EVENTS=str(events), RANK="3", LOCAL_RANK="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    env.pop("RANK"), env.pop("LOCAL_RANK")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    first, second = [e for e in map(json.loads, events.read_text().splitlines()) if e.get("text") == "x"]
    assert (first["rank"], first["local_rank"]) == (3, 1) and "rank" not in second


@pytest.mark.parametrize("busy", [True, False])
def test_a_stall_is_looked_at_once_more_before_it_is_reported(tmp_path, busy):
    """The poll loop of a starved doctor can miss seconds of the child's work; the last look sees it."""
    import time

    import psutil

    from doctor.watch.runner import Runner

    code = ("import time\nt = time.time()\nwhile time.time() - t < 60: pass" if busy
            else "import time\ntime.sleep(60)")
    runner = Runner([sys.executable, "-c", code], tmp_path, StallPolicy(startup_grace_s=1.0), kill_on_stall=False,
                    sampler=None, on_event=None)
    runner.start()
    try:
        child = psutil.Process(runner.proc.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (child.cpu_times().user < 0.3 if busy
                                               else "sleep" not in " ".join(child.cmdline()) or
                                               child.status() != psutil.STATUS_SLEEPING):
            time.sleep(0.1)
        runner._cpu_moved()                                 # what the last regular poll saw
        time.sleep(1.0)                                     # ... then the loop was not scheduled for a while
        w = Watch(StallPolicy(startup_grace_s=1.0), started=time.time() - 100)
        assert w.overdue(time.time())
        assert runner._still_overdue(w) is (not busy)       # the busy child's second of CPU is progress
    finally:
        runner.stop()
