"""The vram-headroom check: verdicts, the config changes it proposes, host RAM for offload."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from checks import get_check
from checks.vram_headroom import vram_headroom
from doctor.config.loader import load_config
from doctor.config.model import TrainingConfig
from doctor.config.flags import ConfigOverrides
from doctor.findings import Severity
from doctor.facts_source import load_facts
from doctor.vram.estimator import HIGH, estimate
from doctor.vram.gpus import apply_gpu_whatif
from tests.vram_helpers import EXAMPLES, GIB, REFERENCE, make_facts

UNSLOTH_NEW = {"unsloth": "2025.3.1", "trl": "0.15.2", "transformers": "4.50.0"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")


def reference(**flags):
    return load_config(REFERENCE, ConfigOverrides(**flags) if flags else None)


def ids(findings):
    return [f.id for f in findings]


def test_reference_case_fits_a_24gb_card():
    (f,) = vram_headroom(make_facts(packages=UNSLOTH_NEW), reference())
    assert f.id == "vram.fits" and f.severity == Severity.INFO and not f.config_changes


def test_does_not_fit_proposes_the_largest_batch_and_keeps_the_effective_batch():
    cfg = reference(batch_size=16)
    facts = make_facts(total_gib=11, capability=(7, 5), packages=UNSLOTH_NEW)
    (f,) = vram_headroom(facts, cfg)
    assert f.id == "vram.does-not-fit" and f.severity == Severity.ERROR
    changes = {c.setting: c.value for c in f.config_changes}
    b = changes["per_device_train_batch_size"]
    assert 1 <= b < 16 and changes["gradient_accumulation_steps"] * b >= 16 * 4
    # the proposal really fits at the high edge, and one more does not
    from doctor.vram.estimator import estimate_for

    est = estimate_for(facts, cfg)
    assert estimate(est.shape, replace(est.inputs_high, batch_size=b), HIGH).total <= est.gpu_free
    assert estimate(est.shape, replace(est.inputs_high, batch_size=b + 1), HIGH).total > est.gpu_free


def test_when_batch_one_is_too_long_it_shortens_the_sequence_at_every_site():
    cfg = reference(batch_size=2, seq_len=65536)
    (f,) = vram_headroom(make_facts(total_gib=11, packages=UNSLOTH_NEW), cfg)
    changes = {c.setting: c.value for c in f.config_changes}
    assert changes["per_device_train_batch_size"] == 1 and changes["gradient_accumulation_steps"] == 8
    assert changes["max_seq_length"] == changes["trainer_max_seq_length"]
    assert changes["max_seq_length"] % 256 == 0 and 256 <= changes["max_seq_length"] < 65536


def test_gradient_checkpointing_first_when_it_is_off():
    cfg = reference(gc="false", batch_size=2)
    (f,) = vram_headroom(make_facts(total_gib=16, packages=UNSLOTH_NEW), cfg)
    assert f.id in ("vram.does-not-fit", "vram.tight")
    assert [c.setting for c in f.config_changes][0] == "use_gradient_checkpointing"
    assert f.config_changes[0].value == "unsloth"
    # under WSL the proposal is standard checkpointing (pinned memory is capped there, FM-02)
    (w,) = [x for x in vram_headroom(make_facts(total_gib=16, wsl=True, packages=UNSLOTH_NEW), cfg)
            if x.id.startswith("vram.") and x.config_changes]
    assert w.config_changes[0].value is True and w.failure_mode == "FM-01"


def test_model_too_big_for_any_setting():
    cfg = load_config(None, ConfigOverrides(model="meta-llama/Llama-3.3-70B-Instruct", batch_size=1, seq_len=512))
    (f,) = vram_headroom(make_facts(total_gib=8), cfg)
    assert f.id == "vram.does-not-fit" and "even batch 1" in f.remediation
    assert not any(c.setting == "per_device_train_batch_size" for c in f.config_changes)


def test_transformers_logits_dominated_mentions_liger():
    cfg = load_config(Path(__file__).parent / "corpus" / "hf_peft_trl_qlora.py")
    (f,) = vram_headroom(make_facts(total_gib=16, packages={"trl": "1.16.0"}), cfg)
    assert f.id == "vram.does-not-fit" and "use_liger_kernel" in f.remediation


def test_tight_is_a_warning():
    cfg = reference()
    from doctor.vram.estimator import estimate_for

    est = estimate_for(make_facts(packages=UNSLOTH_NEW), cfg)
    between = (est.low.total + est.high.total) / 2 / GIB
    (f,) = vram_headroom(make_facts(total_gib=between, packages=UNSLOTH_NEW), cfg)
    assert f.id == "vram.tight" and f.severity == Severity.WARNING
    assert f.config_changes and f.config_changes[0].setting == "per_device_train_batch_size"


def test_unknown_shape_and_no_gpu():
    cfg = TrainingConfig(model_name="acme/brand-new", model_shape_tried=["local hub cache", "bundled table"])
    (f,) = vram_headroom(make_facts(), cfg)
    assert f.id == "vram.model-shape-unknown" and "bundled table" in f.evidence["looked in"]
    (g,) = vram_headroom(make_facts(gpu=None), reference())
    assert g.id == "vram.no-gpu" and "--gpu" in g.remediation


def test_host_ram_for_offloaded_checkpoints():
    cfg = reference(batch_size=8, seq_len=8192)   # 32 x 4096 x 2 B x 65536 tokens = 16 GiB offloaded
    found = vram_headroom(make_facts(total_gib=80, ram_available_gib=12, packages=UNSLOTH_NEW), cfg)
    host = [f for f in found if f.id == "vram.host-ram-offload"]
    assert host and host[0].failure_mode == "FM-18"
    assert host[0].config_changes[0].setting == "use_gradient_checkpointing"
    assert not [f for f in vram_headroom(make_facts(total_gib=80, ram_available_gib=64, packages=UNSLOTH_NEW), cfg)
                if f.id == "vram.host-ram-offload"]


def test_reference_snapshot_2080ti_wsl():
    facts = load_facts(EXAMPLES / "facts" / "wsl2-2080ti-unsloth-2024.8.json")
    found = vram_headroom(facts, reference())
    assert found[0].id in ("vram.fits", "vram.tight")   # batch 2 x 2048 was never the problem
    assert found[0].evidence["loss"] == "unsloth-logits"   # unsloth 2024.8 kept full bf16 logits
    what_if = vram_headroom(apply_gpu_whatif(facts, "RTX 2060"), reference())
    assert what_if[0].id == "vram.does-not-fit"


def test_registered_with_every_id_it_emits():
    spec = get_check("vram-headroom")
    assert spec.needs_config and set(spec.finding_ids) >= {"vram.fits", "vram.tight", "vram.does-not-fit",
                                                            "vram.no-gpu", "vram.model-shape-unknown",
                                                            "vram.host-ram-offload"}


def test_tight_transformers_run_is_offered_expandable_segments_unless_wsl_unsloth_or_chosen():
    """The allocator's expandable segments (set 12: 1-14% less memory to train) as a remedy for a tight
    transformers run; not on WSL (GPU-PV refuses it), not for Unsloth (it sets the allocator), and
    not where the user already chose either way."""
    from doctor.vram.estimator import estimate_for

    cfg = load_config(Path(__file__).parent / "corpus" / "hf_peft_trl_qlora.py")
    pkgs = {"trl": "1.16.0"}
    est = estimate_for(make_facts(packages=pkgs), cfg)
    between = (est.low.total + est.high.total) / 2 / GIB

    def tight(facts):
        (f,) = vram_headroom(facts, cfg)
        assert f.id == "vram.tight"
        return f.remediation
    assert "expandable_segments:True" in tight(make_facts(total_gib=between, packages=pkgs))
    assert "expandable_segments" not in tight(make_facts(total_gib=between, packages=pkgs, wsl=True))
    for value in ("expandable_segments:True", "expandable_segments:False"):
        chosen = make_facts(total_gib=between, packages=pkgs)
        chosen.env["PYTORCH_CUDA_ALLOC_CONF"] = value
        assert "expandable_segments" not in tight(chosen)
    ref = reference()
    est = estimate_for(make_facts(packages=UNSLOTH_NEW), ref)
    (f,) = vram_headroom(make_facts(total_gib=(est.low.total + est.high.total) / 2 / GIB, packages=UNSLOTH_NEW), ref)
    assert f.id == "vram.tight" and "expandable_segments" not in f.remediation
