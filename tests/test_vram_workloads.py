"""doctor/vram/workloads.py: the extra components of MoE, vision-language, GRPO (vLLM colocated or
model.generate) and DPO runs, against numbers worked out by hand from the shapes' config.json."""
from __future__ import annotations

from dataclasses import replace

import pytest

from doctor.config.model_shapes import table_lookup
from doctor.config.python_parser import parse_python
from doctor.vram import estimator as E
from doctor.vram import workloads as W
from tests.vram_helpers import CORPUS, GIB, load_script, make_facts

MIXTRAL = table_lookup("mistralai/Mixtral-8x7B-v0.1")
QWEN3_MOE = table_lookup("Qwen/Qwen3-30B-A3B")
GPT_OSS = table_lookup("openai/gpt-oss-20b")
QWEN_VL = table_lookup("Qwen/Qwen2.5-VL-7B-Instruct")
QWEN05 = table_lookup("Qwen/Qwen2.5-0.5B-Instruct")
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
BASE = E.Inputs(batch_size=1, seq_len=512, quant="4bit", lora_r=16, lora_targets=ATTN, optim="adamw_8bit", gc="hf")


def config(name: str, shape=None):
    cfg = parse_python((CORPUS / name).read_text(), name)
    cfg.model_shape = shape or table_lookup(cfg.model_name)
    return cfg


@pytest.mark.parametrize("shape, extra, stored", [
    # 6 unvisited experts x 3 x 4096 x 14336 + router 4096 x 8, x 32 layers; Mixtral's 46.7B in all
    (MIXTRAL, 32 * (6 * 3 * 4096 * 14336 + 4096 * 8), 46.70e9),
    (QWEN3_MOE, 48 * (120 * 3 * 2048 * 768 + 2048 * 128), 30.53e9),   # "30.5B total, 3.3B active"
    (GPT_OSS, 24 * (28 * 3 * 2880 * 2880 + 2880 * 32), 20.91e9),      # "21B" (20.9B)
])
def test_every_expert_is_stored(shape, extra, stored):
    assert W.moe_extra_params(shape) == extra
    assert shape.total_params + extra == pytest.approx(stored, rel=2e-3)


def test_moe_components_4bit_16bit_lora_and_full():
    n = W.moe_extra_params(MIXTRAL)
    bd = E.estimate(MIXTRAL, BASE)
    assert bd.part("moe-experts") == pytest.approx(n * E.NF4_BYTES)
    assert bd.part("moe-lora") == 0                      # attention-only LoRA: no adapter on the experts
    skipped = E.estimate(MIXTRAL, replace(BASE, workload=W.Workload(experts_16bit=True)))
    assert skipped.part("moe-experts") == n * 2
    assert skipped.total - bd.total == pytest.approx(n * (2 - E.NF4_BYTES))
    mlp = E.estimate(QWEN3_MOE, replace(BASE, lora_targets=E.ALL_PROJECTIONS))
    # PEFT's ParamWrapper on the fused parameters: A (r*E x in) + B (out x r*E), gate_up and down, 48 layers
    lora_n = 16 * 128 * ((2048 + 2 * 768) + (768 + 2048)) * 48
    assert mlp.part("moe-lora") == pytest.approx(lora_n * (4 + 4 + 2.03125))
    # ... and each layer's W + B.A: one layer at a time under checkpointing, every layer without
    copy = 128 * 3 * 2048 * 768 * 2
    assert mlp.part("moe-lora-delta") == copy
    assert E.estimate(QWEN3_MOE, replace(BASE, lora_targets=E.ALL_PROJECTIONS, gc="off")).part("moe-lora-delta") == 48 * copy
    # Mixtral's experts are w1/w2/w3 to PEFT: gate_proj/up_proj/down_proj targets miss them
    assert E.estimate(MIXTRAL, replace(BASE, lora_targets=E.ALL_PROJECTIONS)).part("moe-lora") == 0
    assert E.estimate(MIXTRAL, replace(BASE, lora_targets=("w1", "w2", "w3"))).part("moe-lora") > 0
    full = E.estimate(MIXTRAL, replace(BASE, quant="none", full_finetune=True, optim="adamw_torch"))
    assert full.part("moe-experts") == n * 2 and full.part("moe-grads") == n * 2
    assert full.part("moe-optimizer") == n * 2 * 2
    # gradients freed between steps: the experts' come after the backward peak, their state does not
    freed = E.estimate(MIXTRAL, replace(BASE, quant="none", full_finetune=True, optim="adamw_torch", grads_persist=False))
    assert freed.part("moe-grads") == 0 and freed.part("moe-optimizer") == n * 2 * 2
    # ... but they land in the cache the activations left: grads-frag counts them with the dense ones
    landed = MIXTRAL.total_params * 2 + n * 2
    assert freed.part("grads-frag") == pytest.approx(E.MID.grad_frag * landed)
    # the activations are the routed experts' only: the dense path with intermediate = top-2 x 14336
    assert MIXTRAL.intermediate == 2 * 14336


def test_vision_tower_weights_training_and_checkpointing():
    vp = 675_281_920
    assert QWEN_VL.vision_params == vp
    frozen = E.estimate(QWEN_VL, replace(BASE, gc="off", workload=W.Workload(patches_per_image=1024)))
    assert frozen.part("vision") == vp * 2 and frozen.part("vision-activations") == 0
    wl = W.Workload(images_per_sample=1, patches_per_image=1024, vision_trained=True)
    off = E.estimate(QWEN_VL, replace(BASE, batch_size=2, gc="off", workload=wl))
    per = 2 * (9 * 1280 + 2 * 4 * 1280)                  # 43,520 bytes per patch and layer
    assert off.part("vision-activations") == 32 * per * 2048
    on = E.estimate(QWEN_VL, replace(BASE, batch_size=2, gc="hf", workload=wl))
    assert on.part("vision-activations") == per * 2048 + 32 * 1280 * 2 * 2048
    full = E.estimate(QWEN_VL, replace(BASE, quant="none", full_finetune=True, optim="adamw_torch", workload=wl))
    assert full.part("vision-grads") == vp * 2 and full.part("vision-optimizer") == vp * 4
    freed = E.estimate(QWEN_VL, replace(BASE, quant="none", full_finetune=True, optim="adamw_torch", workload=wl,
                                        grads_persist=False))
    assert freed.part("vision-grads") == 0 and freed.part("vision-optimizer") == vp * 4


def test_grpo_vllm_colocate_reserves_its_fraction_of_the_card():
    total = 24 * GIB
    wl = W.Workload(kind="grpo", prompt_len=512, completion_len=1024, vllm="colocate", vllm_fraction=0.3,
                    gpu_total=total)
    inp = replace(BASE, quant="none", seq_len=1536, workload=wl)
    bd = E.estimate(QWEN05, inp)
    assert bd.part("vllm") == pytest.approx(0.3 * total)
    plain = E.estimate(QWEN05, replace(inp, workload=None))
    # the loss logits cover the completion only
    assert [c.bytes for c in bd.components if c.key == "logits"][0] == pytest.approx(
        [c.bytes for c in plain.components if c.key == "logits"][0] * 1024 / 1536)
    shared = E.estimate(QWEN05, replace(inp, workload=replace(wl, vllm="unsloth", vllm_fraction=0.7)))
    assert shared.part("vllm") == pytest.approx(0.7 * total - shared.part("weights"))   # weights counted once
    unknown = E.estimate(QWEN05, replace(inp, workload=replace(wl, gpu_total=0)))
    assert unknown.part("vllm") == QWEN05.total_params * 2                           # its weights copy at least


def test_grpo_without_vllm_generation_kv_cache():
    wl = W.Workload(kind="grpo", prompt_len=256, completion_len=512, gen_sequences=4)
    bd = E.estimate(QWEN05, replace(BASE, quant="none", seq_len=768, workload=wl))
    kv = 2 * QWEN05.layers * QWEN05.kv_dim * 2
    gen = [c for c in bd.components if c.key == "generation"][0]
    assert gen.bytes == 4 * 768 * kv + 4 * QWEN05.vocab * 4
    big = E.estimate(QWEN05, replace(BASE, quant="none", seq_len=768,
                                     workload=replace(wl, gen_sequences=512, completion_len=8192)))
    g = [c for c in big.components if c.key == "generation"][0]
    assert g.at_peak and big.part("activations") == 0 and big.part("logits") == 0   # generation is the peak


def test_dpo_reference_copy_and_when_there_is_none():
    wl = W.Workload(kind="dpo", reference="copy")
    bd = E.estimate(QWEN05, replace(BASE, quant="none", full_finetune=True, workload=wl))
    assert bd.part("reference") == bd.part("weights")
    f = make_facts()
    full = config("dpo_trl_full.py")
    _l, mid, _h = W.attach_workload(full, f, *(E.Inputs(batch_size=4, seq_len=1024),) * 3, [])
    assert mid.workload.reference == "copy" and mid.batch_size == 8          # chosen + rejected
    peft = config("dpo_trl_lora_precompute.py")
    _l, mid, _h = W.attach_workload(peft, f, *(E.Inputs(batch_size=2, seq_len=2048),) * 3, [])
    assert mid.workload.reference == "copy"     # an explicit ref_model stays loaded even when precomputed
    peft.ref_model = None
    _l, mid, _h = W.attach_workload(peft, f, *(E.Inputs(batch_size=2, seq_len=2048),) * 3, [])
    assert mid.workload.reference == "none"     # PEFT: the adapter is disabled for the reference pass


def test_attach_grpo_from_scripts():
    f = make_facts(total_gib=80)
    trl = config("grpo_trl_vllm_colocate.py")
    notes: list[str] = []
    _l, mid, _h = W.attach_workload(trl, f, *(E.Inputs(batch_size=8, seq_len=2048),) * 3, notes)
    wl = mid.workload
    assert (wl.kind, wl.vllm, wl.vllm_fraction, wl.gpu_total) == ("grpo", "colocate", 0.3, 80 * GIB)
    assert mid.seq_len == 512 + 1024 and wl.reference == "none"       # GRPO beta defaults to 0
    uns = config("grpo_unsloth_fast_inference.py")
    uns.framework = "unsloth"
    _l, mid, _h = W.attach_workload(uns, f, *(E.Inputs(batch_size=1, seq_len=2048),) * 3, [])
    assert (mid.workload.vllm, mid.workload.vllm_fraction) == ("unsloth", 0.7) and mid.seq_len == 2048


def test_estimate_for_runs_the_hook_end_to_end():
    est = E.estimate_for(make_facts(total_gib=24), config("grpo_trl_vllm_colocate.py"))
    assert est.mid.part("vllm") == pytest.approx(0.3 * 24 * GIB)
    assert est.inputs.seq_len == 1536 and any("GRPO" in a for a in est.assumptions)
    d = est.to_dict()
    assert d["inputs"]["workload"]["vllm"] == "colocate" and any(c["key"] == "vllm" for c in d["components"])


def test_moe_4bit_rule_follows_versions():
    cfg = config("moe_unsloth_qwen3_30b.py")
    new_tf = make_facts(packages={"transformers": "5.2.0", "unsloth": "2026.5.1"})
    assert "2026.6.9" in W.experts_stay_16bit(new_tf, cfg, QWEN3_MOE)
    fixed = make_facts(packages={"transformers": "5.2.0", "unsloth": "2026.7.1"})
    assert W.experts_stay_16bit(fixed, cfg, QWEN3_MOE) is None
    assert W.experts_stay_16bit(make_facts(packages={"transformers": "4.57.1"}), cfg, QWEN3_MOE) is None
    cfg.framework = "transformers"
    assert "bitsandbytes" in W.experts_stay_16bit(fixed, cfg, QWEN3_MOE)


def test_gpu_validation_grid_and_its_estimates():
    """benchmarks/gpu/vram_workloads.py (run on a GPU later): at least 12 rows over every workload, and
    each row's estimate carries the component its workload adds."""
    mod = load_script("benchmarks/gpu/vram_workloads.py")
    rows = mod.grid(smoke=False)
    assert len(rows) >= 12 and len({r["id"] for r in rows}) == len(rows)
    assert {r["kind"] for r in rows} == {"full", "lora", "dpo", "vlm", "grpo", "grpo-vllm"}
    want = {"dpo": "reference", "grpo-vllm": "vllm", "vlm": "vision"}
    for row in rows:
        est = mod.estimate_row(row, 80 * GIB)
        assert est["low"] <= est["mid"] <= est["high"]
        if row["kind"] in want:
            assert est["components"].get(want[row["kind"]], 0) > 0, row["id"]
        if row["cfg"].get("num_experts"):
            assert est["components"]["moe-experts"] > 0


def test_vllm_sleep_mode_takes_the_larger_phase():
    total = 80 * GIB
    wl = W.Workload(kind="grpo", prompt_len=512, completion_len=1024, vllm="colocate", vllm_fraction=0.1,
                    gpu_total=total, vllm_sleep=True)
    inp = replace(BASE, quant="none", batch_size=8, seq_len=1536, workload=wl)
    awake = E.estimate(QWEN05, replace(inp, workload=replace(wl, vllm_sleep=False)))
    asleep = E.estimate(QWEN05, inp)
    v = [c for c in asleep.components if c.key == "vllm"][0]
    train = awake.dynamic   # the training pass's token part (with slack) while vLLM is awake
    assert not v.at_peak and asleep.total == pytest.approx(awake.total - 0.1 * total)
    big = E.estimate(QWEN05, replace(inp, batch_size=1, workload=replace(wl, vllm_fraction=0.9)))
    assert [c for c in big.components if c.key == "vllm"][0].at_peak and big.part("logits") == 0
    assert train > 0
    cfg = config("grpo_trl_vllm_colocate.py")
    cfg.vllm_enable_sleep_mode = True
    _l, mid, _h = W.attach_workload(cfg, make_facts(total_gib=80), *(E.Inputs(batch_size=8, seq_len=2048),) * 3, [])
    assert mid.workload.vllm_sleep


def test_peft_expert_targets_follow_the_family_naming():
    assert W.experts_get_lora(QWEN3_MOE, ("gate_proj",)) and not W.experts_get_lora(QWEN3_MOE, ATTN)
    assert not W.experts_get_lora(MIXTRAL, ("gate_proj", "up_proj", "down_proj"))
    assert W.experts_get_lora(MIXTRAL, ("w2",)) and W.experts_get_lora(MIXTRAL, ("all-linear",))
    # transformers 4 kept one nn.Linear per expert: LoRA per expert, no fused copy
    four = E.estimate(QWEN3_MOE, replace(BASE, lora_targets=E.ALL_PROJECTIONS,
                                         workload=W.Workload(fused_experts=False)))
    assert four.part("moe-lora-delta") == 0
    assert four.part("moe-lora") == pytest.approx(16 * 48 * 128 * 3 * (2048 + 768) * (4 + 4 + 2.03125))


def test_granitemoe_experts_get_no_lora_and_its_logits_are_scaled():
    """transformers converts GraniteMoE's input_linear/output_linear into its own expert family, which
    PEFT has no target-name mapping for: no name, not even all-linear, reaches the experts."""
    from doctor.config.model_shapes import shape_from_config

    g = shape_from_config({"model_type": "granitemoe", "hidden_size": 1024, "intermediate_size": 512,
                           "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 8,
                           "num_local_experts": 32, "num_experts_per_tok": 8, "vocab_size": 49155}, name="g")
    assert g.is_moe and g.num_experts == 32
    for targets in (E.ALL_PROJECTIONS, ("gate_proj",), ("all-linear",)):
        assert not W.experts_get_lora(g, targets)
    lora = E.estimate(g, replace(BASE, quant="none", lora_targets=E.ALL_PROJECTIONS))
    assert lora.part("moe-lora") == 0 and lora.part("moe-lora-delta") == 0
    assert g.logits_extra_bytes == 2   # logits / logits_scaling: one more bf16 copy, as Granite


def test_qk_norm_inputs_per_head_or_over_the_projection():
    """Qwen3-MoE (per head) and OLMoE / OLMo 2 (over the whole q and k projections) keep the fp32 input
    of each norm: 4 x (q + kv) bytes per token and layer more than the same shape without them."""
    full = replace(BASE, quant="none", full_finetune=True, optim="adamw_torch")
    q, kv = QWEN3_MOE.q_dim, QWEN3_MOE.kv_dim
    for kind in ("qwen3_moe", "olmoe"):
        with_norm = E.hf_activation_bytes_per_token(replace(QWEN3_MOE, model_type=kind), full)
        without = E.hf_activation_bytes_per_token(replace(QWEN3_MOE, model_type="mixtral"), full)
        assert with_norm - without == 4 * (q + kv)


def test_moe_routed_slots_keep_their_own_tensors():
    """Per token and layer: k slots x (2h + 4I) (LoRA) or (3h + 4I) (full) in bf16, the fp32 router
    logits and probabilities, two int64 indices per slot; only a shared expert stays dense."""
    h, i, k, e = 2048, 768, 8, 128
    lora = replace(BASE, quant="none", lora_targets=ATTN)
    full = replace(BASE, quant="none", full_finetune=True, optim="adamw_torch")
    dense_part = E.hf_activation_bytes_per_token(replace(QWEN3_MOE, num_experts=0, intermediate=0), lora)
    assert E.hf_activation_bytes_per_token(QWEN3_MOE, lora) - dense_part == 2 * k * (2 * h + 4 * i) + 8 * e + 16 * k
    dense_full = E.hf_activation_bytes_per_token(replace(QWEN3_MOE, num_experts=0, intermediate=0), full)
    assert E.hf_activation_bytes_per_token(QWEN3_MOE, full) - dense_full == 2 * k * (3 * h + 4 * i) + 8 * e + 16 * k


def test_optimizer_step_is_a_second_peak_with_its_temporaries():
    """Full fine-tuning of a small-activation model: step() holds weights + gradients + states + the
    foreach temporary (one tensor per parameter), scaled by the step's fragmentation; the fused
    optimizer has no temporary. Worked by hand from the components."""
    inp = replace(BASE, quant="none", full_finetune=True, optim="adamw_torch", seq_len=64, grads_persist=False)
    def backward(bd):
        return sum(c.bytes for c in bd.components if c.at_peak and c.key not in ("context", "slack", "optimizer-step"))
    bd = E.estimate(QWEN3_MOE, inp)
    n = QWEN3_MOE.total_params + W.moe_extra_params(QWEN3_MOE)
    trainable = n * 2 * 4                                     # weights + grads + two bf16 states
    temp = n * 2
    step = (trainable + temp) * (1 + E.MID.step_frag)
    assert step > backward(bd) > 0
    assert bd.part("optimizer-step") == pytest.approx(step - backward(bd))
    fused = E.estimate(QWEN3_MOE, replace(inp, optim="adamw_torch_fused"))
    assert fused.part("optimizer-step") == pytest.approx(trainable * (1 + E.MID.step_frag) - backward(fused))
    eight = E.estimate(QWEN3_MOE, replace(inp, optim="adamw_8bit"))   # bitsandbytes: in place, 2.03 B states
    assert eight.part("optimizer-step") == pytest.approx(n * (2 + 2 + 2.03125) * (1 + E.MID.step_frag) - backward(eight))
    # the total is the step's: the bar still sums to the estimate
    assert bd.total == pytest.approx(step + bd.part("context") + bd.part("slack"))
    # LoRA: nothing beyond the backward peak
    assert E.estimate(QWEN3_MOE, BASE).part("optimizer-step") == 0
    # sharded runs step their own shards (doctor/vram/sharding.py)
    sharded = replace(inp, sharding=(("kind", "zero"), ("stage", 2), ("world", 2)))
    assert E.estimate(QWEN3_MOE, sharded).part("optimizer-step") == 0


def test_gradients_freed_between_steps_only_the_head_at_the_backward_peak():
    full = replace(BASE, quant="none", full_finetune=True, optim="adamw_torch", seq_len=2048)
    kept = E.estimate(QWEN05, full)
    freed = E.estimate(QWEN05, replace(full, grads_persist=False))
    grads = QWEN05.total_params * 2
    assert kept.part("grads") == grads and freed.part("grads") == 0             # not at the peak
    assert freed.part("grads-head") == QWEN05.embedding_params * 2               # tied: the embedding's
    assert freed.part("grads-frag") == pytest.approx(E.MID.grad_frag * grads)
    assert E.estimate(QWEN05, replace(full, grads_persist=False), E.LOW).part("grads-frag") == 0


@pytest.mark.parametrize("accum, persist", [(None, False), (1, False), (4, True)])
def test_gradient_accumulation_decides_whether_gradients_persist(accum, persist):
    from doctor.config.model import TrainingConfig
    from doctor.vram.inputs import inputs_for

    cfg = TrainingConfig(model_name="Qwen/Qwen2.5-0.5B-Instruct", full_finetune=True, gradient_accumulation_steps=accum)
    cfg.model_shape = QWEN05
    _low, mid, _high, _notes = inputs_for(cfg, make_facts())
    assert mid.grads_persist is persist


def test_workload_report_rescores_a_measurement_with_the_current_estimator():
    """benchmarks/vram_workloads_report.py: truth = peak reserved + context (the idle probe's, or each
    training process's own with --process-context); error against mid, a false "fit" above high."""
    bench = load_script("benchmarks/gpu/vram_workloads.py")
    report = load_script("benchmarks/vram_workloads_report.py")

    row = next(r for r in bench.grid(False) if r["id"] == "s10-moe64-lora-gc1")
    est = bench.estimate_row(row, 140 * GIB)
    ctx, own = int(0.6 * GIB), int(0.75 * GIB)
    fits = {"id": row["id"], "measured": {"peak_reserved": int(est["mid"]) - ctx}}
    over = {"id": row["id"], "measured": {"peak_reserved": int(est["high"]) - ctx + GIB, "process_context": own}}
    out = report.rescore({"gpu": {"context": ctx, "total": 140 * GIB}, "rows": [fits, over]})
    a, b = out["rows"]
    assert a["set"] == "set10" and abs(a["error"]) < 1e-6 and not a["false_fit"]
    assert b["false_fit"] and b["peak"] == int(est["high"]) + GIB
    own_truth = report.rescore({"gpu": {"context": ctx, "total": 140 * GIB}, "rows": [over]}, process_context=True)
    assert own_truth["rows"][0]["peak"] == b["peak"] - ctx + own


def test_cap_bisection_brackets_the_least_memory_and_stops_on_a_failed_trial():
    """vram_grid.bisect_cap (dense and workload rows): the bracket always holds the true least cap."""
    grid = load_script("benchmarks/gpu/vram_grid.py")
    truth = 10.3 * GIB
    calls = []

    def trial(cap):
        calls.append(cap)
        return {"status": "ok" if cap >= truth else "oom"}
    lo, hi, trials = grid.bisect_cap(trial, 8 * GIB, 12 * GIB, 0.25 * GIB, 10)
    assert lo < truth <= hi and hi - lo <= 0.25 * GIB and len(trials) == len(calls) == 4
    lo, hi, trials = grid.bisect_cap(trial, 8 * GIB, 12 * GIB, 0.25 * GIB, 2)
    assert (lo, hi) == (10 * GIB, 11 * GIB) and len(trials) == 2   # the trial limit keeps the bracket so far
    lo, hi, trials = grid.bisect_cap(lambda cap: {"status": "error"}, 8 * GIB, 12 * GIB, 0.25 * GIB, 10)
    assert (lo, hi) == (8 * GIB, 12 * GIB) and len(trials) == 1


def test_workload_score_against_the_least_memory_that_trains():
    """A row with --least: least = bracket top + the process's context; a false "fit" is the run capped
    at HIGH running out of memory, else HIGH below the bracket."""
    bench = load_script("benchmarks/gpu/vram_workloads.py")
    row = next(r for r in bench.grid(False) if r["id"] == "s12-mixtral-lora-gc1")
    est = bench.estimate_row(row, 140 * GIB)
    ctx = int(0.75 * GIB)
    least = {"cap": int(est["mid"]) - ctx, "lower": int(est["mid"]) - ctx - GIB // 4, "context": ctx,
             "verdict": {"0.85low": {"status": "oom"}}}
    rec = bench.score({"id": row["id"], "estimate": est,
                       "measured": {"peak_reserved": int(est["mid"]), "least": least}}, ctx)
    assert abs(rec["error_least"]) < 1e-6 and rec["least"] == int(est["mid"]) and not rec["false_fit_least"]
    assert rec["error"] < 0 and not rec["low_trained"]
    over = dict(least, cap=int(est["high"]), lower=int(est["high"]))   # HIGH below the bracket, no capped run
    rec = bench.score({"id": row["id"], "estimate": est, "measured": {"peak_reserved": 1, "least": over}}, ctx)
    assert rec["false_fit_least"] and rec["error_least"] < 0
    ran = dict(least, verdict={"high": {"status": "oom"}, "0.85low": {"status": "ok"}})
    rec = bench.score({"id": row["id"], "estimate": est, "measured": {"peak_reserved": 1, "least": ran}}, ctx)
    assert rec["false_fit_least"] and rec["low_trained"]
    assert "vs least" in bench.markdown({"date": "-", "rows": [rec]})
