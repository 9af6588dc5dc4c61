"""`doctor run train.py` re-estimates VRAM with the patch applied: fixes interact."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from doctor.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "train_unsloth_llama31_8b.py"
WSL = ROOT / "examples" / "facts" / "wsl2-2080ti-unsloth-2024.8.json"


def test_wsl_fix_would_make_the_reference_config_tight_so_the_batch_drops_too(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")
    result = CliRunner().invoke(app, ["run", str(EXAMPLE), "--facts", str(WSL), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 1, result.stderr            # the WSL pinned-memory finding is an error
    data = json.loads(result.stdout)
    assert data["sections"]["vram"]["verdict"] == "fits"   # the file as it is
    patch = data["sections"]["patch"]
    settings = {c["setting"]: c["new"] for c in patch["changes"]}
    assert settings["use_gradient_checkpointing"] is True
    # standard checkpointing keeps 32 layers' checkpoints on the 11 GB card: no longer comfortable at
    # batch 2, so the same run also lowers the batch (tests/test_vram_patch_stable.py), and says so
    assert settings["per_device_train_batch_size"] == 1
    assert patch["vram_after"].startswith("With these changes: estimated peak")
    assert patch["vram_after"].endswith(": fits")
    assert (tmp_path / "train_unsloth_llama31_8b.patched.py").exists()
    assert EXAMPLE.read_text().count('use_gradient_checkpointing = "unsloth"') == 1   # original untouched
