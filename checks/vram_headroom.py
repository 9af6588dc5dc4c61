"""Will the training config fit in the GPU's usable memory, and in host RAM for Unsloth's offloaded
checkpoints? When it does not: the largest batch / sequence length that does, as config changes."""
from __future__ import annotations

from checks import check
from checks._machine import alloc_conf
from doctor.config.model import TrainingConfig
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity, rank
from doctor.units import gib
from doctor.vram.advice import fitting_changes
from doctor.vram.estimator import FITS, TIGHT, UNKNOWN, VramEstimate, estimate_for

HOST_RAM_SPARE = 2 * 1024 ** 3   # the process, the dataset and the OS need RAM besides the offload
# The least memory that trains with the caching allocator's expandable segments vs without: 11
# transformers runs of set 12 (H200 2026-12-03, benchmarks/vram-validation.md "Expandable segments"),
# 1-14% less, median 6%. Not offered on WSL (GPU-PV refuses its VMM calls: checks/wsl.py) nor to
# Unsloth, which sets the allocator itself.
EXPANDABLE_GAIN = "1-14% less memory to train, median 6%, over 11 runs measured on an H200"

IDS = ("vram.model-shape-unknown", "vram.no-gpu", "vram.fits", "vram.tight", "vram.does-not-fit",
       "vram.host-ram-offload")


def _evidence(est: VramEstimate, config: TrainingConfig) -> dict:
    i = est.inputs
    ev = {"model": est.model, "estimate (low/mid/high)": f"{gib(est.low.total)} / {gib(est.mid.total)} / "
                                                         f"{gib(est.high.total)}",
          "batch x seq": f"{i.batch_size} x {i.seq_len}", "quantization": i.quant,
          "gradient checkpointing": i.gc, "loss": i.loss}
    if est.inputs.sharding:   # the estimate is one rank's (doctor/vram/sharding.py)
        from doctor.vram.sharding import describe

        ev["per GPU (one rank)"] = describe(dict(est.inputs.sharding))
    if est.gpu_free is not None:
        ev["gpu"] = f"{est.gpu_name}{' (what-if)' if est.whatif else ''}"
        ev["gpu usable"] = gib(est.gpu_free) + (f" ({est.gpu_reserve_reason})" if est.gpu_reserve else "")
    return ev


def _spill_note(facts: Facts) -> str:
    if facts.platform.is_wsl or facts.platform.is_windows_native:
        return (" On Windows and WSL2 (driver >= 536.40) the driver may spill into shared system memory "
                "instead of raising OOM: the run then crawls or looks hung (FM-01).")
    return ""


@check(id="vram-headroom", title="Estimated peak VRAM of the config vs the GPU's usable memory; host RAM "
                                 "for offloaded checkpoints", finding_ids=IDS, needs_config=True, order=60)
def vram_headroom(facts: Facts, config: TrainingConfig) -> list[Finding]:
    if config.model_shape is None:
        where = "; ".join(config.model_shape_tried) or "nowhere"
        return [Finding(
            id="vram.model-shape-unknown", severity=Severity.INFO,
            title=f"No VRAM estimate: the shape of {config.model_name or 'the model'} is unknown",
            why="The estimate needs the model's hidden size, layers and vocabulary (config.json).",
            remediation="Download the model once (its config.json lands in the Hugging Face cache), pass a "
                        "local model directory, or pass --model with a model the bundled table knows.",
            evidence={"model": config.model_name, "looked in": where}, confidence=1.0, fix_cost=1)]
    est = estimate_for(facts, config)
    findings = [_memory_finding(facts, config, est)]
    host = _host_ram_finding(facts, config, est)
    if host is not None:
        findings.append(host)
    return findings


def _memory_finding(facts: Facts, config: TrainingConfig, est: VramEstimate) -> Finding:
    ev = _evidence(est, config)
    band = f"{gib(est.low.total)}-{gib(est.high.total)}"
    verdict = est.verdict
    if verdict == UNKNOWN:
        return Finding(id="vram.no-gpu", severity=Severity.INFO,
                       title=f"Estimated peak VRAM {gib(est.mid.total)} ({band}); no GPU here to compare with",
                       why="No GPU memory was read on this machine.",
                       remediation='Ask what-if questions for a GPU you have in mind: --gpu "RTX 4090".',
                       evidence=ev, confidence=0.7, fix_cost=1)
    if verdict == FITS:
        return Finding(id="vram.fits", severity=Severity.INFO,
                       title=f"Fits: estimated peak {gib(est.mid.total)} ({band}) of {gib(est.gpu_free)} usable "
                             f"on {est.gpu_name}",
                       why=f"Headroom at the high edge: {gib(est.gpu_free - est.high.total)}. "
                           f"Largest batch that fits at this length: {est.max_batch_size}.",
                       evidence=ev, confidence=0.7, fix_cost=1)
    advice = fitting_changes(est, config, wsl=facts.platform.is_wsl)
    changes = [c for c in advice.changes if not _already(config, c)]
    liger = (" Or set use_liger_kernel=True (pip install liger-kernel): the fp32 logits of a "
             f"{est.shape.vocab:,}-token vocabulary dominate this estimate."
             if est.inputs.loss == "hf" and est.mid.part("logits") > est.mid.part("activations") else "")
    if verdict == TIGHT:
        return Finding(id="vram.tight", severity=Severity.WARNING,
                       title=f"Tight: estimated peak {band} vs {gib(est.gpu_free)} usable on {est.gpu_name}",
                       why="The high edge of the estimate does not fit: a long batch or allocator fragmentation "
                           "can push the run over." + _spill_note(facts),
                       remediation=(f"For margin: {advice.summary}." if changes else "") + liger
                       + _expandable_note(facts, est),
                       evidence=ev, config_changes=changes, confidence=0.6, fix_cost=1,
                       failure_mode="FM-01" if facts.platform.is_wsl else None)
    return Finding(id="vram.does-not-fit", severity=Severity.ERROR,
                   title=f"Does not fit: estimated peak {band} vs {gib(est.gpu_free)} usable on {est.gpu_name}",
                   why="Even the low edge of the estimate exceeds the usable memory: expect CUDA out of memory "
                       "at the first steps (or when optimizer state appears at step 2)." + _spill_note(facts),
                   remediation=(f"{advice.summary}." if advice.summary else "") + liger,
                   evidence=ev, config_changes=changes, confidence=0.75, fix_cost=1,
                   failure_mode="FM-01" if facts.platform.is_wsl else None)


def _expandable_note(facts: Facts, est: VramEstimate) -> str:
    """The allocator's expandable segments, where the user has not chosen either way."""
    if facts.platform.is_wsl or est.inputs.framework == "unsloth" or any(
            v is not None for v in alloc_conf(facts.env).values()):
        return ""
    return (" Or start it with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True: the caching allocator "
            f"then leaves less unusable between its blocks ({EXPANDABLE_GAIN}).")


def _already(config: TrainingConfig, change: ConfigChange) -> bool:
    return getattr(config, change.setting, None) == change.value


def _host_ram_finding(facts: Facts, config: TrainingConfig, est: VramEstimate):
    need = est.host_ram_needed
    avail = facts.platform.ram_available
    if not need or avail is None or need + HOST_RAM_SPARE <= avail:
        return None
    return Finding(
        id="vram.host-ram-offload", severity=Severity.WARNING,
        title=f"Offloaded checkpoints need {gib(need)} of host RAM; {gib(avail)} is available",
        why="use_gradient_checkpointing=\"unsloth\" moves every layer's checkpoint to (pinned) host memory "
            "during the forward pass; when RAM runs out the process swaps or is OOM-killed (FM-18).",
        remediation="Free host RAM, lower the batch or sequence length, or use standard checkpointing "
                    "(use_gradient_checkpointing=True), which keeps the checkpoints on the GPU.",
        evidence={"host RAM for offload": gib(need), "host RAM available": gib(avail),
                  "batch x seq": f"{est.inputs.batch_size} x {est.inputs.seq_len}"},
        config_changes=[] if config.use_gradient_checkpointing is True else [
            ConfigChange("use_gradient_checkpointing", True, "keeps checkpoints on the GPU, not in host RAM")],
        failure_mode="FM-18", confidence=0.6, fix_cost=1)



def settle_with_other_fixes(facts: Facts, config: TrainingConfig, findings: list[Finding]) -> list[Finding]:
    """The memory finding re-judged on the config as the OTHER findings' fixes leave it, so the
    patched config is a fixed point (`doctor run` on it proposes nothing further). Fixes interact:
    the WSL fix swaps Unsloth's offloaded checkpointing for standard checkpointing, which keeps every
    layer's checkpoint on the GPU, so a config that fitted can stop fitting once patched; judged on
    the original config, the batch change only appeared on a second run. A few rounds at most: each
    round only adds memory changes to a config the other checks are already content with."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config)}
    memory = [f for f in findings if f.id in IDS and f.id != "vram.host-ram-offload"]
    others = [f for f in findings if f not in memory]
    changed = {c.setting: c.value for f in others for c in f.config_changes if c.setting in names}
    changed = {k: v for k, v in changed.items() if getattr(config, k, None) != v}
    if not memory or not changed or config.model_shape is None:
        return findings
    patched = dataclasses.replace(config, **changed)
    est = estimate_for(facts, patched)
    if est is None:
        return findings
    after = _memory_finding(facts, patched, est)
    before = memory[0]
    if after.id == before.id and [(c.setting, c.value) for c in after.config_changes] == \
            [(c.setting, c.value) for c in before.config_changes]:
        return findings
    what = ", ".join(f"{k}={v!r}" for k, v in changed.items())
    after.why = f"With the other findings' fixes applied ({what}): {after.why}"
    after.evidence = {**after.evidence, "judged with": what}
    return rank([f for f in findings if f is not before] + [after])
