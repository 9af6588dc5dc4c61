"""`doctor attach` on real gloo torchrun jobs (CPU, 2 and 4 ranks): one rank skipped a collective, one
is stuck in its DataLoader, one is gone. Each is diagnosed from the launcher's pid (or from a rank's)
with that rank named, and the whole tree is killed afterwards."""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from attach_helpers import FIXTURES, READY_TIMEOUT_S, kill_and_assert_gone, tree_pids
from doctor.attach.api import diagnose_pid
from doctor.proctree import wait_for

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("torch.distributed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_job(spawn, mode: str, nproc: int, odd: int, env_extra: dict | None = None) -> subprocess.Popen:
    """torchrun (python -m torch.distributed.run) with nproc gloo ranks; returns once every live rank
    printed READY and every rank process sleeps (in its collective, or its DataLoader)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(_free_port()), "--monitor_interval", "0.5", str(FIXTURES / "ranks_job.py"), mode, str(odd)]
    proc = spawn(cmd, env=env, cwd=str(FIXTURES), stderr=subprocess.DEVNULL)
    want = nproc - (1 if mode == "dead" else 0)
    seen: set[str] = set()
    buf = b""
    deadline = time.monotonic() + READY_TIMEOUT_S * 2
    fd = proc.stdout.fileno()
    while len(seen) < want:
        assert time.monotonic() < deadline, f"only {sorted(seen)} of {want} ranks READY"
        assert proc.poll() is None, f"torchrun exited with {proc.returncode}"
        if select.select([fd], [], [], 0.5)[0]:      # raw reads: several ranks' lines come in one chunk
            buf += os.read(fd, 65536)
            seen |= {ln.split()[1].decode() for ln in buf.splitlines() if ln.startswith(b"READY ")}

    def ranks_asleep() -> bool:
        kids = psutil.Process(proc.pid).children(recursive=True)
        return len(kids) >= want and all(k.status() in ("sleeping", "disk-sleep", "zombie") for k in kids)
    assert wait_for(ranks_asleep, 60.0), "the ranks never settled"
    time.sleep(1.0)         # READY comes just before the blocking call
    return proc


def rank_pids(proc) -> dict[int, int]:
    out = {}
    for k in psutil.Process(proc.pid).children():
        try:
            out[int(k.environ()["RANK"])] = k.pid
        except (KeyError, psutil.Error):
            pass
    return out


def _finding(report, fid):
    return next((f for f in report.findings if f.id == fid), None)


def test_four_ranks_one_skipped_a_collective_named_by_stacks_and_flight_recorder(spawn, tmp_path):
    prefix = str(tmp_path / "fr_rank_")
    proc = start_job(spawn, "skip", 4, 2, {"TORCH_FR_BUFFER_SIZE": "200", "TORCH_FR_DUMP_TEMP_FILE": prefix})
    pids = tree_pids(proc.pid)
    try:
        Path(prefix + "go").touch()              # the "watchdog" writes every rank's dump
        assert wait_for(lambda: all(Path(f"{prefix}{r}").exists() for r in range(4)), 60.0)
        time.sleep(0.5)
        report = diagnose_pid(proc.pid, samples=1, gpu=False, timeout_s=90)
        lu = report.ranks
        assert lu is not None and lu["verdict"] == "skipped-collective", lu
        assert lu["first"] == 2 and lu["first_by"] == "flight recorder", (lu["flight_on"], lu["flight_errors"], str(report.snapshot.flight_records)[:3000])
        rows = {r["rank"]: r for r in lu["rows"]}
        assert rows[2]["collective"] == "barrier"
        assert {rows[r]["collective"] for r in (0, 1, 3)} == {"all_reduce"}
        assert rows[0]["site"].startswith("ranks_job.py:") and rows[0]["site"] != rows[2]["site"]
        f = _finding(report, "attach.ranks.skipped-collective")
        assert f is not None and f.title.startswith("Rank 2 skipped a collective"), report.findings
        assert "ranks 0, 1, 3 wait in all_reduce" in f.title
        fr = _finding(report, "attach.ranks.flight-recorder")
        assert fr is not None and "rank 2" in fr.title and "barrier" in fr.title
        assert report.findings.index(f) == 1     # right after the primary diagnosis
    finally:
        kill_and_assert_gone(proc, pids)


def test_two_ranks_one_stuck_in_its_dataloader_from_a_rank_pid_through_the_cli(spawn, tmp_path):
    proc = start_job(spawn, "dataloader", 2, 1)
    pids = tree_pids(proc.pid)
    try:
        r0 = rank_pids(proc)[0]
        out = subprocess.run([sys.executable, "-m", "doctor", "attach", str(r0), "--no-gpu", "--samples", "1",
                              "--json"], capture_output=True, text=True, timeout=180, cwd=str(ROOT),
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert out.returncode == 1, out.stderr[-2000:]
        attach = json.loads(out.stdout)["sections"]["attach"]
        assert attach["pid"] == proc.pid and attach["snapshot"]["walked_up_from"] == r0   # walked up
        lu = attach["ranks"]
        assert lu["verdict"] == "rank-in-dataloader" and lu["first"] == 1, lu
        ids = [f["id"] for f in json.loads(out.stdout)["findings"]]
        assert "attach.ranks.rank-in-dataloader" in ids and "attach.ranks.flight-recorder-off" in ids
        title = next(f["title"] for f in json.loads(out.stdout)["findings"]
                     if f["id"] == "attach.ranks.rank-in-dataloader")
        assert title.startswith("Rank 1 is stuck in its data loading") and "rank 0 waits in all_reduce" in title
    finally:
        kill_and_assert_gone(proc, pids)


def test_four_ranks_one_gone_the_others_wait_for_it(spawn):
    proc = start_job(spawn, "dead", 4, 3)
    pids = tree_pids(proc.pid)
    try:
        report = diagnose_pid(proc.pid, samples=1, gpu=False, timeout_s=90)
        lu = report.ranks
        assert lu is not None and lu["verdict"] == "dead-rank" and lu["missing"] == [3], lu
        f = _finding(report, "attach.ranks.dead-rank")
        assert f is not None and f.title.startswith("Rank 3 is gone: 3 of 4 ranks on this host are alive")
        live = [r for r in lu["rows"] if r["state"] != "gone"]
        assert len(live) == 3 and all(r["collective"] for r in live), live
    finally:
        kill_and_assert_gone(proc, pids)
