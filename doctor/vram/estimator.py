"""Peak VRAM of one LoRA / QLoRA / full fine-tuning step, by component, as a low-mid-high band.

Formulas and constants: docs/knowledge/vram-and-hang.md Part 1 (§1.3 components, §1.4 spec,
§1.6 worked examples, which tests/test_vram_estimator.py reproduces). `estimate()` is pure
arithmetic on a ModelShape and an `Inputs`; `estimate_for()` turns facts + a TrainingConfig into
Inputs (doctor/vram/inputs.py), runs the band and compares it with the GPU's usable memory.

Units: bytes everywhere. The doc's examples are in GB (10^9); the renderers print GiB.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from doctor.config.model_shapes import ModelShape
# Re-exported: the estimator's callers import these from here. They live in model.py so that
# inputs.py and workloads.py need not import the estimator (issue 14: no import cycles).
from doctor.vram.model import (ALL_PROJECTIONS, LORA_BYTES, NF4_BYTES, NF4_DQ_BYTES, Component,  # noqa: F401
                               Inputs, optimizer_bytes)

@dataclass(frozen=True)
class Constants:
    """One edge of the band. vram-and-hang.md §1.4: low = (c 12, k 1.2, margin .05), high = (17, 1.3, .2)."""
    context: float            # C1: CUDA context + kernels, not in memory_reserved (PyTorch #86509: 287-667 MB;
                              # measured 0.79-0.87 GB per process on an H100, CUDA 13.0, driver 580:
                              # benchmarks/vram-validation.md)
    k_layer: float            # C6: one layer's activations live while it is recomputed/back-propagated
    k_layer_unsloth: float    # C6 under Unsloth's offloaded checkpointing: measured per-token slope
                              # 1.90x (8B) and 1.91x (1B) A_layer on H100/H200, unsloth 2026.10.9
                              # (benchmarks/vram-validation.md); the spec's 1.25 under-predicted by 12-18%
    c_logits_hf: float        # C7: bytes per token per vocab entry at the HF loss peak (bf16 + fp32 copies + grads)
    c_logits_unsloth_old: float   # C7: Unsloth before its fused loss: bf16 logits, gradient written in place
    c_logits_eval: float      # C7: eval forward only (bf16 logits + fp32 copy + log_softmax)
    margin: float             # C8: allocator slack on the token-dependent part (fragmentation the capped
                              # allocator cannot give back; set 7 refit, see below)
    upcast_act_factor: float  # prepare_model_for_kbit_training: fp32 norms promote activations; 1.5
                              # fits QLoRA with GC off (-15%/-19% at 1.0) and on (H100/H200, 2026-11-28);
                              # used by the Unsloth path only since set 7 (the HF path is tensor by tensor)
    hf_act: float = 1.0       # scale on hf_activation_bytes_per_token (set 7 FIT rows)
    math_backward: float = 2.0   # fp32 score-sized tensors alive besides P in a math-path layer's backward
                                 # (grad of P, grad of the scores, the masked scores; set 7 F16: 3)
    grad_frag: float = 0.25   # full fine-tuning, gradients freed between steps: the cache the backward
                              # peak leaves unusable as gradients land, in gradient sizes (sets 8-9 pooled,
                              # 20 rows: -0.66..+2.06, median 0.25; high: the least that left no pooled row
                              # above HIGH, 0.5, + 0.1). Mid: least-memory refits below
    step_frag: float = 0.25   # reserved over allocated at the optimizer step, on the trainable part (set 8
                              # FIT rows where the step is the peak: 1.23, 1.25, 1.34; high max+0.10).
                              # Low 0 and mid 0.05 since the least-memory refits (below): under a cap
                              # the allocator gives most of this back


# Set 7 (issue 12, H200 2026-12-03): the target is the LEAST memory a configuration trains in (the
# allocator capped and bisected), not peak reserved. With the transformers path modelled tensor by
# tensor, the mid edge without slack was within -4.5%..+10% of it on the 14 transformers FIT rows, so
# the slack `margin` was refitted mechanically (benchmarks/gpu/vram_bisect.py refit(): mid median(r)-1,
# high max(r)-1+0.10 of r = (least - static) / token part; low's rule gave 0.06, above mid's, which put
# low over mid on rows without checkpointing, so low keeps no slack) and `math_backward` from
# the one FIT row on SDPA's math path (+2.0 GiB = one more fp32 score tensor at 4096 tokens).
# Second refit, mid edge only (benchmarks/vram_set7_logits_refit.py, the 17 FIT rows scored inside
# their bisection brackets): logits 12.5 bytes per token per vocabulary entry, not 15 (fitted; of the
# tensors at the loss - bf16 logits 2, fp32 copy 4, log-softmax 4, its gradient 4 - not all are live
# together under a cap), and the slack 6%. Scored on set 11, rows written before it was measured.
# Least-memory refit of the workload constants (issue 16, H200 2026-12-03, 14 rows of sets 8-10 bisected
# as set 7's: benchmarks/results/h200-2026-12-03-set11/r1/workloads): the three MoE rows whose optimizer
# step is the peak trained within 0.2-0.4 GiB of their peak allocated (the allocator frees its cache and
# retries before failing), while the rows whose backward is the peak trained only near peak reserved
# (full-qwen0.5b-gc1: 12.40 vs 12.55 GiB): the step's fragmentation is given back, the backward's is not.
# Mid step_frag 0, grad_frag 0.5: the least of median + max/2 over those rows with the high edge kept
# (grad_frag 0.75 scored alike but would put mid above HIGH's 0.6); scored on set 12, not seen before.
# Fourth session (after set 12 missed by a hair): the experts' and the vision tower's gradients left
# the backward peak (freed between steps, they land after it) and grad_frag covers every landed
# gradient; mid grad_frag 0.25, step_frag 0.05 refitted on all 26 bisected rows of sets 8-12 (median
# 4.1%, worst 10.8%; benchmarks/vram_workloads_least_refit.py). Set 13, written before, measured
# after: median 1.7%, worst 11.0%, no false fits (benchmarks/vram-validation.md).
LOW = Constants(context=0.3e9, k_layer=1.2, k_layer_unsloth=1.6, c_logits_hf=12, c_logits_unsloth_old=2, c_logits_eval=8,
                margin=0.0, upcast_act_factor=1.0, math_backward=2.0, step_frag=0.0, grad_frag=0.0)
MID = Constants(context=0.8e9, k_layer=1.25, k_layer_unsloth=1.9, c_logits_hf=12.5, c_logits_unsloth_old=3, c_logits_eval=10,
                margin=0.06, upcast_act_factor=1.5, math_backward=3.0, step_frag=0.05, grad_frag=0.25)
HIGH = Constants(context=1.0e9, k_layer=1.3, k_layer_unsloth=2.2, c_logits_hf=18, c_logits_unsloth_old=4, c_logits_eval=12,
                 margin=0.13, upcast_act_factor=1.8, math_backward=3.5, step_frag=0.44, grad_frag=0.6)


@dataclass
class Breakdown:
    components: list[Component]
    host_offload: float = 0.0           # host RAM for Unsloth's offloaded checkpoints
    host_sharded: float = 0.0           # host RAM per rank for ZeRO / FSDP CPU offload (doctor/vram/sharding.py)

    def part(self, key: str) -> float:
        return sum(c.bytes for c in self.components if c.key == key and c.at_peak)

    @property
    def total(self) -> float:
        return sum(c.bytes for c in self.components if c.at_peak)

    @property
    def dynamic(self) -> float:
        return sum(c.bytes for c in self.components if c.at_peak and c.token_dependent)

    @property
    def static(self) -> float:
        return self.total - self.dynamic


# -- helpers --------------------------------------------------------------------------------------

def lora_modules(shape: ModelShape, targets: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """(in, out) of each adapted module per layer; fused names and 'all-linear' expanded."""
    dims = shape.module_dims()
    wanted: list[str] = []
    for t in targets:
        t = t.split(".")[-1]
        if t in ("all-linear", "all", "all_linear"):
            wanted += ALL_PROJECTIONS
        elif t == "qkv_proj":
            wanted += ["q_proj", "k_proj", "v_proj"]
        elif t == "gate_up_proj":
            wanted += ["gate_proj", "up_proj"]
        elif t in dims:
            wanted.append(t)
    return {m: dims[m] for m in dict.fromkeys(wanted)}


def lora_params(shape: ModelShape, r: int, targets: tuple[str, ...]) -> int:
    """N_lora = r * L * sum(in + out) over adapted modules (vram-and-hang.md §1.2)."""
    return r * shape.layers * sum(i + o for i, o in lora_modules(shape, targets).values())


def activation_bytes_per_token(shape: ModelShape, act: float = 2.0) -> float:
    """A_layer: what one decoder layer saves for backward, per token, with flash/SDPA attention:
    norm in/out, Q, K, V, attention out, o_proj in (attention); norm in/out, gate, silu, up, product
    (MLP) = 2*(7h + 2kv + 4i) bytes for Llama (§1.3 C6). Each norm beyond Llama's two (Gemma 2/3's
    post-attention and post-feedforward norms, computed in fp32) keeps an fp32 input and its output."""
    h, i = shape.hidden, shape.intermediate
    extra_norms = max(0, shape.norms_per_layer - 2) * (4 + act) * h
    return act * (4 * h + 3 * shape.q_dim + 2 * shape.kv_dim + 4 * i) + extra_norms


# RMSNorm on q and k (fp32 inputs saved): per head (Qwen3, Qwen3-MoE, Gemma 3) or over the whole
# projection (OLMo 2/3, OLMoE: Olmo2Attention.q_norm is RMSNorm(heads x head_dim)); transformers 5.17
QK_NORM_TYPES = ("qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2", "olmo3", "olmoe")


def hf_activation_bytes_per_token(shape: ModelShape, inp: "Inputs") -> float:
    """What one decoder layer keeps for backward per token on the transformers + PEFT path, tensor
    by tensor (torch autograd saves only what a gradient needs; the base weights are frozen, so a
    frozen Linear saves no activation, only the LoRA A matmul does):
    - each RMSNorm keeps its fp32 input copy (x.to(float32) feeds pow and the rsqrt product): 4 bytes
      per hidden unit, whatever the model dtype; Qwen3/Gemma 3 add per-head q/k norms (4 x (q + kv));
    - each adapted module keeps its own copy of its input: PEFT casts x to the fp32 adapter dtype
      (_cast_input_dtype) and autocast casts it back to bf16 for the matmul, a fresh tensor per module
      (q, k and v do not share one); without autocast the fp32 copy itself is kept;
    - SDPA keeps q, k, v and its output in the dtype it runs in (flash / memory-efficient: no scores;
      the math path and eager attention are counted per score in estimate());
    - the SwiGLU MLP keeps the gate (activation input), the activation output and up (their product's
      operands) in the projections' output dtype: bitsandbytes Linear4bit casts its output back to
      the input's dtype, fp32 once prepare_model_for_kbit_training upcast the embeddings, so the MLP
      runs in fp32 under QLoRA even with autocast.
    Bytes: sdpa = 2 under autocast else the residual stream's dtype; proj = the residual stream's
    dtype for quantized bases (cast back), else 2 under autocast."""
    h, i, q, kv = shape.hidden, shape.intermediate, shape.q_dim, shape.kv_dim
    resid = residual_bytes(inp)
    copy = 2 if inp.autocast else 4
    sdpa = 2 if inp.autocast else resid
    proj = resid if (inp.quant != "none" or not inp.autocast) else 2
    norms = 4 * h * shape.norms_per_layer + (4 * (q + kv) if shape.model_type in QK_NORM_TYPES else 0)
    mods = lora_modules(shape, inp.lora_targets) if not inp.full_finetune else {}
    if shape.fused_projections:   # Phi-3: one qkv_proj and one gate_up_proj module, one input copy each
        groups = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}
        mods = {groups.get(m, m): d for m, d in mods.items()}
    moe = 0.0
    if shape.is_moe:
        # transformers >= 5 runs the routed experts in a loop over experts (Qwen3MoeExperts.forward:
        # hidden_states[token_idx], linear with gate_up_proj[e], act * up, linear with down_proj[e],
        # * routing weight, index_add_): per routed slot it keeps its own gathered input, the gate_up
        # output, the activation, the product and the down output (+ the gathered input of down's
        # weight gradient when the experts train). Counted with saved_tensors_hooks on the CPU
        # (Qwen3-MoE 64x top-8 and 32x top-4, Mixtral 8x top-2; LoRA: 0.97-1.03 x 2h+4I per slot for
        # Qwen3-MoE, 0.6 x for Mixtral; full: 0.94-1.05 x 3h+4I), + the fp32 router logits and
        # probabilities and two int64 indices per slot. Only the shared expert (if any) is dense.
        per_slot = (3 if inp.full_finetune else 2) * h + 4 * shape.moe_intermediate
        moe = proj * shape.experts_per_tok * per_slot + 8 * shape.num_experts + 16 * shape.experts_per_tok
        i = shape.shared_intermediate
        mods = {m: d for m, d in mods.items() if m not in ("gate_proj", "up_proj", "down_proj")}
    adapted = sum(i_ for i_, _o in mods.values())
    if inp.full_finetune:   # every Linear's weight needs a gradient: each keeps its input, and modules
        # fed the same tensor (q/k/v, gate/up) share it: the two norm outputs, o's and down's inputs
        adapted, copy = 2 * h + q + i, resid if not inp.autocast else 2
    # Phi-3's v is a view of the fused qkv output, so SDPA keeping v keeps all of it alive
    fused_qkv = sdpa * (q + kv) if shape.fused_projections else 0
    # small per-token terms: each adapter's rank-r A output (kept twice: B's input and its cast),
    # RoPE's cos/sin (kept by the q and k products, shared), SDPA's fp32 logsumexp per head
    small = 2 * copy * inp.lora_r * len(mods) + 2 * sdpa * shape.head_dim + 4 * shape.heads
    return norms + copy * adapted + sdpa * (2 * q + 2 * kv) + fused_qkv + proj * 3 * i + moe + small


def residual_bytes(inp: "Inputs") -> int:
    """Bytes per element of the hidden states between layers: fp32 once the embeddings are fp32
    (prepare_model_for_kbit_training upcasts them; autocast does not touch the residual adds)."""
    if (inp.upcast and inp.quant != "none") or inp.param_bytes == 4:
        return 4
    return 2


def sdpa_backend(shape: ModelShape, inp: "Inputs") -> str:
    """Which kernel torch's scaled_dot_product_attention picks (torch/csrc/.../sdp_utils.cpp, 2.x):
    flash needs fp16/bf16 and head_dim <= 256; the memory-efficient kernel takes fp32 but not
    enable_gqa, which transformers passes for grouped-query models when there is no padding mask;
    what neither takes runs the math path, which materialises the fp32 scores (b x heads x s^2) and
    keeps them for backward. Autocast casts SDPA's inputs to bf16 (SDPA is on its lower-precision
    list), so only a step without autocast on an fp32 (or fp32-upcast) model reaches the math path."""
    if inp.attn != "sdpa":
        return inp.attn
    fp32 = not inp.autocast and residual_bytes(inp) == 4
    if not fp32:
        return "flash" if shape.head_dim <= 256 else "efficient"
    return "math" if shape.kv_heads != shape.heads else "efficient"


def dropout_bytes_per_token(shape: ModelShape, targets: tuple[str, ...], act: float = 2.0) -> float:
    """lora_dropout > 0: PEFT keeps a dropped copy + a 1-byte mask of each adapted input (C6)."""
    return (act + 1) * sum(i for i, _o in lora_modules(shape, targets).values())


# -- the estimate ---------------------------------------------------------------------------------

def offloaded_checkpoint_bytes(shape: ModelShape, tokens: int) -> int:
    """Host RAM (pinned) that Unsloth's offloaded checkpointing keeps: one bf16 hidden state per
    layer and token (vram-and-hang.md C6; ~1 GiB for Llama 3.1 8B at 2 x 2048)."""
    return shape.layers * shape.hidden * 2 * tokens


def estimate(shape: ModelShape, inp: Inputs, k: Constants = MID) -> Breakdown:
    """Peak VRAM of a training step, by component (pure)."""
    h, L, V = shape.hidden, shape.layers, shape.vocab
    T, b, s = inp.tokens, inp.batch_size, inp.seq_len
    comps: list[Component] = [Component("context", "CUDA context", k.context,
                                        note="runtime + kernels, outside torch stats")]

    # C2 weights
    nonq_bytes = 4 if (inp.upcast and inp.quant != "none") else inp.param_bytes
    nonq = shape.embedding_params + shape.lm_head_params + shape.norm_params
    if inp.quant == "4bit":
        q_bytes = NF4_DQ_BYTES if inp.double_quant else NF4_BYTES
        lin = shape.linear_params * q_bytes
        wnote = f"NF4{'+DQ' if inp.double_quant else ''}"
    elif inp.quant == "8bit":   # int8 weight + one fp32 scale per output row
        lin = shape.layers * sum(i * o + 4 * o for i, o in shape.module_dims().values())
        wnote = "int8"
    else:
        lin = shape.linear_params * inp.param_bytes
        wnote = "fp32" if inp.param_bytes == 4 else "16-bit"
    emb_note = f"embed{'' if shape.tied_embeddings else '+head'} {'fp32' if nonq_bytes == 4 else '16-bit'}"
    if inp.upcast and inp.quant != "none":
        emb_note += " (kbit upcast)"
    comps.append(Component("weights", "base weights", lin + nonq * nonq_bytes, note=f"{wnote}; {emb_note}"))

    # C3 dequantization workspace
    if inp.quant != "none":
        comps.append(Component("dequant", "dequant workspace", 2 * 2 * h * shape.intermediate,
                               note="weights dequantized per matmul"))

    # C4/C5 trainable parameters, gradients, optimizer state
    if inp.full_finetune:
        n_train, train_bytes = shape.total_params, inp.param_bytes
        extra_weights = 0.0   # the trainable weights are the base weights
    else:
        n_train, train_bytes = lora_params(shape, inp.lora_r, inp.lora_targets), LORA_BYTES
        extra_weights = n_train * LORA_BYTES
    saved = [m for m in inp.modules_to_save if m.split(".")[-1] in ("embed_tokens", "lm_head")]
    n_saved = len(saved) * shape.embedding_params
    opt_per, _known = optimizer_bytes(inp.optim, train_bytes)
    opt_saved, _ = optimizer_bytes(inp.optim, nonq_bytes)
    if not inp.full_finetune:
        comps.append(Component("lora", "LoRA adapters" + (" + modules_to_save" if n_saved else ""),
                               extra_weights + n_saved * nonq_bytes,
                               note=f"r={inp.lora_r} x {len(lora_modules(shape, inp.lora_targets))} modules, fp32"))
    grads = n_train * train_bytes + n_saved * nonq_bytes
    if inp.full_finetune and not inp.grads_persist:
        # the Trainer's zero_grad(set_to_none=True) frees every gradient after the step; the backward
        # peak (the loss, or the recomputed top layer) comes before any layer's gradient exists except
        # the output head's. All of them exist at the optimizer step: workloads._optimizer_step.
        head = (shape.lm_head_params or shape.embedding_params) * train_bytes
        comps.append(Component("grads", "gradients", grads, at_peak=False,
                               note="freed between steps: alive at the optimizer step, not at the backward peak"))
        comps.append(Component("grads-head", "output head gradient", head,
                               note="the first gradient backward writes"))
    else:
        comps.append(Component("grads", "gradients", grads))
    comps.append(Component("optimizer", "optimizer state", n_train * opt_per + n_saved * opt_saved,
                           note=inp.optim))

    # C6 activations
    if inp.framework == "unsloth":   # Unsloth's own kernels: the spec's layer, measured slope k_layer_unsloth
        act = 2.0 * (k.upcast_act_factor if (inp.upcast and inp.quant != "none") else 1.0)
        per_tok = activation_bytes_per_token(shape, act)
    else:
        act = float(residual_bytes(inp))
        per_tok = k.hf_act * hf_activation_bytes_per_token(shape, inp)
    if inp.lora_dropout and inp.lora_dropout > 0 and not inp.full_finetune:
        per_tok += dropout_bytes_per_token(shape, inp.lora_targets, act)
    layer = T * per_tok
    transient = 0.0
    backend = sdpa_backend(shape, inp) if inp.framework != "unsloth" else inp.attn
    scores = b * shape.heads * s * s
    if backend == "eager":
        # per score: the fp32 softmax output and the probabilities for P@V are saved (+ the tanh
        # output where logits are soft-capped, Gemma 2); an fp32 softmax transient on top. Under
        # autocast the score matmuls (and so the tanh and the P@V input) are bf16 even when the
        # residual stream is fp32 (QLoRA upcast): 8 bytes a score, not 12 (sets 5-6, H200 2026-11-30)
        sact = 2.0 if (inp.autocast or inp.framework == "unsloth") else act
        layer += scores * (4 + sact + (sact if shape.attn_softcap else 0))
        transient = scores * 4
    elif backend == "math":
        # the math path keeps the fp32 softmax output P per layer (and q scaled, k and v repeated to
        # every head, not the kernels' q, k, v, out: seen with saved_tensors_hooks); in the layer's
        # backward the gradients of P and of the raw scores (fp32 each) exist together with it
        layer += scores * 4 + T * 4 * (shape.q_dim - 2 * shape.kv_dim)   # + scaled q, k and v expanded to every head
        transient = scores * 4 * k.math_backward
    scores_note = {"math": "; SDPA math path keeps fp32 scores (fp32 q/k/v + GQA: no mixed precision?)",
                   "eager": "; eager attention keeps the scores"}.get(backend, "")
    ckpt = L * h * act * T

    # C7 logits and loss
    if inp.loss == "hf":   # + the family's extra vocabulary-sized tensors (Gemma 2 soft-capping, Granite scaling)
        logits, lnote = (k.c_logits_hf + shape.logits_extra_bytes) * V * T, "fp32 logits, log-softmax, grads"
    elif inp.loss == "unsloth-logits":
        logits, lnote = k.c_logits_unsloth_old * V * T, "bf16 logits (pre-2024.12 Unsloth)"
    else:   # liger / Unsloth fused: chunked lm_head + CE, ~T*h elements in flight (C7)
        logits, lnote = 6 * h * T, "chunked fused loss"

    host = 0.0
    if inp.gc == "off":
        comps.append(Component("activations", "activations (all layers)", L * layer + transient,
                               token_dependent=True, note="no gradient checkpointing" + scores_note))
        comps.append(Component("logits", "logits + loss", logits, token_dependent=True, note=lnote))
    else:
        recompute = (k.k_layer_unsloth if inp.gc == "unsloth" else k.k_layer) * layer + transient
        if inp.gc == "unsloth":
            host = offloaded_checkpoint_bytes(shape, T)
        else:
            comps.append(Component("checkpoints", "layer checkpoints", ckpt, token_dependent=True,
                                   note="one hidden state per layer"))
        # the logits peak comes after all checkpoints and is freed before the layer recompute
        logits_peak = logits >= recompute
        comps.append(Component("activations", "activations (layer in backward)", recompute,
                               at_peak=not logits_peak, token_dependent=True,
                               note="recomputed" + (" + dropout copies" if inp.lora_dropout else "") + scores_note))
        comps.append(Component("logits", "logits + loss", logits, at_peak=logits_peak, token_dependent=True,
                               note=lnote))
    from doctor.vram.workloads import GRADIENT_KEYS, workload_components   # MoE, VLM, GRPO/vLLM, DPO reference

    comps += workload_components(shape, inp, k, comps)   # workloads hook
    if inp.full_finetune and not inp.grads_persist and k.grad_frag:
        # every gradient freed between steps (the experts' and the vision tower's too) lands in cache
        # the previous step's activations left: part of it is then unusable to the backward's peak
        landed = sum(c.bytes for c in comps if c.key in GRADIENT_KEYS)
        comps.append(Component("grads-frag", "cache left unusable as gradients land", k.grad_frag * landed,
                               note=f"{k.grad_frag:.2f} x the gradients (allocator fragmentation, sets 8-12)"))
    from doctor.vram.sharding import shard_components   # DDP / ZeRO / FSDP: one rank's share

    comps, host_sharded = shard_components(shape, inp, comps)   # sharding hook
    from doctor.vram.workloads import optimizer_step_components

    comps += optimizer_step_components(shape, inp, k, comps)   # optimizer step hook: a second peak
    bd = Breakdown(components=comps, host_offload=host, host_sharded=host_sharded)
    slack = k.margin * bd.dynamic
    comps.append(Component("slack", "allocator slack", slack, token_dependent=True,
                           note=f"{k.margin:.0%} of the token part"))
    return bd


def eval_peak(shape: ModelShape, inp: Inputs, eval_batch: int, k: Constants = MID) -> float:
    """Peak during evaluation: weights + adapters + optimizer state (grads freed) + a forward pass
    whose logits are the eval batch's (no backward)."""
    train = estimate(shape, inp, k)
    static = train.static - train.part("grads")
    T = eval_batch * inp.seq_len
    if inp.loss == "hf":
        logits = k.c_logits_eval * shape.vocab * T
    elif inp.loss == "unsloth-logits":
        logits = 2 * shape.vocab * T
    else:
        logits = 6 * shape.hidden * T
    forward = T * activation_bytes_per_token(shape)
    return static + (logits + forward) * (1 + k.margin)


# -- band, verdict, what fits ---------------------------------------------------------------------

FITS, TIGHT, DOES_NOT_FIT, UNKNOWN = "fits", "tight", "does-not-fit", "unknown"


@dataclass
class VramEstimate:
    model: str
    shape: ModelShape
    inputs: Inputs
    low: Breakdown
    mid: Breakdown
    high: Breakdown
    inputs_high: Optional[Inputs] = None    # the high edge's reading of the unknowns (fit searches use it)
    gpu_name: Optional[str] = None
    gpu_total: Optional[int] = None
    gpu_free: Optional[int] = None          # what the estimate is compared with
    gpu_measured_free: Optional[int] = None
    gpu_reserve: int = 0
    gpu_reserve_reason: str = ""
    whatif: bool = False
    host_ram_available: Optional[int] = None
    max_batch_size: Optional[int] = None    # largest batch at this seq_len whose high estimate fits
    max_seq_len: Optional[int] = None       # largest seq_len (multiple of 64) at this batch that fits
    assumptions: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.gpu_free is None:
            return UNKNOWN
        if self.high.total <= self.gpu_free:
            return FITS
        if self.low.total <= self.gpu_free:
            return TIGHT
        return DOES_NOT_FIT

    @property
    def host_ram_needed(self) -> float:
        return self.high.host_offload

    def _sharding_dict(self) -> Optional[dict]:
        """The configured sharding and what one rank holds (components and totals above are per rank)."""
        if not self.inputs.sharding:
            return None
        sh = dict(self.inputs.sharding)
        world = int(sh.get("world") or 1)
        return {**sh, "per_rank": {"low": int(self.low.total), "mid": int(self.mid.total), "high": int(self.high.total)},
                "host_ram_per_rank": int(self.mid.host_sharded),
                "host_ram_per_node": int(self.mid.host_sharded) * world,   # assumed: all ranks on one node
                "host_ram_available": self.host_ram_available}

    def to_dict(self) -> dict:
        keys = [c.key for c in self.mid.components]
        comps = []
        for key in keys:
            m = next(c for c in self.mid.components if c.key == key)
            comps.append({"key": key, "label": m.label, "bytes": int(m.bytes), "at_peak": m.at_peak,
                          "low": int(sum(c.bytes for c in self.low.components if c.key == key)),
                          "high": int(sum(c.bytes for c in self.high.components if c.key == key)),
                          "note": m.note})
        return {
            "model": self.model, "shape_source": self.shape.source,
            "inputs": asdict(self.inputs),
            "components": comps,
            "total": {"low": int(self.low.total), "mid": int(self.mid.total), "high": int(self.high.total)},
            "gpu": {"name": self.gpu_name, "total": self.gpu_total, "free": self.gpu_free,
                    "measured_free": self.gpu_measured_free, "reserve": self.gpu_reserve,
                    "reserve_reason": self.gpu_reserve_reason, "whatif": self.whatif},
            "host_ram": {"offload_needed": int(self.host_ram_needed), "available": self.host_ram_available},
            "verdict": self.verdict,
            "sharding": self._sharding_dict(),
            "max_batch_size": self.max_batch_size, "max_seq_len": self.max_seq_len,
            "assumptions": list(self.assumptions),
            "units": "bytes",
        }


def band(shape: ModelShape, low: Inputs, mid: Inputs, high: Inputs) -> tuple[Breakdown, Breakdown, Breakdown]:
    return estimate(shape, low, LOW), estimate(shape, mid, MID), estimate(shape, high, HIGH)


def largest_fitting(limit: int, fits) -> int:
    """Largest n in [1, limit] with fits(n), for a monotone fits; 0 if none."""
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits(hi):   # gallop: fits(lo) holds, hi is the next candidate
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)           # fits(hi) is false, or hi is past the limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def fit_search(shape: ModelShape, high: Inputs, free: float) -> tuple[int, int]:
    """(max batch at this seq_len, max seq_len in units of 64 at this batch) with the high estimate."""
    max_b = largest_fitting(4096, lambda n: estimate(shape, replace(high, batch_size=n), HIGH).total <= free)
    units = largest_fitting(seq_limit(shape, 1 << 21) // 64,
                            lambda n: estimate(shape, replace(high, seq_len=64 * n), HIGH).total <= free)
    return max_b, 64 * units


def seq_limit(shape: ModelShape, default: int) -> int:
    """The longest sequence worth suggesting: the model's context window where known (a longer
    one would fit in memory but train positions the model was never built for)."""
    return min(default, shape.max_position) if shape.max_position else default


def estimate_for(facts, config) -> Optional[VramEstimate]:
    """The estimate for a parsed config on these facts' GPU; None when the model shape is unknown."""
    from doctor.vram.gpus import usable_memory
    from doctor.vram.inputs import inputs_for

    shape = getattr(config, "model_shape", None)
    if shape is None:
        return None
    low_in, mid_in, high_in, assumptions = inputs_for(config, facts)
    from doctor.vram.workloads import attach_workload

    low_in, mid_in, high_in = attach_workload(config, facts, low_in, mid_in, high_in, assumptions)  # workloads hook
    sharding = getattr(config, "sharding", None)
    if sharding:   # sharding hook: every edge of the band is one rank's
        from doctor.vram.sharding import describe

        low_in, mid_in, high_in = (replace(i, sharding=tuple(sorted(sharding.items())))
                                   for i in (low_in, mid_in, high_in))
        assumptions.append(f"per GPU (one rank): {describe(sharding)}")
    low, mid, high = band(shape, low_in, mid_in, high_in)
    est = VramEstimate(model=config.model_name or shape.name, shape=shape, inputs=mid_in,
                       low=low, mid=mid, high=high, inputs_high=high_in, assumptions=assumptions,
                       host_ram_available=facts.platform.ram_available)
    mem = usable_memory(facts)
    if mem is not None:
        est.gpu_name, est.gpu_total, est.gpu_free = mem.name, mem.total, mem.free
        est.gpu_measured_free, est.gpu_reserve = mem.measured_free, mem.reserve
        est.gpu_reserve_reason, est.whatif = mem.reserve_reason, mem.whatif
        est.max_batch_size, est.max_seq_len = fit_search(shape, high_in, mem.free)
    return est
