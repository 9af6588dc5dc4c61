"""wsl: pinned memory, expandable_segments, /mnt/c, memory cap, WSL1, telemetry."""
from __future__ import annotations

from checks.wsl import (EXPANDABLE, MEMCAP, MOUNT, PINNED, TELEMETRY, WSL1, forced_by_unsloth,
                        pinned_buffer_bytes, wsl)
from checks_helpers import GIB, as_wsl2, changes, ids, linux_gpu, one, reference_config, set_packages, snapshot
from doctor.config.model import TrainingConfig
from doctor.findings import Severity

REF = "wsl2-2080ti-unsloth-2024.8.json"


def test_reference_case_pinned_memory_with_unsloth_checkpointing():
    f = one(wsl(snapshot(REF), reference_config()), PINNED)
    assert f.severity is Severity.ERROR and f.failure_mode == "FM-02"
    assert changes(f) == {"use_gradient_checkpointing": True, "dataloader_pin_memory": False}
    assert f.evidence["estimated pinned buffer"] == "1.0 GiB"       # 32 x 2 x 2048 x 4096 x 2 B + 50 MB
    assert "#1744" in f.why


def test_pinned_buffer_formula():
    cfg = reference_config(per_device_train_batch_size=8)
    assert pinned_buffer_bytes(cfg) == 32 * 8 * 2048 * 4096 * 2 + 50 * 2**20


def test_pinned_memory_only_proposes_what_the_config_lacks():
    f = one(wsl(snapshot(REF), reference_config(dataloader_pin_memory=False)), PINNED)
    assert changes(f) == {"use_gradient_checkpointing": True}
    assert PINNED not in ids(wsl(snapshot(REF), reference_config(use_gradient_checkpointing=True)))
    assert PINNED not in ids(wsl(snapshot(REF), None))
    assert wsl(linux_gpu(), reference_config()) == []               # native Linux: no WSL hazards
    windows = linux_gpu(driver="560.94")
    windows.platform.system, windows.platform.is_windows_native = "Windows", True
    assert wsl(windows, reference_config()) == []                   # native Windows: checks/windows.py


def test_pinned_memory_with_an_unknown_model_says_so():
    f = one(wsl(snapshot(REF), reference_config(model_name="my-org/custom-model-xyz")), PINNED)
    assert f.evidence["estimated pinned buffer"].startswith("unknown")
    assert "shape is unknown" in f.why


def test_expandable_segments_forced_by_unsloth_2024_8():
    assert forced_by_unsloth(snapshot(REF)) == "unsloth 2024.8"
    f = one(wsl(snapshot(REF), None), EXPANDABLE)
    assert f.severity is Severity.WARNING and f.failure_mode == "FM-03"
    assert f.commands[0] == "export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False"
    assert any("unsloth_zoo" in c for c in f.commands)
    # 2024.8 assigns the variable, so exporting False does not clear the finding.
    facts = snapshot(REF)
    facts.env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:False"
    f = one(wsl(facts, None), EXPANDABLE)
    assert "does not win" in f.remediation


def test_expandable_segments_user_set_and_new_torch_name():
    facts = as_wsl2(linux_gpu(torch="2.10.0+cu128"))
    assert EXPANDABLE not in ids(wsl(facts, None))
    facts.env["PYTORCH_ALLOC_CONF"] = "max_split_size_mb:128,expandable_segments:True"
    f = one(wsl(facts, None), EXPANDABLE)
    assert f.commands == ["export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False",
                          "export PYTORCH_ALLOC_CONF=expandable_segments:False"]
    assert "you set it (PYTORCH_ALLOC_CONF)" in f.why


def test_new_unsloth_respects_an_export_and_stops_forcing_on_wsl():
    old_zoo = set_packages(as_wsl2(linux_gpu()), unsloth="2025.6.1", unsloth_zoo="2025.6.1")
    assert forced_by_unsloth(old_zoo) == "unsloth-zoo 2025.6.1"
    old_zoo.env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:False"
    assert EXPANDABLE not in ids(wsl(old_zoo, None))
    new = set_packages(as_wsl2(linux_gpu()), unsloth="2026.10.9", unsloth_zoo="2026.10.9")
    assert forced_by_unsloth(new) is None and EXPANDABLE not in ids(wsl(new, None))


def test_windows_mounts_cwd_cache_and_output_dir():
    facts = as_wsl2(linux_gpu())
    assert MOUNT not in ids(wsl(facts, None))
    facts.platform.cwd = "/mnt/c/Users/me/proj"
    f = one(wsl(facts, None), MOUNT)
    assert f.failure_mode == "FM-19" and f.commands[0].startswith('cp -r "$PWD" ~/')
    facts.platform.cwd = "/home/me/proj"
    facts.env["HF_HOME"] = "/mnt/d/hf"
    assert one(wsl(facts, None), MOUNT).commands == ["export HF_HOME=~/.cache/huggingface"]
    del facts.env["HF_HOME"]
    f = one(wsl(facts, TrainingConfig(output_dir="/mnt/e/runs")), MOUNT)
    assert f.evidence["config.output_dir"] == "/mnt/e/runs"


def test_memory_cap_against_the_models_checkpoint():
    facts = snapshot(REF)                              # 15.3 GiB VM
    full = reference_config(model_name="meta-llama/Llama-3.1-8B")
    f = one(wsl(facts, full), MEMCAP)
    assert f.severity is Severity.WARNING and "memory=30GB" in f.remediation and "-bnb-4bit" in f.remediation
    assert MEMCAP not in ids(wsl(facts, reference_config()))     # the pre-quantised 8B fits
    assert one(wsl(facts, None), MEMCAP).severity is Severity.INFO   # unknown model, < 16 GiB
    facts.platform.ram_total = 32 * GIB
    assert MEMCAP not in ids(wsl(facts, None))


def test_wsl1_is_critical_and_alone():
    facts = as_wsl2(linux_gpu())
    facts.platform.wsl_version = 1
    findings = wsl(facts, reference_config())
    assert ids(findings) == [WSL1] and findings[0].severity is Severity.CRITICAL


def test_telemetry_note_on_wsl2():
    f = one(wsl(as_wsl2(linux_gpu()), None), TELEMETRY)
    assert f.severity is Severity.INFO and "not proof of a hang" in f.why
