"""Measure real peak VRAM of LoRA/QLoRA training steps and compare it with doctor's estimate.

    python benchmarks/gpu/vram_grid.py OUT_DIR [--cpu-smoke] [--only hf|unsloth] [--budget-s 540]
           [--site /tmp/site] [--lanes 1|2] [--ckpt-dir /tmp/vram_grid_ckpt]

Each grid row runs in a fresh child process (peaks never leak between rows), with a per-row
timeout; an OOM is recorded, not fatal. Models are Llama-shaped with random weights built from a
config (Llama-3.2-1B and Llama-3.1-8B shapes; Qwen, Mistral and Gemma ones with --holdout 3; no
download), saved once under --ckpt-dir with a
WordLevel tokenizer (Unsloth loads a tokenizer from the model directory). Per row: measured peak
reserved / allocated after >= 2 optimizer steps (so optimizer state exists), the process's CUDA
context (the driver's per-process memory minus reserved, from NVML or nvidia-smi; else a context
probe run alone first), the driver's peak for the process, and doctor's low/mid/high estimate.

Writes OUT_DIR/vram_grid.json after every row (a killed run keeps what it measured) and
OUT_DIR/vram_grid.md. `python benchmarks/vram_report.py OUT_DIR/vram_grid.json` turns the JSON into
benchmarks/vram-validation.md. --cpu-smoke runs a tiny model on CPU through the same code paths
(no CUDA numbers), so the script cannot fail on the GPU machine for a silly reason.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MARK = "@@VRAM-ROW@@"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MODELS = {"1b": "llama-3.2-1b", "8b": "llama-3.1-8b",
          # other families (the estimator knows them only by shape): --holdout 3
          "qwen2.5-7b": "qwen2.5-7b", "qwen2.5-1.5b": "qwen2.5-1.5b", "mistral-7b": "mistral-7b-v0.3",
          "gemma-2-2b": "gemma-2-2b", "gemma-2-9b": "gemma-2-9b",
          # set 7 (issue 12, benchmarks/gpu/vram_bisect.py)
          "3b": "llama-3.2-3b", "qwen3-1.7b": "qwen3-1.7b", "qwen3-4b": "qwen3-4b", "gemma-3-1b": "gemma-3-1b",
          "phi-3.5-mini": "phi-3.5-mini", "granite-3.1-2b": "granite-3.1-2b",
          # set 11 (issue 12): shapes no earlier set measured
          "qwen2.5-0.5b": "qwen2.5-0.5b", "qwen2.5-3b": "qwen2.5-3b", "qwen3-0.6b": "qwen3-0.6b",
          "qwen3-8b": "qwen3-8b", "phi-4-mini": "phi-4-mini"}
PHI_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]   # fused projections (Phi-3)
TINY = dict(hidden=64, intermediate=176, layers=2, heads=4, kv_heads=2, head_dim=16, vocab=1000, tied_embeddings=True)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "UNSLOTH_DISABLE_STATISTICS": "1", "TOKENIZERS_PARALLELISM": "false", "DOCTOR_OFFLINE": "1"}


# -- the grid -------------------------------------------------------------------------------------

def grid(smoke: bool, holdout: int = 0) -> list[dict]:
    rows = []

    def add(model, framework, quant, gc, batch, seq, timeout):
        rows.append(dict(id=f"{framework}-{model}-{quant}-gc_{gc}-b{batch}-s{seq}", model=model, framework=framework,
                         quant=quant, gc=gc, batch=batch, seq=seq, steps=3, timeout=timeout))
    if smoke:
        for quant in ("none", "4bit"):
            add("tiny", "transformers", quant, "hf", 2, 64, 120)
            add("tiny", "transformers", quant, "off", 2, 64, 120)
        add("tiny", "unsloth", "4bit", "unsloth", 2, 64, 240)
        return rows
    if holdout == 5:
        # held out for the Gemma 2 terms fitted on set 4 (extra norms, soft-capped eager scores)
        add("gemma-2-2b", "transformers", "none", "off", 1, 2048, 150)
        add("gemma-2-2b", "transformers", "4bit", "off", 2, 1536, 150)
        add("gemma-2-2b", "transformers", "none", "hf", 1, 8192, 150)
        add("gemma-2-9b", "transformers", "4bit", "off", 1, 2048, 240)
        return rows
    if holdout == 4:
        # Gemma 2 without checkpointing: transformers' eager attention keeps every layer's scores
        add("gemma-2-2b", "transformers", "none", "off", 1, 4096, 150)
        add("gemma-2-2b", "transformers", "none", "off", 2, 2048, 150)
        add("gemma-2-2b", "transformers", "4bit", "off", 1, 3072, 150)
        return rows
    if holdout == 3:
        # other model families, measured against the constants calibrated on Llama shapes only
        add("qwen2.5-7b", "transformers", "4bit", "hf", 2, 2048, 200)
        add("mistral-7b", "transformers", "4bit", "hf", 2, 2048, 200)
        add("gemma-2-2b", "transformers", "none", "hf", 2, 2048, 150)
        add("qwen2.5-1.5b", "transformers", "none", "off", 2, 1024, 150)
        add("qwen2.5-7b", "unsloth", "4bit", "unsloth", 2, 2048, 300)
        return rows
    if holdout == 2:
        # second held-out set: shapes in neither earlier grid, measured after the constants were
        # recalibrated on grids 1 and 2 (benchmarks/vram-validation.md)
        add("1b", "transformers", "none", "off", 4, 512, 150)
        add("1b", "transformers", "4bit", "off", 1, 2048, 150)
        add("8b", "transformers", "4bit", "hf", 4, 1024, 200)
        add("8b", "transformers", "none", "off", 1, 2048, 200)
        add("1b", "unsloth", "4bit", "unsloth", 8, 1024, 300)
        add("8b", "unsloth", "4bit", "unsloth", 4, 4096, 300)
        return rows
    if holdout:
        # held out: shapes of batch/sequence not used when the constants were set (CUDA context
        # from the first grid's measurement), to test the estimator rather than the fit
        add("1b", "transformers", "none", "hf", 8, 1024, 150)
        add("1b", "transformers", "4bit", "hf", 1, 4096, 150)
        add("8b", "transformers", "4bit", "hf", 2, 1024, 200)
        add("8b", "transformers", "none", "hf", 2, 4096, 200)
        add("8b", "transformers", "4bit", "off", 1, 1024, 200)
        add("1b", "unsloth", "4bit", "unsloth", 4, 4096, 300)
        add("8b", "unsloth", "4bit", "unsloth", 8, 2048, 300)
        return rows
    # transformers + PEFT: bf16 LoRA and QLoRA (prepare_model_for_kbit_training), GC on and off
    for quant in ("none", "4bit"):
        add("1b", "transformers", quant, "hf", 2, 1024, 150)
        add("1b", "transformers", quant, "hf", 4, 2048, 150)
        add("1b", "transformers", quant, "off", 2, 1024, 150)
        add("8b", "transformers", quant, "hf", 1, 2048, 200)
        add("8b", "transformers", quant, "hf", 4, 2048, 200)
        add("8b", "transformers", quant, "off", 1, 1024, 200)
    # Unsloth: import ~45 s and a ~50 s first-step compile per process, so two rows
    add("1b", "unsloth", "4bit", "unsloth", 2, 2048, 300)
    add("8b", "unsloth", "4bit", "unsloth", 2, 2048, 300)
    return rows


# -- doctor's estimate for a row ------------------------------------------------------------------

def shape_for(model: str):
    from doctor.config.model_shapes import ModelShape, table_lookup

    if model == "tiny":
        return ModelShape(name="tiny", source="bench", **TINY)
    return table_lookup(MODELS[model])


def targets_for(model: str) -> list[str]:
    return PHI_TARGETS if shape_for(model).fused_projections else TARGETS


def family(model: str) -> str:
    """The transformers model_type the row's random checkpoint is built as (the table's, else llama)."""
    return shape_for(model).model_type or "llama"


def installed_versions(site: str | None) -> dict[str, str]:
    import importlib.metadata as md

    if site and site not in sys.path:
        sys.path.append(site)   # metadata only: nothing from there is imported in this process
    out = {}
    for name in ("torch", "transformers", "peft", "trl", "bitsandbytes", "unsloth", "unsloth-zoo", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def estimate_row(row: dict, versions: dict[str, str], gpu_total: int | None) -> dict:
    """Doctor's band for the row, through the same config -> inputs path `doctor run` uses."""
    from doctor.vram.estimator import HIGH, LOW, MID, estimate

    shape, low_in, mid_in, high_in, notes = row_inputs(row, versions, gpu_total)
    out = {}
    for edge, inp, k in (("low", low_in, LOW), ("mid", mid_in, MID), ("high", high_in, HIGH)):
        bd = estimate(shape, inp, k)
        out[edge] = int(bd.total)
        if edge == "mid":
            out["components"] = {c.key: int(c.bytes) for c in bd.components if c.at_peak}
            out["static"] = int(bd.static)
            out["inputs"] = {"loss": inp.loss, "gc": inp.gc, "upcast": inp.upcast, "quant": inp.quant, "attn": inp.attn,
                             "autocast": getattr(inp, "autocast", None)}
    out["assumptions"] = notes
    return out


def device_full(t: dict) -> bool:
    """An OOM because the card was full (other processes: trials, rows run side by side), not because of
    this process's cap or its own size: torch says 'Tried to allocate X ... of which Y is free' with Y < X."""
    import re

    err = t.get("error") or ""
    m1 = re.search(r"Tried to allocate ([\d.]+) (GiB|MiB)", err)
    m2 = re.search(r"of which ([\d.]+) (GiB|MiB) is free", err)
    if not (m1 and m2):
        return False
    size = lambda m: float(m.group(1)) * (1 if m.group(2) == "GiB" else 1 / 1024)   # noqa: E731
    used = re.search(r"this process has ([\d.]+) (GiB|MiB) memory in use", err)
    allowed = re.search(r"([\d.]+) (GiB|MiB) allowed", err)
    if used and allowed and size(used) + size(m1) > size(allowed):
        return False   # the cap would have refused it anyway
    return size(m2) < size(m1)


def bisect_cap(trial, lo: float, hi: float, resolution: float, max_trials: int, first: float | None = None,
               log=None) -> tuple[float, float, list[dict]]:
    """The least allocator cap that trains, between lo (the live bytes: nothing below trains) and hi
    (a cap that trained). trial(cap) -> {"status": "ok" | "oom" | ...}, each a fresh process; a trial
    that neither trained nor ran out of memory (skipped, crashed) ends the search with the bracket so far.
    Shared by the dense rows (vram_bisect.py) and the workload rows (vram_workloads.py)."""
    trials: list[dict] = []
    while hi - lo > resolution and len(trials) < max_trials:
        cap = first if first is not None and not trials else (lo + hi) / 2
        t = trial(cap)
        trials.append(t)
        if log:
            log(cap, t)
        if t.get("status") == "ok":
            hi = cap
        elif t.get("status") == "oom":
            lo = cap
        else:
            break
    return lo, hi, trials


def row_inputs(row: dict, versions: dict[str, str], gpu_total: int | None):
    """(shape, low, mid, high Inputs, assumptions) for a row, as `doctor run` derives them."""
    from doctor.config.model import TrainingConfig
    from doctor.facts import Facts, GPUInfo, PackageInfo
    from doctor.vram.inputs import inputs_for

    shape = shape_for(row["model"])
    unsloth = row["framework"] == "unsloth"
    cfg = TrainingConfig(
        framework=row["framework"], source_kind="python", model_name=f"bench/{row['model']}", model_shape=shape,
        load_in_4bit=row["quant"] == "4bit", bnb_4bit_use_double_quant=True if row["quant"] == "4bit" else None,
        prepare_model_for_kbit_training=(row["quant"] == "4bit" and not unsloth), dtype="bfloat16",
        lora_r=16, lora_alpha=16, lora_dropout=0.0, target_modules=targets_for(row["model"]), full_finetune=False,
        use_gradient_checkpointing={"off": False, "hf": True, "unsloth": "unsloth"}[row["gc"]],
        per_device_train_batch_size=row["batch"], max_seq_length=row["seq"], optim="adamw_8bit",
        args_class="TrainingArguments", bf16=None if unsloth else row.get("autocast", True))
    facts = Facts()
    facts.packages = {k: PackageInfo(name=k, version=v) for k, v in versions.items()}
    if gpu_total:
        facts.nvidia.gpus = [GPUInfo(index=0, name="bench", memory_total=gpu_total, memory_free=gpu_total)]
    low_in, mid_in, high_in, notes = inputs_for(cfg, facts)
    return shape, low_in, mid_in, high_in, notes


# -- the child: one row, measured -----------------------------------------------------------------

class MemWatch:
    """This process's GPU memory as the driver sees it (reserved + context + non-torch allocations):
    NVML per-process when nvidia-ml-py is importable and sees our pid, else one `nvidia-smi` query.
    NVML is polled every 20 ms in a thread for a peak; nvidia-smi is only asked at the end."""

    def __init__(self):
        self.pid = os.getpid()
        self.peak = 0
        self._stop = False
        self.nv = None
        try:
            import pynvml

            pynvml.nvmlInit()
            idx = int((os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0] or 0)
            self.h = pynvml.nvmlDeviceGetHandleByIndex(idx)
            self.nv = pynvml
        except Exception:
            self.nv = None
        import threading

        self._t = threading.Thread(target=self._loop, daemon=True)

    def device_used(self):
        if self.nv is not None:
            return int(self.nv.nvmlDeviceGetMemoryInfo(self.h).used)
        out = _smi(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        return int(out.split()[0]) * 2 ** 20 if out and out.split()[0].isdigit() else None

    def process_used(self):
        if self.nv is not None:
            try:
                for p in self.nv.nvmlDeviceGetComputeRunningProcesses(self.h):
                    if p.pid == self.pid and p.usedGpuMemory is not None:
                        return int(p.usedGpuMemory)
            except self.nv.NVMLError:
                return None
            return None
        out = _smi(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]) or ""
        for line in out.splitlines():
            parts = [x.strip() for x in line.split(",")]
            if len(parts) == 2 and parts[0] == str(self.pid) and parts[1].isdigit():
                return int(parts[1]) * 2 ** 20
        return None

    def start(self):
        if self.nv is not None:
            self._t.start()

    def _loop(self):
        while not self._stop:
            used = self.process_used()
            if used:
                self.peak = max(self.peak, used)
            time.sleep(0.02)

    def stop(self):
        self._stop = True
        return self.peak or None


def _smi(args):
    import subprocess

    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None


def context_probe() -> dict:
    """Run alone: what CUDA init + torch + bitsandbytes kernels cost outside memory_reserved."""
    watch = MemWatch()
    before = watch.device_used()
    import torch

    a = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16)
    (a @ a).sum().item()
    try:
        import bitsandbytes  # noqa: F401  (loads its CUDA library, as training does)
    except Exception:
        pass
    torch.cuda.synchronize()
    reserved = torch.cuda.memory_reserved()
    after, proc = watch.device_used(), watch.process_used()
    out = {"status": "ok", "reserved": reserved, "process_used": proc,
           "device_delta": (after - before) if after is not None and before is not None else None}
    out["context_bytes"] = (proc - reserved) if proc else (out["device_delta"] - reserved if out["device_delta"] else None)
    out["source"] = "process" if proc else "device"
    return out


def child(spec: dict) -> dict:
    import torch

    cuda = spec["device"] == "cuda"
    res = {"status": "ok", "expandable_segments": None}
    watch = None
    if cuda:
        watch = MemWatch()
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
        if spec.get("cap_bytes"):   # the caching allocator may reserve at most this (a smaller card)
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, spec["cap_bytes"] / total))
            res["cap_bytes"] = spec["cap_bytes"]
        watch.start()
    t0 = time.time()
    if spec["framework"] == "unsloth":
        model, vocab = load_unsloth(spec)
    else:
        model, vocab = load_hf(spec, cuda)
    res["load_s"] = round(time.time() - t0, 1)
    dev = "cuda" if cuda else "cpu"
    params = [p for p in model.parameters() if p.requires_grad]
    res["trainable_params"] = sum(p.numel() for p in params)
    try:
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit(params, lr=1e-4) if cuda else torch.optim.AdamW(params, lr=1e-4)
        res["optimizer"] = "bnb.AdamW8bit" if cuda else "torch.AdamW"
    except Exception:
        opt = torch.optim.AdamW(params, lr=1e-4)
        res["optimizer"] = "torch.AdamW"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        res["allocated_after_load"] = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        res["expandable_segments"] = "expandable_segments:True" in (
            os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "") + os.environ.get("PYTORCH_ALLOC_CONF", ""))
    autocast = spec["framework"] != "unsloth" and cuda and spec.get("autocast", True)
    res["autocast"] = autocast
    sdpa_seen = _watch_sdpa(res)
    steps = []
    for step in range(spec["steps"]):
        ids = torch.randint(0, vocab, (spec["batch"], spec["seq"]), device=dev)
        s0 = time.time()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss   # outputs dropped at once, as in Trainer
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del loss
        rec = {"s": round(time.time() - s0, 2)}
        if cuda:
            torch.cuda.synchronize()
            rec.update(max_reserved=torch.cuda.max_memory_reserved(), max_allocated=torch.cuda.max_memory_allocated(),
                       allocated_between_steps=torch.cuda.memory_allocated())
        steps.append(rec)
    res["steps"] = steps
    sdpa_seen()
    if cuda:
        res["peak_reserved"] = torch.cuda.max_memory_reserved()
        res["peak_allocated"] = torch.cuda.max_memory_allocated()
        res["allocated_between_steps"] = steps[-1]["allocated_between_steps"]
        res["process_peak_driver"] = watch.stop()   # polled NVML peak (None with nvidia-smi only)
        now = watch.process_used()
        if now:   # the allocator still holds its segments: driver view minus reserved = context + non-torch
            res["context_bytes"] = now - torch.cuda.memory_reserved()
            res["context_source"] = "nvml" if watch.nv is not None else "nvidia-smi"
    return res


def _watch_sdpa(res: dict):
    """Record what the first scaled_dot_product_attention call of the step gets (dtypes as passed and
    as autocast will cast them, mask or is_causal, GQA) and which fused kernels accept it: the
    backend decides whether seq^2 scores are materialised (the math path) or not."""
    import torch
    import torch.nn.functional as F

    orig = F.scaled_dot_product_attention

    def probe(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *a, **kw):
        if "sdpa" not in res:
            info = {"dtype": str(q.dtype), "autocast": torch.is_autocast_enabled("cuda") if q.is_cuda else False,
                    "mask": None if attn_mask is None else f"{attn_mask.dtype} {tuple(attn_mask.shape)}",
                    "is_causal": bool(is_causal), "enable_gqa": bool(kw.get("enable_gqa", False)),
                    "q": tuple(q.shape), "k": tuple(k.shape), "requires_grad": q.requires_grad}
            try:
                dt = torch.get_autocast_dtype("cuda") if info["autocast"] else q.dtype
                qq, kk, vv = (t.to(dt) for t in (q, k, v))
                m = attn_mask.to(dt) if attn_mask is not None and attn_mask.dtype != torch.bool else attn_mask
                params = torch.backends.cuda.SDPAParams(qq, kk, vv, m, dropout_p, bool(is_causal),
                                                        bool(kw.get("enable_gqa", False)))
                info["flash_ok"] = torch.backends.cuda.can_use_flash_attention(params, False)
                info["efficient_ok"] = torch.backends.cuda.can_use_efficient_attention(params, False)
                info["cudnn_ok"] = torch.backends.cuda.can_use_cudnn_attention(params, False)
            except Exception as exc:   # a torch without these helpers: the dtypes are still recorded
                info["probe_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            res["sdpa"] = info
        return orig(q, k, v, attn_mask, dropout_p, is_causal, *a, **kw)

    F.scaled_dot_product_attention = probe

    def done():
        F.scaled_dot_product_attention = orig
    return done


def load_hf(spec: dict, cuda: bool):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    # what transformers picks by default: SDPA, except for families it has no SDPA path for (Gemma 2)
    from doctor.config import defaults

    no_sdpa = family(spec["model"]) in defaults.value("transformers.no-sdpa-model-types")
    kw = {"attn_implementation": "eager" if no_sdpa else "sdpa"}
    if spec["quant"] == "4bit":
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_use_double_quant=True,
                                                       bnb_4bit_compute_dtype=torch.bfloat16)
    if cuda:
        kw["device_map"] = {"": 0}
    if spec.get("from_config"):   # bf16 rows: random weights straight on the GPU, no checkpoint on disk
        cfg = model_config(spec["family"], spec["shape"])
        cfg._attn_implementation = kw["attn_implementation"]
        torch.manual_seed(0)
        with torch.device("cuda" if cuda else "cpu"):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16,
                                                     attn_implementation=kw["attn_implementation"])
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(spec["ckpt"], dtype=torch.bfloat16, **kw)
        except TypeError:   # transformers < 4.56 spells it torch_dtype
            model = AutoModelForCausalLM.from_pretrained(spec["ckpt"], torch_dtype=torch.bfloat16, **kw)
    model.config.use_cache = False
    gc = spec["gc"] != "off"
    gc_kwargs = {"use_reentrant": False}
    if spec["quant"] == "4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                                gradient_checkpointing_kwargs=gc_kwargs)
    elif gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=targets_for(spec["model"]),
                                             task_type="CAUSAL_LM"))
    model.train()
    return model, model.config.vocab_size


def load_unsloth(spec: dict):
    import unsloth  # noqa: F401  (must come before transformers)
    from unsloth import FastLanguageModel

    model, _tok = FastLanguageModel.from_pretrained(model_name=spec["ckpt"], max_seq_length=spec["seq"], dtype=None,
                                                    load_in_4bit=True, local_files_only=True)
    model = FastLanguageModel.get_peft_model(model, r=16, target_modules=targets_for(spec["model"]), lora_alpha=16, lora_dropout=0,
                                             bias="none", use_gradient_checkpointing="unsloth", random_state=3407)
    model.train()
    return model, model.config.vocab_size


def model_config(family: str, s: dict):
    """The family's transformers config class with the table's shape (random weights come from it)."""
    from transformers import AutoConfig

    # long enough for every row (32k tokens); the estimator reads the window from the table, not from here
    extra = {"max_position_embeddings": 131072, "rope_theta": 500000.0} if family == "llama" else \
        {"max_position_embeddings": 131072}
    return AutoConfig.for_model(family, hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                                num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                                num_key_value_heads=s["kv_heads"], head_dim=s["head_dim"], vocab_size=s["vocab"],
                                tie_word_embeddings=s["tied_embeddings"], bos_token_id=3, eos_token_id=2,
                                pad_token_id=1, **extra)


def make_checkpoint(spec: dict) -> dict:
    """A random-weight model of the row's shape and family + a WordLevel tokenizer, saved once."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    s = spec["shape"]
    cfg = model_config(spec.get("family") or "llama", s)
    dev = "cuda" if spec["device"] == "cuda" else "cpu"
    torch.manual_seed(0)
    t0 = time.time()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(cfg)
    torch.set_default_dtype(old)
    out = Path(spec["ckpt"])
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size="4GB")
    vocab = {f"t{i}": i for i in range(s["vocab"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t1", eos_token="t2",
                            bos_token="t3").save_pretrained(out)
    return {"status": "ok", "save_s": round(time.time() - t0, 1)}


def child_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        if spec.get("make_checkpoint"):
            res = make_checkpoint(spec)
        elif spec.get("context_probe"):
            res = context_probe()
        else:
            res = child(spec)
    except Exception as exc:   # an OOM is a result, anything else an error: both reported, never hidden
        oom = "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"
        res = {"status": "oom" if oom else "error", "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    print(MARK + json.dumps(res), flush=True)


# -- the parent: run the grid ---------------------------------------------------------------------

def run_child(spec: dict, timeout: float, env: dict) -> dict:
    from doctor.runner import run_command

    res = run_command([sys.executable, __file__, "--child", json.dumps(spec)], timeout=timeout, env=env)
    for line in reversed(res.stdout.splitlines()):
        if line.startswith(MARK):
            out = json.loads(line[len(MARK):])
            out["wall_s"] = round(res.duration_s, 1)
            return out
    status = "timeout" if res.timed_out else "crashed"
    tail = (res.stderr.strip().splitlines() or [""])[-1][:300]
    return {"status": status, "error": res.describe_failure(), "stderr_tail": tail, "wall_s": round(res.duration_s, 1)}


def gpu_info(env: dict) -> dict:
    from doctor.runner import run_python

    code = ("import json, torch\nfrom doctor.runner import RESULT_MARKER\n"
            "ok = torch.cuda.is_available()\n"
            "print(RESULT_MARKER + json.dumps({'cuda': ok, 'name': torch.cuda.get_device_name(0) if ok else None,"
            " 'total': torch.cuda.mem_get_info()[1] if ok else None}))\n")
    _res, payload = run_python(code, timeout=120, env=env)
    return payload or {"cuda": False}


def measured_bytes(row: dict, base_context):
    """What the estimate is compared with: peak reserved + the process's CUDA context (its own
    when the driver reported it, else the context probe's)."""
    m = row.get("measured") or {}
    if m.get("status") != "ok" or m.get("peak_reserved") is None:
        return None
    ctx = m.get("context_bytes")
    if not ctx or ctx <= 0:
        ctx = base_context or 0
    return m["peak_reserved"] + ctx


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path, nargs="?")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on CPU: exercise every code path")
    ap.add_argument("--holdout", type=int, nargs="?", const=1, default=0,
                    help="a held-out set: 1 (before recalibration), 2 (after it), 3 (other model families), "
                         "4 (Gemma 2's eager attention), 5 (held out for set 4's terms)")
    ap.add_argument("--only", choices=["hf", "unsloth"], help="run only the transformers or the Unsloth rows")
    ap.add_argument("--budget-s", type=float, default=540.0, help="skip rows that would start after this")
    ap.add_argument("--site", default="/tmp/site" if Path("/tmp/site").is_dir() else None,
                    help="extra site dir (unsloth / bitsandbytes wheels) put first on the children's PYTHONPATH")
    ap.add_argument("--lanes", type=int, choices=[1, 2], default=None,
                    help="2: Unsloth rows beside the transformers rows (needs NVML per-process memory)")
    ap.add_argument("--ckpt-dir", type=Path, default=Path("/tmp/vram_grid_ckpt"),
                    help="where the random checkpoints go (not under OUT_DIR: the 8B one is 16 GB)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    if args.out_dir is None:
        ap.error("OUT_DIR is required")
    start = time.time()
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **OFFLINE_ENV)
    env["PYTHONPATH"] = os.pathsep.join([p for p in (args.site, str(REPO), env.get("PYTHONPATH")) if p])
    info = {"cuda": False} if args.cpu_smoke else gpu_info(env)
    device = "cuda" if info.get("cuda") else "cpu"
    if device == "cpu" and not args.cpu_smoke:
        print("no CUDA GPU visible; use --cpu-smoke for a dry run", file=sys.stderr)
        return 2
    versions = installed_versions(args.site)
    rows = [r for r in grid(args.cpu_smoke, args.holdout)
            if not args.only or (args.only == "unsloth") == (r["framework"] == "unsloth")]
    unsloth_ok = "unsloth" in versions
    results = {"gpu": info, "versions": versions, "device": device, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
               "rows": []}
    out_json = out_dir / "vram_grid.json"

    def save():
        results["elapsed_s"] = round(time.time() - start, 1)
        out_json.write_text(json.dumps(results, indent=1))
        (out_dir / "vram_grid.md").write_text(markdown_table(results))

    # checkpoints, once per model shape
    ckpt_root = args.ckpt_dir / ("smoke" if args.cpu_smoke else "grid")
    for model in sorted({r["model"] for r in rows}):
        path = ckpt_root / model
        if (path / "config.json").exists():
            continue
        shape = shape_for(model)
        spec = {"make_checkpoint": True, "device": device, "ckpt": str(path), "family": family(model),
                "shape": {k: getattr(shape, k) for k in TINY}}
        made = run_child(spec, 300, env)
        results.setdefault("checkpoints", {})[model] = made
        if made.get("status") != "ok":
            print(f"checkpoint {model}: {made}", file=sys.stderr)
    if device == "cuda":   # alone on the GPU, before any row
        results["context_probe"] = run_child({"context_probe": True, "device": device}, 120, env)
    base_context = (results.get("context_probe") or {}).get("context_bytes")
    save()

    def run_row(row: dict) -> dict:
        entry = {**row, "estimate": estimate_row(row, versions, info.get("total"))}
        if row["framework"] == "unsloth" and not unsloth_ok:
            entry["measured"] = {"status": "skipped", "error": "unsloth is not installed"}
        elif row["quant"] == "4bit" and device == "cpu" and row["framework"] != "unsloth":
            entry["measured"] = {"status": "skipped", "error": "bitsandbytes 4-bit needs CUDA"}
        elif time.time() - start > args.budget_s:
            entry["measured"] = {"status": "skipped", "error": f"over the {args.budget_s:.0f} s budget"}
        else:
            spec = {**row, "device": device, "ckpt": str(ckpt_root / row["model"])}
            entry["measured"] = run_child(spec, row["timeout"], env)
        m = measured_bytes(entry, base_context)
        if m:
            entry["measured_total"] = m
            entry["error_mid"] = (entry["estimate"]["mid"] - m) / m
            entry["in_band"] = entry["estimate"]["low"] <= m <= entry["estimate"]["high"]
        results["rows"].append(entry)
        save()
        status = entry["measured"].get("status")
        err = f"{entry['error_mid']:+.1%}" if "error_mid" in entry else ""
        print(f"[{time.time() - start:6.0f}s] {row['id']:<48} {status:<8} {err}", flush=True)
        return entry

    hf_rows = [r for r in rows if r["framework"] != "unsloth"]
    us_rows = [r for r in rows if r["framework"] == "unsloth"]
    lanes = args.lanes or (2 if device == "cuda" and hf_rows and us_rows else 1)
    if lanes == 2:
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(lambda rs=rs: [run_row(r) for r in rs]) for rs in (us_rows, hf_rows)]
            for j in jobs:
                j.result()
    else:
        for r in hf_rows + us_rows:
            run_row(r)
    results["lanes"] = lanes
    save()
    print(f"wrote {out_json} ({time.time() - start:.0f} s)")
    return 0


def markdown_table(results: dict) -> str:
    gib = 1024 ** 3
    lines = ["| row | status | measured (reserved+ctx) | low | mid | high | error (mid) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    errs = []
    for r in results["rows"]:
        e, m = r["estimate"], r.get("measured_total")
        err = r.get("error_mid")
        if err is not None:
            errs.append(abs(err))
        lines.append(f"| {r['id']} | {r['measured'].get('status')} | {m / gib:.2f} GiB |" if m else
                     f"| {r['id']} | {r['measured'].get('status')} | - |")
        lines[-1] += f" {e['low'] / gib:.2f} | {e['mid'] / gib:.2f} | {e['high'] / gib:.2f} | " + (
            f"{err:+.1%} |" if err is not None else "- |")
    if errs:
        lines.append(f"\nmedian |error| {statistics.median(errs):.1%}, worst {max(errs):.1%} over {len(errs)} rows")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
