"""`doctor attach` on real gloo torchrun jobs (CPU, 2 and 4 ranks): one rank skipped a collective, one
is stuck in its DataLoader, one is gone. Each is diagnosed from the launcher's pid (or from a rank's)
with that rank named, and the whole tree is killed afterwards."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attach_helpers import kill_and_assert_gone, rank_pids, start_ranks_job, tree_pids
from doctor.attach.api import diagnose_pid
from doctor.proctree import wait_for

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("torch.distributed")


def _finding(report, fid):
    return next((f for f in report.findings if f.id == fid), None)


def test_four_ranks_one_skipped_a_collective_named_by_stacks_and_flight_recorder(spawn, tmp_path):
    prefix = str(tmp_path / "fr_rank_")
    proc = start_ranks_job(spawn, "skip", 4, 2, {"TORCH_FR_BUFFER_SIZE": "200", "TORCH_FR_DUMP_TEMP_FILE": prefix})
    pids = tree_pids(proc.pid)
    try:
        Path(prefix + "go").touch()              # the "watchdog" writes every rank's dump
        assert wait_for(lambda: all(Path(f"{prefix}{r}").exists() for r in range(4)), 60.0)
        time.sleep(0.5)
        report = diagnose_pid(proc.pid, samples=1, gpu=False, timeout_s=90)
        lu = report.ranks
        assert lu is not None and lu["verdict"] == "skipped-collective", lu
        assert lu["first"] == 2 and lu["first_by"] == "flight recorder", (lu["flight_errors"], lu["rows"])
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
    proc = start_ranks_job(spawn, "dataloader", 2, 1)
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
    proc = start_ranks_job(spawn, "dead", 4, 3)
    pids = tree_pids(proc.pid)
    try:
        report = diagnose_pid(proc.pid, samples=1, gpu=False, timeout_s=90)
        lu = report.ranks
        assert lu is not None and lu["verdict"] == "dead-rank" and lu["missing"] == [3], lu
        f = _finding(report, "attach.ranks.dead-rank")
        assert f is not None and f.title.startswith("Rank 3 is gone: 3 of the 4 ranks expected here are alive")
        live = [r for r in lu["rows"] if r["state"] != "gone"]
        assert len(live) == 3 and all(r["collective"] for r in live), live
    finally:
        kill_and_assert_gone(proc, pids)
