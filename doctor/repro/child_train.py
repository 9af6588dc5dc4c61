"""How the training child trains: the step recorder (timing, memory, tokens per step), the HF
callback that drives it, and the three trainers (TRL SFTTrainer, HF Trainer, a plain loop), all
configured from the ChildSpec the same way.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

from doctor.repro.child_build import Plan, torch_dtype
from doctor.repro.child_faults import FaultPlan
from doctor.repro.events import EventWriter
from doctor.repro.spec import ChildSpec


class StepRecorder:
    """Times each optimizer step and reads memory at its end; counts the tokens each step fed."""

    def __init__(self, events: EventWriter, faults: FaultPlan, torch, device: str):
        self.events, self.faults, self.torch, self.device = events, faults, torch, device
        self.step = 0                     # the step in progress (or last begun)
        self.t_last: Optional[float] = None
        self.tokens = self.tokens_nonpad = self.max_len = 0
        self.shapes: set = set()
        import psutil

        self.proc = psutil.Process()

    def train_begin(self) -> None:
        self.t_last = time.monotonic()

    def step_begin(self, step: int) -> None:
        self.step = step
        self.tokens = self.tokens_nonpad = self.max_len = 0
        self.events.emit("step-begin", step=step)
        self.faults.on_step_begin(step)

    def forward_hook(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids") if kwargs else None
        if ids is None and args:
            ids = args[0]
        if ids is None or not hasattr(ids, "shape"):
            return
        self.tokens += int(ids.numel())
        mask = kwargs.get("attention_mask") if kwargs else None
        self.tokens_nonpad += int(mask.sum()) if mask is not None else int(ids.numel())
        pos = kwargs.get("position_ids") if kwargs else None
        longest = int(pos.max()) + 1 if (pos is not None and ids.shape[0] == 1) else int(ids.shape[-1])
        self.max_len = max(self.max_len, longest)
        shape = tuple(int(d) for d in ids.shape)
        if shape not in self.shapes:
            self.shapes.add(shape)
            self.events.emit("shape", step=self.step, shape=list(shape))

    def step_end(self, step: int) -> None:
        torch = self.torch
        mem: dict[str, Any] = {}
        if self.device == "cuda":
            torch.cuda.synchronize()      # the Trainer already syncs on the loss; make the end exact
            mem = {"mem_allocated": torch.cuda.memory_allocated(), "mem_reserved": torch.cuda.memory_reserved(),
                   "mem_peak": torch.cuda.max_memory_allocated()}
            torch.cuda.reset_peak_memory_stats()
            self.faults.last_step_peak = mem["mem_peak"]
        now = time.monotonic()
        duration = now - self.t_last if self.t_last is not None else None
        self.t_last = now
        self.events.emit("step", step=step, duration_s=duration, host_rss=self.proc.memory_info().rss,
                         tokens=self.tokens, tokens_nonpad=self.tokens_nonpad, max_len=self.max_len, **mem)

    def loss(self, step: int, value) -> None:
        try:
            self.events.emit("loss", step=step, loss=float(value))
        except (TypeError, ValueError):
            pass


def hf_callback(recorder: StepRecorder):
    from transformers import TrainerCallback

    class ReproCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            recorder.train_begin()

        def on_step_begin(self, args, state, control, **kw):
            recorder.step_begin(state.global_step + 1)

        def on_step_end(self, args, state, control, **kw):
            recorder.step_end(state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                recorder.loss(state.global_step, logs["loss"])

    return ReproCallback()



def training_kwargs(spec: ChildSpec, plan: Plan, fields: set, note: Callable[[str], None]) -> dict:
    """TrainingArguments/SFTConfig keywords mirroring the spec, limited to what this version has."""
    kw: dict[str, Any] = dict(
        output_dir=os.path.join(spec.work_dir, "trainer"), max_steps=spec.steps,
        per_device_train_batch_size=spec.batch_size, gradient_accumulation_steps=spec.grad_accum,
        learning_rate=spec.learning_rate, warmup_steps=min(5, spec.steps // 4), weight_decay=0.01,
        lr_scheduler_type="linear", logging_steps=1, optim=plan.optim, seed=spec.seed,
        fp16=plan.precision == "fp16", bf16=plan.precision == "bf16", report_to="none",
        save_strategy="no", dataloader_num_workers=plan.num_workers, disable_tqdm=True)
    if spec.pin_memory is not None:
        kw["dataloader_pin_memory"] = spec.pin_memory
    if plan.device == "cpu":
        kw["use_cpu"] = True
    # always explicit: TRL's SFTConfig defaults to True, TrainingArguments to False; with Unsloth,
    # get_peft_model(use_gradient_checkpointing=...) already did it (the reference passes nothing)
    kw["gradient_checkpointing"] = bool(plan.gradient_checkpointing) and plan.backend != "unsloth"
    if kw["gradient_checkpointing"]:
        kw["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    if "packing" in fields:
        kw["packing"] = False
    seq_field = next((f for f in ("max_length", "max_seq_length") if f in fields), None)
    if seq_field:
        kw[seq_field] = spec.max_seq_length
    dropped = sorted(k for k in kw if k not in fields)
    if dropped:
        note(f"this trainer version has no {', '.join(dropped)}: left at its default")
    return {k: v for k, v in kw.items() if k in fields}

def build_trainer(spec: ChildSpec, plan: Plan, model, tokenizer, rows, recorder: StepRecorder,
                  note: Callable[[str], None]):
    import dataclasses
    import inspect

    callback = hf_callback(recorder)
    if plan.trainer == "trl.SFTTrainer":
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**training_kwargs(spec, plan, {f.name for f in dataclasses.fields(SFTConfig)}, note))
        params = inspect.signature(SFTTrainer.__init__).parameters
        tok_kw = "processing_class" if "processing_class" in params else "tokenizer"
        return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": rows}),
                          callbacks=[callback], **{tok_kw: tokenizer})
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(**training_kwargs(spec, plan, {f.name for f in dataclasses.fields(TrainingArguments)}, note))
    return Trainer(model=model, args=args, train_dataset=[{"input_ids": r} for r in rows],
                   data_collator=pad_collate, callbacks=[callback])

def train_plain(spec: ChildSpec, plan: Plan, torch, model, rows, faults: FaultPlan, recorder: StepRecorder,
                phase: Callable[..., None]) -> None:
    """No Trainer: the same steps by hand (used with --backend torch)."""
    from torch.utils.data import DataLoader

    gen = torch.Generator().manual_seed(spec.seed)
    loader = DataLoader([{"input_ids": r} for r in rows], batch_size=spec.batch_size, shuffle=True,
                        generator=gen, num_workers=plan.num_workers,
                        collate_fn=faults.wrap_collator(pad_collate),
                        pin_memory=bool(spec.pin_memory) and plan.device == "cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=0.01)
    if plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    dtype = torch_dtype(torch, plan.precision)
    use_amp = plan.device == "cuda" and plan.precision != "fp32"
    scaler = torch.amp.GradScaler("cuda") if plan.precision == "fp16" and use_amp else None
    model.train()
    phase("training", f"{spec.steps} steps")
    batches = iter(loader)
    recorder.train_begin()
    for step in range(1, spec.steps + 1):
        micro = [next(batches) for _ in range(spec.grad_accum)]   # like Trainer.get_batch_samples
        recorder.step_begin(step)
        total = 0.0
        for batch in micro:
            batch = {k: v.to(plan.device) for k, v in batch.items()}
            with torch.autocast(plan.device, dtype=dtype, enabled=use_amp):
                loss = model(**batch).loss / spec.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
            total += float(loss.detach())
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        recorder.step_end(step)
        recorder.loss(step, total)


def pad_collate(examples: list) -> dict:
    """Right-pad to the longest sample; labels -100 on padding (what TRL's collator does)."""
    import torch

    longest = max(len(e["input_ids"]) for e in examples)
    ids = torch.zeros(len(examples), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        mask[i, :n] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
