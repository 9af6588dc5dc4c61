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

from doctor.repro.child_build import Plan, build_model, has_module, resolve_plan, synthetic_rows
from doctor.repro.child_faults import FaultPlan
from doctor.repro.child_train import StepRecorder, build_trainer, train_plain
from doctor.repro.events import EventWriter
from doctor.repro.spec import ChildSpec


class ChildRun:
    """One training run: import, plan, build, train; every phase and step goes to the event file."""

    def __init__(self, spec: ChildSpec, events: EventWriter):
        self.spec, self.events = spec, events
        self.torch = None
        self.plan: Optional[Plan] = None
        self.recorder: Optional[StepRecorder] = None
        self.current_phase = "starting"

    def note(self, text: str) -> None:
        self.events.emit("note", text=text)

    def phase(self, name: str, detail: str = "") -> None:
        self.current_phase = name
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

        model, tokenizer = build_model(spec, plan, torch, self.phase, self.note)
        model.register_forward_pre_hook(self.recorder.forward_hook, with_kwargs=True)
        rows = synthetic_rows(spec, self.note)
        self.phase("building-trainer", plan.trainer)
        self.events.emit("info", **plan.info(), **self.versions(), **self.model_info(model))
        if plan.trainer == "plain loop":
            train_plain(spec, plan, torch, model, rows, faults, self.recorder, self.phase)
        else:
            trainer = build_trainer(spec, plan, model, tokenizer, rows, self.recorder, self.note)
            trainer.data_collator = faults.wrap_collator(trainer.data_collator, lookahead=1)
            self.phase("training", f"{spec.steps} steps")
            trainer.train()
        self.phase("finished")

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
                    step=(run.recorder.step or None) if run.recorder else None, phase=run.current_phase,
                    memory=run.memory_state())
        code = 1
    from doctor.proctree import kill_tree

    kill_tree(os.getpid(), grace_s=1.0, include_root=False)   # DataLoader workers do not outlive us
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)     # skip atexit: a library's non-daemon thread must not hold the exit (hang #5)


if __name__ == "__main__":
    main()
