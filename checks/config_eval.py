"""Evaluation on, eval batch left at the Trainer default of 8: the classic OOM at the first eval."""
from __future__ import annotations

from checks import check
from doctor.config import defaults
from doctor.config.model import TrainingConfig
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity
from doctor.units import gib
from doctor.vram.estimator import MID, eval_peak, estimate_for


@check(id="config-eval", title="per_device_eval_batch_size left at 8 while evaluation is on",
       finding_ids=("config.eval-batch-default",), needs_config=True, order=72)
def config_eval(facts: Facts, config: TrainingConfig) -> list[Finding]:
    if (config.eval_strategy or "no") == "no" or config.per_device_eval_batch_size is not None:
        return []
    eval_batch = defaults.value("hf.per-device-eval-batch-size")
    train_batch = config.effective_batch_size
    if train_batch >= eval_batch:
        return []
    ev = {"eval_strategy": config.eval_strategy, "per_device_eval_batch_size": f"unset (default {eval_batch})",
          "per_device_train_batch_size": train_batch}
    severity, fits_note, suggest = Severity.WARNING, "", train_batch
    est = estimate_for(facts, config) if config.model_shape is not None else None
    if est is not None and est.max_batch_size is not None:   # agree with vram-headroom when it lowers the batch
        suggest = max(1, min(train_batch, est.max_batch_size))
    if est is not None:
        peak = eval_peak(est.shape, est.inputs, eval_batch, MID)
        ev["estimated eval peak"] = gib(peak)
        if est.gpu_free is not None:
            ev["gpu usable"] = gib(est.gpu_free)
            if peak > est.gpu_free:
                severity = Severity.ERROR
                fits_note = f" Estimated eval peak {gib(peak)} exceeds the {gib(est.gpu_free)} usable."
    return [Finding(
        id="config.eval-batch-default", severity=severity,
        title=f"Evaluation runs {eval_batch} sequences at once (train batch is {train_batch})",
        why="per_device_eval_batch_size defaults to 8 whatever the train batch is; the eval forward holds the "
            "logits of all 8 sequences, so a run that trains fine can go out of memory at its first "
            "evaluation." + fits_note,
        remediation="Set per_device_eval_batch_size to the train batch size.",
        evidence=ev,
        config_changes=[ConfigChange("per_device_eval_batch_size", suggest,
                                     "same as the train batch" if suggest == train_batch else
                                     "the largest train batch that fits")],
        confidence=0.7, fix_cost=1)]
