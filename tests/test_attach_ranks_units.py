"""The rank line-up and the flight recorder reader without live jobs: recorded gloo torchrun snapshots,
real gloo flight recorder dumps, hand-built snapshots for the cases a live CPU job cannot show (a
zombie rank, a node of a larger world), and the safety of the dump reader."""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from attach_helpers import FIXTURES, SITE, frame, process, snapshot, thread
from doctor.knowledge import load
from doctor.attach import flight_recorder as fr
from doctor.attach import procinfo, ranks
from doctor.attach.api import diagnose_snapshot
from doctor.attach.command import load_snapshot
from doctor.attach.render import markdown_section, terminal_section

RECORDED = FIXTURES / "cpu" / "ranks"
DUMPS = FIXTURES / "flight"
C10D = SITE + "torch/distributed/distributed_c10d.py"
LOGGER = SITE + "torch/distributed/c10d_logger.py"


@pytest.mark.parametrize("name, verdict, first, by", [
    ("skip-4-flight", "skipped-collective", 2, "flight recorder"),
    ("skip-2", "skipped-collective", 1, "stacks"),
    ("dataloader-4", "rank-in-dataloader", 3, "stacks"),
    ("dead-4", "dead-rank", 3, "its process is gone"),
])
def test_recorded_torchrun_jobs_replay_to_the_same_verdict(name, verdict, first, by):
    report = diagnose_snapshot(load_snapshot(RECORDED / f"{name}.snapshot.json"))
    lu = report.ranks
    assert (lu["verdict"], lu["first"], lu["first_by"]) == (verdict, first, by)
    assert report.findings[1].id == f"attach.ranks.{verdict}"
    assert report.findings[1].title.startswith(f"Rank {first} ")


def test_the_line_up_is_in_the_terminal_and_markdown_reports_and_the_json():
    report = diagnose_snapshot(load_snapshot(RECORDED / "skip-4-flight.snapshot.json"))
    console = Console(record=True, width=140)
    terminal_section(report)(console)
    text = console.export_text()
    assert "Ranks: world size 4, 4 alive; rank 2 diverged first (by flight recorder" in text
    assert re.search(r"^\s*2 ←\s+\d+\s+S\s+barrier\s+ranks_job\.py:\d+", text, re.M), text
    assert len(re.findall(r"all_reduce\s+ranks_job\.py", text)) == 3
    md = markdown_section(report)
    assert "| rank | pid | state | collective | call site / where |" in md and "| 2 ← |" in md
    assert json.loads(json.dumps(report.to_dict()))["ranks"]["first"] == 2


# ---- the flight recorder reader

def test_real_gloo_dumps_are_read_and_show_the_odd_collective():
    r0, r2 = fr.read_dump(DUMPS / "gloo_skip_rank_0"), fr.read_dump(DUMPS / "gloo_skip_rank_2")
    assert "error" not in r0 and r0["total_entries"] >= 3
    assert fr.progress(r0) == {"enqueued": 3, "started": None, "completed": 2}
    assert fr.entry_at(r0, 3)["profiling_name"] == "gloo:all_reduce"
    assert fr.entry_at(r2, 3)["profiling_name"] == "gloo:barrier"


def test_json_dumps_read_like_pickles_and_entries_stand_in_for_a_missing_status():
    raw = fr._PlainUnpickler(io.BytesIO((DUMPS / "gloo_skip_rank_0").read_bytes())).load()
    as_json = json.dumps(raw, default=list).encode()
    assert fr.progress(fr.summarize(fr.parse(as_json))) == fr.progress(fr.read_dump(DUMPS / "gloo_skip_rank_0"))
    no_status = fr.summarize({"entries": [
        {"pg_id": 0, "collective_seq_id": 1, "state": "completed", "profiling_name": "nccl:all_reduce"},
        {"pg_id": 0, "collective_seq_id": 2, "state": "started", "profiling_name": "nccl:all_reduce"},
        {"pg_id": 0, "collective_seq_id": 3, "state": "scheduled", "profiling_name": "nccl:broadcast"}]})
    assert fr.progress(no_status) == {"enqueued": 3, "started": 2, "completed": 1}


def test_a_pickle_with_a_global_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    (tmp_path / "nccl_trace_rank_0").write_bytes(evil)
    rec = fr.read_dump(tmp_path / "nccl_trace_rank_0")
    assert "refused global os.system" in rec["error"] and not marker.exists()
    for junk in (b"", b"\x80\x02K\x01.", b"{not json", b"[1, 2]"):
        with pytest.raises(ValueError):
            fr.parse(junk)


def test_a_dump_over_the_size_limit_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(fr, "MAX_BYTES", 1000)
    big = tmp_path / "nccl_trace_rank_0"
    big.write_bytes(json.dumps({"entries": [], "pad": "x" * 2000}).encode())
    assert "limit" in fr.read_dump(big)["error"]


def test_collect_finds_the_dumps_of_this_job_only(tmp_path):
    env = {"TORCH_NCCL_TRACE_BUFFER_SIZE": "2000", "TORCH_NCCL_DEBUG_INFO_TEMP_FILE": "traces/rank_"}
    (tmp_path / "traces").mkdir()
    fresh, stale = tmp_path / "traces/rank_0", tmp_path / "traces/rank_1"
    for p in (fresh, stale):
        p.write_bytes((DUMPS / "gloo_skip_rank_0").read_bytes())
    started = time.time() - 5
    os.utime(stale, (started - 3600, started - 3600))          # a dump left by an earlier job
    got = fr.collect([(0, env, str(tmp_path), started), (1, env, str(tmp_path), started)])
    assert list(got) == ["0"] and got["0"]["path"] == str(fresh)
    assert fr.enabled(env) and not fr.enabled({"TORCH_NCCL_TRACE_BUFFER_SIZE": "0"}) and not fr.enabled({})
    assert fr.dump_path({}, 3) == Path("/tmp/nccl_trace_rank_3")


# ---- cases a live CPU job does not show

def _rank(pid, rank, frames, world=2, local_world=None, ppid=10, **env):
    dist = {"RANK": str(rank), "LOCAL_RANK": str(rank % (local_world or world)), "WORLD_SIZE": str(world),
            **({"LOCAL_WORLD_SIZE": str(local_world)} if local_world else {}), **env}
    return process(pid, [[thread(frames, tid=pid)]], ppid=ppid, role=f"rank {rank}", rank=rank,
                   local_rank=rank % (local_world or world), world_size=world, dist_env=dist)


def _launcher():
    return process(10, [[thread([frame("_invoke_run", SITE + "torch/distributed/elastic/agent/server/api.py")],
                                tid=10)]], role="launcher")


def _in(coll, line):
    return [frame(coll, C10D, 3000), frame("wrapper", LOGGER, 83), frame("train", "/home/u/train.py", line)]


def test_two_ranks_split_evenly_name_the_one_not_with_rank_0_and_say_so():
    snap = snapshot(_launcher(), _rank(11, 0, _in("all_reduce", 40)), _rank(12, 1, _in("barrier", 55)), target=10)
    rep = diagnose_snapshot(snap)
    assert rep.ranks["first"] == 1 and rep.ranks["verdict"] == "skipped-collective"
    assert any("evenly" in n for n in rep.ranks["notes"])
    f = next(f for f in rep.findings if f.id == "attach.ranks.skipped-collective")
    assert f.confidence < 0.8 and "barrier at train.py:55" in f.title and "all_reduce at train.py:40" in f.title
    assert any(f.id == "attach.ranks.flight-recorder-off" for f in rep.findings)


def test_a_zombie_rank_gives_its_exit_status():
    zombie = process(13, [], ppid=10, role="child", state="Z", exit_code=1)
    zombie.python, zombie.states = True, []
    snap = snapshot(_launcher(), _rank(11, 0, _in("all_reduce", 40), world=3, local_world=3),
                    _rank(12, 1, _in("all_reduce", 40), world=3, local_world=3), zombie, target=10)
    rep = diagnose_snapshot(snap)
    assert rep.ranks["missing"] == [2]
    f = next(f for f in rep.findings if f.id == "attach.ranks.dead-rank")
    assert f.title == "Rank 2 is gone: 2 of the 3 ranks expected here are alive (exit status 1)"
    assert "all_reduce at train.py:40" in f.why


def test_one_node_of_a_larger_world_is_not_short_of_ranks():
    procs = [_rank(11 + i, 4 + i, _in("all_reduce", 40), world=8, local_world=4, GROUP_RANK="1") for i in range(4)]
    for p in procs:
        p.local_rank = p.rank - 4
    rep = diagnose_snapshot(snapshot(_launcher(), *procs, target=10))
    assert rep.ranks["missing"] == [] and rep.ranks["verdict"] == "all-in-collective"
    f = next(f for f in rep.findings if f.id == "attach.ranks.all-in-collective")
    assert "world size 8" in f.title


def test_a_single_process_is_no_line_up():
    rep = diagnose_snapshot(snapshot(process(11, [[thread(_in("all_reduce", 40), tid=11)]])))
    assert rep.ranks is None and not any(f.id.startswith("attach.ranks.") for f in rep.findings)


def test_zombie_exit_code_is_read_from_the_kernel():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    try:
        deadline = time.monotonic() + 30
        while procinfo.proc_state(child.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert procinfo.zombie_exit_code(child.pid) == 3
    finally:
        child.wait(timeout=10)


def test_every_verdict_row_is_sourced_and_reachable():
    data = load("rank_lineup")
    id_re = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+(-[a-z0-9]+)*)+$")
    for row in data["verdicts"]:
        assert row["source"] and row["links"] and all(u.startswith("https://") for u in row["links"]), row["id"]
        assert id_re.match(f"attach.ranks.{row['id']}")
    ids = {r["id"] for r in data["verdicts"]}
    code = Path(ranks.__file__).read_text() + Path(ranks.__file__).with_name("nodes.py").read_text() \
        if Path(ranks.__file__).with_name("nodes.py").exists() else Path(ranks.__file__).read_text()
    used = set(re.findall(r'"((?:rank|dead|skipped|all|flight|nodes)-[a-z-]+)"', code))
    assert used <= ids, used - ids
    assert set(ranks.verdict_ids()) == {f"attach.ranks.{i}" for i in ids}


def test_ranks_that_move_between_samples_are_not_waiting_in_a_collective():
    # a healthy DDP step: each rank is seen in all_reduce once, then in its forward
    moving = [[frame("forward", "/home/u/model.py", 12)] + _in("all_reduce", 40)[2:], _in("all_reduce", 40)]
    procs = []
    for pid, rank in ((11, 0), (12, 1)):
        p = _rank(pid, rank, moving[1])
        p.dumps = [[thread(f, tid=pid)] for f in moving]
        p.states, p.kernel = ["S", "S"], p.kernel * 2
        procs.append(p)
    rep = diagnose_snapshot(snapshot(_launcher(), *procs, target=10))
    assert all(r["collective"] is None for r in rep.ranks["rows"]) and rep.ranks["verdict"] is None
    assert not any(f.id.startswith("attach.ranks.") for f in rep.findings)


def test_a_failing_line_up_is_a_note_not_a_crash(monkeypatch):
    def boom(*_a, **_k):
        raise KeyError("LOCAL_WORLD_SIZE")
    monkeypatch.setattr(ranks, "build", boom)
    rep = diagnose_snapshot(load_snapshot(RECORDED / "skip-2.snapshot.json"))
    assert rep.cause and rep.ranks is None
    assert any("rank line-up failed: KeyError" in e for e in rep.errors)
