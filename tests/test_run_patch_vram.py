"""`doctor run train.py` re-estimates VRAM with the patch applied: fixes interact."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from doctor.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "train_unsloth_llama31_8b.py"
WSL = ROOT / "examples" / "facts" / "wsl2-2080ti-unsloth-2024.8.json"


def test_wsl_fix_moves_the_reference_config_from_fits_to_tight_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")
    result = CliRunner().invoke(app, ["run", str(EXAMPLE), "--facts", str(WSL), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 1, result.stderr            # the WSL pinned-memory finding is an error
    data = json.loads(result.stdout)
    assert data["sections"]["vram"]["verdict"] == "fits"   # the file as it is
    patch = data["sections"]["patch"]
    settings = {c["setting"]: c["new"] for c in patch["changes"]}
    assert settings["use_gradient_checkpointing"] is True
    # standard checkpointing keeps 32 layers' checkpoints on the 11 GB card: no longer comfortable
    assert patch["vram_after"].startswith("With these changes: estimated peak")
    assert patch["vram_after"].endswith(": tight")
    assert (tmp_path / "train_unsloth_llama31_8b.patched.py").exists()
    assert EXAMPLE.read_text().count('use_gradient_checkpointing = "unsloth"') == 1   # original untouched
