"""doctor watch end to end, as a user runs it: `python -m doctor watch [options] -- python script ...`
on real processes (a tiny random-init Llama under transformers' Trainer and TRL's SFTTrainer, a gloo
rank, a script asking for input, torchrun with two ranks). Checks: same stdout and exit code as without the doctor; a
collator blocking at step 11 is a data-pipeline stall at step 11 within its deadline; an exception
at step 5 comes with its traceback; a prompt and a rendezvous are named; a second stall is reported
and the run kept going; under torchrun, the rank blocked in its collator is named the first to stop;
nothing is left running.

The runs start together (threads) so the file stays quick: each child mostly waits for a deadline.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from doctor.attach.snapshot import ProcessSample
from doctor.proctree import kill_tree

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).parent / "watch_scripts"
TINY = str(SCRIPTS / "tiny_train.py")
FLOOR = 6.0          # generous against CPU jitter on a shared 2-core machine; steps take ~0.01 s
GRACE = 12.0         # start-up grace for the scripts without a Trainer: importing torch with no output
                     # takes longer than 5 s when the 2 cores run three times their number of processes
SLACK = 20.0         # bounds a runaway detector; not a benchmark (benchmarks/watch.md has the numbers)
RUN_LIMIT_S = 400
RANK_FLOOR = 4.0     # both ranks' steps take ~0.02 s; the all-reduce wait is what is measured
TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def _free_ports(n: int) -> list[int]:
    """n distinct free ports (all bound at once, so two runs never get the same one)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


PORTS: dict[str, int] = {}      # chosen when the runs start, not at import (other tests take ports too)


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def _run(args, cwd, stdin=subprocess.DEVNULL, **env) -> dict:
    """stdout/stderr to files, and wait: communicate() would close a stdin pipe (EOF at the prompt)."""
    tag = f"{time.monotonic_ns()}"
    out_p, err_p = Path(cwd) / f"stdout-{tag}", Path(cwd) / f"stderr-{tag}"
    with open(out_p, "wb") as out, open(err_p, "wb") as err:
        proc = subprocess.Popen(args, cwd=cwd, env=_env(**env), stdin=stdin, stdout=out, stderr=err)
        try:
            proc.wait(timeout=RUN_LIMIT_S)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait()
        finally:
            if proc.stdin:
                proc.stdin.close()
    return {"rc": proc.returncode, "out": out_p.read_text(errors="replace"), "err": err_p.read_text(errors="replace")}


def _watch(tmp: Path, name: str, options: list, command: list, stdin=subprocess.DEVNULL, **env) -> dict:
    out_dir = tmp / name
    bundle = [] if "--bundle" in options else ["--no-bundle"]       # probing the machine: one run is enough
    options = [o for o in options if o != "--bundle"]
    r = _run([sys.executable, "-m", "doctor", "watch", "--out", str(out_dir), *bundle, *options, "--", *command],
             cwd=str(tmp), stdin=stdin, **env)
    r["dir"] = out_dir
    r["result"] = json.loads((out_dir / "result.json").read_text()) if (out_dir / "result.json").exists() else None
    return r


def _prompt(tmp):
    # stdin is a pipe nobody writes to: the prompt waits as it would in a batch job with a terminal
    return _watch(tmp, "prompt", ["--startup-grace", str(GRACE), "--kill-on-stall"],
                  [sys.executable, TINY, "--prompt"], stdin=subprocess.PIPE)


def _interrupt(tmp):
    """Ctrl-C as a terminal sends it: SIGINT to the foreground process group (the doctor and its child)."""
    out_dir, err_p = tmp / "interrupt", tmp / "interrupt.stderr"
    with open(err_p, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "doctor", "watch", "--no-bundle", "--out", str(out_dir), "--",
                                 sys.executable, str(SCRIPTS / "quiet_twice.py"), "60"], cwd=str(tmp), env=_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.monotonic() + 120
    while b"working 0" not in err_p.read_bytes() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait()
    return {"rc": proc.returncode, "out": "", "err": err_p.read_text(errors="replace"), "dir": out_dir,
            "result": json.loads((out_dir / "result.json").read_text()) if (out_dir / "result.json").exists() else None}


RUNS = {
    "plain": lambda tmp: _run([sys.executable, TINY, "--steps", "6", "--out", "plain-out"], str(tmp), TINY_EXIT3="1"),
    "clean": lambda tmp: _watch(tmp, "clean", [], [sys.executable, TINY, "--steps", "6", "--out", "plain-out"],
                                TINY_EXIT3="1"),
    "sft": lambda tmp: _watch(tmp, "sft", [], [sys.executable, TINY, "--steps", "4", "--sft", "--out", "sft-out"]),
    "block": lambda tmp: _watch(tmp, "block", ["--stall-floor", str(FLOOR), "--kill-on-stall"],
                                [sys.executable, TINY, "--steps", "20", "--block-at", "11", "--out", "b-out"]),
    "raise": lambda tmp: _watch(tmp, "raise", ["--bundle"], [sys.executable, TINY, "--steps", "20", "--raise-at", "5",
                                                   "--out", "r-out"]),
    "plain-raise": lambda tmp: _run([sys.executable, TINY, "--steps", "20", "--raise-at", "5", "--out", "pr-out"],
                                    str(tmp)),
    "prompt": _prompt,
    "rendezvous": lambda tmp: _watch(tmp, "rendezvous", ["--startup-grace", str(GRACE), "--kill-on-stall"],
                                     [sys.executable, str(SCRIPTS / "rendezvous.py")], RANK="0", WORLD_SIZE="2",
                                     LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(PORTS["rdzv"])),
    # --standalone: torchrun binds its own free port (a port chosen here and bound later can be taken
    # meanwhile by another test or another suite running at the same time)
    "torchrun": lambda tmp: _watch(tmp, "torchrun", [], [TORCHRUN, "--standalone", "--nproc-per-node", "2",
                                                         TINY, "--steps", "4", "--out", "t-out"]),
    # rank 0 blocks in its collator building step 5's batch; rank 1 goes on and waits in a collective
    "ranks": lambda tmp: _watch(tmp, "ranks", ["--stall-floor", str(RANK_FLOOR), "--kill-on-stall"],
                                [TORCHRUN, "--standalone", "--nproc-per-node", "2", TINY, "--steps", "10",
                                 "--block-at", "5", "--block-rank", "0", "--out", "rk-out"]),
    "busy": lambda tmp: _watch(tmp, "busy", ["--startup-grace", "4"],
                               [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 12: pass"]),
    "interrupt": _interrupt,
    "twice": lambda tmp: _watch(tmp, "twice", ["--startup-grace", "2"],
                                [sys.executable, str(SCRIPTS / "quiet_twice.py"), "5"]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("watch")
    PORTS.update(zip(("rdzv",), _free_ports(1)))
    with ThreadPoolExecutor(max_workers=len(RUNS)) as pool:
        futures = {name: pool.submit(fn, tmp) for name, fn in RUNS.items()}
        return {name: f.result() for name, f in futures.items()}


def _finding(r: dict, fid: str) -> dict:
    found = [f for f in r["result"]["findings"] if f["id"] == fid]
    assert found, (fid, [f["id"] for f in r["result"]["findings"]], r["err"][-3000:])
    return found[0]


def _no_survivors(r: dict) -> None:
    """No process of the watched tree runs. A pid of the tree may have been reused since (pid_max is
    32768 here, and other suites start processes meanwhile): a process of the tree is told by the
    events file the doctor put in its environment, which names this run's folder and nobody else's."""
    res = r["result"]
    assert res["leftover_pids"] == []
    mark = str((r["dir"] / "events.jsonl").resolve())
    for pid in res["pids_seen"]:
        try:
            p = psutil.Process(pid)
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            env = p.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue                     # gone, or another user's process on a reused pid
        assert env.get("DOCTOR_WATCH_EVENTS") != mark, f"pid {pid} ({p.name()}) of a watched tree is still running"


def _normalise(stdout: str) -> list[str]:
    return [ln for ln in stdout.splitlines() if "train_runtime" not in ln]    # the one timing line


def test_same_output_and_exit_code_as_without_the_doctor(runs):
    plain, watched = runs["plain"], runs["clean"]
    assert plain["rc"] == 3 and watched["rc"] == 3, (plain["err"][-2000:], watched["err"][-2000:])
    assert _normalise(watched["out"]) == _normalise(plain["out"])
    assert "trained 6 steps" in watched["out"]
    res = watched["result"]
    assert res["progress"] == "trainer"
    assert [s["step"] for s in res["steps"]] == [1, 2, 3, 4, 5, 6]
    assert all(s["loss"] is not None for s in res["steps"])
    assert res["stalls"] == [] and res["exit_code"] == 3
    _no_survivors(watched)


def test_sft_trainer_reports_its_steps(runs):
    r = runs["sft"]
    assert r["rc"] == 0, r["err"][-3000:]
    assert [s["step"] for s in r["result"]["steps"]] == [1, 2, 3, 4]
    assert r["result"]["completed"] is True


def test_collator_blocking_at_step_11_is_a_data_pipeline_stall_within_its_deadline(runs):
    r = runs["block"]
    res = r["result"]
    assert res["killed_on_stall"] and r["rc"] == 1
    assert len(res["stalls"]) == 1
    st = res["stalls"][0]["info"]
    assert st["step"] == 11 and st["phase"] == "training"
    assert FLOOR <= st["waited_s"] <= FLOOR + SLACK
    assert [s["step"] for s in res["steps"]] == list(range(1, 11))
    f = _finding(r, "watch.stall.data-pipeline")
    assert f["severity"] == "error" and "step 11" in f["title"]
    assert "collate" in f["evidence"]["main_thread"]
    assert res["cause"] == "data-pipeline"
    assert "STALL 1 at step 11" in r["err"]
    _no_survivors(r)


def test_exception_at_step_5_is_reported_with_its_traceback(runs):
    r, plain = runs["raise"], runs["plain-raise"]
    assert r["rc"] == plain["rc"] == 1
    assert _normalise(r["out"]) == _normalise(plain["out"])
    res = r["result"]
    assert res["crash"]["exc_type"] == "ValueError"
    assert "bad sample in the batch of step 5" in res["crash"]["message"]
    assert "tiny_train.py" in res["crash"]["traceback"] and "in collate" in res["crash"]["traceback"]
    f = _finding(r, "watch.crash.exception")
    assert "(step 5)" in f["title"] and "tiny_train.py" in f["evidence"]["where"]
    assert [s["step"] for s in res["steps"]] == [1, 2, 3, 4]
    assert "Traceback" in r["err"]            # the child's own traceback, passed through
    with zipfile.ZipFile(r["dir"] / "bundle.zip") as z:     # the bundle for an issue, beside the report
        assert "bad sample in the batch of step 5" in z.read("logs/stderr.log").decode()
        assert "watch.crash.exception" in z.read("logs/report.md").decode()
    _no_survivors(r)


def test_a_prompt_for_input_is_named(runs):
    r = runs["prompt"]
    f = _finding(r, "watch.stall.terminal-input")
    assert "wandb" in f["title"] and "WANDB_MODE" in f["title"]
    assert r["result"]["stalls"][0]["info"]["phase"] == "starting"
    assert r["result"]["progress"] == "activity"
    _no_survivors(r)


def test_a_rank_waiting_for_a_peer_that_never_starts_is_named_rendezvous(runs):
    r = runs["rendezvous"]
    f = _finding(r, "watch.stall.rendezvous")
    diag = r["result"]["stalls"][0]["diagnosis"]
    assert diag["cause"] == "rendezvous-wait"
    details = json.dumps(diag["findings"][0])
    assert "WORLD_SIZE=2" in details and "1 other rank" in details
    assert f"127.0.0.1:{PORTS['rdzv']}" in details or "dist_env" not in ProcessSample.__dataclass_fields__
    assert f["severity"] == "error"
    _no_survivors(r)


def test_default_keeps_the_run_going_and_reports_a_second_stall(runs):
    r = runs["twice"]
    res = r["result"]
    assert r["rc"] == 0 and "done" in r["out"], r["err"][-2000:]
    assert len(res["stalls"]) == 2
    assert res["stalls"][0]["recovered"]          # output came back after the first quiet spell
    assert res["progress"] == "activity"
    _finding(r, "watch.progress-unavailable")
    _no_survivors(r)


def test_torchrun_ranks_report_one_step_log(runs):
    r = runs["torchrun"]
    assert r["rc"] == 0, r["err"][-3000:]
    assert r["out"].count("trained 4 steps") == 2, (r["out"][-1000:], r["err"][-3000:])   # both ranks trained
    res = r["result"]
    assert res["progress"] == "trainer" and [s["step"] for s in res["steps"]] == [1, 2, 3, 4]
    steppers = {e["pid"] for e in map(json.loads, (r["dir"] / "events.jsonl").read_text().splitlines())
                if e["kind"] == "step"}
    assert len(steppers) == 2                                 # the hook loaded in every rank
    assert [x["rank"] for x in res["ranks"]] == [0, 1] and all(x["last_step"] == 4 for x in res["ranks"])
    _no_survivors(r)


def test_a_rank_blocked_in_its_collator_is_named_the_first_to_stop(runs):
    r = runs["ranks"]
    res = r["result"]
    assert res["killed_on_stall"] and r["rc"] == 1, r["err"][-3000:]
    assert len(res["stalls"]) == 1
    st = res["stalls"][0]
    assert st["info"]["step"] == 5 and st["first_stopped_rank"] == 0
    by_rank = {x["rank"]: x for x in res["ranks"]}
    assert set(by_rank) == {0, 1} and by_rank[0]["pid"] != by_rank[1]["pid"]
    assert by_rank[0]["last_step"] == by_rank[1]["last_step"] == 4          # step 4 ends in the all-reduce of both
    assert by_rank[0]["median_step_s"] is not None and by_rank[1]["median_step_s"] is not None
    lineup = st["diagnosis"]["ranks"]                                       # attach's view of the same stall
    assert lineup["first"] == 0 and {x["rank"] for x in lineup["rows"]} == {0, 1}
    f = _finding(r, "watch.stall.data-pipeline")
    assert "rank 0 stopped first" in f["title"] and f["evidence"]["first_stopped_rank"] == 0
    assert "collate" in f["evidence"]["main_thread"]                        # rank 0's stack, not rank 1's
    assert res["cause"] == "data-pipeline"
    assert "rank 0 stopped first" in r["err"]
    md = (r["dir"] / "report.md").read_text()               # the per-rank row agrees with the stall
    assert re.search(r"rank 0 \(pid \d+\): step 4[^;|]*\(stopped first\)", md), md[-2000:]
    assert "attach: dataloader-fetch; rank 0 stopped first" in md
    _no_survivors(r)


def test_ctrl_c_reaches_the_command_and_its_exit_code_comes_back(runs):
    r = runs["interrupt"]
    assert r["rc"] == 130, r["err"][-2000:]               # as the shell reports a SIGINT death
    assert "KeyboardInterrupt" in r["err"]                # the command's own traceback, passed through
    f = _finding(r, "watch.crash.interrupted")
    assert f["severity"] == "info"
    _no_survivors(r)


def test_silent_cpu_work_is_progress_without_step_reports(runs):
    r = runs["busy"]                       # 12 s of computing, no output, no Trainer: 3x the grace
    assert r["rc"] == 0 and r["result"]["stalls"] == [], r["err"][-2000:]
