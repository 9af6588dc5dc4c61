"""The patched config is a fixed point: `doctor run` on its own patched file proposes nothing further,
and the sequence suggestions stay inside the model's context window."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from doctor.cli import app
from doctor.config.model_shapes import table_lookup
from doctor.vram import estimator as E
from doctor.vram.advice import fitting_changes
from tests.vram_helpers import EXAMPLES, GIB, make_facts

WSL = EXAMPLES / "facts" / "wsl2-2080ti-unsloth-2024.8.json"


def _run(path: Path, out: Path, *extra: str) -> dict:
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--mkdir", "--json", *extra])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def _changes(data: dict) -> dict:
    return {c["setting"]: c["new"] for c in (data["sections"].get("patch") or {}).get("changes", [])}


@pytest.mark.parametrize("example, extra", [
    # the WSL fix (offloaded -> standard checkpointing) makes the reference config tight: before, the
    # batch change only appeared when the doctor was run again on its own output
    ("train_unsloth_llama31_8b.py", ("--facts", str(WSL))),
    # a transformers SFTConfig JSON on a card it does not fit (what-if 24 GB)
    ("sft_config_llama31_8b.json", ("--facts", str(WSL), "--gpu", "RTX 4090")),
])
def test_second_run_on_the_patched_config_proposes_nothing(tmp_path, monkeypatch, example, extra):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")
    first = _run(EXAMPLES / example, tmp_path / "one", *extra)
    changes = _changes(first)
    assert changes, "the example must need changes for this test to mean anything"
    patched = Path(first["sections"]["patch"]["path"])
    assert first["sections"]["patch"]["vram_after"].split(": ")[-1] == "fits"
    second = _run(patched, tmp_path / "two", *extra)
    assert _changes(second) == {}
    assert second["sections"]["vram"]["verdict"] == "fits"
    assert not list((tmp_path / "two").glob("*.patched.*"))


def test_reference_example_gets_the_batch_change_in_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")
    data = _run(EXAMPLES / "train_unsloth_llama31_8b.py", tmp_path, "--facts", str(WSL))
    changes = _changes(data)
    assert changes["use_gradient_checkpointing"] is True
    assert changes["per_device_train_batch_size"] < 2
    # the effective batch is kept: 2 x 4 before
    assert changes["per_device_train_batch_size"] * changes["gradient_accumulation_steps"] >= 8
    mem = [f for f in data["findings"] if f["id"].startswith("vram.") and f["config_changes"]]
    assert mem and "With the other findings' fixes applied" in mem[0]["why"]


def test_longest_sequence_stays_inside_the_context_window():
    gemma = table_lookup("google/gemma-2-2b")      # 8192 positions
    assert gemma.max_position == 8192
    inp = E.Inputs(batch_size=1, seq_len=2048, quant="4bit", double_quant=True, upcast=True, gc="hf",
                   attn="eager", optim="adamw_8bit")
    _b, seq = E.fit_search(gemma, inp, 139 * GIB)    # memory alone would allow far more
    assert seq == 8192
    unknown = replace(gemma, max_position=None)
    assert E.fit_search(unknown, inp, 139 * GIB)[1] > 8192


def test_sequence_advice_never_exceeds_the_window():
    llama = replace(table_lookup("llama-3.2-1b"), max_position=4096)
    from doctor.config.model import TrainingConfig

    cfg = TrainingConfig(framework="transformers", model_name="x", model_shape=llama, load_in_4bit=False,
                         lora_r=16, target_modules=list(E.ALL_PROJECTIONS), use_gradient_checkpointing=True,
                         per_device_train_batch_size=1, max_seq_length=16384, dtype="bfloat16", bf16=True,
                         args_class="TrainingArguments")
    facts = make_facts(total_gib=8.0)
    est = E.estimate_for(facts, cfg)
    assert est.verdict != E.FITS
    advice = fitting_changes(est, cfg)
    seqs = [c.value for c in advice.changes if c.setting in ("max_seq_length", "trainer_max_seq_length")]
    assert seqs and all(s <= 4096 for s in seqs)
    assert any("context window" in a for a in est.assumptions)


def test_max_position_is_read_from_config_json():
    from doctor.config.model_shapes import shape_from_config

    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "vocab_size": 100, "max_position_embeddings": 2048}
    assert shape_from_config(cfg).max_position == 2048
    assert shape_from_config({**cfg, "max_position_embeddings": None}).max_position is None
