"""Multi-GPU sharding (DeepSpeed ZeRO / FSDP / DDP) judged per rank: a configured sharding that still
does not fit one GPU (and the stronger one that would), ZeRO-3 / FULL_SHARD on a LoRA run that fits
without sharding the parameters (it buys little and costs speed), and CPU offload that needs more
host RAM than the node has. The arithmetic is doctor/vram/sharding.py's."""
from __future__ import annotations

import dataclasses

from checks import check
from doctor.config.model import TrainingConfig
from doctor.facts import Facts
from doctor.findings import Finding, Severity
from doctor.units import gib
from doctor.vram.estimator import DOES_NOT_FIT, FITS, estimate_for
from doctor.vram.sharding import describe

HOST_RAM_SPARE = 2 * 1024 ** 3   # per rank: the process, its dataset and pinned buffers besides the states
IDS = ("vram.sharding-does-not-fit", "vram.sharding-lora-full-shard", "vram.sharding-host-ram")
# ZeRO paper (https://arxiv.org/abs/1910.02054, §7.2.2): P_os and P_os+g move as much data as plain
# data parallelism; P_os+g+p (ZeRO-3) moves 1.5x, all-gathering the parameters in forward and backward.
ZERO3_COMM = "ZeRO-3 / FULL_SHARD all-gathers every parameter in forward and again in backward: 1.5x the " \
             "communication of data parallelism (ZeRO paper §7.2.2, arxiv.org/abs/1910.02054)"


def _stronger(sh: dict):
    """The next sharding to try: one ZeRO stage up, then CPU offload of the optimizer, then of the params."""
    kind, stage = sh.get("kind"), int(sh.get("stage") or 0)
    if stage < 3:
        return {**sh, "kind": "fsdp" if kind == "fsdp" else "zero", "stage": 3 if kind == "fsdp" else stage + 1}
    if sh.get("offload_optimizer", "none") == "none":
        return {**sh, "offload_optimizer": "cpu"}
    if sh.get("offload_param", "none") == "none" and kind == "zero":
        return {**sh, "offload_param": "cpu"}
    return None


@check(id="vram-sharding", title="Multi-GPU sharding (DeepSpeed ZeRO, FSDP, DDP) per rank: fit, LoRA under "
                                 "full sharding, host RAM for CPU offload", finding_ids=IDS, needs_config=True,
       order=61)
def vram_sharding(facts: Facts, config: TrainingConfig) -> list[Finding]:
    sh = config.sharding
    if not sh or sh.get("kind") == "none" or config.model_shape is None:
        return []
    est = estimate_for(facts, config)
    if est is None:
        return []
    out: list[Finding] = []
    info = est.to_dict()["sharding"]
    ev = {"sharding": describe(sh), "per rank (low/mid/high)": f"{gib(est.low.total)} / {gib(est.mid.total)} / "
                                                               f"{gib(est.high.total)}"}
    if est.gpu_free is not None:
        ev["gpu usable"] = f"{gib(est.gpu_free)} on {est.gpu_name}"
    if est.verdict == DOES_NOT_FIT:
        nxt, fits_with = sh, None
        for _ in range(4):   # at most: stage up to 3, optimizer offload, parameter offload
            nxt = _stronger(nxt)
            if nxt is None:
                break
            e2 = estimate_for(facts, dataclasses.replace(config, sharding=nxt))
            if e2 is not None and e2.verdict == FITS:
                fits_with = (nxt, e2)
                break
        more = (f" {describe(fits_with[0])} would fit: {gib(fits_with[1].high.total)} per rank at the high edge."
                if fits_with else " Stronger sharding alone does not make it fit: more GPUs, a smaller batch or "
                                  "sequence, or LoRA.")
        out.append(Finding(
            id="vram.sharding-does-not-fit", severity=Severity.ERROR,
            title=f"Does not fit per GPU even sharded: {gib(est.low.total)}-{gib(est.high.total)} per rank vs "
                  f"{gib(est.gpu_free)} usable ({describe(sh)})",
            why="Each rank holds its share of the sharded states plus everything that is not sharded (activations, "
                "logits, the gathered parameters)." + more,
            remediation=(f"Use {describe(fits_with[0]).split(' (')[0]}." if fits_with else
                         "Add GPUs (--num-gpus), lower the batch or sequence length, or train LoRA adapters."),
            evidence=ev, confidence=0.7, fix_cost=2))
    if not est.inputs.full_finetune and int(sh.get("stage") or 0) == 3 and int(sh.get("world") or 1) > 1 \
            and est.gpu_free is not None:
        unsharded = estimate_for(facts, dataclasses.replace(config, sharding={**sh, "stage": 2}))
        if unsharded is not None and unsharded.verdict == FITS:
            out.append(Finding(
                id="vram.sharding-lora-full-shard", severity=Severity.INFO,
                title=f"LoRA under {describe(sh).split(' on ')[0]}: parameter sharding buys little here",
                why=f"The adapters' gradients and optimizer state are small; with the parameters unsharded a rank "
                    f"needs {gib(unsharded.high.total)} at the high edge, which fits in {gib(est.gpu_free)}. "
                    f"{ZERO3_COMM}.",
                remediation="Shard only optimizer state and gradients (ZeRO-2 / SHARD_GRAD_OP) or use plain DDP; "
                            "keep full sharding for a base model that does not fit one GPU.",
                evidence={**ev, "per rank without parameter sharding (high)": gib(unsharded.high.total)},
                confidence=0.6, fix_cost=1))
    need = info["host_ram_per_node"] if info else 0
    avail = facts.platform.ram_available
    world = int(sh.get("world") or 1)
    if need and avail is not None and need + HOST_RAM_SPARE * world > avail:
        out.append(Finding(
            id="vram.sharding-host-ram", severity=Severity.WARNING,
            title=f"CPU offload needs {gib(need)} of host RAM ({gib(info['host_ram_per_rank'])} per rank x {world}); "
                  f"{gib(avail)} is available",
            why="ZeRO-Offload / FSDP CPU offload keep each rank's optimizer state, fp32 master weights and gradient "
                "partition (and, offloading parameters, its parameter shard) in pinned host memory; when RAM runs "
                "out the ranks swap or are OOM-killed. Assumed: all ranks on this node.",
            remediation="Offload less (only the optimizer, not the parameters), spread the ranks over more nodes, "
                        "or free host RAM.",
            evidence={**ev, "host RAM needed": gib(need), "host RAM available": gib(avail)},
            confidence=0.6, fix_cost=2))
    return out
