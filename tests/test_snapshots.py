"""The fact snapshots under examples/facts/: complete, documented, and what the doctor says about each
(including the reference WSL2 case with the notebook's own config, whose folklore fixes it must not repeat)."""
from __future__ import annotations

import json

import pytest

from checks_helpers import REFERENCE, SNAPSHOTS, reference_config, snapshot, snapshot_names
from doctor.config.model import TrainingConfig
from doctor.engine import run_checks
from doctor.facts import Facts
from doctor.findings import Severity

ENV_CHECKS = ("gpu-presence", "driver-cuda", "gpu-arch", "bf16", "version-matrix", "wsl", "windows", "libcuda",
              "host")
C, E, W, I = Severity.CRITICAL, Severity.ERROR, Severity.WARNING, Severity.INFO

EXPECTED = {
    "wsl2-2080ti-unsloth-2024.8.json": {"windows.sysmem-fallback": W, "wsl.expandable-segments": W,
                                        "windows.tdr-display-gpu": W, "bf16.is-bf16-supported-lies": W,
                                        "arch.no-flash-attention-2": I, "wsl.telemetry-blind-spots": I,
                                        "wsl.memory-cap": I},
    "rtx5090-old-torch.json": {"arch.no-kernel-image": C},
    "driver-too-old.json": {"driver.too-old-for-torch-cuda": C, "gpu.cuda-unavailable": C},
    "turing-bf16.json": {"bf16.is-bf16-supported-lies": W, "arch.no-flash-attention-2": I},
    "unsloth-zoo-skew.json": {"versions.unsloth-zoo-skew": E},
    "cpu-only-laptop.json": {"gpu.no-nvidia-gpu": W},
    "h100-healthy.json": {},
    # issue 11 (tests/test_snapshots_machine.py pins the toolchain, bnb, nccl and smoke findings too)
    "container-toolchain-broken.json": {"libcuda.no-unversioned-libcuda": E, "host.shm-full": W},
    "bnb-and-toolkit-shadow.json": {},
    "rtx5090-pair-old-nccl.json": {},
    # captured on the H200 by benchmarks/gpu/smoke_h200.sh: healthy, then four injected breakages
    "h200-smoke.json": {"versions.optional-requirement-missing": I},
    "injected-h200-no-c-compiler.json": {"versions.optional-requirement-missing": I},
    "injected-h200-triton-cache-unwritable.json": {"versions.optional-requirement-missing": I},
    "injected-h200-bnb-cuda118.json": {"versions.optional-requirement-missing": I},
    "injected-h200-fake-libcuda.json": {"gpu.cuda-unavailable": C, "libcuda.ld-library-path-shadows-driver": E,
                                        "versions.optional-requirement-missing": I},
}


def env_findings(facts, config=None):
    return run_checks(facts, config, only=ENV_CHECKS)


def test_every_snapshot_is_pinned_and_documented():
    readme = (SNAPSHOTS / "README.md").read_text()
    written = set(snapshot_names()) - {"h100-real.json", "h200-real.json"}   # real captures: below
    assert written == set(EXPECTED)
    for name in snapshot_names():
        assert f"`{name}`" in readme, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_snapshot_is_complete_facts_json_with_a_label(name):
    data = json.loads((SNAPSHOTS / name).read_text())
    facts = Facts.from_dict(data)
    assert facts.label and len(facts.label) > 40
    assert facts.to_dict() == data          # every field present, nothing unknown: a complete snapshot
    assert {p.name for p in facts.probes} >= {"platform", "packages", "nvidia", "torch", "libcuda"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_snapshot_findings(name):
    got = {f.id: f.severity for f in env_findings(snapshot(name))}
    assert got == EXPECTED[name]


@pytest.mark.parametrize("name", [n for n in snapshot_names() if n.startswith(("h100", "h200"))])
def test_healthy_hopper_has_no_error_level_findings_from_any_check(name):
    # h100-healthy.json (hand-written) and the real captures h100-real.json, h200-real.json.
    findings = run_checks(snapshot(name), None)
    assert [f.id for f in findings if f.severity.is_failure] == []


def test_turing_with_bf16_forced_is_an_error():
    findings = env_findings(snapshot("turing-bf16.json"), TrainingConfig(bf16=True))
    (f,) = [f for f in findings if f.severity.is_failure]
    assert f.id == "bf16.unsupported-gpu"
    assert {c.setting: c.value for c in f.config_changes} == {"bf16": False, "fp16": True}


def test_reference_case_names_the_wsl_causes_not_the_folklore():
    cfg = reference_config()
    findings = run_checks(snapshot(REFERENCE), cfg)          # every check, ranked as the report shows them
    order = [f.id for f in findings]
    wsl_causes = ["wsl.pinned-memory-offload", "wsl.expandable-segments", "windows.sysmem-fallback"]
    first_info = min(i for i, f in enumerate(findings) if f.severity is Severity.INFO)
    for fid in wsl_causes:
        assert fid in order and order.index(fid) < first_info, (fid, order)
    assert findings[0].id == "wsl.pinned-memory-offload"     # the one error ranks first
    # The notebook already had batch 2, grad-accum 4 and adamw_8bit: never "recommend" them.
    for f in findings:
        for ch in f.config_changes:
            assert (ch.setting, ch.value) not in {("per_device_train_batch_size", 2),
                                                  ("gradient_accumulation_steps", 4), ("optim", "adamw_8bit")}, f.id
            assert getattr(cfg, ch.setting) != ch.value, (f.id, ch.setting)
    proposed = {ch.setting: ch.value for f in findings for ch in f.config_changes}
    assert proposed.get("use_gradient_checkpointing") is True
    assert "bf16" not in proposed and "fp16" not in proposed     # is_bfloat16_supported() is already right
