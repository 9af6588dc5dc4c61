"""Model shapes: local dir, HF cache, bundled table, hub (disabled in tests), unsloth name mapping."""
from __future__ import annotations

import json

import pytest

from doctor.config import model_shapes
from doctor.config.model_shapes import normalize_name, resolve_shape, shape_from_config, table_lookup

REAL_FETCH = model_shapes.fetch_hub_config   # before the autouse fixture replaces it
LLAMA_8B_CONFIG = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                   "tie_word_embeddings": False}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    """Any hub access fails the test; the cache is an empty temp dir unless a test fills it."""
    def boom(*a, **k):
        raise AssertionError("the hub must not be contacted in tests")
    monkeypatch.setattr(model_shapes, "fetch_hub_config", boom)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "TRANSFORMERS_CACHE", "DOCTOR_OFFLINE",
                "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.mark.parametrize("name, norm", [
    ("unsloth/Meta-Llama-3.1-8B-bnb-4bit", "llama-3.1-8b"),
    ("unsloth/Meta-Llama-3.1-8B-Instruct-unsloth-bnb-4bit", "llama-3.1-8b"),
    ("meta-llama/Llama-3.2-1B-Instruct", "llama-3.2-1b"),
    ("unsloth/gemma-3-4b-it", "gemma-3-4b"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b-v0.3"),
    ("/data/models/Qwen2.5-7B-Instruct/", "qwen2.5-7b"),
])
def test_normalize_name(name, norm):
    assert normalize_name(name) == norm


@pytest.mark.parametrize("name, hid, layers, vocab, tied", [
    ("unsloth/Meta-Llama-3.1-8B-bnb-4bit", 4096, 32, 128256, False),
    ("unsloth/Llama-3.2-1B-Instruct", 2048, 16, 128256, True),
    ("Qwen/Qwen2.5-0.5B-Instruct", 896, 24, 151936, True),
    ("unsloth/Qwen3-8B-unsloth-bnb-4bit", 4096, 36, 151936, False),
    ("unsloth/mistral-7b-v0.3-bnb-4bit", 4096, 32, 32768, False),
    ("google/gemma-2-9b-it", 3584, 42, 256000, True),
    ("unsloth/phi-4-unsloth-bnb-4bit", 5120, 40, 100352, False),
    ("Qwen/Qwen3-4B-Instruct-2507", 2560, 36, 151936, True),
])
def test_table_lookup_maps_variants_to_bases(name, hid, layers, vocab, tied):
    shape = table_lookup(name)
    assert (shape.hidden, shape.layers, shape.vocab, shape.tied_embeddings) == (hid, layers, vocab, tied)
    assert shape.source.startswith("table:")


def test_parameter_counts_match_the_published_totals():
    # vram-and-hang.md 1.1: params (total) and the quantizable linear split
    s8 = table_lookup("llama-3.1-8b")
    assert s8.total_params == 8_030_261_248 and s8.linear_params == 6_979_321_856
    assert table_lookup("llama-3.2-3b").total_params == 3_212_749_824
    assert table_lookup("llama-3.2-1b").total_params == 1_235_814_400
    assert table_lookup("llama-3.3-70b").total_params == 70_553_706_496


def test_every_table_row_has_a_source_and_consistent_dims():
    from doctor.knowledge import load

    rows = load("model_shapes")["models"]
    assert len(rows) >= 25
    for row in rows:
        assert row["source"] and row["aliases"]
        assert row["heads"] % row["kv_heads"] == 0


def test_unknown_name_without_network_is_none():
    model_shapes.set_network(False)
    try:
        lookup = resolve_shape("someone/totally-new-model-13b")
    finally:
        model_shapes.set_network(True)
    assert lookup.shape is None and "bundled table" in lookup.tried


def test_hf_cache_config_wins_over_the_table(monkeypatch, tmp_path):
    cache = tmp_path / "hub"
    snap = cache / "models--unsloth--Meta-Llama-3.1-8B-bnb-4bit" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    cfg = dict(LLAMA_8B_CONFIG, quantization_config={"load_in_4bit": True, "bnb_4bit_use_double_quant": True})
    (snap / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    lookup = resolve_shape("unsloth/Meta-Llama-3.1-8B-bnb-4bit")
    assert lookup.shape.source.startswith("hf-cache:")
    assert lookup.shape.prequantized == "4bit" and lookup.shape.double_quant is True


def test_hf_home_cache(monkeypatch, tmp_path):
    snap = tmp_path / "hfhome" / "hub" / "models--acme--tiny" / "snapshots" / "1"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(dict(LLAMA_8B_CONFIG, hidden_size=512, num_attention_heads=8,
                                                       num_key_value_heads=8, head_dim=64)))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    shape = resolve_shape("acme/tiny").shape
    assert shape.hidden == 512 and shape.head_dim == 64


def test_local_dir_and_lora_adapter_dir(tmp_path):
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(LLAMA_8B_CONFIG))
    assert resolve_shape(str(model_dir)).shape.source.startswith("local:")
    adapter = tmp_path / "checkpoint-100"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "unsloth/Llama-3.2-1B"}))
    assert resolve_shape(str(adapter)).shape.hidden == 2048


def test_multimodal_text_config_and_moe():
    gemma3 = {"model_type": "gemma3", "text_config": {"hidden_size": 2560, "intermediate_size": 10240,
                                                        "num_hidden_layers": 34, "num_attention_heads": 8,
                                                        "num_key_value_heads": 4, "head_dim": 256,
                                                        "vocab_size": 262208, "model_type": "gemma3_text"}}
    shape = shape_from_config(gemma3)
    assert shape.hidden == 2560 and shape.tied_embeddings is True and shape.q_dim == 2048
    with pytest.raises(model_shapes.UnsupportedShape):   # experts but no top-k: not guessed
        shape_from_config(dict(LLAMA_8B_CONFIG, num_local_experts=8))
    moe = shape_from_config(dict(LLAMA_8B_CONFIG, num_local_experts=8, num_experts_per_tok=2))
    assert moe.is_moe and moe.intermediate == 2 * 14336 and moe.moe_intermediate == 14336


def test_hub_is_asked_only_when_allowed(monkeypatch):
    calls = []
    monkeypatch.setattr(model_shapes, "fetch_hub_config", lambda repo, timeout=6.0: calls.append(repo) or LLAMA_8B_CONFIG)
    shape = resolve_shape("acme/new-llama").shape
    assert calls == ["acme/new-llama"] and shape.source == "hub:acme/new-llama"
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")
    assert resolve_shape("acme/other").shape is None and calls == ["acme/new-llama"]


def test_fetch_runs_in_a_child_with_a_timeout(monkeypatch):
    """An unreachable endpoint gives None within the timeout, never a hang or an exception."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")   # discard port: connection refused
    assert REAL_FETCH("acme/x", timeout=3.0) is None


def test_every_family_row_names_its_source():
    from doctor.knowledge import load
    families = {k: v for k, v in load("model_shapes")["families"].items() if not k.startswith("_")}
    assert families
    assert [k for k, v in families.items() if "https://" not in v.get("source", "")] == []


def test_only_phi3_and_phi4_fuse_their_projections():
    # PhiMoE's attention is transformers' LlamaAttention (separate q/k/v), so it is not fused
    base = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "vocab_size": 100}
    assert shape_from_config({**base, "model_type": "phi3"}).fused_projections
    assert not shape_from_config({**base, "model_type": "phimoe", "num_local_experts": 4,
                                  "num_experts_per_tok": 2}).fused_projections
