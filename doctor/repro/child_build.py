"""Builds what the training child trains: device, precision, optimizer, a random-weight Llama, its
tokenizer, the LoRA adapter and a synthetic dataset, mirroring the ChildSpec.

Whatever cannot be mirrored on this machine (4-bit or adamw_8bit without CUDA, Unsloth that does not
import) falls back to the nearest thing that runs, and says so through `note`.
"""
from __future__ import annotations

import importlib.util
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from doctor.repro.spec import ChildSpec

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]     # ids 0..3; samples use ids >= 4
CHECKPOINT_DONE = "repro-checkpoint-complete"


@dataclass
class Plan:
    """What the child actually runs, after looking at this machine."""
    device: str
    backend: str                          # unsloth | transformers | torch
    trainer: str = ""                     # trl.SFTTrainer | transformers.Trainer | plain loop
    precision: str = "fp32"               # bf16 | fp16 | fp32
    optim: str = "adamw_torch"
    load_in_4bit: bool = False
    gradient_checkpointing: Any = False
    num_workers: int = 0
    notes: list[str] = field(default_factory=list)

    def info(self) -> dict:
        return {"device": self.device, "backend": self.backend, "trainer": self.trainer,
                "precision": self.precision, "optim": self.optim, "load_in_4bit": self.load_in_4bit,
                "gradient_checkpointing": self.gradient_checkpointing, "num_workers": self.num_workers}


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve_plan(spec: ChildSpec, torch, note: Callable[[str], None]) -> Plan:
    """Device, backend, precision and optimizer for this machine; import-free except torch."""
    cuda = bool(torch.cuda.is_available())
    device = spec.device if spec.device != "auto" else ("cuda" if cuda else "cpu")
    if device == "cuda" and not cuda:
        note("--device cuda asked for, but torch sees no CUDA device: running on CPU")
        device = "cpu"
    plan = Plan(device=device, backend=spec.backend, num_workers=spec.num_workers,
                gradient_checkpointing=spec.gradient_checkpointing)
    if plan.backend in ("auto", "unsloth"):
        if device != "cuda":
            if plan.backend == "unsloth":
                note("Unsloth needs a CUDA GPU: running transformers + PEFT on CPU instead")
            plan.backend = "transformers"
        elif not has_module("unsloth"):
            note("unsloth is not installed: running transformers + PEFT instead")
            plan.backend = "transformers"
        else:
            plan.backend = "unsloth"      # the import itself may still fail: see import_unsloth
    if spec.lora_r <= 0 and plan.backend == "unsloth":
        note("full fine-tuning is mirrored with transformers, not Unsloth")
        plan.backend = "transformers"
    if spec.lora_r > 0 and not has_module("peft") and plan.backend != "unsloth":
        note("peft is not installed: training every weight instead of a LoRA adapter")

    # precision: mirror the user's flags, including the emulated-bf16 idiom on Turing
    if device != "cuda":
        if spec.precision not in ("fp32",):
            note(f"precision {spec.precision} needs a GPU here: running fp32 on CPU")
        plan.precision = "fp32"
    else:
        native_bf16 = torch.cuda.get_device_capability()[0] >= 8
        plan.precision = {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32",
                          "auto-native": "bf16" if native_bf16 else "fp16",
                          "auto-emulated": "bf16" if torch.cuda.is_bf16_supported() else "fp16",
                          }.get(spec.precision, "fp32")
        if plan.precision == "bf16" and not native_bf16:
            note("bf16 on a GPU below compute capability 8.0 runs emulated (slow), as the config asks")

    plan.optim = spec.optim
    if "8bit" in spec.optim or spec.optim.startswith("paged_"):
        if device != "cuda" or not has_module("bitsandbytes"):
            why = "needs CUDA" if device != "cuda" else "needs bitsandbytes, which is not installed"
            note(f"optim {spec.optim} {why}: running adamw_torch instead")
            plan.optim = "adamw_torch"
    plan.load_in_4bit = spec.load_in_4bit
    if spec.load_in_4bit and (device != "cuda" or not has_module("bitsandbytes")):
        why = "needs CUDA" if device != "cuda" else "needs bitsandbytes, which is not installed"
        note(f"4-bit loading {why}: base weights stay in "
             f"{'fp32' if device != 'cuda' else plan.precision}")
        plan.load_in_4bit = False
    if spec.gradient_checkpointing == "unsloth" and plan.backend != "unsloth":
        note("use_gradient_checkpointing='unsloth' (offloaded to pinned host memory) runs as standard "
             "gradient checkpointing here: the pinned host buffer of FM-02 is not reproduced")
        plan.gradient_checkpointing = True
    if any(i.kind == "dataloader-hang" for i in spec.injections) and plan.num_workers < 1:
        note("dataloader-hang needs a DataLoader worker: dataloader_num_workers 0 -> 1 for this run")
        plan.num_workers = 1
    return plan


def torch_dtype(torch, precision: str):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def dtype_kwarg() -> str:
    """transformers >= 4.56 calls it `dtype`; older releases only know `torch_dtype`."""
    from importlib.metadata import version

    from packaging.version import Version

    try:
        return "dtype" if Version(version("transformers")) >= Version("4.56") else "torch_dtype"
    except Exception:
        return "torch_dtype"


# ------------------------------------------------------------------ model and tokenizer

def build_tokenizer(vocab_size: int, max_len: int):
    """A WordLevel tokenizer with exactly vocab_size ids; Unsloth insists on loading one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"t{i}": i for i in range(len(SPECIAL_TOKENS), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>", model_max_length=max_len)


def llama_config(spec: ChildSpec):
    from transformers import LlamaConfig

    return LlamaConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, **spec.model)


def random_model(spec: ChildSpec, torch, device: str, dtype):
    """Random weights, created directly on the device in the target dtype (8B: no fp32 detour)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(spec.seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(llama_config(spec))
    finally:
        torch.set_default_dtype(previous)
    return model


def ensure_checkpoint(spec: ChildSpec, torch, device: str, note: Callable[[str], None]) -> Path:
    """A saved random checkpoint + tokenizer (Unsloth and 4-bit loading read from disk); reused."""
    root = Path(spec.model_cache or Path(spec.work_dir) / "model")
    target = root / f"llama-{spec.model_size}-seed{spec.seed}"
    if (target / CHECKPOINT_DONE).exists():
        note(f"reusing the random {spec.model_size} checkpoint in {target}")
        return target
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = random_model(spec, torch, device, dtype)
    model.save_pretrained(tmp)
    build_tokenizer(spec.model["vocab_size"], spec.max_seq_length).save_pretrained(tmp)
    (tmp / CHECKPOINT_DONE).write_text("ok\n")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    try:
        tmp.rename(target)
    except OSError:                       # another run finished first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ------------------------------------------------------------------ data

def sample_lengths(spec: ChildSpec, count: int, note: Callable[[str], None]) -> list[int]:
    rng = random.Random(spec.seed)
    if not spec.lengths:
        return [spec.max_seq_length] * count
    longer = sum(1 for n in spec.lengths if n > spec.max_seq_length)
    if longer:
        note(f"{longer} of {len(spec.lengths)} lengths in the profile exceed max_seq_length "
             f"{spec.max_seq_length}: truncated, as SFTTrainer does")
    return [max(2, min(rng.choice(spec.lengths), spec.max_seq_length)) for _ in range(count)]


def synthetic_rows(spec: ChildSpec, note: Callable[[str], None]) -> list[list[int]]:
    """Random token ids; one optimizer step more than needed so the run never runs dry."""
    count = (spec.steps + 1) * spec.batch_size * spec.grad_accum
    rng = random.Random(spec.seed + 1)
    vocab = spec.model["vocab_size"]
    return [[1] + [rng.randrange(len(SPECIAL_TOKENS), vocab) for _ in range(n - 1)]
            for n in sample_lengths(spec, count, note)]


# ------------------------------------------------------------------ the model

def build_model(spec: ChildSpec, plan: Plan, torch, phase: Callable[..., None], note: Callable[[str], None]):
    """(model, tokenizer) for the plan: Unsloth, transformers + bitsandbytes 4-bit, or plain; + LoRA."""
    dtype = torch_dtype(torch, plan.precision) if plan.device == "cuda" else torch.float32
    if plan.backend == "unsloth":
        from unsloth import FastLanguageModel

        phase("building-model", f"random {spec.model_size} checkpoint")
        ckpt = ensure_checkpoint(spec, torch, plan.device, note)
        phase("loading-model", "FastLanguageModel.from_pretrained")
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

        phase("building-model", f"random {spec.model_size} checkpoint")
        ckpt = ensure_checkpoint(spec, torch, plan.device, note)
        phase("loading-model", "from_pretrained, 4-bit NF4")
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
        phase("building-model", f"random {spec.model_size} model on {plan.device}")
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

