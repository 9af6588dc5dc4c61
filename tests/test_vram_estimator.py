"""The estimator against the hand-computed numbers of shared/knowledge/vram-and-hang.md §1.2-1.6."""
from __future__ import annotations

from dataclasses import replace

import pytest

from doctor.config.model import TrainingConfig
from doctor.config.model_shapes import table_lookup
from doctor.vram import estimator as E
from doctor.vram.inputs import inputs_for
from tests.vram_helpers import GIB, make_facts

GB = 1e9
L8 = table_lookup("llama-3.1-8b")
# the constants the worked examples of the spec use (MID is calibrated on GPU measurements since)
DOC = replace(E.MID, context=0.5e9, k_layer=1.25, k_layer_unsloth=1.25, margin=0.10, upcast_act_factor=1.0)

UNSLOTH_A = E.Inputs(batch_size=2, seq_len=2048, framework="unsloth", quant="4bit", double_quant=True,
                     lora_r=16, optim="adamw_8bit", gc="unsloth", loss="fused")
HF_B = E.Inputs(batch_size=2, seq_len=2048, framework="transformers", quant="4bit", double_quant=True,
                upcast=True, lora_r=16, optim="adamw_8bit", gc="hf", loss="hf")


@pytest.mark.parametrize("model, r, expected", [
    ("llama-3.1-8b", 16, 41_943_040), ("llama-3.1-8b", 64, 167_772_160),
    ("llama-3.2-3b", 16, 24_313_856), ("llama-3.2-1b", 8, 5_636_096), ("llama-3.3-70b", 16, 207_093_760),
])
def test_lora_parameter_counts(model, r, expected):   # §1.2 table
    assert E.lora_params(table_lookup(model), r, E.ALL_PROJECTIONS) == expected


def test_activation_bytes_per_token():   # §1.3 C6: 2(7h + 2kv + 4i)
    assert E.activation_bytes_per_token(L8) == 176_128
    assert E.activation_bytes_per_token(table_lookup("llama-3.2-3b")) == 112_640
    assert E.activation_bytes_per_token(table_lookup("llama-3.2-1b")) == 96_256
    assert E.dropout_bytes_per_token(L8, E.ALL_PROJECTIONS) == 116_736


def test_worked_example_a_unsloth():   # §1.6 (A)
    bd = E.estimate(L8, UNSLOTH_A, DOC)
    assert bd.part("weights") == pytest.approx(3.600e9 + 2.101e9, rel=2e-3)
    assert bd.part("dequant") == pytest.approx(0.235e9, rel=2e-3)
    assert bd.part("lora") + bd.part("grads") + bd.part("optimizer") == pytest.approx(0.421e9, rel=3e-3)
    assert bd.static == pytest.approx(6.86e9, rel=2e-3)
    assert bd.part("activations") == pytest.approx(4096 * 220_160)          # 1.25 x 176,128 per token
    assert bd.total == pytest.approx(7.85e9, rel=3e-3)                        # "≈ 7.9 GB (7.3 GiB)"
    assert bd.host_offload == pytest.approx(1.07e9, rel=5e-3)                 # "+1.07 GB" host RAM
    big = E.estimate(L8, replace(UNSLOTH_A, batch_size=8), DOC)
    assert big.total == pytest.approx(10.8e9, rel=5e-3) and big.host_offload == pytest.approx(4.3e9, rel=5e-3)


def test_hf_activations_by_tensor_llama_8b():
    """hf_activation_bytes_per_token by hand for Llama 3.1 8B, r=16 on all seven projections:
    two fp32 norm inputs 2 x 4h; an input copy per adapted module (q, k, v, gate, up: h; o: q_dim;
    down: i); SDPA's q, k, v, out; the MLP's gate, activation output and up; the rank-r outputs,
    RoPE cos/sin and the logsumexp (tests/test_vram_saved_tensors.py checks the same against autograd)."""
    h, i, q, kv, r = 4096, 14336, 4096, 1024, 16
    norms = 2 * 4 * h
    adapted = 5 * h + q + i
    small = lambda c, sd: 2 * c * r * 7 + 2 * sd * 128 + 4 * 32   # noqa: E731
    # QLoRA (fp32 residual stream after the kbit upcast), autocast: bf16 copies and SDPA, fp32 MLP
    assert E.hf_activation_bytes_per_token(L8, HF_B) == norms + 2 * adapted + 2 * (2 * q + 2 * kv) + 4 * 3 * i \
        + small(2, 2) == 304_192
    # bf16 LoRA, autocast: the MLP in bf16
    bf16 = replace(HF_B, quant="none", upcast=False)
    assert E.hf_activation_bytes_per_token(L8, bf16) == 304_192 - 2 * 3 * i == 218_176
    # QLoRA without autocast: fp32 copies, fp32 SDPA inputs
    fp32 = replace(HF_B, autocast=False)
    assert E.hf_activation_bytes_per_token(L8, fp32) == norms + 4 * adapted + 4 * (2 * q + 2 * kv) + 4 * 3 * i \
        + small(4, 4)


def test_sdpa_backend_follows_dtype_and_gqa():
    assert E.sdpa_backend(L8, HF_B) == "flash"                                   # autocast: bf16
    assert E.sdpa_backend(L8, replace(HF_B, autocast=False)) == "math"          # fp32 + GQA
    phi = table_lookup("phi-3.5-mini")                                           # no GQA: mem-efficient
    assert E.sdpa_backend(phi, replace(HF_B, autocast=False)) == "efficient"
    assert E.sdpa_backend(L8, replace(HF_B, autocast=False, upcast=False, quant="none")) == "flash"
    assert E.sdpa_backend(L8, replace(HF_B, attn="eager")) == "eager"


def test_math_path_keeps_the_scores():
    k = replace(DOC, math_backward=2.0)
    slow = E.estimate(L8, replace(HF_B, autocast=False, batch_size=1, seq_len=8192), k)
    fast = E.estimate(L8, replace(HF_B, batch_size=1, seq_len=8192), k)
    scores = 32 * 8192 ** 2                                   # b x heads x s^2
    per_tok = E.hf_activation_bytes_per_token(L8, replace(HF_B, autocast=False))
    layer = 8192 * (per_tok + 4 * (4096 - 2 * 1024)) + 4 * scores
    assert slow.part("activations") == pytest.approx(DOC.k_layer * layer + 2 * 4 * scores)
    assert slow.total - fast.total > 2 * 4 * scores   # > 17 GB more at 8k tokens: the issue's -50%


def test_worked_example_c_liger():   # §1.6 (C): a chunked loss leaves the layer recompute at the peak
    bd = E.estimate(L8, replace(HF_B, loss="liger"), DOC)
    per_tok = E.hf_activation_bytes_per_token(L8, HF_B)
    assert bd.part("checkpoints") == 32 * 4096 * 4 * 4096     # fp32 residual stream after the upcast
    assert bd.part("activations") == pytest.approx(DOC.k_layer * 4096 * per_tok)
    assert next(c.bytes for c in bd.components if c.key == "logits") == 6 * 4096 * 4096


def test_component_switches_move_the_right_component():
    base = E.estimate(L8, UNSLOTH_A, DOC)
    drop = E.estimate(L8, replace(UNSLOTH_A, lora_dropout=0.05), DOC)
    assert drop.part("activations") - base.part("activations") == pytest.approx(1.25 * 4096 * 116_736)
    eager = E.estimate(L8, replace(UNSLOTH_A, attn="eager"), DOC)
    # saved fp32 softmax output + bf16 probabilities (x k_layer) + an fp32 softmax transient,
    # per sequence: 2 x 32 heads x 2048^2
    assert eager.part("activations") - base.part("activations") == pytest.approx(
        1.25 * 2 * 32 * 2048 ** 2 * (4 + 2) + 2 * 32 * 2048 ** 2 * 4)
    off = E.estimate(L8, replace(UNSLOTH_A, gc="off"), DOC)
    assert off.part("activations") == pytest.approx(32 * 176_128 * 4096)     # "5.64 MB/token"
    assert off.host_offload == 0
    nodq = E.estimate(L8, replace(UNSLOTH_A, double_quant=False), DOC)
    assert nodq.part("weights") - 2.101e9 == pytest.approx(3.926e9, rel=2e-3)
    adamw = E.estimate(L8, replace(UNSLOTH_A, optim="adamw_torch"), DOC)
    assert adamw.part("optimizer") == pytest.approx(0.336e9, rel=2e-3)         # §1.3 C5
    old = E.estimate(L8, replace(UNSLOTH_A, loss="unsloth-logits"), DOC)
    assert old.part("logits") == pytest.approx(DOC.c_logits_unsloth_old * 128_256 * 4096)


def test_full_finetune_and_modules_to_save():
    s1b = table_lookup("llama-3.2-1b")
    full = E.estimate(s1b, E.Inputs(batch_size=1, seq_len=512, full_finetune=True, optim="adamw_torch"), DOC)
    n = s1b.total_params
    assert full.part("grads") == 2 * n and full.part("optimizer") == 4 * n and full.part("lora") == 0
    lora = E.Inputs(batch_size=1, seq_len=512, lora_r=16, optim="adamw_8bit")
    saved = E.estimate(s1b, replace(lora, modules_to_save=("embed_tokens", "lm_head")), DOC)
    plain = E.estimate(s1b, lora, DOC)
    assert saved.part("grads") - plain.part("grads") == 2 * s1b.embedding_params * 2


def test_band_is_ordered_and_verdict_follows_free_memory():
    cfg = TrainingConfig(framework="unsloth", model_name="unsloth/Meta-Llama-3.1-8B-bnb-4bit",
                         model_shape=L8, per_device_train_batch_size=2, max_seq_length=2048,
                         optim="adamw_8bit", use_gradient_checkpointing="unsloth", load_in_4bit=True)
    for free_gib, verdict in [(24, E.FITS), (7.0, E.DOES_NOT_FIT)]:
        est = E.estimate_for(make_facts(free_gib=free_gib, packages={"unsloth": "2025.3.1"}), cfg)
        assert est.low.total < est.mid.total < est.high.total
        assert est.verdict == verdict
    mid_gib = None
    est = E.estimate_for(make_facts(free_gib=24, packages={"unsloth": "2025.3.1"}), cfg)
    mid_gib = (est.low.total + est.high.total) / 2 / GIB
    assert E.estimate_for(make_facts(free_gib=mid_gib, packages={"unsloth": "2025.3.1"}), cfg).verdict == E.TIGHT
    assert E.estimate_for(make_facts(gpu=None), cfg).verdict == E.UNKNOWN


def test_max_batch_and_seq_are_the_largest_that_fit():
    cfg = TrainingConfig(framework="unsloth", model_shape=L8, model_name="unsloth/Meta-Llama-3.1-8B-bnb-4bit",
                         per_device_train_batch_size=2, max_seq_length=2048, optim="adamw_8bit")
    est = E.estimate_for(make_facts(free_gib=11, packages={"unsloth": "2025.3.1"}), cfg)
    free, hi = est.gpu_free, est.inputs_high
    b, s = est.max_batch_size, est.max_seq_len
    assert b >= 1 and s >= 64 and s % 64 == 0
    assert E.estimate(L8, replace(hi, batch_size=b), E.HIGH).total <= free
    assert E.estimate(L8, replace(hi, batch_size=b + 1), E.HIGH).total > free
    assert E.estimate(L8, replace(hi, seq_len=s), E.HIGH).total <= free
    assert E.estimate(L8, replace(hi, seq_len=s + 64), E.HIGH).total > free


def test_largest_fitting_edges():
    assert E.largest_fitting(100, lambda n: n <= 37) == 37
    assert E.largest_fitting(100, lambda n: True) == 100
    assert E.largest_fitting(100, lambda n: False) == 0
    assert E.largest_fitting(1, lambda n: n <= 1) == 1


def test_inputs_apply_library_defaults_and_unknowns_widen_the_band():
    # Unsloth, nothing but the model: 4-bit, r=16 on all 7, "unsloth" GC, max_seq_length 2048
    cfg = TrainingConfig(framework="unsloth", model_shape=L8, model_name="unsloth/Meta-Llama-3.1-8B-bnb-4bit")
    low, mid, high, notes = inputs_for(cfg, make_facts(packages={}))
    assert (mid.quant, mid.lora_r, mid.gc, mid.seq_len, mid.batch_size) == ("4bit", 16, "unsloth", 2048, 8)
    assert len(mid.lora_targets) == 7 and mid.double_quant
    assert (low.loss, high.loss) == ("fused", "unsloth-logits")   # unsloth version unknown
    assert any("batch_size not set" in n for n in notes)
    _, old, _, _ = inputs_for(cfg, make_facts(packages={"unsloth": "2024.8"}))
    assert old.loss == "unsloth-logits"
    # transformers QLoRA, unknown prepare_model_for_kbit_training: low without upcast, high with
    hf = TrainingConfig(framework="transformers", model_shape=L8, load_in_4bit=True, source_kind="flags")
    low, mid, high, notes = inputs_for(hf, make_facts(packages={"trl": "1.16.0"}))
    assert (low.upcast, high.upcast) == (False, True)
    assert mid.gc == "hf" and mid.seq_len == 1024 and mid.lora_targets == ("q_proj", "v_proj")
    # transformers 4.x without a dtype loads fp32; 5.x loads the checkpoint's dtype
    script = TrainingConfig(framework="transformers", model_shape=L8, source_kind="python", args_class="TrainingArguments",
                            full_finetune=True)
    assert inputs_for(script, make_facts(packages={"transformers": "4.44.2"}))[1].param_bytes == 4
    assert inputs_for(script, make_facts(packages={"transformers": "5.2.0"}))[1].param_bytes == 2


def test_eval_peak_grows_with_the_eval_batch():
    a = E.eval_peak(L8, HF_B, 2, DOC)
    b = E.eval_peak(L8, HF_B, 8, DOC)
    assert b > a and b - a == pytest.approx(6 * 2048 * (DOC.c_logits_eval * 128_256 + 176_128) * 1.10)


def test_to_dict_is_bytes_with_every_component():
    cfg = TrainingConfig(framework="unsloth", model_shape=L8, model_name="m", per_device_train_batch_size=2,
                         max_seq_length=2048)
    d = E.estimate_for(make_facts(free_gib=20), cfg).to_dict()
    keys = [c["key"] for c in d["components"]]
    assert keys[:3] == ["context", "weights", "dequant"] and "slack" in keys
    assert all(isinstance(c["bytes"], int) and c["low"] <= c["high"] for c in d["components"])
    assert d["total"]["low"] <= d["total"]["mid"] <= d["total"]["high"]
    assert d["gpu"]["free"] == 20 * GIB and d["verdict"] in ("fits", "tight", "does-not-fit")
    assert d["host_ram"]["offload_needed"] > 0 and d["units"] == "bytes"


def test_gemma2_layers_keep_two_more_norms_and_soft_capped_scores():
    from doctor.config.model_shapes import table_lookup

    gemma = table_lookup("google/gemma-2-2b")
    plain = replace(gemma, model_type="llama")             # the same sizes, Llama's layer
    assert (gemma.norms_per_layer, gemma.attn_softcap) == (4, True)
    assert (plain.norms_per_layer, plain.attn_softcap) == (2, False)
    assert table_lookup("google/gemma-3-4b-pt").norms_per_layer == 4
    assert not table_lookup("google/gemma-3-4b-pt").attn_softcap
    # two fp32 norms more per layer: an fp32 input (4 bytes) and a bf16 output (2) each, per hidden unit
    # (the spec's layer, which the Unsloth path uses)
    assert E.activation_bytes_per_token(gemma) - E.activation_bytes_per_token(plain) == 2 * (4 + 2) * 2304
    inp = E.Inputs(batch_size=1, seq_len=4096, framework="transformers", quant="none", gc="off", attn="eager",
                   lora_targets=E.ALL_PROJECTIONS)
    diff = E.estimate(gemma, inp, DOC).part("activations") - E.estimate(plain, inp, DOC).part("activations")
    # without checkpointing every layer's activations are alive at the peak (no k_layer factor)
    norms = 26 * 4096 * 2 * 4 * 2304    # transformers path: each extra norm keeps its fp32 input
    softcap = 26 * 8 * 4096 ** 2 * 2                          # the tanh output of every layer's scores
    assert diff == pytest.approx(norms + softcap)


def test_set7_calibrated_constants_are_pinned():
    """The slack and math-path constants refitted on set 7's FIT rows (benchmarks/vram-validation.md;
    the mid edge's logits and slack by the second refit, benchmarks/vram_set7_logits_refit.py)."""
    assert (E.LOW.margin, E.MID.margin, E.HIGH.margin) == (0.0, 0.06, 0.13)
    assert (E.LOW.math_backward, E.MID.math_backward, E.HIGH.math_backward) == (2.0, 3.0, 3.5)
    assert (E.LOW.c_logits_hf, E.MID.c_logits_hf, E.HIGH.c_logits_hf) == (12, 12.5, 18)
    assert E.MID.hf_act == 1.0 and E.MID.k_layer == 1.25
    # the workloads' least-memory refit on sets 8-12 (issue 16): most of the step's fragmentation is
    # given back under a cap; a quarter of the landed gradients' is not
    assert (E.LOW.step_frag, E.MID.step_frag, E.HIGH.step_frag) == (0.0, 0.05, 0.44)
    assert (E.LOW.grad_frag, E.MID.grad_frag, E.HIGH.grad_frag) == (0.0, 0.25, 0.6)


def test_set7_row_f1_by_hand():
    """Llama-3.2-1B bf16 LoRA r=16, no checkpointing, batch 4 x 1024, AdamW8bit, autocast (row F1):
    every component from the shape, and the total the GPU measured it against (17.44 GiB least)."""
    s = table_lookup("llama-3.2-1b")
    inp = E.Inputs(batch_size=4, seq_len=1024, framework="transformers", quant="none", lora_r=16,
                   optim="adamw_8bit", gc="off", attn="sdpa", loss="hf", autocast=True)
    bd = E.estimate(s, inp, E.MID)
    h, i, q, kv, L, V, T = 2048, 8192, 2048, 512, 16, 128256, 4096
    n_lora = 16 * L * (9 * h + 2 * kv + 3 * i)                      # 11,272,192 (§1.2)
    assert bd.part("weights") == 2 * s.total_params
    assert bd.part("lora") == 4 * n_lora and bd.part("grads") == 4 * n_lora
    per_tok = 2 * 4 * h + 2 * (5 * h + q + i) + 2 * (2 * q + 2 * kv) + 2 * 3 * i + (2 * 2 * 16 * 7 + 2 * 2 * 64 + 4 * 32)
    assert per_tok == 117_568
    assert bd.part("activations") == L * T * per_tok                # every layer kept: 7.1 GiB
    assert bd.part("logits") == 12.5 * V * T                       # 6.1 GiB
    assert bd.part("slack") == pytest.approx(0.06 * (L * T * per_tok + 12.5 * V * T))
    assert bd.total / GIB == pytest.approx(17.24, abs=0.01)        # least memory that trained: 17.44


def test_family_logit_extras():
    granite = table_lookup("granite-3.1-2b")
    gemma2 = table_lookup("gemma-2-2b")
    assert granite.logits_extra_bytes == 2 and gemma2.logits_extra_bytes == 3
    assert table_lookup("llama-3.2-1b").logits_extra_bytes == 0
    inp = E.Inputs(batch_size=4, seq_len=2048, quant="none", gc="hf", loss="hf")
    logits = next(c.bytes for c in E.estimate(granite, inp, E.MID).components if c.key == "logits")
    assert logits == (12.5 + 2) * 49155 * 8192
