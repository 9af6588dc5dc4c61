"""A bundle made on the GPU machine (2x H200, 2026-11-28, `doctor bundle --config
examples/train_unsloth_llama31_8b.py`) re-analysed here, offline, on a machine without a GPU."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from doctor.cli import app

FIX = Path(__file__).parent / "fixtures" / "bundle"
BUNDLE = FIX / "h200-2026-11-28-bundle.zip"


def test_gpu_bundle_analyses_here_to_the_findings_it_had_there():
    result = CliRunner().invoke(app, ["analyze", str(BUNDLE), "--json"])
    assert result.exit_code == 0, result.stderr
    here = json.loads(result.stdout)
    there = json.loads((FIX / "h200-2026-11-28-run.json").read_text())
    # the facts are the GPU machine's, not this one's: nothing was probed here
    gpus = [g["name"] for g in here["facts"]["nvidia"]["gpus"]]
    assert gpus == ["NVIDIA H200", "NVIDIA H200"]
    assert sorted(f["id"] for f in here["findings"]) == sorted(f["id"] for f in there["findings"])
    vram = next(f for f in here["findings"] if f["id"] == "vram.fits")
    assert "H200" in vram["title"] or "H200" in json.dumps(vram["evidence"])


def test_run_replays_the_bundle_facts_too():
    result = CliRunner().invoke(app, ["run", "--facts", str(BUNDLE), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["facts"]["platform"]["hostname"] in ("<host>", None, "vm")   # redacted or too short to matter
    assert {f["id"] for f in data["findings"]} >= {"versions.optional-requirement-missing"}
