"""Per-rank VRAM under multi-GPU sharding: DDP replicas, DeepSpeed ZeRO stages 1-3, FSDP, CPU offload.

`shard_components()` rewrites the single-GPU components of estimate() (`# sharding hook`) for one
rank of `world` ranks, from the resolved sharding (doctor/config/sharding.py). Sources:
- ZeRO paper (Rajbhandari et al. 2020, https://arxiv.org/abs/1910.02054 §3): mixed-precision Adam
  keeps 2 (fp16/bf16 params) + 2 (grads) + 12 (fp32 master weights, momentum, variance) bytes per
  parameter; ZeRO-1 (P_os) partitions the 12, ZeRO-2 (P_os+g) also the gradients, ZeRO-3 (P_os+g+p)
  also the parameters, each over N_d ranks.
- DeepSpeed docs (https://www.deepspeed.ai/docs/config-json/#zero-optimizations-for-fp16-training-enabled):
  stage3_prefetch_bucket_size 5e7, stage3_max_live_parameters 1e9; ZeRO-Offload
  (https://www.deepspeed.ai/tutorials/zero-offload/) keeps the optimizer state and fp32 master
  weights on the CPU, offload_param (stage 3) the parameter partitions.
- PyTorch FSDP docs (https://pytorch.org/docs/stable/fsdp.html): FULL_SHARD ~ ZeRO-3, SHARD_GRAD_OP
  ~ ZeRO-2, NO_SHARD ~ DDP; CPUOffload(offload_params=True) moves parameters and gradients to CPU.
- PyTorch DDP docs (https://pytorch.org/docs/stable/generated/torch.nn.parallel.DistributedDataParallel.html):
  bucket_cap_mb 25, gradient_as_bucket_view=False by default, so the buckets are a second full copy
  of the gradients used by the all-reduce.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from doctor.config.model_shapes import ModelShape
from doctor.vram.model import Component, Inputs, optimizer_bytes

# DeepSpeed's bucket defaults (deepspeed/runtime/zero/config.py: allgather/reduce_bucket_size 5e8 elements).
# transformers' DeepSpeed docs (docs/source/en/deepspeed.md): "overlap_comm uses 4.5x the
# allgather_bucket_size and reduce_bucket_size values ... 5e8 x 2 bytes x 2 x 4.5 = 9GB".
DS_BUCKET_DEFAULT = 500_000_000
OVERLAP_FACTOR = 4.5
MASTER_BYTES = 4          # DeepSpeed's fp32 master copy of 16-bit trainable params (ZeRO paper: 12 = 4 + 8)


def as_dict(inp: Inputs) -> Optional[dict]:
    return dict(inp.sharding) if inp.sharding else None


def _part(comps: list[Component], key: str) -> Optional[Component]:
    return next((c for c in comps if c.key == key), None)


def layer_params(shape: ModelShape) -> int:
    """Parameters of one decoder layer (its linear layers; norms are negligible)."""
    return shape.linear_params // max(1, shape.layers)


def live_params(shape: ModelShape) -> int:
    """Parameters gathered at once under ZeRO-3 / FSDP FULL_SHARD. Assumption: the unit being computed
    plus the next one prefetched (a decoder layer each, FSDP's auto_wrap unit and what DeepSpeed's
    prefetch bucket of 5e7 params reaches for a 7-8B layer's ~2e8), or the embedding / lm_head
    matrix alone when it is larger; capped by stage3_max_live_parameters (1e9)."""
    return min(int(1e9), max(2 * layer_params(shape), shape.embedding_params))


def shard_components(shape: ModelShape, inp: Inputs, comps: list[Component]) -> tuple[list[Component], float]:
    """(components for one rank, host RAM bytes for one rank's offloaded state)."""
    sh = as_dict(inp)
    if not sh or sh.get("kind") == "none":
        return comps, 0.0
    n = max(1, int(sh.get("world") or 1))
    stage, kind = int(sh.get("stage") or 0), sh.get("kind")
    off_opt = sh.get("offload_optimizer", "none") != "none" and (kind == "fsdp" or stage >= 1)
    off_par = sh.get("offload_param", "none") != "none" and stage == 3
    tag = {"ddp": "DDP", "zero": f"ZeRO-{stage}", "fsdp": {3: "FSDP FULL_SHARD", 2: "FSDP SHARD_GRAD_OP"}.get(
        stage, "FSDP NO_SHARD")}[kind]
    out = list(comps)
    host = 0.0

    def put(key: str, new_bytes: float, note: str) -> None:
        c = _part(out, key)
        if c is not None:
            out[out.index(c)] = replace(c, bytes=new_bytes, note=(c.note + "; " if c.note else "") + note)

    grads, opt, weights, lora = (_part(out, k) for k in ("grads", "optimizer", "weights", "lora"))
    g = grads.bytes if grads else 0.0
    o = opt.bytes if opt else 0.0
    # DeepSpeed under bf16/fp16 with 16-bit trainable params: the optimizer state is fp32 and an fp32
    # master copy is kept beside it (2 + 2 + 12 bytes/param, ZeRO paper); LoRA adapters are fp32 already.
    if kind == "zero" and inp.full_finetune and inp.param_bytes == 2:
        n_train = shape.total_params
        o = n_train * (optimizer_bytes(inp.optim, 4)[0] + MASTER_BYTES)
        put("optimizer", o, "fp32 states + fp32 master weights (DeepSpeed mixed precision)")
    # optimizer state: sharded from stage 1 (FSDP shards it whenever it shards anything)
    if stage >= 1 and n > 1:
        o /= n
        put("optimizer", o, f"{tag}: 1/{n} per rank")
    if off_opt:
        # the rank's fp32 gradient partition is copied to the CPU for the optimizer step
        host += o + g / n * (4 / max(1, inp.param_bytes) if inp.full_finetune else 1)
        put("optimizer", 0.0, "offloaded to CPU")
    if stage >= 2 and n > 1:
        put("grads", g / n, f"{tag}: 1/{n} per rank (reduce-scatter)")
    if kind == "fsdp" and off_opt and stage >= 2:   # FSDP's CPUOffload moves the gradient shards too
        put("grads", 0.0, "offloaded to CPU with the parameters")
    if stage == 3 and n > 1 and weights is not None:
        w_shard = weights.bytes / n
        if off_par or (kind == "fsdp" and off_opt):
            host += w_shard
            w_shard = 0.0
        put("weights", w_shard, f"{tag}: 1/{n} per rank" + ("; shard offloaded to CPU" if w_shard == 0 else ""))
        if lora is not None:
            put("lora", lora.bytes / n, f"{tag}: 1/{n} per rank")
        live = live_params(shape) * (inp.param_bytes if inp.quant == "none" else 0.5)
        out.append(Component("gathered", "gathered parameters", live,
                             note="assumed: the layer computed + the next prefetched (or the embedding), "
                                  "all-gathered in full (ZeRO-3 prefetch / FSDP unit)"))
    if kind == "zero" and stage in (1, 2) and n > 1:
        out.append(_ds_buckets(shape, sh))
    if (kind == "ddp" or (kind == "fsdp" and stage == 0)) and n > 1:
        out.append(Component("buckets", "DDP gradient buckets", g,
                             note="a full gradient copy in 25 MB buckets for the all-reduce "
                                  "(gradient_as_bucket_view=False, PyTorch's default)"))
    return out, host


def _ds_buckets(shape: ModelShape, sh: dict) -> Component:
    """ZeRO-1/2's communication buffers, 16-bit: with overlap_comm 4.5 x (allgather + reduce bucket)
    (transformers' DeepSpeed docs); without it the contiguous gradient buffer of one reduce bucket."""
    def elems(key: str) -> int:
        v = sh.get(key)
        return shape.hidden * shape.hidden if v == "auto" else DS_BUCKET_DEFAULT if v is None else int(v)

    ag, rs = elems("allgather_bucket_size"), elems("reduce_bucket_size")
    if sh.get("overlap_comm"):
        return Component("buckets", "DeepSpeed buckets", OVERLAP_FACTOR * (ag + rs) * 2,
                         note=f"overlap_comm: 4.5 x ({ag:.0e} + {rs:.0e}) elements, 16-bit")
    return Component("buckets", "DeepSpeed buckets", rs * 2, note=f"one reduce bucket ({rs:.0e} elements, 16-bit)")


def describe(sh: dict) -> str:
    kind, stage = sh.get("kind"), sh.get("stage")
    name = {"ddp": "DDP (replicas)", "zero": f"DeepSpeed ZeRO-{stage}",
            "fsdp": {3: "FSDP FULL_SHARD", 2: "FSDP SHARD_GRAD_OP"}.get(stage, "FSDP NO_SHARD")}.get(kind, "none")
    off = [f"{w} offload to {d}" for w, d in (("optimizer", sh.get("offload_optimizer")),
                                               ("parameter", sh.get("offload_param"))) if d not in (None, "none")]
    n = sh.get("world")
    return f"{name} on {n} GPU{'' if n == 1 else 's'}" + (f", {', '.join(off)}" if off else "") + f" ({sh.get('source')})"
