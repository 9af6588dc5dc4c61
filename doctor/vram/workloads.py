"""The workloads beyond dense SFT, as extra components of the VRAM estimate: mixture-of-experts
(every expert stored, only the routed ones in the activations), vision-language models (the vision
tower and projector, its activations when it trains), GRPO (generation of num_generations completions,
vLLM colocated with its memory fraction taken up front), DPO (the reference model) and the
reference model of GRPO with beta > 0.

`attach_workload()` reads a TrainingConfig (+ facts for versions and the card's size) into a
`Workload` carried on the estimator's Inputs; `workload_components()` is called by
doctor/vram/estimator.estimate() where it assembles components (`# workloads hook`), so the band, the
fit search and the bar all include them. Every component states its assumption in its note.

Full fine-tuning needs nothing here for a dense model: the estimator already puts gradients and the
optimizer's state (per optimizer, checks/data/optimizer_state.json) on every parameter, in the
parameters' dtype (fp32-loaded weights: 4 + 4 + 8 bytes with AdamW; HF Trainer keeps no separate fp32
master copy of bf16-loaded weights). The experts and the vision tower it does not see are added here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from doctor.config.model_shapes import ModelShape

# Library defaults used when the script leaves a setting unset (sources in checks/data/workloads.json).
_DEFAULTS_FILE = "workloads"


def workload_defaults() -> dict:
    from doctor.knowledge import load

    return load(_DEFAULTS_FILE)["defaults"]


@dataclass(frozen=True)
class Workload:
    kind: str = "sft"                  # sft | grpo | dpo
    num_generations: int = 0           # GRPO: completions per prompt
    prompt_len: int = 0
    completion_len: int = 0
    gen_sequences: int = 0             # GRPO without vLLM: sequences model.generate runs at once
    vllm: str = "none"                 # none | colocate | server | unsloth (fast_inference: weights shared)
    vllm_fraction: float = 0.0         # gpu_memory_utilization
    vllm_sleep: bool = False           # vllm_enable_sleep_mode: vLLM's memory released during the training pass
    gpu_total: int = 0                 # the card's bytes (vLLM's fraction is of the whole card); 0 unknown
    reference: str = "none"            # none | copy: a second, frozen copy of the weights (DPO, GRPO beta>0)
    images_per_sample: int = 0         # VLM
    patches_per_image: int = 0
    vision_trained: bool = False
    experts_16bit: bool = False        # MoE under 4-bit where the library leaves the experts unquantized
    fused_experts: bool = True         # transformers >= 5 stores experts as 3-D parameters (False: nn.Linear each)


# -- config -> Workload ---------------------------------------------------------------------------

def _vllm_mode(cfg) -> str:
    if cfg.framework == "unsloth" and cfg.fast_inference:
        return "unsloth"
    if cfg.use_vllm:
        mode = (cfg.vllm_mode or workload_defaults()["trl.vllm_mode"]).lower()
        return "colocate" if mode == "colocate" else "server"
    return "none"


def experts_stay_16bit(facts, cfg, shape: Optional[ModelShape]) -> Optional[str]:
    """Why a 4-bit load leaves a MoE model's experts in 16 bits, or None. bitsandbytes replaces
    nn.Linear modules; transformers >= 5 stores the experts of its MoE models as fused 3-D
    nn.Parameters, which it skips (bitsandbytes#1849); Unsloth swaps them itself from the release in
    checks/data/workloads.json. The rule lives here so the check and the estimate agree."""
    from doctor.knowledge.versions import below

    if shape is None or not shape.is_moe:
        return None
    rule = workload_defaults()["moe-4bit"]
    tf = facts.version("transformers") if facts is not None else None
    if tf is None or below(tf, rule["transformers_fused_from"]):
        return None
    if cfg is not None and cfg.framework == "unsloth":
        uv = facts.version("unsloth")
        if uv is None or not below(uv, rule["unsloth_quantizes_from"]):
            return None
        return (f"transformers {tf} stores the experts as fused 3-D parameters and unsloth {uv} predates its "
                f"expert quantization ({rule['unsloth_quantizes_from']})")
    return (f"transformers {tf} stores the experts as fused 3-D parameters, which bitsandbytes' 4-bit "
            "conversion (nn.Linear only) skips")


def attach_workload(cfg, facts, low, mid, high, notes: list[str]):
    """(low, mid, high) Inputs with the workload attached (and GRPO's / DPO's sequence and batch)."""
    from doctor.config.workloads import is_dpo, is_grpo

    shape = cfg.model_shape
    d = workload_defaults()
    wl = Workload()
    seq = batch = None
    if is_grpo(cfg):
        p = cfg.max_prompt_length or d["trl.grpo.max_prompt_length"]
        c = cfg.max_completion_length or d["trl.grpo.max_completion_length"]
        g = cfg.num_generations or d["trl.grpo.num_generations"]
        if cfg.max_prompt_length is None or cfg.max_completion_length is None:
            notes.append(f"GRPO prompt/completion length not both set: TRL defaults ({p} + {c} tokens)")
        seq = p + c
        vllm = _vllm_mode(cfg)
        frac = 0.0
        if vllm == "colocate":
            frac = cfg.vllm_gpu_memory_utilization or d["trl.vllm_gpu_memory_utilization"]
        elif vllm == "unsloth":
            frac = cfg.gpu_memory_utilization or d["unsloth.gpu_memory_utilization"]
        accum = cfg.gradient_accumulation_steps or 1
        wl = replace(wl, kind="grpo", num_generations=g, prompt_len=p, completion_len=c, vllm=vllm,
                     vllm_fraction=float(frac), gen_sequences=mid.batch_size * accum,
                     vllm_sleep=bool(cfg.vllm_enable_sleep_mode) and vllm == "colocate",
                     gpu_total=_gpu_total(facts), reference=_reference(cfg, grpo=True))
        notes[:] = [n for n in notes if not n.startswith("sequence length not set")]
        notes.append(f"GRPO: each step trains on {mid.batch_size} completions of up to {seq} tokens "
                     f"({p} prompt + {c} completion)")
    elif is_dpo(cfg):
        if cfg.trainer_max_seq_length is None and cfg.max_seq_length is None:
            seq = d["trl.dpo.max_length"]
            notes.append(f"DPO max_length not set: TRL's default {seq}")
        batch = 2 * mid.batch_size
        notes.append(f"DPO: chosen and rejected run as one batch of {batch} sequences")
        wl = replace(wl, kind="dpo", reference=_reference(cfg, grpo=False))
    if shape is not None and shape.is_vlm:
        if cfg.finetune_vision_layers is not None:   # Unsloth's switch, or the script freezes the tower
            trained = cfg.finetune_vision_layers
        elif cfg.full_finetune:
            trained = True
        elif cfg.framework == "unsloth":
            trained = bool(d["unsloth.finetune_vision_layers"])   # get_peft_model's default
        else:   # PEFT: "all-linear" adapts the vision tower's linear layers too
            trained = any(t in ("all-linear", "all") for t in (cfg.target_modules or ()))
        patches = shape.vision_patches
        if cfg.max_pixels and not shape.image_cross_attention:
            patches = cfg.max_pixels // (14 * 14)   # Qwen-VL: 14 px patches, max_pixels caps each image
        wl = replace(wl, images_per_sample=1, patches_per_image=patches, vision_trained=trained)
        notes.append(f"vision model: one image per sample, {patches} patches through the vision tower"
                     + (f", {shape.image_tokens} image tokens inside the sequence length" if shape.image_tokens else ""))
    if shape is not None and shape.is_moe and facts is not None:
        from doctor.knowledge.versions import below

        tf = facts.version("transformers")
        if tf is not None and below(tf, d["peft-moe-experts"]["transformers_fused_from"]):
            wl = replace(wl, fused_experts=False)
    if shape is not None and shape.is_moe and mid.quant == "4bit":
        why = experts_stay_16bit(facts, cfg, shape)
        if why:
            wl = replace(wl, experts_16bit=True)
            notes.append(f"MoE experts counted in 16 bits: {why}")

    def fit(inp):
        out = replace(inp, workload=wl)
        if seq:
            out = replace(out, seq_len=seq)
        if batch:
            out = replace(out, batch_size=batch)
        return out
    return fit(low), fit(mid), fit(high)


def _reference(cfg, grpo: bool) -> str:
    """TRL keeps a frozen copy of the policy unless an adapter can be switched off (PEFT), the
    reference log-probs are precomputed (DPO), or GRPO's beta is 0 (its default since TRL 0.19)."""
    if grpo:
        beta = cfg.beta if cfg.beta is not None else workload_defaults()["trl.grpo.beta"]
        if not beta:
            return "none"
    if cfg.ref_model == "separate":
        return "copy"
    if not cfg.full_finetune or (not grpo and cfg.precompute_ref_log_probs):
        return "none"
    return "copy"


def _gpu_total(facts) -> int:
    if facts is None:
        return 0
    from doctor.vram.gpus import usable_memory

    mem = usable_memory(facts)
    return int(mem.total) if mem is not None and mem.total else 0


# -- the components -------------------------------------------------------------------------------

def expert_params(shape: ModelShape) -> int:
    """Every routed expert's gate, up and down projections, all layers (0 for a dense model)."""
    return shape.layers * shape.num_experts * 3 * shape.hidden * shape.moe_intermediate if shape.is_moe else 0


def moe_extra_params(shape: ModelShape) -> int:
    """Stored parameters the dense arithmetic (the active path) does not count: the routed experts a
    token does not visit, and the router."""
    if not shape.is_moe:
        return 0
    unvisited = (shape.num_experts - shape.experts_per_tok) * 3 * shape.hidden * shape.moe_intermediate
    return shape.layers * (unvisited + shape.hidden * shape.num_experts)


def vision_activation_bytes_per_patch_layer(shape: ModelShape, act: float = 2.0) -> float:
    """A ViT block keeps, per patch: norm in/out, q/k/v, attention out, projection in, MLP in and its
    hidden activations (as the decoder's A_layer, with vision widths)."""
    vh = shape.vision_hidden
    vi = 4 * vh
    return act * (9 * vh + 2 * vi)


def workload_components(shape: ModelShape, inp, k, comps: list) -> list:
    """Extra components for inp.workload, MoE and vision shapes; [] for a dense text SFT."""
    from doctor.vram.model import LORA_BYTES, NF4_BYTES, NF4_DQ_BYTES, Component, optimizer_bytes

    wl: Workload = getattr(inp, "workload", None) or Workload()
    out: list = []
    full = inp.full_finetune
    opt_per, _ = optimizer_bytes(inp.optim, inp.param_bytes)
    if shape.is_moe:
        n = moe_extra_params(shape)
        if inp.quant == "4bit" and not wl.experts_16bit:
            wb, note = (NF4_DQ_BYTES if inp.double_quant else NF4_BYTES), "NF4"
        else:
            wb, note = inp.param_bytes, ("16-bit: 4-bit conversion skips fused experts" if inp.quant == "4bit"
                                         else "16-bit" if inp.param_bytes == 2 else "fp32")
        out.append(Component("moe-experts", "experts not routed to", n * wb,
                             note=f"{shape.num_experts - shape.experts_per_tok} of {shape.num_experts} experts "
                                  f"x {shape.layers} layers + router, {note}; activations: top-{shape.experts_per_tok} only"))
        if full:
            out += _trained_part(inp, "moe", "expert", n, opt_per, Component)
        elif experts_get_lora(shape, inp.lora_targets):
            h, i, e = shape.hidden, shape.moe_intermediate, shape.num_experts
            lora_opt, _ = optimizer_bytes(inp.optim, LORA_BYTES)
            if wl.fused_experts:
                # PEFT's ParamWrapper on the 3-D parameters: A (r*E x in), B (out x r*E) for gate_up and down
                lora_n = inp.lora_r * e * ((h + 2 * i) + (i + h)) * shape.layers
                out.append(Component("moe-lora", "LoRA on the experts", lora_n * (2 * LORA_BYTES + lora_opt),
                                     note=f"r={inp.lora_r} on every expert's fused gate_up/down (PEFT ParamWrapper): "
                                          "fp32 adapter + grad + state"))
                # ... and W + B.A built for the whole layer in each forward, kept for backward
                layers = shape.layers if inp.gc == "off" else 1
                copy = expert_params(shape) // shape.layers * layers * inp.param_bytes
                out.append(Component("moe-lora-delta", "experts' W + B.A per layer", copy,
                                     note=("every layer keeps" if inp.gc == "off" else "the recomputed layer keeps")
                                     + " a full copy of its experts' weights with the LoRA delta (PEFT ParamWrapper)"))
            else:   # transformers 4: each expert an nn.Linear with its own adapter
                per_expert = 2 * (h + i) + (i + h)
                lora_n = inp.lora_r * shape.layers * e * per_expert
                out.append(Component("moe-lora", "LoRA on the experts", lora_n * (2 * LORA_BYTES + lora_opt),
                                     note=f"r={inp.lora_r} on every expert's gate/up/down: fp32 adapter + grad + state"))
    if shape.is_vlm:
        vb = inp.param_bytes
        out.append(Component("vision", "vision tower + projector", shape.vision_params * vb,
                             note=f"{shape.vision_layers} layers, {'16-bit' if vb == 2 else 'fp32'} (not quantized)"))
        if wl.vision_trained:
            if full:
                out += _trained_part(inp, "vision", "vision tower", shape.vision_params, opt_per, Component)
            else:
                n = inp.lora_r * shape.vision_layers * 18 * shape.vision_hidden
                lora_opt, _ = optimizer_bytes(inp.optim, LORA_BYTES)
                out.append(Component("vision-lora", "vision LoRA", n * (2 * LORA_BYTES + lora_opt),
                                     note=f"r={inp.lora_r} on the vision tower's linear layers"))
            patches = inp.batch_size * max(1, wl.images_per_sample) * wl.patches_per_image
            per = vision_activation_bytes_per_patch_layer(shape)
            if inp.gc == "off":
                act, note = shape.vision_layers * per * patches, "vision tower trained, no checkpointing: every layer"
            else:
                act = per * patches + shape.vision_layers * shape.vision_hidden * 2 * patches
                note = "vision tower trained: checkpoints + one layer"
            out.append(Component("vision-activations", "vision activations", act, token_dependent=True,
                                 note=f"{note}; {patches} patches"))
    if wl.kind == "grpo":
        out += _grpo(shape, inp, wl, comps + out, Component)
    if wl.reference == "copy":
        frozen = sum(c.bytes for c in comps + out if c.key in ("weights", "moe-experts", "vision"))
        out.append(Component("reference", "reference model", frozen,
                             note="a frozen copy of the weights (TRL creates it: no PEFT adapter to disable, "
                                  "log-probs not precomputed)"))
    return out


def _trained_part(inp, key: str, what: str, n: float, opt_per: float, Component) -> list:
    """Gradients and optimizer state of a part that full fine-tuning trains beyond the dense count
    (the experts not routed to, the vision tower). With gradients freed between steps they do not
    exist at the backward peak (the loss comes before any of their gradients; the vision tower's come
    last of all), only at the optimizer step (_optimizer_step counts them there); the state does."""
    freed = not inp.grads_persist
    return [Component(f"{key}-grads", f"{what} gradients", n * inp.param_bytes, at_peak=not freed,
                      note=f"every {what} parameter trains" + ("; freed between steps: alive at the optimizer "
                                                                "step, not at the backward peak" if freed else "")),
            Component(f"{key}-optimizer", f"{what} optimizer state", n * opt_per, note=inp.optim)]


def experts_get_lora(shape: ModelShape, targets) -> bool:
    """Whether PEFT puts LoRA on a MoE model's experts for these target names: transformers >= 5 maps
    the per-expert names of the family's naming (Mixtral: w1/w2/w3; Qwen2-MoE style: gate_proj/up_proj/
    down_proj) onto the fused parameters; other names miss them (checks/data/workloads.json)."""
    rule = workload_defaults()["peft-moe-experts"]
    if shape.model_type in rule.get("unmapped", ()):
        return False   # no v4 expert names to map: LoRA stays on the attention projections
    names = {t.split(".")[-1] for t in (targets or ())}
    if names & {"all-linear", "gate_up_proj"}:
        return True
    family = rule["model_types"].get(shape.model_type)
    # a family the table does not know: any known naming counts (the conservative side: more memory)
    expert_names = set(rule["patterns"][family]) if family else set().union(*rule["patterns"].values())
    return bool(names & expert_names)


# the gradients of full fine-tuning: the dense count (estimator), the experts' and the tower's (_trained_part)
GRADIENT_KEYS = ("grads", "moe-grads", "vision-grads")
# the parts of the estimate that are the trainable parameters' own: alive at the optimizer step
_TRAINABLE_KEYS = GRADIENT_KEYS + ("optimizer", "lora", "moe-optimizer", "moe-lora", "vision-optimizer", "vision-lora")
_FORWARD_ONLY_KEYS = ("moe-lora-delta",)   # built in the forward, freed with the activations


def optimizer_step_components(shape: ModelShape, inp, k, comps: list) -> list:
    """Called by estimate() after every other component (# optimizer step hook). Not for sharded
    runs: DeepSpeed / FSDP step their own shards (fp32 partitions, CPU offload), which
    doctor/vram/sharding.py accounts for."""
    from doctor.vram.model import Component
    from doctor.vram.sharding import as_dict

    sh = as_dict(inp)
    if sh and sh.get("kind") not in (None, "none"):
        return []
    wl: Workload = getattr(inp, "workload", None) or Workload()
    return _optimizer_step(shape, inp, wl, k, comps, Component)


def _optimizer_step(shape: ModelShape, inp, wl: Workload, k, comps: list, Component) -> list:
    """The optimizer step as a second peak. step() runs after backward has freed the activations and
    the logits, with weights, gradients and optimizer states all alive plus the optimizer's own
    temporaries (foreach AdamW: one tensor per parameter). When activations are small next to the
    trainable parameters (full fine-tuning of a MoE model, a trained vision tower, GRPO's short
    training pass) this is the peak: set 8 FIT rows, H200 2026-12-03 (moe-full-gc1: 6.60 GiB
    allocated in step() vs 5.57 in backward). The trainable part is scaled by the allocator's
    fragmentation at that point (k.step_frag); frozen weights were allocated first, unfragmented.
    Added only as the excess over the backward peak, so the bar still sums to the estimate."""
    from doctor.units import GIB
    from doctor.vram.model import optimizer_step_temporary

    trainable_n = 0.0
    if inp.full_finetune:
        trainable_n = shape.total_params + (moe_extra_params(shape) if shape.is_moe else 0)
        if shape.is_vlm and wl.vision_trained:
            trainable_n += shape.vision_params
    temp = trainable_n * optimizer_step_temporary(inp.optim, inp.param_bytes)
    if not temp and not inp.full_finetune:
        return []   # LoRA: adapters, their gradients and states are small next to the backward peak
    peak = [c for c in comps if c.at_peak and c.key not in ("context", "slack")]
    backward = sum(c.bytes for c in peak)
    # every trainable part exists at the step, also gradients freed before the backward peak
    trainable = sum(c.bytes for c in comps if c.key in _TRAINABLE_KEYS)

    def trained_weights(c) -> bool:   # full fine-tuning: the weights are trainable parameters too
        return inp.full_finetune and (c.key in ("weights", "moe-experts") or (c.key == "vision" and wl.vision_trained))
    trainable += sum(c.bytes for c in peak if trained_weights(c))
    frozen = sum(c.bytes for c in peak if not c.token_dependent and not trained_weights(c)
                 and c.key not in _FORWARD_ONLY_KEYS + _TRAINABLE_KEYS + ("grads-head", "grads-frag"))
    step = frozen + (trainable + temp) * (1 + k.step_frag)
    if step <= backward:
        return []
    return [Component("optimizer-step", "optimizer step (beyond the backward peak)", step - backward,
                      note=f"weights + gradients + optimizer state + {temp / GIB:.2f} GiB of {inp.optim} "
                           f"temporaries, x{1 + k.step_frag:.2f} for the allocator's fragmentation")]


def kv_bytes_per_token(shape: ModelShape, act: float = 2.0) -> float:
    """K and V of every layer for one token, bf16."""
    return 2 * shape.layers * shape.kv_dim * act


def _grpo(shape: ModelShape, inp, wl: Workload, comps: list, Component) -> list:
    out = []
    total = wl.prompt_len + wl.completion_len
    for c in comps:   # TRL computes logits for the completion only (logits_to_keep)
        if c.key == "logits" and total and "completion" not in c.note:
            c.bytes *= wl.completion_len / total
            c.note += f"; completion tokens only ({wl.completion_len} of {total})"
    if wl.vllm in ("colocate", "unsloth"):
        if wl.gpu_total:
            reserved = wl.vllm_fraction * wl.gpu_total
            if wl.vllm == "unsloth":   # Unsloth's vLLM holds the weights the trainer uses: counted once
                weights = sum(c.bytes for c in comps if c.key == "weights")
                out.append(Component("vllm", "vLLM reservation (KV cache)", max(0.0, reserved - weights),
                                     note=f"gpu_memory_utilization={wl.vllm_fraction} of the card, weights shared "
                                          "with training (fast_inference)"))
            else:
                out.append(Component("vllm", "vLLM reservation", reserved,
                                     note=f"vllm_gpu_memory_utilization={wl.vllm_fraction} of the card, taken up "
                                          "front: its own weights copy + KV cache"))
        else:
            copy = 0.0 if wl.vllm == "unsloth" else shape.total_params * 2 + moe_extra_params(shape) * 2
            out.append(Component("vllm", "vLLM engine (card size unknown)", copy,
                                 note=f"its weights only; {wl.vllm_fraction} of the card's memory is taken on a GPU"))
        if wl.vllm_sleep:   # asleep during forward/backward: the peak is the larger of the two phases
            _larger_phase(out[-1], comps, "vLLM asleep during the training pass (vllm_enable_sleep_mode)")
        return out
    if wl.vllm == "server":
        return out   # generation runs in a separate vLLM server on other GPUs
    # model.generate in the training process: the KV cache of every sequence of the generation batch,
    # at the generation phase; it competes with the training step's token-dependent part
    seqs = max(wl.gen_sequences, 1)
    gen = seqs * (wl.prompt_len + wl.completion_len) * kv_bytes_per_token(shape) + seqs * shape.vocab * 4
    out.append(Component("generation", "generation KV cache", gen, token_dependent=True,
                         note=f"model.generate: {seqs} sequences x {wl.prompt_len + wl.completion_len} tokens (no vLLM)"))
    _larger_phase(out[-1], comps, "")
    return out


def _larger_phase(phase, comps: list, note: str) -> None:
    """Generation and the training pass do not overlap: whichever is larger is at the peak."""
    train = sum(c.bytes for c in comps if c.at_peak and c.token_dependent)
    phase.at_peak = phase.bytes > train
    if phase.at_peak:
        for c in comps:
            if c.token_dependent:
                c.at_peak = False
    phase.note += ("; " if phase.note else "") + (note + "; " if note else "") + (
        "the generation phase is the peak" if phase.at_peak else "freed before the training peak")
