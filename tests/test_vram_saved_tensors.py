"""The transformers-path activation model (estimator.hf_activation_bytes_per_token) against what
autograd really keeps: a random-weight decoder layer of each family (built from its transformers
config class, no hub), LoRA on every projection through PEFT, one forward pass with
saved_tensors_hooks recording every tensor saved for backward inside one layer (deduplicated by
storage, parameters excluded). CPU, bf16 model, with and without autocast."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from doctor.config.model_shapes import ModelShape  # noqa: E402
from doctor.vram import estimator as E  # noqa: E402

SHAPE = dict(hidden=256, intermediate=688, layers=3, heads=4, kv_heads=2, head_dim=64, vocab=1000,
             tied_embeddings=True)
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PHI_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
T = 256


def saved_bytes_per_token(family: str, shape: dict, targets: list[str], autocast: bool) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(family, hidden_size=shape["hidden"], intermediate_size=shape["intermediate"],
                               num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                               num_key_value_heads=shape["kv_heads"], head_dim=shape["head_dim"],
                               vocab_size=shape["vocab"], tie_word_embeddings=True, max_position_embeddings=4096,
                               bos_token_id=3, eos_token_id=2, pad_token_id=1)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.config.use_cache = False
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=8, target_modules=targets))
    layer = model.base_model.model.model.layers[1]     # a middle layer: its input already needs grad
    seen: dict[int, int] = {}
    inside = [False]

    def pack(t):
        if inside[0]:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        return t

    pre = layer.register_forward_pre_hook(lambda *a: inside.__setitem__(0, True))
    post = layer.register_forward_hook(lambda *a: inside.__setitem__(0, False))
    ids = torch.randint(0, shape["vocab"], (1, T))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                model(input_ids=ids)
    finally:
        pre.remove()
        post.remove()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params) / T


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma3_text", "phi3"])
@pytest.mark.parametrize("autocast", [True, False])
def test_activation_model_matches_what_autograd_saves(family, autocast):
    shape = dict(SHAPE, kv_heads=4) if family == "phi3" else dict(SHAPE)   # Phi-3 mini: no GQA
    fused = family == "phi3"
    targets = PHI_TARGETS if fused else LLAMA_TARGETS
    measured = saved_bytes_per_token(family, shape, targets, autocast)
    model = E.hf_activation_bytes_per_token(
        ModelShape(**shape, model_type=family, fused_projections=fused),
        E.Inputs(batch_size=1, seq_len=T, autocast=autocast, lora_r=8, lora_targets=tuple(targets)))
    assert model == pytest.approx(measured, rel=0.04)


def test_the_pieces_that_differ_between_paths_are_real():
    """Each modelled difference moves the measurement the modelled way (so the terms are not
    fitted noise): no autocast keeps fp32 adapter-input copies; QK-norm adds fp32 q/k inputs."""
    base = saved_bytes_per_token("llama", SHAPE, LLAMA_TARGETS, True)
    no_ac = saved_bytes_per_token("llama", SHAPE, LLAMA_TARGETS, False)
    qk = saved_bytes_per_token("qwen3", SHAPE, LLAMA_TARGETS, True)
    h, q, kv = SHAPE["hidden"], SHAPE["heads"] * SHAPE["head_dim"], SHAPE["kv_heads"] * SHAPE["head_dim"]
    adapted = 5 * h + q + SHAPE["intermediate"]          # inputs of q, k, v, gate, up (h each), o, down
    assert no_ac - base == pytest.approx(2 * adapted, rel=0.15)   # fp32 (4) instead of bf16 (2) copies
    assert qk - base == pytest.approx(4 * (q + kv), rel=0.15)


def test_full_finetune_layer_keeps_each_linear_input():
    """Full fine-tuning (no PEFT): every Linear keeps its input; q/k/v and gate/up share theirs."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model("llama", hidden_size=256, intermediate_size=688, num_hidden_layers=3,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=1000,
                               tie_word_embeddings=True, max_position_embeddings=4096)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    layer = model.model.layers[1]
    seen: dict[int, int] = {}
    inside = [False]

    def pack(t):
        if inside[0]:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    layer.register_forward_pre_hook(lambda *a: inside.__setitem__(0, True))
    layer.register_forward_hook(lambda *a: inside.__setitem__(0, False))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=torch.randint(0, 1000, (1, T)))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    measured = sum(n for ptr, n in seen.items() if ptr not in params) / T
    modelled = E.hf_activation_bytes_per_token(ModelShape(**SHAPE, model_type="llama"),
                                               E.Inputs(batch_size=1, seq_len=T, full_finetune=True))
    assert modelled == pytest.approx(measured, rel=0.06)   # -4.6%: the norms' bf16 products, not modelled
