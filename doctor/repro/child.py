"""The training child of `doctor repro`: `python -m doctor.repro.child --spec spec.json`.

It trains a random-weight Llama shaped like the user's model with the user's batch, accumulation,
sequence length, optimizer and precision, and reports every phase and step to the event file
(doctor/repro/events.py). It never decides whether it is stuck: the parent's watchdog does.
A crash is written to the event file with its traceback before the child exits with status 1.
"""
from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Optional

from doctor.repro.child_build import (Plan, build_tokenizer, dtype_kwarg, ensure_checkpoint, has_module,
                                      random_model, resolve_plan, synthetic_rows, torch_dtype)
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


class ChildRun:
    def __init__(self, spec: ChildSpec, events: EventWriter):
        self.spec, self.events = spec, events
        self.torch = None
        self.plan: Optional[Plan] = None
        self.recorder: Optional[StepRecorder] = None

    def note(self, text: str) -> None:
        self.events.emit("note", text=text)

    def phase(self, name: str, detail: str = "") -> None:
        self.events.emit("phase", phase=name, detail=detail)

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        spec = self.spec
        self.phase("importing", "torch")
        import torch

        self.torch = torch
        for text in spec.notes:
            self.note(text)
        plan = self.plan = resolve_plan(spec, torch, self.note)
        if plan.backend == "unsloth":
            self.phase("importing", "unsloth")
            try:
                import unsloth  # noqa: F401  (must come before transformers/peft/trl: FM-21)
            except Exception as exc:  # a broken install is itself worth knowing; train without it
                self.note(f"import unsloth failed ({type(exc).__name__}: {str(exc)[:300]}): "
                          "running transformers + PEFT instead")
                plan.backend = "transformers"
        self.phase("importing", "transformers")
        import transformers  # noqa: F401

        plan.trainer = ("trl.SFTTrainer" if has_module("trl") and plan.backend != "torch" else
                        "transformers.Trainer" if plan.backend != "torch" else "plain loop")
        vocab = spec.model["vocab_size"]
        faults = FaultPlan(spec.injections, self.events, spec.grad_accum, spec.max_seq_length,
                           spec.long_sample_factor, spec.squeeze_limit, plan.device, spec.seed, vocab)
        faults.skip_inapplicable()
        self.recorder = StepRecorder(self.events, faults, torch, plan.device)

        model, tokenizer = self.build_model()
        model.register_forward_pre_hook(self.recorder.forward_hook, with_kwargs=True)
        rows = synthetic_rows(spec, self.note)
        self.phase("building-trainer", plan.trainer)
        self.events.emit("info", **plan.info(), **self.versions(), **self.model_info(model))
        if plan.trainer == "plain loop":
            self.train_plain(model, rows, faults)
        else:
            trainer = self.build_trainer(model, tokenizer, rows)
            trainer.data_collator = faults.wrap_collator(trainer.data_collator, lookahead=1)
            self.phase("training", f"{spec.steps} steps")
            trainer.train()
        self.phase("finished")

    # ------------------------------------------------------------------ model

    def build_model(self):
        spec, plan, torch = self.spec, self.plan, self.torch
        dtype = torch_dtype(torch, plan.precision) if plan.device == "cuda" else torch.float32
        if plan.backend == "unsloth":
            from unsloth import FastLanguageModel

            self.phase("building-model", f"random {spec.model_size} checkpoint")
            ckpt = ensure_checkpoint(spec, torch, plan.device, self.note)
            self.phase("loading-model", "FastLanguageModel.from_pretrained")
            model, tokenizer = FastLanguageModel.from_pretrained(
                model_name=str(ckpt), max_seq_length=spec.max_seq_length,
                dtype=dtype if plan.precision != "fp32" else None, load_in_4bit=plan.load_in_4bit)
            model = FastLanguageModel.get_peft_model(
                model, r=spec.lora_r, target_modules=spec.target_modules, lora_alpha=spec.lora_alpha,
                lora_dropout=spec.lora_dropout, bias="none",
                use_gradient_checkpointing=spec.gradient_checkpointing, random_state=spec.seed)
            return model, tokenizer
        if plan.load_in_4bit:
            from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedTokenizerFast

            self.phase("building-model", f"random {spec.model_size} checkpoint")
            ckpt = ensure_checkpoint(spec, torch, plan.device, self.note)
            self.phase("loading-model", "from_pretrained, 4-bit NF4")
            quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                       bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
            model = AutoModelForCausalLM.from_pretrained(str(ckpt), quantization_config=quant,
                                                         device_map={"": 0}, local_files_only=True,
                                                         **{dtype_kwarg(): dtype})
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(ckpt))
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=bool(plan.gradient_checkpointing),
                gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.phase("building-model", f"random {spec.model_size} model on {plan.device}")
            model = random_model(spec, torch, plan.device, dtype)
            tokenizer = build_tokenizer(spec.model["vocab_size"], spec.max_seq_length)
        model.config.use_cache = False
        if spec.lora_r > 0 and has_module("peft"):
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha,
                                                     lora_dropout=spec.lora_dropout,
                                                     target_modules=spec.target_modules, bias="none",
                                                     task_type="CAUSAL_LM"))
        return model, tokenizer

    # ------------------------------------------------------------------ trainers

    def training_kwargs(self, fields: set) -> dict:
        spec, plan = self.spec, self.plan
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
            self.note(f"this trainer version has no {', '.join(dropped)}: left at its default")
        return {k: v for k, v in kw.items() if k in fields}

    def build_trainer(self, model, tokenizer, rows):
        import dataclasses
        import inspect

        callback = hf_callback(self.recorder)
        if self.plan.trainer == "trl.SFTTrainer":
            from datasets import Dataset
            from trl import SFTConfig, SFTTrainer

            args = SFTConfig(**self.training_kwargs({f.name for f in dataclasses.fields(SFTConfig)}))
            params = inspect.signature(SFTTrainer.__init__).parameters
            tok_kw = "processing_class" if "processing_class" in params else "tokenizer"
            return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": rows}),
                              callbacks=[callback], **{tok_kw: tokenizer})
        from transformers import Trainer, TrainingArguments

        args = TrainingArguments(**self.training_kwargs({f.name for f in dataclasses.fields(TrainingArguments)}))
        return Trainer(model=model, args=args, train_dataset=[{"input_ids": r} for r in rows],
                       data_collator=pad_collate, callbacks=[callback])

    def train_plain(self, model, rows, faults: FaultPlan) -> None:
        """No Trainer: the same steps by hand (used with --backend torch)."""
        spec, plan, torch = self.spec, self.plan, self.torch
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
        self.phase("training", f"{spec.steps} steps")
        batches = iter(loader)
        self.recorder.train_begin()
        for step in range(1, spec.steps + 1):
            micro = [next(batches) for _ in range(spec.grad_accum)]   # like Trainer.get_batch_samples
            self.recorder.step_begin(step)
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
            self.recorder.step_end(step)
            self.recorder.loss(step, total)

    # ------------------------------------------------------------------ reporting helpers

    def versions(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for name in ("torch", "transformers", "peft", "trl", "unsloth", "bitsandbytes"):
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                out[name] = None
        return {"versions": out}

    def model_info(self, model) -> dict:
        torch = self.torch
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        gpu = {}
        if self.plan.device == "cuda":
            props = torch.cuda.get_device_properties(torch.cuda.current_device())
            gpu = {"gpu": props.name, "capability": list(torch.cuda.get_device_capability()),
                   "gpu_total_memory": props.total_memory}
        return {"params": total, "trainable_params": trainable, **gpu}

    def memory_state(self) -> dict:
        out: dict[str, Any] = {}
        try:
            import psutil

            out["host_rss"] = psutil.Process().memory_info().rss
            out["host_available"] = psutil.virtual_memory().available
        except Exception:
            pass
        torch = self.torch
        if torch is not None and self.plan is not None and self.plan.device == "cuda":
            try:
                free, total = torch.cuda.mem_get_info()
                out.update(mem_allocated=torch.cuda.memory_allocated(), mem_reserved=torch.cuda.memory_reserved(),
                           mem_peak=torch.cuda.max_memory_allocated(), gpu_free=free, gpu_total=total)
            except Exception as exc:  # after a CUDA error the context may be unusable
                out["gpu_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return out


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


def exit_with_parent() -> None:
    """If the doctor dies without stopping us (SIGKILL), stop this tree instead of training on."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                from doctor.proctree import kill_tree

                kill_tree(os.getpid(), grace_s=1.0, include_root=False)
                os._exit(3)

    threading.Thread(target=watch, name="repro-parent-watch", daemon=True).start()


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m doctor.repro.child")
    parser.add_argument("--spec", required=True)
    args = parser.parse_args(argv)
    spec = ChildSpec.load(args.spec)
    events = EventWriter(spec.events_path)
    exit_with_parent()
    faulthandler.enable()                                  # fatal signals: tracebacks in child.log
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)   # stacks on demand, without ptrace
    run = ChildRun(spec, events)
    code = 0
    try:
        run.run()
        events.emit("done", steps=run.recorder.step if run.recorder else 0)
    except BaseException as exc:  # everything, including KeyboardInterrupt, is reported, then we exit
        events.emit("crash", type=type(exc).__name__, module=type(exc).__module__,
                    message=str(exc)[:4000], traceback=traceback.format_exc()[-20000:],
                    step=run.recorder.step if run.recorder else None, memory=run.memory_state())
        code = 1
    from doctor.proctree import kill_tree

    kill_tree(os.getpid(), grace_s=1.0, include_root=False)   # DataLoader workers do not outlive us
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)     # skip atexit: a library's non-daemon thread must not hold the exit (hang #5)


if __name__ == "__main__":
    main()
