"""Classification from recorded samples, without a live process: the CPU snapshots recorded from the
live targets (tests/fixtures/attach/record_cpu.py) and the GPU ones recorded on an H100 by
benchmarks/gpu/attach_states.py (copied into tests/fixtures/attach/gpu/<state>/)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attach_helpers import FIXTURES
from doctor.attach.api import diagnose_snapshot
from doctor.attach.model import snapshot_from_report_dict
from doctor.attach.snapshot import Snapshot
from doctor.cli import app

CPU = FIXTURES / "cpu"
GPU = FIXTURES / "gpu"
EXPECTED = json.loads((CPU / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cpu_snapshot_replays_to_its_live_cause(name):
    report = diagnose_snapshot(Snapshot.load(CPU / name))
    assert report.cause == EXPECTED[name]
    assert report.findings[0].id == f"attach.{EXPECTED[name]}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_report_json_round_trip_replays_the_same(name):
    """--json output alone (raw dumps + snapshot minus dumps) is enough to re-classify."""
    first = diagnose_snapshot(Snapshot.load(CPU / name))
    envelope = json.loads(json.dumps(first.report().to_dict()))
    again = diagnose_snapshot(snapshot_from_report_dict(envelope))
    assert again.cause == first.cause
    assert [f.title for f in again.findings] == [f.title for f in first.findings]


def test_recorded_dataloader_names_the_stuck_worker():
    report = diagnose_snapshot(Snapshot.load(CPU / "dataloader_hang.snapshot.json"))
    workers = [p for p in report.processes if p.role == "dataloader-worker"]
    stuck = [w for w in workers if w.cause != "worker-idle"]
    assert len(workers) == 2 and len(stuck) == 1
    assert f"pid {stuck[0].pid} is stuck in HangingDataset.__getitem__" in report.findings[0].title


def test_recorded_training_names_the_phases():
    report = diagnose_snapshot(Snapshot.load(CPU / "tiny_llama_train.snapshot.json"))
    phases = report.findings[0].title
    assert any(p in phases for p in ("forward", "backward", "optimizer"))


def test_cli_replays_a_saved_snapshot(tmp_path):
    md = tmp_path / "attach.md"
    result = CliRunner().invoke(app, ["attach", "--replay", str(CPU / "lock_wait.snapshot.json"),
                                      "--markdown", str(md)])
    assert result.exit_code == 1, result.stderr            # an error-severity finding
    assert "Main thread waits on a lock" in result.stdout
    assert "MainThread" in result.stdout                    # the process/thread section
    text = md.read_text()
    assert "### Process tree" in text and "attach.lock-wait" in text


def test_cli_json_envelope_and_save_dumps(tmp_path):
    result = CliRunner().invoke(app, ["attach", "--replay", str(CPU / "mp_queue_hang.snapshot.json"),
                                      "--json", "--save-dumps", str(tmp_path / "dumps")])
    data = json.loads(result.stdout)
    assert data["command"] == "attach" and data["schema_version"] == 1
    section = data["sections"]["attach"]
    assert section["cause"] == "worker-queue-wait"
    assert set(section["raw_dumps"]) == {str(p["pid"]) for p in section["processes"]}
    assert all(len(samples) == 3 for samples in section["raw_dumps"].values())
    files = sorted(p.name for p in (tmp_path / "dumps").iterdir())
    assert "snapshot.json" in files and sum(f.startswith("pyspy-") for f in files) >= 6


def test_replay_of_an_unreadable_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(app, ["attach", "--replay", str(bad)])
    assert result.exit_code == 9 and result.stderr.startswith("doctor: error: cannot replay")


def _gpu_states():
    return sorted(p.parent.name for p in GPU.glob("*/snapshot.json")) if GPU.is_dir() else []


@pytest.mark.parametrize("state", _gpu_states())
def test_gpu_recording_replays_to_its_expected_cause(state):
    folder = GPU / state
    meta = json.loads((folder / "expected.json").read_text())
    report = diagnose_snapshot(Snapshot.load(folder / "snapshot.json"))
    assert report.cause == meta["expected_cause"], report.findings[0].title
    if "live_cause" in meta:                               # replay agrees with the live diagnosis
        assert report.cause == meta["live_cause"]
