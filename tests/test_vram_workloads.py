"""doctor/vram/workloads.py: the extra components of MoE, vision-language, GRPO (vLLM colocated or
model.generate) and DPO runs, against numbers worked out by hand from the shapes' config.json."""
from __future__ import annotations

from dataclasses import replace

import pytest

from doctor.config.model_shapes import table_lookup
from doctor.config.python_parser import parse_python
from doctor.vram import estimator as E
from doctor.vram import workloads as W
from tests.vram_helpers import CORPUS, GIB, make_facts

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
    lora_n = 16 * 48 * 120 * 3 * (2048 + 768)
    assert mlp.part("moe-lora") == pytest.approx(lora_n * (4 + 4 + 2.03125))
    full = E.estimate(MIXTRAL, replace(BASE, quant="none", full_finetune=True, optim="adamw_torch"))
    assert full.part("moe-experts") == n * 2 and full.part("moe-grads") == n * (2 + 2 * 2)
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
    assert full.part("vision-grads") == vp * (2 + 4)


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
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu" / "vram_workloads.py"
    spec = importlib.util.spec_from_file_location("vram_workloads_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
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
