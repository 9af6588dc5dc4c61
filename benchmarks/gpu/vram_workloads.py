"""Measure peak VRAM of the workloads of issue 16 and compare it with doctor's estimate
(doctor/vram/workloads.py): full fine-tuning, DPO with a reference copy, a small MoE, a VLM with its
vision tower trained, GRPO generation with model.generate, and GRPO with vLLM colocated.

    PYTHONPATH=. python benchmarks/gpu/vram_workloads.py OUT_DIR            # on the GPU machine, ~5-8 min
    PYTHONPATH=. python benchmarks/gpu/vram_workloads.py OUT_DIR --cpu-smoke # here: tiny shapes on CPU, same code

Every model is built from its config class with random weights (no download): Qwen2.5-0.5B and
Llama-3.2-1B shapes, a Qwen3-MoE shape small enough for one GPU, a Qwen2.5-VL shape with a reduced
language model. Each row runs in a fresh child process (peaks never leak between rows) under a
timeout; an OOM is recorded, not fatal. Per row: torch's peak reserved after >= 2 optimizer steps
(so the optimizer state exists) + the CUDA context measured by a probe process, against doctor's
low / mid / high. The DPO and GRPO rows run the trainers' memory pattern by hand (policy on the
concatenated chosen+rejected batch with a frozen reference forward; generate then train on the
completions), not TRL itself: what is validated is the estimator's model of those trainers. The vLLM
row needs `vllm` importable (it is skipped, and said so, when it is not): the script saves the random
model + a WordLevel tokenizer to --ckpt-dir, starts vllm.LLM(gpu_memory_utilization=F, enforce_eager)
in the training process, generates, then trains beside it.

Writes OUT_DIR/vram_workloads.json after every row and OUT_DIR/vram_workloads.md (measured vs
estimated, error, "false fit" when the high edge is below the measurement). Rows carry their set:
FIT (set 8's first 13), HELD-OUT (set 8's next 13), set9, set10 (each written before it was measured);
`--only s10-` runs one set. `--least` adds, per row, the least memory that trains (the allocator cap
bisected between peak allocated and peak reserved, each trial a fresh process, as set 7 does for the
dense rows) and the verdict runs at HIGH and 0.85 x LOW; `--reuse-peaks` takes the uncapped peaks from
an earlier run. Results: benchmarks/vram-validation.md, sets 8-13 (H200, 2026-12-03); re-score a run
with the estimator as it is now: benchmarks/vram_workloads_report.py.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MARK = "@@WORKLOAD-ROW@@"
ENV = {"OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DOCTOR_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}   # vLLM's engine in this process: its memory is ours to measure

QWEN05 = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
          "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}
LLAMA1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
           "tie_word_embeddings": True}
MOE = {"model_type": "qwen3_moe", "hidden_size": 1024, "intermediate_size": 3072, "moe_intermediate_size": 512,
       "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 64,
       "num_experts": 32, "num_experts_per_tok": 4, "vocab_size": 32000, "tie_word_embeddings": False,
       "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True}
VLM = {"model_type": "qwen2_5_vl", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 12,
       "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
       "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                         "out_hidden_size": 1536, "spatial_merge_size": 2, "patch_size": 14, "hidden_act": "silu",
                         "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]}}
# HELD-OUT shapes (issue 16, written 2026-12-03 before any constant was fitted on the first run's rows)
QWEN15 = {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
          "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}
GEMMA3_1B = {"model_type": "gemma3_text", "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
             "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144,
             "sliding_window": 512, "tie_word_embeddings": True}
MIXTRAL_S = {"model_type": "mixtral", "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 8,
             "num_attention_heads": 16, "num_key_value_heads": 4, "num_local_experts": 8, "num_experts_per_tok": 2,
             "vocab_size": 32000, "tie_word_embeddings": False}
MOE64 = dict(MOE, hidden_size=768, moe_intermediate_size=384, num_hidden_layers=16, num_attention_heads=12,
             num_key_value_heads=4, num_experts=64, num_experts_per_tok=8)
# SET 10 shapes (written before the final fit): a Qwen2-MoE with a shared expert, an OLMoE, Llama-3.2-3B
QWEN2MOE_S = {"model_type": "qwen2_moe", "hidden_size": 1024, "intermediate_size": 2816, "moe_intermediate_size": 512,
              "shared_expert_intermediate_size": 2048, "num_hidden_layers": 8, "num_attention_heads": 16,
              "num_key_value_heads": 16, "num_experts": 32, "num_experts_per_tok": 4, "vocab_size": 32000,
              "tie_word_embeddings": False, "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": False}
OLMOE_S = {"model_type": "olmoe", "hidden_size": 1024, "intermediate_size": 512, "num_hidden_layers": 8,
           "num_attention_heads": 16, "num_key_value_heads": 16, "num_experts": 32, "num_experts_per_tok": 4,
           "vocab_size": 50304, "tie_word_embeddings": False}
LLAMA3B = {"model_type": "llama", "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
           "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
           "tie_word_embeddings": True}
# SET 12 shapes (written 2026-12-03 before any least-memory measurement of a workload row): Qwen3-0.6B
QWEN3_06 = {"model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
            "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
            "tie_word_embeddings": True}
# SET 13 shapes (written 2026-12-03, fourth session, before set 13 was measured): SmolLM2-1.7B, OLMo-2-1B
# (QK-norm over the whole projection), a GraniteMoE (scaled embeddings and logits) shape
SMOLLM2_17 = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
              "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 49152, "tie_word_embeddings": True}
OLMO2_1B = {"model_type": "olmo2", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 100352, "tie_word_embeddings": False}
GRANITEMOE_S = {"model_type": "granitemoe", "hidden_size": 1024, "intermediate_size": 512, "num_hidden_layers": 12,
                "num_attention_heads": 16, "num_key_value_heads": 8, "num_local_experts": 32, "num_experts_per_tok": 8,
                "vocab_size": 49155, "tie_word_embeddings": True, "embedding_multiplier": 12.0,
                "logits_scaling": 6.0, "residual_multiplier": 0.22, "attention_multiplier": 0.015625}
TINY = {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": True}
TINY_MOE = dict(MOE, hidden_size=64, moe_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, num_experts=8, num_experts_per_tok=2, vocab_size=1000)
TINY_VLM = dict(VLM, hidden_size=128, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,  # head_dim 128: mrope sections
                num_key_value_heads=1, vocab_size=1000, image_token_id=999, vision_start_token_id=998,
                vision_end_token_id=997, video_token_id=996,
                vision_config=dict(VLM["vision_config"], depth=2, hidden_size=64, intermediate_size=128, num_heads=4,
                                   out_hidden_size=128, fullatt_block_indexes=[1]))


def tagged(name: str, rows: list[dict]) -> list[dict]:
    """The rows of one validation set, each carrying the set's name (FIT, HELD-OUT, set9, ...)."""
    return [dict(r, set=name) for r in rows]


def grid(smoke: bool) -> list[dict]:
    """Rows: kind, model config, batch, seq, options. At least 12 on the GPU."""
    if smoke:
        return [dict(id="smoke-full", kind="full", cfg=TINY, batch=2, seq=32, gc=True, optim="adamw_torch"),
                dict(id="smoke-dpo", kind="dpo", cfg=TINY, batch=1, seq=32, gc=True, optim="adamw_torch"),
                dict(id="smoke-moe", kind="full", cfg=TINY_MOE, batch=2, seq=32, gc=True, optim="adamw_torch"),
                dict(id="smoke-moe-lora", kind="lora", cfg=TINY_MOE, batch=2, seq=32, gc=True, optim="adamw_torch"),
                dict(id="smoke-vlm", kind="vlm", cfg=TINY_VLM, batch=1, seq=96, gc=True, optim="adamw_torch",
                     image=112, vision_trained=True),
                dict(id="smoke-grpo", kind="grpo", cfg=TINY, batch=2, prompt=8, completion=8, gc=True,
                     optim="adamw_torch", accum=2),
                dict(id="smoke-mixtral", kind="full", cfg=dict(MIXTRAL_S, hidden_size=64, intermediate_size=32,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=1000),
                     batch=2, seq=32, gc=False, optim="adamw_torch"),
                dict(id="smoke-qwen2moe", kind="lora", cfg=dict(QWEN2MOE_S, hidden_size=64, intermediate_size=96,
                     moe_intermediate_size=32, shared_expert_intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=4, num_experts=8, vocab_size=1000),
                     batch=2, seq=32, gc=False, optim="adamw_torch"),
                dict(id="smoke-olmoe", kind="full", cfg=dict(OLMOE_S, hidden_size=64, intermediate_size=32,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, num_experts=8,
                     vocab_size=1000), batch=2, seq=32, gc=True, optim="adamw_torch"),
                dict(id="smoke-gemma3", kind="full", cfg=dict(GEMMA3_1B, hidden_size=64, intermediate_size=128,
                     num_hidden_layers=2, head_dim=16, vocab_size=1000), batch=2, seq=32, gc=True, optim="adamw_torch")]
    rows = []
    for gc in (True, False):
        rows.append(dict(id=f"full-qwen0.5b-gc{int(gc)}", kind="full", cfg=QWEN05, batch=4, seq=1024, gc=gc,
                         optim="adamw_torch"))
    rows.append(dict(id="full-llama1b-8bit-adam", kind="full", cfg=LLAMA1B, batch=4, seq=1024, gc=True, optim="adamw_8bit"))
    rows.append(dict(id="dpo-qwen0.5b-full", kind="dpo", cfg=QWEN05, batch=2, seq=1024, gc=True, optim="adamw_torch"))
    rows.append(dict(id="dpo-llama1b-full", kind="dpo", cfg=LLAMA1B, batch=2, seq=1024, gc=True, optim="adamw_torch"))
    rows.append(dict(id="moe-full-gc1", kind="full", cfg=MOE, batch=4, seq=1024, gc=True, optim="adamw_torch"))
    rows.append(dict(id="moe-full-gc0", kind="full", cfg=MOE, batch=2, seq=1024, gc=False, optim="adamw_torch"))
    rows.append(dict(id="moe-lora-all", kind="lora", cfg=MOE, batch=4, seq=1024, gc=True, optim="adamw_torch"))
    rows.append(dict(id="vlm-frozen-tower", kind="vlm", cfg=VLM, batch=2, seq=1024, gc=True, optim="adamw_torch",
                     image=448, vision_trained=False))
    rows.append(dict(id="vlm-trained-gc1", kind="vlm", cfg=VLM, batch=2, seq=1024, gc=True, optim="adamw_torch",
                     image=448, vision_trained=True))
    rows.append(dict(id="vlm-trained-gc0", kind="vlm", cfg=VLM, batch=2, seq=1024, gc=False, optim="adamw_torch",
                     image=448, vision_trained=True))
    rows.append(dict(id="grpo-generate-qwen0.5b", kind="grpo", cfg=QWEN05, batch=8, prompt=256, completion=512,
                     gc=True, optim="adamw_torch", accum=2))
    # run 1 (2026-12-03): 2048 tokens x 32 sequences x 3 steps through model.generate passed 240 s
    rows.append(dict(id="grpo-generate-llama1b-long", kind="grpo", cfg=LLAMA1B, batch=8, prompt=256, completion=1024,
                     gc=True, optim="adamw_torch", accum=2))
    rows = tagged("fit", rows)
    # HELD-OUT (written before fitting on the rows above; never used to set a constant)
    held = [
        dict(id="h-full-llama1b-gc0", kind="full", cfg=LLAMA1B, batch=2, seq=2048, gc=False, optim="adamw_torch"),
        dict(id="h-full-qwen1.5b-8bit", kind="full", cfg=QWEN15, batch=4, seq=2048, gc=True, optim="adamw_8bit"),
        dict(id="h-full-gemma3-1b", kind="full", cfg=GEMMA3_1B, batch=2, seq=1024, gc=True, optim="adamw_torch"),
        dict(id="h-dpo-qwen1.5b", kind="dpo", cfg=QWEN15, batch=1, seq=2048, gc=True, optim="adamw_8bit"),
        dict(id="h-dpo-llama1b-gc0", kind="dpo", cfg=LLAMA1B, batch=2, seq=512, gc=False, optim="adamw_torch"),
        dict(id="h-moe-mixtral-full", kind="full", cfg=MIXTRAL_S, batch=4, seq=1024, gc=True, optim="adamw_torch"),
        dict(id="h-moe64-lora-gc0", kind="lora", cfg=MOE64, batch=8, seq=1024, gc=False, optim="adamw_torch"),
        dict(id="h-moe-full-8x2048", kind="full", cfg=MOE, batch=8, seq=2048, gc=True, optim="adamw_torch"),
        dict(id="h-vlm-frozen-672", kind="vlm", cfg=VLM, batch=1, seq=2048, gc=True, optim="adamw_torch",
             image=672, vision_trained=False),
        dict(id="h-vlm-trained-336", kind="vlm", cfg=VLM, batch=4, seq=1024, gc=True, optim="adamw_torch",
             image=336, vision_trained=True),
        dict(id="h-vlm-trained-gc0-672", kind="vlm", cfg=VLM, batch=1, seq=1024, gc=False, optim="adamw_torch",
             image=672, vision_trained=True),
        dict(id="h-grpo-llama1b", kind="grpo", cfg=LLAMA1B, batch=4, prompt=128, completion=512, gc=True,
             optim="adamw_torch", accum=4),
        dict(id="h-grpo-qwen0.5b-gc0", kind="grpo", cfg=QWEN05, batch=16, prompt=512, completion=256, gc=False,
             optim="adamw_torch", accum=1),
    ]
    rows += tagged("held-out", held)
    # SET 9: HELD-OUT again, written after the set-8 fit (optimizer step phase, MoE routed slots) and
    # before measuring, to score that fit on rows it has never seen
    s9 = [
        dict(id="s9-moe32-lora-gc0", kind="lora", cfg=MOE, batch=4, seq=2048, gc=False, optim="adamw_torch"),
        dict(id="s9-moe64-full-gc1", kind="full", cfg=MOE64, batch=4, seq=1024, gc=True, optim="adamw_torch"),
        dict(id="s9-mixtral-lora-gc0", kind="lora", cfg=MIXTRAL_S, batch=4, seq=2048, gc=False, optim="adamw_torch"),
        dict(id="s9-full-qwen1.5b-gc0", kind="full", cfg=QWEN15, batch=1, seq=2048, gc=False, optim="adamw_torch"),
        dict(id="s9-vlm-trained-gc1-b1", kind="vlm", cfg=VLM, batch=1, seq=2048, gc=True, optim="adamw_torch",
             image=448, vision_trained=True),
        dict(id="s9-full-gemma3-gc0", kind="full", cfg=GEMMA3_1B, batch=1, seq=2048, gc=False, optim="adamw_torch"),
        dict(id="s9-dpo-llama1b-8bit", kind="dpo", cfg=LLAMA1B, batch=2, seq=1024, gc=True, optim="adamw_8bit"),
        dict(id="s9-grpo-qwen1.5b", kind="grpo", cfg=QWEN15, batch=4, prompt=256, completion=256, gc=True,
             optim="adamw_torch", accum=2),
        dict(id="s9-full-llama1b-fused", kind="full", cfg=LLAMA1B, batch=4, seq=1024, gc=True, optim="adamw_torch_fused"),
        dict(id="s9-moe-full-fused", kind="full", cfg=MOE, batch=4, seq=1024, gc=True, optim="adamw_torch_fused"),
    ]
    rows += tagged("set9", s9)
    # SET 10: the final HELD-OUT set, written before sets 8 and 9 were used to fit (PEFT's LoRA on fused
    # experts, the logits at the loss) and measured once after it
    s10 = [
        dict(id="s10-qwen2moe-lora-gc0", kind="lora", cfg=QWEN2MOE_S, batch=2, seq=2048, gc=False, optim="adamw_torch"),
        dict(id="s10-olmoe-full-gc1", kind="full", cfg=OLMOE_S, batch=4, seq=1024, gc=True, optim="adamw_torch"),
        dict(id="s10-moe-lora-gc1-8k", kind="lora", cfg=MOE, batch=1, seq=8192, gc=True, optim="adamw_torch"),
        dict(id="s10-mixtral-full-gc0", kind="full", cfg=MIXTRAL_S, batch=2, seq=1024, gc=False, optim="adamw_torch"),
        dict(id="s10-full-llama3b-8bit", kind="full", cfg=LLAMA3B, batch=2, seq=2048, gc=True, optim="adamw_8bit"),
        dict(id="s10-dpo-qwen0.5b-gc0", kind="dpo", cfg=QWEN05, batch=4, seq=512, gc=False, optim="adamw_torch"),
        dict(id="s10-vlm-frozen-gc0", kind="vlm", cfg=VLM, batch=2, seq=1024, gc=False, optim="adamw_torch",
             image=448, vision_trained=False),
        dict(id="s10-grpo-llama1b-gc0", kind="grpo", cfg=LLAMA1B, batch=8, prompt=256, completion=256, gc=False,
             optim="adamw_torch", accum=1),
        dict(id="s10-full-gemma3-fused", kind="full", cfg=GEMMA3_1B, batch=4, seq=1024, gc=True, optim="adamw_torch_fused"),
        dict(id="s10-moe64-lora-gc1", kind="lora", cfg=MOE64, batch=8, seq=2048, gc=True, optim="adamw_torch"),
    ]
    rows += tagged("set10", s10)
    # SET 12: HELD-OUT for the least-memory refit (issue 16 scored as issue 12 is: against the least memory
    # that trains), written and committed with their estimates before any workload row was bisected
    s12 = [
        dict(id="s12-full-qwen3-0.6b-gc1", kind="full", cfg=QWEN3_06, batch=4, seq=1024, gc=True, optim="adamw_torch"),
        dict(id="s12-full-qwen0.5b-8bit-gc0", kind="full", cfg=QWEN05, batch=2, seq=2048, gc=False, optim="adamw_8bit"),
        dict(id="s12-full-llama1b-fused-b8", kind="full", cfg=LLAMA1B, batch=8, seq=1024, gc=True,
             optim="adamw_torch_fused"),
        dict(id="s12-dpo-qwen3-0.6b-gc1", kind="dpo", cfg=QWEN3_06, batch=2, seq=1024, gc=True, optim="adamw_torch"),
        dict(id="s12-dpo-llama1b-8bit-gc0", kind="dpo", cfg=LLAMA1B, batch=1, seq=1024, gc=False, optim="adamw_8bit"),
        dict(id="s12-moe32-full-gc1-4k", kind="full", cfg=MOE, batch=2, seq=4096, gc=True, optim="adamw_torch"),
        dict(id="s12-mixtral-lora-gc1", kind="lora", cfg=MIXTRAL_S, batch=4, seq=2048, gc=True, optim="adamw_torch"),
        dict(id="s12-olmoe-lora-gc0", kind="lora", cfg=OLMOE_S, batch=2, seq=2048, gc=False, optim="adamw_torch"),
        dict(id="s12-qwen2moe-full-gc1", kind="full", cfg=QWEN2MOE_S, batch=2, seq=2048, gc=True, optim="adamw_torch"),
        dict(id="s12-vlm-trained-gc1-560", kind="vlm", cfg=VLM, batch=1, seq=1024, gc=True, optim="adamw_torch",
             image=560, vision_trained=True),
        dict(id="s12-vlm-frozen-gc1-b4", kind="vlm", cfg=VLM, batch=4, seq=1024, gc=True, optim="adamw_torch",
             image=336, vision_trained=False),
        dict(id="s12-grpo-qwen3-0.6b", kind="grpo", cfg=QWEN3_06, batch=8, prompt=256, completion=256, gc=True,
             optim="adamw_torch", accum=2),
    ]
    rows += tagged("set12", s12)
    # SET 13: HELD-OUT for the fourth session's refit (expert and vision-tower gradients freed before the
    # backward peak, QK-norm of Qwen3-MoE / OLMo, grad_frag over every landed gradient, mid grad_frag
    # 0.25 / step_frag 0.05 fitted on the 26 bisected rows of sets 8-12); written and committed with
    # their estimates before it was measured; three shapes no set has measured
    s13 = [
        dict(id="s13-full-smollm2-gc1", kind="full", cfg=SMOLLM2_17, batch=4, seq=1024, gc=True, optim="adamw_torch"),
        dict(id="s13-full-olmo2-1b-gc0", kind="full", cfg=OLMO2_1B, batch=1, seq=2048, gc=False,
             optim="adamw_torch_fused"),
        dict(id="s13-dpo-smollm2-8bit-gc1", kind="dpo", cfg=SMOLLM2_17, batch=2, seq=1024, gc=True, optim="adamw_8bit"),
        dict(id="s13-dpo-gemma3-1b-gc1", kind="dpo", cfg=GEMMA3_1B, batch=1, seq=1024, gc=True, optim="adamw_torch"),
        dict(id="s13-grpo-llama1b-512", kind="grpo", cfg=LLAMA1B, batch=8, prompt=512, completion=256, gc=True,
             optim="adamw_torch", accum=2),
        dict(id="s13-grpo-olmo2-gc0", kind="grpo", cfg=OLMO2_1B, batch=4, prompt=128, completion=256, gc=False,
             optim="adamw_torch", accum=2),
        dict(id="s13-granitemoe-full-gc1", kind="full", cfg=GRANITEMOE_S, batch=4, seq=1024, gc=True, optim="adamw_torch"),
        dict(id="s13-granitemoe-lora-gc0", kind="lora", cfg=GRANITEMOE_S, batch=2, seq=2048, gc=False,
             optim="adamw_torch"),
        dict(id="s13-moe64-full-gc0", kind="full", cfg=MOE64, batch=2, seq=1024, gc=False, optim="adamw_torch"),
        dict(id="s13-qwen2moe-lora-gc1-4k", kind="lora", cfg=QWEN2MOE_S, batch=2, seq=4096, gc=True,
             optim="adamw_torch"),
        dict(id="s13-olmoe-full-8bit-gc0", kind="full", cfg=OLMOE_S, batch=2, seq=1024, gc=False, optim="adamw_8bit"),
        dict(id="s13-vlm-frozen-gc1-448-2k", kind="vlm", cfg=VLM, batch=2, seq=2048, gc=True, optim="adamw_torch",
             image=448, vision_trained=False),
        dict(id="s13-vlm-trained-gc0-336", kind="vlm", cfg=VLM, batch=2, seq=1024, gc=False, optim="adamw_torch",
             image=336, vision_trained=True),
    ]
    rows += tagged("set13", s13)
    for frac in (0.3, 0.5):
        rows.append(dict(id=f"grpo-vllm-colocate-{frac}", kind="grpo-vllm", cfg=QWEN05, batch=8, prompt=256,
                         completion=512, gc=True, optim="adamw_torch", accum=1, fraction=frac, set="held-out"))
    return rows


# -- the estimate ---------------------------------------------------------------------------------

def estimate_row(row: dict, gpu_total: int) -> dict:
    from dataclasses import replace

    from doctor.config.model_shapes import shape_from_config
    from doctor.vram import estimator as E
    from doctor.vram.workloads import Workload

    shape = shape_from_config(row["cfg"], name=row["id"])
    seq = row.get("seq") or row["prompt"] + row["completion"]
    batch = row["batch"] * (2 if row["kind"] == "dpo" else 1)
    wl = Workload()
    if row["kind"] == "dpo":
        wl = Workload(kind="dpo", reference="copy")
    elif row["kind"] in ("grpo", "grpo-vllm"):
        wl = Workload(kind="grpo", prompt_len=row["prompt"], completion_len=row["completion"],
                      gen_sequences=row["batch"] * row.get("accum", 1),
                      vllm="colocate" if row["kind"] == "grpo-vllm" else "none",
                      vllm_fraction=row.get("fraction", 0.0), gpu_total=gpu_total)
    elif row["kind"] == "vlm":
        patches = (row["image"] // 14) ** 2
        shape.vision_patches, shape.image_tokens = patches, patches // 4
        wl = Workload(images_per_sample=1, patches_per_image=patches, vision_trained=row["vision_trained"])
    full = row["kind"] != "lora"
    inp = E.Inputs(batch_size=batch, seq_len=seq, framework="transformers", quant="none", param_bytes=2,
                   grads_persist=False,   # the child zeroes gradients with set_to_none after each step
                   full_finetune=full, lora_r=16, optim=row["optim"], gc="hf" if row["gc"] else "off",
                   attn="sdpa", loss="hf", workload=wl)
    if row["kind"] == "vlm" and not row["vision_trained"]:
        inp = replace(inp, full_finetune=False, lora_targets=E.ALL_PROJECTIONS)   # LoRA on the LM, tower frozen
    low, mid, high = E.band(shape, inp, inp, inp)
    return {"low": int(low.total), "mid": int(mid.total), "high": int(high.total),
            "components": {c.key: int(c.bytes) for c in mid.components if c.at_peak}}


# -- the child: build, run, measure ---------------------------------------------------------------

def build_model(cfg: dict, device, dtype):
    import transformers as T

    kind = cfg["model_type"]
    if kind == "qwen2_5_vl":
        conf = T.Qwen2_5_VLConfig(**{k: v for k, v in cfg.items() if k != "model_type"})
        model = T.Qwen2_5_VLForConditionalGeneration(conf)
    else:
        conf = T.AutoConfig.for_model(kind, **{k: v for k, v in cfg.items() if k != "model_type"})
        model = T.AutoModelForCausalLM.from_config(conf)
    model.config.use_cache = False
    return model.to(device=device, dtype=dtype), conf


def make_optimizer(params, name: str):
    import torch

    if name == "adamw_8bit":
        import bitsandbytes as bnb
        return bnb.optim.AdamW8bit(params, lr=1e-5)
    return torch.optim.AdamW(params, lr=1e-5, fused=name == "adamw_torch_fused" or None)


def token_logps(logits, labels):
    import torch

    return torch.gather(logits.float().log_softmax(-1), 2, labels.unsqueeze(-1)).squeeze(-1).sum(-1)


def child(row: dict) -> dict:
    import torch

    cuda = torch.cuda.is_available() and not row.get("cpu")
    dev = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16
    torch.manual_seed(0)
    res: dict = {}
    llm = None
    if cuda and row.get("cap_bytes"):   # the caching allocator may reserve at most this (a smaller card)
        torch.zeros(1, device=dev)
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, row["cap_bytes"] / total))
    if row["kind"] == "grpo-vllm":
        llm = start_vllm(row)
        if llm is None:
            return {"skipped": "vllm is not importable on this machine"}
        res["after_vllm_start"] = torch.cuda.memory_reserved() if cuda else 0
    model, conf = build_model(row["cfg"], dev, dtype)
    if row["kind"] == "lora" or (row["kind"] == "vlm" and not row["vision_trained"]):
        from peft import LoraConfig, get_peft_model
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        if row["kind"] == "vlm":   # the language model's projections only: the tower stays frozen
            targets = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, target_modules=targets))
    if row["gc"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    ref = None
    if row["kind"] == "dpo":
        ref, _ = build_model(row["cfg"], dev, dtype)
        ref.requires_grad_(False).eval()
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], row["optim"])
    vocab = row["cfg"]["vocab_size"]
    phases: dict = {}

    def mark(name: str) -> None:
        """The peak since the last mark, per phase of the step (the last step's figures are kept):
        tells which part of the step sets the peak - forward, backward or the optimizer."""
        if cuda:
            torch.cuda.synchronize()
            phases[name] = {"reserved": torch.cuda.max_memory_reserved(), "allocated": torch.cuda.max_memory_allocated()}
            res["peak_reserved_all"] = max(res.get("peak_reserved_all", 0), phases[name]["reserved"])
            res["peak_allocated_all"] = max(res.get("peak_allocated_all", 0), phases[name]["allocated"])
            torch.cuda.reset_peak_memory_stats()

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        res["static_allocated"] = torch.cuda.memory_allocated()
    t0 = time.monotonic()
    for _step in range(3):
        if row["kind"] in ("full", "lora"):
            ids = torch.randint(0, vocab, (row["batch"], row["seq"]), device=dev)
            loss = model(input_ids=ids, labels=ids).loss
        elif row["kind"] == "dpo":
            ids = torch.randint(0, vocab, (2 * row["batch"], row["seq"]), device=dev)   # chosen + rejected
            with torch.no_grad():
                ref_lp = token_logps(ref(input_ids=ids).logits[:, :-1], ids[:, 1:])
            lp = token_logps(model(input_ids=ids).logits[:, :-1], ids[:, 1:])
            b = row["batch"]
            margin = (lp[:b] - ref_lp[:b]) - (lp[b:] - ref_lp[b:])
            loss = -torch.nn.functional.logsigmoid(0.1 * margin).mean()
        elif row["kind"] == "vlm":
            loss = vlm_step(model, conf, row, dev, dtype)
        else:
            loss = grpo_step(model, row, dev, vocab, llm, mark)
        mark("forward")
        loss.backward()
        mark("backward")
        opt.step()
        opt.zero_grad(set_to_none=True)
        mark("step")
        res.setdefault("phases", []).append(dict(phases))
    if cuda:
        res.update(peak_reserved=res["peak_reserved_all"], peak_allocated=res["peak_allocated_all"])
        try:   # this training process's own context (kernels loaded lazily as it trained): driver view - reserved
            from vram_grid import MemWatch
            used = MemWatch().process_used()
            if used:
                res["process_context"] = used - torch.cuda.memory_reserved()
        except Exception as exc:
            res["process_context_error"] = f"{type(exc).__name__}: {exc}"
    res["step_s"] = round((time.monotonic() - t0) / 3, 3)
    return res


def vlm_step(model, conf, row, dev, dtype):
    import torch

    side = row["image"] // 14
    patches = side * side
    tokens = patches // 4
    pixel = torch.randn(row["batch"] * patches, 3 * 2 * 14 * 14, device=dev, dtype=dtype)
    grid_thw = torch.tensor([[1, side, side]] * row["batch"], device=dev)
    vocab = row["cfg"]["vocab_size"]
    ids = torch.randint(0, min(vocab, 1000), (row["batch"], row["seq"]), device=dev)
    ids[:, 0] = conf.vision_start_token_id   # <|vision_start|> then the image's tokens, as the processor writes
    ids[:, 1:1 + tokens] = conf.image_token_id
    labels = ids.clone()
    labels[:, :1 + tokens] = -100
    return model(input_ids=ids, pixel_values=pixel, image_grid_thw=grid_thw, labels=labels).loss


def grpo_step(model, row, dev, vocab, llm, mark=None):
    import torch

    n = row["batch"] * row.get("accum", 1)
    prompts = torch.randint(0, vocab, (n, row["prompt"]), device=dev)
    if llm is None:   # model.generate on the whole generation batch, forced to the full length
        model.eval()
        model.config.use_cache = True
        with torch.no_grad():
            out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True,
                                 max_new_tokens=row["completion"], min_new_tokens=row["completion"])
        model.config.use_cache = False
        model.train()
        if mark is not None:
            mark("generate")
    else:
        from vllm import SamplingParams
        sp = SamplingParams(max_tokens=row["completion"], min_tokens=row["completion"], ignore_eos=True)
        outs = llm.generate([{"prompt_token_ids": p.tolist()} for p in prompts.cpu()], sp, use_tqdm=False)
        comp = torch.tensor([list(o.outputs[0].token_ids) for o in outs], device=dev)
        out = torch.cat([prompts, comp], dim=1)
    seqs = out[: row["batch"]]   # one optimisation step's completions
    logits = model(input_ids=seqs, logits_to_keep=row["completion"] + 1).logits[:, :-1]
    lp = torch.gather(logits.float().log_softmax(-1), 2, seqs[:, -row["completion"]:].unsqueeze(-1)).squeeze(-1)
    adv = torch.randn(row["batch"], 1, device=dev)
    return -(torch.exp(lp - lp.detach()) * adv).mean()


def start_vllm(row: dict):
    try:
        from vllm import LLM
    except Exception:
        return None
    ckpt = Path(row["ckpt_dir"]) / row["id"]
    save_checkpoint(row["cfg"], ckpt)
    return LLM(model=str(ckpt), gpu_memory_utilization=row["fraction"], enforce_eager=True, dtype="bfloat16",
               max_model_len=row["prompt"] + row["completion"] + 16, seed=0)


def save_checkpoint(cfg: dict, path: Path) -> None:
    """The random model + a WordLevel tokenizer, so vLLM can load a directory (no download)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if (path / "config.json").exists():
        return
    model, _ = build_model(cfg, torch.device("cpu"), torch.bfloat16)
    model.save_pretrained(path)
    vocab = {f"t{i}": i for i in range(cfg["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", eos_token="t1", pad_token="t0").save_pretrained(path)


def child_main(spec: str) -> None:
    row = json.loads(spec)
    try:
        res = child(row)
    except Exception as exc:   # an OOM is a result, not a crash of the benchmark
        res = {"error": f"{type(exc).__name__}: {str(exc)[:400]}", "oom": "out of memory" in str(exc).lower()}
    print(MARK + json.dumps(res), flush=True)


def run_child(row: dict, timeout: float) -> dict:
    # the repository first, then whatever the caller had (the GPU machine's carried wheels: bitsandbytes)
    env = dict(os.environ, **ENV, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    try:
        p = subprocess.run([sys.executable, __file__, "--child", json.dumps(row)], capture_output=True, text=True,
                           timeout=timeout, env=env, start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return {"error": f"child exited {p.returncode}: {p.stderr[-800:]}"}


CONTEXT_PROBE = ("import torch, json, subprocess, os\n"
                 "torch.zeros(1, device='cuda'); torch.cuda.synchronize()\n"
                 "free, total = torch.cuda.mem_get_info()\n"
                 "print(json.dumps({'context': total - free - torch.cuda.memory_reserved(), 'total': total}))\n")


def gpu_context() -> dict:
    """The CUDA context of a fresh process (driver-used minus torch-reserved; the GPU must be otherwise idle)."""
    try:
        p = subprocess.run([sys.executable, "-c", CONTEXT_PROBE], capture_output=True, text=True, timeout=120)
        return json.loads(p.stdout.strip().splitlines()[-1])
    except Exception as exc:
        return {"error": str(exc)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--ckpt-dir", default="/tmp/vram_workloads_ckpt")
    ap.add_argument("--only", default="", help="run rows whose id contains this")
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--jobs", type=int, default=1, help="rows at once (each peak is its own process's)")
    ap.add_argument("--ids", default="", help="comma-separated row ids (instead of --only)")
    ap.add_argument("--least", action="store_true",
                    help="also the least memory that trains (allocator cap bisected) and the verdict at HIGH / 0.85 x LOW")
    ap.add_argument("--reuse-peaks", default="",
                    help="comma-separated earlier results: rows measured there skip their uncapped peak run")
    ap.add_argument("--max-bisect", type=int, default=4)
    ap.add_argument("--resolution-gib", type=float, default=0.25)
    args = ap.parse_args(argv)
    from vram_grid import bisect_cap, device_full   # beside this script (on sys.path when it runs)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = {"context": 0, "total": 24 * 1024 ** 3} if args.cpu_smoke else gpu_context()
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "gpu": gpu, "rows": []}
    lock = threading.Lock()

    earlier = {}
    for f in filter(None, args.reuse_peaks.split(",")):
        earlier.update({r["id"]: r["measured"] for r in json.loads(Path(f).read_text())["rows"]
                        if "peak_reserved" in (r.get("measured") or {})})

    def measure(row: dict, cap: float | None = None) -> dict:
        """One fresh process (capped at `cap` bytes of reserved memory when given)."""
        spec = dict(row, cap_bytes=int(cap)) if cap else row
        meas = run_child(spec, args.timeout)
        for _ in range(3):   # the card shared with other jobs (--jobs, or another benchmark)
            if not (meas.get("oom") and device_full(meas)):
                break
            time.sleep(20)
            meas = dict(run_child(spec, args.timeout), retried_after="device-full")
        return meas

    def capped(row: dict, cap: float) -> dict:
        m = measure(row, cap)
        status = "ok" if "peak_reserved" in m else "oom" if m.get("oom") else "error"
        keep = ("peak_reserved", "peak_allocated", "process_context", "error", "retried_after")
        return {"status": status, "cap_bytes": int(cap), **{k: m[k] for k in keep if k in m}}

    def least(row: dict, est: dict, meas: dict) -> dict:
        """The least memory that trains, as set 7 measures it for the dense rows: the allocator cap bisected
        between peak allocated (the live bytes) and peak reserved (trained), + this process's context;
        and the verdict: capped at HIGH it must train, at 0.85 x LOW it should not."""
        ctx = meas.get("process_context") or gpu.get("context") or 0
        out: dict = {"context": int(ctx), "verdict": {}}
        if est["high"] - ctx < meas["peak_reserved"]:   # else the uncapped run never reserved more than HIGH
            out["verdict"]["high"] = capped(row, max(0.25 * 1024 ** 3, est["high"] - ctx))
        lo, hi, trials = bisect_cap(lambda cap: capped(row, cap), float(meas["peak_allocated"]),
                                    float(meas["peak_reserved"]), args.resolution_gib * 1024 ** 3, args.max_bisect)
        out.update(cap=int(hi), lower=int(lo), trials=trials)
        out["verdict"]["0.85low"] = capped(row, max(0.25 * 1024 ** 3, 0.85 * est["low"] - ctx))
        return out

    def one(row: dict) -> None:
        row = dict(row, ckpt_dir=args.ckpt_dir, cpu=args.cpu_smoke)
        est = estimate_row(row, int(gpu.get("total") or 0))
        meas = dict(earlier[row["id"]], reused="peak run from --reuse-peaks") if row["id"] in earlier \
            else measure(row)
        if args.least and "peak_reserved" in meas and not args.cpu_smoke:
            meas["least"] = least(row, est, meas)
        rec = score({"id": row["id"], "set": row.get("set", "-"), "estimate": est, "measured": meas},
                    gpu.get("context"))
        with lock:
            results["rows"].append(rec)
            (out / "vram_workloads.json").write_text(json.dumps(results, indent=1))
        print(row["id"], json.dumps({k: rec.get(k) for k in ("peak", "error", "false_fit")}), meas.get("error", ""),
              flush=True)

    ids = set(filter(None, args.ids.split(",")))
    todo = [r for r in grid(args.cpu_smoke) if (r["id"] in ids if ids else not args.only or args.only in r["id"])]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(one, todo))
    order = {r["id"]: i for i, r in enumerate(todo)}
    results["rows"].sort(key=lambda r: order[r["id"]])
    (out / "vram_workloads.json").write_text(json.dumps(results, indent=1))
    (out / "vram_workloads.md").write_text(markdown(results))
    return 0 if all("error" not in r["measured"] for r in results["rows"]) else 1


def score(rec: dict, context) -> dict:
    """rec + peak (peak reserved + the CUDA context), the mid edge's error and whether HIGH is below it;
    where the least memory that trains was measured: least (its bracket's upper end + the process's
    context), the error against it, and a false fit when the run capped at HIGH ran out of memory (or,
    without that run, HIGH is below the bracket)."""
    meas, est = rec.get("measured") or {}, rec["estimate"]
    if "peak_reserved" in meas and context is not None:
        peak = meas["peak_reserved"] + context
        rec.update(peak=peak, error=(est["mid"] - peak) / peak, false_fit=est["high"] < peak)
    lst = meas.get("least")
    if lst:
        least, lower = lst["cap"] + lst["context"], lst["lower"] + lst["context"]
        at_high = (lst.get("verdict") or {}).get("high", {}).get("status")
        rec.update(least=least, least_lower=lower, error_least=(est["mid"] - least) / least,
                   false_fit_least=at_high == "oom" if at_high in ("ok", "oom") else est["high"] < lower,
                   low_trained=(lst.get("verdict") or {}).get("0.85low", {}).get("status") == "ok")
    return rec


def markdown(results: dict) -> str:
    g = 1024 ** 3
    lines = [f"# Workload VRAM: measured vs estimated ({results['date']})", "",
             "| row | set | measured GiB | estimate low / mid / high GiB | error (mid) | false fit |",
             "|---|---|---|---|---|---|"]
    errs: dict[str, list] = {}
    fits: dict[str, list] = {}
    for r in results["rows"]:
        e, name = r["estimate"], r.get("set", "-")
        if "peak" in r:
            errs.setdefault(name, []).append(abs(r["error"]))
            if r["false_fit"]:
                fits.setdefault(name, []).append(r["id"])
            m, err, ff = f"{r['peak'] / g:.2f}", f"{r['error']:+.1%}", "**yes**" if r["false_fit"] else ""
        else:
            m, err, ff = r["measured"].get("skipped") or r["measured"].get("error", "-"), "", ""
        lines.append(f"| {r['id']} | {name} | {m} | {e['low'] / g:.2f} / {e['mid'] / g:.2f} / {e['high'] / g:.2f} "
                     f"| {err} | {ff} |")
    for name, es in errs.items():
        lines += ["", f"- **{name}**: median |error| {statistics.median(es):.1%}, worst {max(es):.1%} over {len(es)} rows;"
                  f" false fits {len(fits.get(name, []))}" + (f" ({', '.join(fits[name])})" if fits.get(name) else "")]
    least = [r for r in results["rows"] if "least" in r]
    if least:
        lines += ["", "## Against the least memory that trains (allocator cap bisected; + the process's context)", "",
                  "| row | set | least GiB (bracket) | mid GiB | error (mid) | at HIGH | at 0.85 x LOW |", "|---|---|---|---|---|---|---|"]
        by: dict[str, list] = {}
        for r in least:
            v = r["measured"]["least"].get("verdict") or {}
            lines.append(f"| {r['id']} | {r.get('set', '-')} | {r['least'] / g:.2f} ({r['least_lower'] / g:.2f}-{r['least'] / g:.2f}) "
                         f"| {r['estimate']['mid'] / g:.2f} | {r['error_least']:+.1%} | {v.get('high', {}).get('status', 'ok (never reached)')} "
                         f"| {v.get('0.85low', {}).get('status', '-')} |")
            by.setdefault(r.get("set", "-"), []).append(r)
        for name, rs in by.items():
            es = [abs(r["error_least"]) for r in rs]
            ff = [r["id"] for r in rs if r["false_fit_least"]]
            lines += ["", f"- **{name}** vs least: median |error| {statistics.median(es):.2%}, worst {max(es):.2%} over "
                      f"{len(es)} rows; false fits {len(ff)}" + (f" ({', '.join(ff)})" if ff else "")
                      + f"; trained at 0.85 x LOW: {sum(r['low_trained'] for r in rs)}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
    else:
        sys.exit(main())
