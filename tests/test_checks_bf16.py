"""bf16: Turing with bf16 asked for (True, dtype, the emulation-counting idiom) vs Unsloth's helper."""
from __future__ import annotations

from checks.bf16 import EMULATED, UNSUPPORTED, bf16
from checks_helpers import changes, linux_gpu, reference_config, snapshot
from doctor.config.model import (AUTO_EMULATED, AUTO_NATIVE, NOT_AUTO_EMULATED, NOT_AUTO_NATIVE,
                                  TrainingConfig)
from doctor.findings import Severity


def test_turing_with_bf16_true_is_an_error_with_fp16_patch():
    (f,) = bf16(snapshot("turing-bf16.json"), TrainingConfig(bf16=True))
    assert f.id == UNSUPPORTED and f.severity is Severity.ERROR and f.failure_mode == "FM-07"
    assert changes(f) == {"bf16": False, "fp16": True}
    assert "Tesla T4" in f.title and "7.5" in f.title


def test_fp16_already_on_is_not_recommended_again():
    (f,) = bf16(snapshot("turing-bf16.json"), TrainingConfig(bf16=True, fp16=True))
    assert changes(f) == {"bf16": False}
    (f,) = bf16(snapshot("turing-bf16.json"), TrainingConfig(bf16=True, fp16=NOT_AUTO_NATIVE))
    assert changes(f) == {"bf16": False}          # `not is_bfloat16_supported()` is True on Turing


def test_the_emulation_counting_idiom_is_caught():
    cfg = TrainingConfig(bf16=AUTO_EMULATED, fp16=NOT_AUTO_EMULATED)
    (f,) = bf16(snapshot("wsl2-2080ti-unsloth-2024.8.json"), cfg)
    assert f.id == UNSUPPORTED and "emulation" in f.why
    assert changes(f) == {"bf16": False, "fp16": True}


def test_dtype_bfloat16_gets_a_dtype_change_only():
    (f,) = bf16(snapshot("turing-bf16.json"), TrainingConfig(dtype="bfloat16", fp16=True))
    assert changes(f) == {"dtype": "float16"}
    (f,) = bf16(snapshot("turing-bf16.json"), TrainingConfig(framework="unsloth", dtype="bfloat16", fp16=True))
    assert changes(f) == {"dtype": None}          # Unsloth's auto choice is fp16 on Turing


def test_unsloth_helper_is_fine_and_only_the_torch_lie_is_noted():
    (f,) = bf16(snapshot("turing-bf16.json"), TrainingConfig(bf16=AUTO_NATIVE, fp16=NOT_AUTO_NATIVE))
    assert f.id == EMULATED and f.severity is Severity.INFO and not f.config_changes
    (f,) = bf16(snapshot("wsl2-2080ti-unsloth-2024.8.json"), reference_config())
    assert f.id == EMULATED and f.severity is Severity.INFO


def test_without_a_config_the_lie_is_a_warning():
    (f,) = bf16(snapshot("turing-bf16.json"), None)
    assert f.id == EMULATED and f.severity is Severity.WARNING
    assert "including_emulation=False" in f.remediation


def test_ampere_and_newer_say_nothing_even_with_bf16_true():
    assert bf16(snapshot("h100-healthy.json"), TrainingConfig(bf16=True, dtype="bfloat16")) == []
    assert bf16(linux_gpu(cap=(8, 0)), TrainingConfig(bf16=AUTO_EMULATED)) == []


def test_a_turing_torch_that_admits_no_bf16_needs_no_warning():
    t4 = snapshot("turing-bf16.json")
    t4.torch.bf16_supported = False
    assert bf16(t4, None) == []
    assert bf16(t4, TrainingConfig(bf16=True))[0].id == UNSUPPORTED    # the config still asks for it
