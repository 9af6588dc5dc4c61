"""Reading GRPO / DPO / vLLM / vision / MoE scripts (tests/corpus, written from the TRL and Unsloth
docs and notebooks), the checks that use what is read, and the attach signatures of these runs."""
from __future__ import annotations

import json

import pytest

from checks import get_check
from doctor.knowledge import load
from doctor.attach import signatures as sig
from doctor.config.model import TrainingConfig
from doctor.config.model_shapes import shape_from_config, table_lookup
from doctor.config.python_parser import parse_python
from doctor.config.structured import parse_json
from tests.attach_helpers import frame
from tests.vram_helpers import CORPUS, make_facts


def read(name: str) -> TrainingConfig:
    cfg = parse_python((CORPUS / name).read_text(), name)
    cfg.model_shape = table_lookup(cfg.model_name) if cfg.model_name else None
    return cfg


def test_grpo_trl_colocate():
    c = read("grpo_trl_vllm_colocate.py")
    assert (c.trainer_class, c.args_class, c.model_name) == ("GRPOTrainer", "GRPOConfig", "Qwen/Qwen2.5-0.5B-Instruct")
    assert (c.num_generations, c.max_prompt_length, c.max_completion_length) == (8, 512, 1024)
    assert (c.use_vllm, c.vllm_mode, c.vllm_gpu_memory_utilization) == (True, "colocate", 0.3)
    assert c.full_finetune is True            # a model id given to GRPOTrainer, no peft_config
    assert c.spans["vllm_gpu_memory_utilization"].text == "0.3" and not c.unresolved


def test_grpo_unsloth_fast_inference():
    c = read("grpo_unsloth_fast_inference.py")
    assert c.framework == "unsloth" and c.fast_inference is True and c.gpu_memory_utilization == 0.7
    assert c.max_completion_length == 2048 - 287 and c.num_generations == 4 and c.full_finetune is False
    assert c.use_vllm is None and not c.unresolved


def test_dpo_scripts():
    full = read("dpo_trl_full.py")
    assert (full.trainer_class, full.ref_model, full.full_finetune, full.beta) == ("DPOTrainer", "none", True, 0.1)
    assert full.trainer_max_seq_length == 1024 and full.max_prompt_length == 512
    lora = read("dpo_trl_lora_precompute.py")
    assert (lora.ref_model, lora.precompute_ref_log_probs, lora.full_finetune) == ("separate", True, False)


def test_vision_scripts():
    uns = read("vlm_unsloth_qwen25vl.py")
    assert uns.vision_model and uns.finetune_vision_layers is True and uns.use_gradient_checkpointing is False
    assert uns.model_shape.is_vlm
    hf = read("vlm_hf_qwen25vl_processor.py")
    assert hf.model_name == "Qwen/Qwen2.5-VL-7B-Instruct" and hf.vision_model     # *ForConditionalGeneration
    assert hf.max_pixels == 1280 * 28 * 28 and hf.use_gradient_checkpointing is True


def test_moe_script_and_sft_scripts_unchanged():
    moe = read("moe_unsloth_qwen3_30b.py")
    assert moe.model_shape.is_moe and moe.load_in_4bit is True and moe.trainer_class == "SFTTrainer"
    sft = read("hf_peft_trl_qlora.py")
    assert sft.num_generations is None and sft.use_vllm is None and sft.vision_model is None


def test_grpo_config_json():
    c = parse_json(json.dumps({"num_generations": 16, "max_completion_length": 2048, "use_vllm": True,
                                     "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.5}), "grpo.json")
    assert (c.num_generations, c.max_completion_length, c.use_vllm, c.vllm_gpu_memory_utilization) == (16, 2048, True, 0.5)


def test_moe_and_vlm_config_json():
    mixtral = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
               "num_local_experts": 8, "num_experts_per_tok": 2}
    s = shape_from_config(mixtral)
    t = table_lookup("mixtral-8x7b")
    assert (s.num_experts, s.experts_per_tok, s.moe_intermediate, s.intermediate) == (8, 2, 14336, 28672)
    assert (s.total_params, s.num_experts) == (t.total_params, t.num_experts)
    deepseek = dict(mixtral, n_routed_experts=64, num_local_experts=None, moe_intermediate_size=1408,
                    n_shared_experts=2, num_experts_per_tok=6)
    d = shape_from_config(deepseek)
    assert d.shared_intermediate == 2 * 1408 and d.intermediate == 6 * 1408 + 2 * 1408
    mllama = {"model_type": "mllama",
              "text_config": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 40,
                              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                              "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38]},
              "vision_config": {"hidden_size": 1280, "num_hidden_layers": 32, "num_global_layers": 8,
                                "intermediate_size": 5120, "image_size": 560, "patch_size": 14,
                                "vision_output_dim": 7680, "hidden_act": "gelu"}}
    v = shape_from_config(mllama)
    row = table_lookup("meta-llama/Llama-3.2-11B-Vision")
    assert v.vision_params == row.vision_params and v.image_cross_attention and v.image_tokens == 0


def test_every_bundled_row_has_a_source():
    rows = load("model_shapes_moe_vlm")["models"]
    assert len(rows) == 6 and all("config.json" in r["source"] for r in rows)
    data = load("workloads")
    assert set(data["defaults"]) == set(data["sources"])


# -- the checks ----------------------------------------------------------------------------------

def run(check_id: str, facts, cfg):
    return get_check(check_id).fn(facts, cfg)


def test_vllm_fraction_that_starves_the_trainer():
    cfg = read("grpo_trl_vllm_colocate.py")
    cfg.per_device_train_batch_size = 2
    cfg.vllm_gpu_memory_utilization = 0.9
    (f,) = run("workloads-vllm", make_facts(total_gib=24), cfg)
    assert f.id == "workloads.vllm-memory-fraction" and f.severity.value == "error"
    change = f.config_changes[0]
    assert change.setting == "vllm_gpu_memory_utilization" and 0.05 < change.value < 0.9
    cfg.vllm_gpu_memory_utilization = change.value          # the suggested fraction fits
    assert run("workloads-vllm", make_facts(total_gib=24), cfg) == []
    assert run("workloads-vllm", make_facts(total_gib=80), read("grpo_trl_vllm_colocate.py")) == []


def test_grpo_without_vllm_on_a_large_budget():
    cfg = read("grpo_trl_vllm_colocate.py")
    cfg.use_vllm = False
    (f,) = run("workloads-vllm", make_facts(total_gib=80), cfg)
    assert f.id == "workloads.grpo-generate-without-vllm" and f.config_changes[0].setting == "use_vllm"
    cfg.max_completion_length, cfg.gradient_accumulation_steps = 128, 1   # 8 x 128 tokens: quick
    assert run("workloads-vllm", make_facts(total_gib=80), cfg) == []


def test_vllm_torch_pin():
    facts = make_facts(packages={"vllm": "0.11.0"})
    facts.packages["vllm"].requires = ["torch==2.8.0", "transformers>=4.56.0"]
    facts.packages["torch"] = type(facts.packages["vllm"])(name="torch", version="2.9.1+cu128")
    (f,) = run("workloads-vllm-torch", facts, None)
    assert f.id == "workloads.vllm-torch-mismatch" and "==2.8.0" in f.title
    vm = get_check("version-matrix").fn(facts, None)
    assert not any("vllm" in json.dumps(x.evidence, default=str) for x in vm)   # said once, by the vLLM check
    facts.packages["vllm"].requires.append("transformers>=9")   # its other requirements stay generic
    facts.packages["transformers"] = type(facts.packages["vllm"])(name="transformers", version="4.57.1")
    assert any("vllm" in json.dumps(x.evidence, default=str) for x in get_check("version-matrix").fn(facts, None))
    facts.packages["torch"].version = "2.8.0+cu128"
    assert run("workloads-vllm-torch", facts, None) == []


def test_moe_4bit_experts_unquantized():
    cfg = read("moe_unsloth_qwen3_30b.py")
    old = make_facts(packages={"transformers": "5.2.0", "unsloth": "2026.5.1"})
    (f,) = run("workloads-moe", old, cfg)
    assert f.id == "workloads.moe-4bit-experts-unquantized" and "#1849" in f.why
    assert run("workloads-moe", make_facts(packages={"transformers": "5.2.0", "unsloth": "2026.7.1"}), cfg) == []
    cfg.load_in_4bit = False
    assert run("workloads-moe", old, cfg) == []


def test_vlm_vision_tower_without_checkpointing():
    cfg = read("vlm_unsloth_qwen25vl.py")
    (f,) = run("workloads-vlm", make_facts(), cfg)
    assert f.id == "workloads.vlm-vision-no-checkpointing"
    assert f.config_changes[0].setting == "use_gradient_checkpointing" and f.config_changes[0].value == "unsloth"
    cfg.finetune_vision_layers = False
    assert run("workloads-vlm", make_facts(), cfg) == []
    cfg.finetune_vision_layers, cfg.use_gradient_checkpointing = True, "unsloth"
    assert run("workloads-vlm", make_facts(), cfg) == []


# -- attach signatures -----------------------------------------------------------------------------

SP = "/venv/lib/python3.11/site-packages/"


def cause_of(frames: list) -> str:
    table = sig.table()
    m = sig.best_match(table.causes, sig.ThreadStack(frames=frames, code=lambda f: None, wrappers=table.wrappers))
    return m.cause.id if m else ""


@pytest.mark.parametrize("frames, cause", [
    ([frame("update_named_param", SP + "trl/extras/vllm_client.py"), frame("_move_model_to_vllm", SP + "trl/trainer/grpo_trainer.py"),
      frame("train", SP + "transformers/trainer.py")], "vllm-weight-sync"),
    ([frame("step", SP + "vllm/v1/engine/core.py"), frame("_run_engine", SP + "vllm/entrypoints/llm.py"),
      frame("generate", SP + "vllm/entrypoints/llm.py"), frame("_generate_and_score_completions", SP + "trl/trainer/grpo_trainer.py")],
     "vllm-generation"),
    ([frame("forward", SP + "transformers/models/qwen2/modeling_qwen2.py"), frame("_sample", SP + "transformers/generation/utils.py"),
      frame("generate", SP + "transformers/generation/utils.py"), frame("_generate_and_score_completions", SP + "trl/trainer/grpo_trainer.py")],
     "generate-loop"),
])
def test_workload_signatures(frames, cause):
    assert cause_of(frames) == cause


def test_workload_signature_rows_are_sourced_and_unique():
    base = {r["id"] for r in load("stack_signatures")["causes"]}
    rows = load("stack_signatures_workloads")["causes"]
    assert not base & {r["id"] for r in rows}
    assert all(r["source"] and r["links"] is not None and r["tier"] in (1, 2, 3) for r in rows)


def test_frozen_vision_tower_and_peft_all_linear():
    from doctor.vram import estimator as E
    from doctor.vram.workloads import attach_workload

    g = read("vlm_hf_gemma3_frozen_tower.py")
    assert g.vision_model and g.finetune_vision_layers is False and g.full_finetune is True
    _l, mid, _h = attach_workload(g, make_facts(), *(E.Inputs(batch_size=1, seq_len=2048),) * 3, [])
    assert mid.workload.vision_trained is False and mid.workload.patches_per_image == 4096
    hf = read("vlm_hf_qwen25vl_processor.py")
    hf.full_finetune, hf.target_modules = False, ["all-linear"]
    _l, mid, _h = attach_workload(hf, make_facts(), *(E.Inputs(batch_size=1, seq_len=2048),) * 3, [])
    assert mid.workload.vision_trained and mid.workload.patches_per_image == 1280 * 28 * 28 // (14 * 14)
    hf.target_modules = ["q_proj", "v_proj"]
    _l, mid, _h = attach_workload(hf, make_facts(), *(E.Inputs(batch_size=1, seq_len=2048),) * 3, [])
    assert not mid.workload.vision_trained
