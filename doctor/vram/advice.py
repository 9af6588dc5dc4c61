"""What to change so the run fits: checkpointing if it is off, else the largest batch that fits
(gradient accumulation raised to keep the effective batch), else the longest sequence at batch 1.
Pure; only proposes settings the config does not already have."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from doctor.config.model import TrainingConfig
from doctor.findings import ConfigChange
from doctor.units import gib
from doctor.vram.estimator import HIGH, VramEstimate, estimate, largest_fitting, seq_limit

SEQ_STEP = 256   # recommend round sequence lengths


@dataclass
class Advice:
    changes: list[ConfigChange] = field(default_factory=list)
    summary: str = ""            # one sentence: what the changes achieve
    fits_after: Optional[float] = None   # high estimate after the changes


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def seq_settings(config: TrainingConfig) -> list[str]:
    """The settings that carry the sequence length in this config (both sites when both exist)."""
    present = [s for s in ("max_seq_length", "trainer_max_seq_length") if getattr(config, s) is not None]
    if present:
        return present
    return ["max_seq_length"] if config.framework == "unsloth" else ["trainer_max_seq_length"]


def fitting_changes(est: VramEstimate, config: TrainingConfig, wsl: bool = False) -> Advice:
    free = est.gpu_free
    inp = est.inputs_high or est.inputs
    if free is None:
        return Advice()
    shape = est.shape

    def high(i) -> float:
        return estimate(shape, i, HIGH).total

    if inp.gc == "off":   # checkpointing first: it costs ~20% speed, not batch size
        gc_mode = "unsloth" if inp.framework == "unsloth" and not wsl else "hf"
        with_gc = replace(inp, gc=gc_mode)
        if high(with_gc) <= free:
            value = "unsloth" if gc_mode == "unsloth" else True
            return Advice([ConfigChange("use_gradient_checkpointing", value,
                                        f"checkpointing cuts the peak to ~{gib(high(with_gc))}")],
                          f"with gradient checkpointing on, the high estimate is {gib(high(with_gc))}",
                          high(with_gc))
        inp = with_gc
        gc_change = [ConfigChange("use_gradient_checkpointing", "unsloth" if gc_mode == "unsloth" else True,
                                  "keeps one hidden state per layer instead of every activation")]
    else:
        gc_change = []
    batch, ga = inp.batch_size, config.gradient_accumulation_steps or 1
    effective = batch * ga
    max_b = largest_fitting(batch, lambda n: high(replace(inp, batch_size=n)) <= free)
    if max_b >= 1:
        new_ga = _ceil_div(effective, max_b)
        changes = gc_change + [ConfigChange("per_device_train_batch_size", max_b,
                                            f"largest batch whose high estimate fits {gib(free)}")]
        if new_ga != ga:
            kept = max_b * new_ga
            changes.append(ConfigChange("gradient_accumulation_steps", new_ga,
                                        f"keeps the effective batch at {kept}"
                                        + (f" (was {effective})" if kept != effective else "")))
        after = high(replace(inp, batch_size=max_b))
        return Advice(changes, f"batch {max_b} x accumulation {new_ga}: high estimate {gib(after)}", after)
    one = replace(inp, batch_size=1)
    steps = largest_fitting(seq_limit(shape, inp.seq_len) // SEQ_STEP,
                            lambda n: high(replace(one, seq_len=n * SEQ_STEP)) <= free)
    if steps >= 1:
        seq = steps * SEQ_STEP
        changes = list(gc_change)
        if batch != 1:
            changes.append(ConfigChange("per_device_train_batch_size", 1, "batch 1 still does not fit at this length"))
            changes.append(ConfigChange("gradient_accumulation_steps", effective,
                                        f"keeps the effective batch at {effective}"))
        for setting in seq_settings(config):
            changes.append(ConfigChange(setting, seq, f"longest sequence (step {SEQ_STEP}) that fits {gib(free)} "
                                                      "at batch 1; longer samples are truncated"))
        after = high(replace(one, seq_len=seq))
        return Advice(changes, f"batch 1 at {seq} tokens: high estimate {gib(after)}", after)
    return Advice(gc_change, f"even batch 1 at {SEQ_STEP} tokens needs {gib(high(replace(one, seq_len=SEQ_STEP)))}")
