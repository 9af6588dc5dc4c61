"""GRPO's generation: vLLM colocated in the training process takes its memory fraction of the card up
front (a fraction that leaves the trainer less than its estimate is an OOM at the first step, or
vLLM's "No available memory for the cache blocks"); GRPO without vLLM generates with model.generate,
slow enough on a large budget to look stuck; and vLLM's exact torch pin."""
from __future__ import annotations

import math

from checks import check
from doctor.knowledge.requires import requirement_on
from doctor.knowledge.versions import parse
from doctor.config.model import TrainingConfig
from doctor.config.workloads import is_grpo
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity
from doctor.units import gib
from doctor.vram.estimator import DOES_NOT_FIT, TIGHT, estimate_for
from doctor.vram.workloads import workload_defaults

FRACTION = "workloads.vllm-memory-fraction"
NO_VLLM = "workloads.grpo-generate-without-vllm"
TORCH_PIN = "workloads.vllm-torch-mismatch"

LINK_OOM = "https://github.com/unslothai/unsloth/issues/3542"
LINK_OOM2 = "https://github.com/unslothai/unsloth/issues/3864"
LINK_TRL_VLLM = "https://huggingface.co/docs/trl/main/en/vllm_integration"


@check(id="workloads-vllm", title="GRPO generation: vLLM's memory fraction vs the trainer's estimate; "
                                  "GRPO without vLLM on a large budget",
       finding_ids=(FRACTION, NO_VLLM), needs_config=True, order=62)
def workloads_vllm(facts: Facts, config: TrainingConfig) -> list[Finding]:
    if not is_grpo(config) or config.model_shape is None:
        return []
    est = estimate_for(facts, config)
    if est is None:
        return []
    wl = est.inputs.workload
    out = []
    if wl is not None and wl.vllm in ("colocate", "unsloth") and est.gpu_free is not None and wl.gpu_total:
        f = _fraction(est, wl, config)
        if f is not None:
            out.append(f)
    if wl is not None and wl.vllm == "none":
        budget = wl.gen_sequences * wl.completion_len
        if budget >= workload_defaults()["grpo.slow-generation-tokens"]:
            out.append(_no_vllm(config, wl, budget))
    return out


def _fraction(est, wl, config: TrainingConfig):
    vllm_hi = est.high.part("vllm")
    trainer_hi = est.high.total - vllm_hi
    usable, total = est.gpu_free, wl.gpu_total
    trainer_lo = est.low.total - est.low.part("vllm")
    if est.verdict not in (TIGHT, DOES_NOT_FIT) or trainer_lo > usable:
        return None   # fits, or the trainer alone does not fit (vram.does-not-fit says so)
    unsloth = wl.vllm == "unsloth"
    setting = "gpu_memory_utilization" if unsloth else "vllm_gpu_memory_utilization"
    weights = est.mid.part("weights")
    # what is left for vLLM once the trainer has its high estimate; Unsloth's fraction also holds
    # the shared weights, which the trainer part already counts
    room = usable - trainer_hi + (weights if unsloth else 0)
    fits_at = math.floor(max(0.0, room) / total * 20) / 20   # in 0.05 steps
    floor_needed = weights / total + 0.05   # vLLM's weights + a little KV cache
    ev = {f"config.{setting}": wl.vllm_fraction, "vLLM reservation": gib(est.mid.part("vllm")),
          "trainer estimate (high)": gib(trainer_hi), "gpu usable": gib(usable), "gpu total": gib(total)}
    changes, remedy = [], ""
    if fits_at >= floor_needed and fits_at < wl.vllm_fraction:
        changes = [ConfigChange(setting, fits_at, f"leaves the trainer its estimated {gib(trainer_hi)}")]
        remedy = (f"Lower {setting} to {fits_at} (vLLM's KV cache shrinks; generation batches get smaller), "
                  "or lower per_device_train_batch_size / max_completion_length.")
    else:
        remedy = ("No fraction leaves both vLLM its weights and the trainer its estimate on this GPU: run vLLM "
                  "as a server on another GPU (vllm_mode=\"server\", `trl vllm-serve`), or shrink the step "
                  "(per_device_train_batch_size, max_completion_length, gradient checkpointing, LoRA).")
    return Finding(
        id=FRACTION, severity=Severity.ERROR if est.verdict == DOES_NOT_FIT else Severity.WARNING,
        title=f"vLLM takes {wl.vllm_fraction:.0%} of the card up front; the trainer needs {gib(trainer_hi)} "
              f"of the {gib(usable - est.mid.part('vllm'))} left",
        why=("vLLM colocated in the training process reserves its gpu_memory_utilization fraction of the whole "
             "card when it starts (its weights" + (" are the trainer's, shared by fast_inference" if unsloth
                                                  else " copy") +
             " and a KV cache that fills the rest). The trainer gets what remains; GRPO out-of-memory "
             "with vLLM colocated is among the most reported failures of 2025-26."),
        remediation=remedy, evidence=ev, config_changes=changes,
        links=[LINK_OOM, LINK_OOM2, LINK_TRL_VLLM], confidence=0.7, fix_cost=1,
        explains=[] if trainer_hi > usable else ["vram.does-not-fit" if est.verdict == DOES_NOT_FIT else "vram.tight"])


def _no_vllm(config: TrainingConfig, wl, budget: int) -> Finding:
    return Finding(
        id=NO_VLLM, severity=Severity.WARNING,
        title=f"GRPO generates {wl.gen_sequences} x {wl.completion_len} tokens per step with model.generate "
              "(no vLLM): slow, not stuck",
        why="Without vLLM, GRPOTrainer samples completions with transformers' generate, one token at a time for "
            "the whole generation batch, before each optimisation step: minutes per step on a budget this "
            "size, with the GPU busy and no log line. `doctor attach` shows the main thread in generate().",
        remediation="Generate with vLLM: use_vllm=True with vllm_mode=\"colocate\" on one GPU (pip install vllm "
                    "matching your torch), or Unsloth's fast_inference=True; otherwise expect the wait, or lower "
                    "num_generations / max_completion_length.",
        evidence={"config.num_generations": wl.num_generations, "config.max_completion_length": wl.completion_len,
                  "sequences per generation": wl.gen_sequences, "tokens generated per step": budget,
                  "config.use_vllm": config.use_vllm},
        config_changes=[ConfigChange("use_vllm", True, "vLLM generates the completions (colocated)")],
        links=[LINK_TRL_VLLM], confidence=0.6, fix_cost=2)


@check(id="workloads-vllm-torch", title="vLLM's exact torch pin against the installed torch",
       finding_ids=(TORCH_PIN,), order=51)
def vllm_torch(facts: Facts, config=None) -> list[Finding]:
    info = facts.packages.get("vllm")
    torch = facts.version("torch")
    if info is None or not info.version or torch is None:
        return []
    req = requirement_on(facts, "vllm", "torch")
    v = parse(torch)
    if req is None or v is None or not str(req.specifier) or req.specifier.contains(v, prereleases=True):
        return []
    return [Finding(
        id=TORCH_PIN, severity=Severity.ERROR,
        title=f"vllm {info.version} is built for torch{req.specifier}; torch {torch} is installed",
        why="vLLM's wheels carry compiled kernels for one torch release and declare it exactly (Requires-Dist). "
            "Against another torch they fail to import (undefined symbol in vllm._C) or crash in the engine at "
            "the first generation, which GRPO reaches after loading the model.",
        remediation="Install the vLLM release made for your torch, or let pip bring the torch vLLM wants "
                    "(then check torchvision, xformers and Unsloth against it).",
        commands=[f'pip install "torch{req.specifier}"'],
        evidence={"packages.vllm.version": info.version, "packages.vllm.requires": str(req),
                  "packages.torch.version": torch},
        links=["https://docs.vllm.ai/en/latest/getting_started/installation/gpu.html"],
        confidence=0.9, fix_cost=2)]
