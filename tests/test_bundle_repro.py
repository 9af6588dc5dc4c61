"""`doctor bundle --repro`: the real repro (a tiny random-weight model on CPU) runs, and its step
log, chart and diagnosis land in the bundle and the issue body."""
from __future__ import annotations

import json
import os

import pytest

from doctor.bundle.build import BundleOptions, make_bundle
from doctor.config.flags import ConfigOverrides
from tests.bundle_helpers import WSL_FACTS, leaks, read_members
from tests.conftest import EXAMPLES


@pytest.mark.slow
def test_bundle_with_repro(tmp_path):
    opts = BundleOptions(out=tmp_path / "doctor-bundle-r.zip", config=EXAMPLES / "train_unsloth_llama31_8b.py",
                         overrides=ConfigOverrides(seq_len=64), repro=True, repro_steps=2, facts_path=WSL_FACTS)
    result = make_bundle(opts)
    members = read_members(result.path)
    repro = json.loads(members["repro/result.json"])
    assert repro["steps_planned"] == 2 and repro["completed"], repro.get("log_tail")
    assert len(repro["steps"]) == 2
    assert "repro/steps.jsonl" in members and "repro/child.log" in members
    assert "repro/step_times.png" in members or any("step_times.png" in n for n in
                                                    json.loads(members["manifest.json"])["notes"])
    assert "### Reproduction on this machine (`doctor repro`)" in result.issue.text
    assert "Ran: transformers" in result.issue.text and "repro.fidelity" in result.issue.text
    assert json.loads(members["config/overrides.json"])["seq_len"] == 64
    home = os.path.expanduser("~").rstrip("/") + "/"
    assert leaks(result.path, [home], []) == []                     # the child's paths (venv, cache) too
    print("repro took", repro["duration_s"], "s")
