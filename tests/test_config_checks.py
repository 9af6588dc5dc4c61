"""The config_* checks on parsed configs and hand-written facts."""
from __future__ import annotations

from pathlib import Path

import pytest

from checks import all_checks
from checks.config_eval import config_eval
from checks.config_lora import config_lora
from checks.bf16 import bf16 as bf16_check
from checks.config_seq_length import config_seq_length
from checks.config_unresolved import config_unresolved
from doctor.config.loader import load_config
from doctor.config.model import AUTO_EMULATED, AUTO_NATIVE, NOT_AUTO_NATIVE, TrainingConfig
from doctor.config.python_parser import parse_python
from doctor.engine import run_checks
from doctor.findings import Severity
from tests.vram_helpers import CORPUS, REFERENCE, make_facts


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")


def ids(found):
    return [f.id for f in found]


def test_seq_length_mismatch_fm15():
    cfg = TrainingConfig(framework="unsloth", max_seq_length=2048, trainer_max_seq_length=4096)
    (f,) = config_seq_length(make_facts(), cfg)
    assert f.id == "config.max-seq-length-mismatch" and f.failure_mode == "FM-15"
    assert f.config_changes[0].setting == "trainer_max_seq_length" and f.config_changes[0].value == 2048
    assert "truncated" in f.why
    assert config_seq_length(make_facts(), load_config(REFERENCE)) == []   # 2048 everywhere


def test_trl_rename_is_a_type_error_without_unsloth():
    cfg = parse_python("from trl import SFTConfig\nSFTConfig(max_seq_length=2048)\n")
    (f,) = config_seq_length(make_facts(packages={"trl": "1.16.0"}), cfg)
    assert f.id == "config.trl-max-seq-length-renamed" and f.severity == Severity.ERROR
    assert f.config_changes[0].setting == "source_keys.trainer_max_seq_length"
    assert f.config_changes[0].value == "max_length"
    assert config_seq_length(make_facts(packages={"trl": "0.15.2"}), cfg) == []   # still accepted there


def test_trl_rename_on_sfttrainer_says_move_it():
    cfg = parse_python("from trl import SFTTrainer, SFTConfig\nSFTTrainer(model=m, max_seq_length=512, args=SFTConfig(max_steps=1))\n")
    found = config_seq_length(make_facts(packages={"trl": "0.20.0"}), cfg)
    (f,) = [x for x in found if x.id == "config.trl-max-seq-length-renamed"]
    assert f.severity == Severity.ERROR and not f.config_changes and "SFTConfig(max_length" in f.remediation


def test_trl_rename_under_unsloth_is_information_only():
    found = config_seq_length(make_facts(packages={"trl": "1.15.0", "unsloth": "2026.10.9"}),
                              load_config(CORPUS / "unsloth_notebook_2025.py"))
    assert ids(found) == ["config.trl-max-seq-length-renamed"]
    assert found[0].severity == Severity.INFO and not found[0].config_changes


def test_trl_default_max_length():
    cfg = parse_python("from trl import SFTConfig, SFTTrainer\nSFTTrainer(args=SFTConfig(per_device_train_batch_size=1))\n")
    assert ids(config_seq_length(make_facts(), cfg)) == ["config.trl-default-max-length"]
    with_len = parse_python("from trl import SFTConfig\nSFTConfig(max_length=4096)\n")
    assert config_seq_length(make_facts(packages={"trl": "1.16.0"}), with_len) == []


def test_unresolved_settings_are_listed():
    (f,) = config_unresolved(make_facts(), load_config(CORPUS / "unusual_formatting.py"))
    assert f.id == "config.unresolved-settings" and f.severity == Severity.INFO
    assert "output_dir" in f.title and f.evidence["output_dir"].startswith('f"')
    assert config_unresolved(make_facts(), load_config(REFERENCE)) == []


def test_lora_dropout_under_unsloth():
    assert config_lora(make_facts(), load_config(REFERENCE)) == []
    cfg = TrainingConfig(framework="unsloth", lora_dropout=0.05)
    (f,) = config_lora(make_facts(), cfg)
    assert f.id == "config.unsloth-lora-dropout" and f.config_changes[0].value == 0
    assert config_lora(make_facts(), TrainingConfig(framework="transformers", lora_dropout=0.05)) == []


def test_eval_batch_default():
    cfg = load_config(CORPUS / "hf_peft_trl_qlora.py")   # eval_strategy="steps", eval batch unset, train batch 4
    (f,) = config_eval(make_facts(total_gib=80, packages={"trl": "1.16.0"}), cfg)
    assert f.id == "config.eval-batch-default" and f.severity == Severity.WARNING
    assert f.config_changes[0].setting == "per_device_eval_batch_size" and f.config_changes[0].value == 4
    assert "estimated eval peak" in f.evidence
    (small,) = config_eval(make_facts(total_gib=12, packages={"trl": "1.16.0"}), cfg)
    assert small.severity == Severity.ERROR   # 8 x 2048 tokens of fp32 logits do not fit 12 GiB
    from doctor.vram.estimator import estimate_for

    fit = estimate_for(make_facts(total_gib=12, packages={"trl": "1.16.0"}), cfg).max_batch_size
    assert small.config_changes[0].value == max(1, min(4, fit)) < 4   # agrees with vram-headroom
    assert config_eval(make_facts(), load_config(CORPUS / "llamafactory_lora.yaml")) == []   # eval batch set
    assert config_eval(make_facts(), load_config(CORPUS / "axolotl_qlora.yaml")) == []       # = micro batch


@pytest.mark.parametrize("bf16, dtype, fires", [(True, None, True), (AUTO_EMULATED, None, True),
                                                (AUTO_NATIVE, None, False), (None, "bfloat16", True),
                                                (False, None, False)])
def test_bf16_on_turing(bf16, dtype, fires):
    """Parsed precision settings reach the bf16 check (one check owns FM-07)."""
    cfg = TrainingConfig(bf16=bf16, fp16=NOT_AUTO_NATIVE if bf16 == AUTO_NATIVE else None, dtype=dtype)
    turing = make_facts(gpu="NVIDIA GeForce RTX 2080 Ti", total_gib=11, capability=(7, 5))
    found = [f for f in bf16_check(turing, cfg) if f.id == "bf16.unsupported-gpu"]
    assert bool(found) == fires
    if found and bf16 in (True, AUTO_EMULATED):
        changes = {c.setting: c.value for c in found[0].config_changes}
        assert changes["bf16"] is False and changes["fp16"] is True
    assert [f for f in bf16_check(make_facts(capability=(8, 9)), cfg) if f.id == "bf16.unsupported-gpu"] == []


def test_every_config_check_declares_what_it_emits():
    """Run every needs-config check over the corpus on a few machines: each id is declared."""
    specs = {s.id: s for s in all_checks() if s.id.startswith(("config-", "vram-"))}
    assert {"config-seq-length", "config-unresolved", "config-lora", "config-eval",
            "vram-headroom"} <= set(specs)
    machines = [make_facts(packages={"trl": "1.16.0"}), make_facts(gpu=None),
                make_facts(gpu="NVIDIA GeForce RTX 2080 Ti", total_gib=11, capability=(7, 5), wsl=True,
                           packages={"trl": "0.8.6", "unsloth": "2024.8"})]
    for path in [REFERENCE, *sorted(p for p in Path(CORPUS).glob("*") if p.is_file())]:
        if path.name.startswith(("malformed", "syntax_error")):
            continue
        cfg = load_config(path)
        for facts in machines:
            for f in run_checks(facts, cfg, specs=list(specs.values())):
                assert f.id in specs[f.check].finding_ids, (path.name, f.check, f.id)
                assert f.id != "doctor.check-crashed", (path.name, f.title)
