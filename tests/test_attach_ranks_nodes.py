"""`doctor analyze` over the nodes of a multi-node job: a folder of each node's saved facts and attach
snapshot. Nodes that differ are named; every rank of every node is lined up."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from attach_helpers import FIXTURES
from doctor.cli import app

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "examples" / "facts" / "h100-real.json"
SKIP = FIXTURES / "cpu" / "ranks" / "skip-4-flight.snapshot.json"


def _as_node(snap: dict, node_rank: int, world: int = 8) -> dict:
    """The 4-rank recording as node `node_rank` of a job of `world` ranks."""
    snap = json.loads(json.dumps(snap))
    for p in snap["processes"]:
        if p.get("rank") is not None:
            p["rank"] += 4 * node_rank
            p["world_size"] = world
            p["role"] = f"rank {p['rank']}"
            p["dist_env"].update(RANK=str(p["rank"]), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE="4",
                                 GROUP_RANK=str(node_rank))
    snap["flight_records"] = {str(int(k) + 4 * node_rank): v for k, v in snap["flight_records"].items()}
    return snap


def _job(tmp_path: Path, torch_b: str = "2.5.1+cu124") -> Path:
    job = tmp_path / "doctor-1234"
    base = json.loads(SKIP.read_text())
    for i, node in enumerate(("gpu-a", "gpu-b")):
        (job / node / "attach").mkdir(parents=True)
        facts = json.loads(FACTS.read_text())
        if node == "gpu-b":
            facts["torch"]["version"] = torch_b
            facts["nvidia"]["gpus"] = facts["nvidia"]["gpus"][:1]
        (job / node / "facts.json").write_text(json.dumps(facts))
        (job / node / "attach" / "snapshot.json").write_text(json.dumps(_as_node(base, i)))
    return job


def test_analyze_a_job_folder_names_the_differing_nodes_and_lines_up_all_ranks(tmp_path):
    job = _job(tmp_path)
    (job / "gpu-b" / "notes.json").write_text("[1, 2]")          # not ours: skipped, said so
    res = CliRunner().invoke(app, ["analyze", str(job), "--json"])
    assert res.exit_code == 1, res.output
    env = json.loads(res.output)
    nodes, lu = env["sections"]["nodes"], env["sections"]["ranks"]
    assert set(nodes["differ"]) == {"torch", "GPUs"}
    assert [r["node"] for r in nodes["rows"]] == ["gpu-a", "gpu-b"]
    assert any("notes.json" in s for s in nodes["skipped"])
    diff = next(f for f in env["findings"] if f["id"] == "attach.ranks.nodes-differ")
    assert "torch: gpu-a 2.13.0" not in diff["title"] and "gpu-b 2.5.1+cu124" in diff["title"]
    assert lu["world_size"] == 8 and len(lu["rows"]) == 8 and lu["missing"] == []
    assert {(r["host"], r["rank"]) for r in lu["rows"]} >= {("gpu-a", 2), ("gpu-b", 6)}
    assert lu["odd"] == [2, 6] and lu["verdict"] == "skipped-collective"
    skipped = next(f for f in env["findings"] if f["id"] == "attach.ranks.skipped-collective")
    assert skipped["title"].startswith("Rank 2 (and rank 6, alike) skipped a collective")


def test_analyze_several_files_and_the_terminal_view(tmp_path):
    job = _job(tmp_path, torch_b=json.loads(FACTS.read_text())["torch"]["version"])
    files = [str(p) for p in sorted(job.rglob("*.json"))]
    res = CliRunner().invoke(app, ["analyze", *files])
    assert "Nodes (differ in: GPUs)" in res.output, res.output
    assert "gpu-b/6" in res.output and "barrier" in res.output


def test_a_folder_with_nothing_of_ours_is_a_bad_input(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    res = CliRunner().invoke(app, ["analyze", str(tmp_path)])
    assert res.exit_code == 9 and "no facts or attach snapshots" in res.output


def test_a_job_with_no_differences_says_so(tmp_path):
    job = tmp_path / "j"
    for node in ("a", "b"):
        (job / node).mkdir(parents=True)
        shutil.copy(FACTS, job / node / "facts.json")
    res = CliRunner().invoke(app, ["analyze", str(job), "--json"])
    env = json.loads(res.output)
    assert env["sections"]["nodes"]["differ"] == [] and env["sections"]["ranks"] is None
    assert not any(f["id"].startswith("attach.ranks.") for f in env["findings"])
