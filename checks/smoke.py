"""What `doctor smoke` measured: each failed, hung or crashed step becomes a finding that names the layer
that broke (driver, runtime, compiler, library binary, interconnect), with the error text and the fix.
The layer comes from the error (checks/data/smoke_errors.json), else from the step itself. When smoke
was not run on a machine with a GPU, an info finding says so: the static checks cannot see everything.
"""
from __future__ import annotations

import re
from typing import Optional

from checks import check
from doctor.knowledge import load
from doctor.facts import Facts, SmokeStep
from doctor.findings import Finding, Severity

LAYERS = ("driver", "runtime", "compiler", "library-binary", "interconnect")
FAILED = {layer: f"smoke.{layer}-failed" for layer in LAYERS}
PASSED = "smoke.passed"
NOT_RUN = "smoke.not-run"
NO_GPU = "smoke.no-gpu"
BAD = ("failed", "hung", "crashed")

# The catalogue's failure mode (docs/knowledge/unsloth-failure-modes.md) each layer's breakage falls under.
FAILURE_MODE = {"driver": "FM-11", "runtime": "FM-10", "compiler": "FM-17", "library-binary": "FM-10",
                "interconnect": "FM-20"}
LAYER_WORDS = {"driver": "the NVIDIA driver / libcuda", "runtime": "the CUDA runtime in torch",
               "compiler": "the JIT compilers (triton, torch.compile)", "library-binary": "a native library binary",
               "interconnect": "GPU-to-GPU communication (NCCL)"}
STEP_WORDS = {"import_torch": "import torch", "cuda_init": "CUDA init", "matmul_bf16": "bf16 matmul (cuBLAS)",
              "sdpa_flash": "SDPA flash", "sdpa_mem_efficient": "SDPA memory-efficient",
              "triton_jit": "triton JIT kernel", "torch_compile": "torch.compile",
              "bnb_4bit": "bitsandbytes 4-bit matmul", "bnb_adam8bit": "bitsandbytes 8-bit Adam",
              "unsloth_import": "import unsloth", "nccl_allreduce": "NCCL all-reduce"}


def classify(step: SmokeStep) -> tuple[str, Optional[dict]]:
    """(layer, the matching knowledge row or None) for a step that did not pass."""
    text = step.error or ""
    for row in load("smoke_errors")["patterns"]:
        if re.search(row["pattern"], text, re.I):
            return row["layer"], row
    return (step.layer if step.layer in LAYERS else "runtime"), None


def label(step: SmokeStep) -> str:
    where = f" on GPU {step.device}" if step.device and "-" not in step.device else \
        (f" across GPUs {step.device.replace('-', ',')}" if step.device else "")
    return STEP_WORDS.get(step.name, step.name) + where


@check(id="smoke", title="what `doctor smoke` ran: each failed kernel family, by layer (or that smoke was not run)",
       finding_ids=tuple(FAILED.values()) + (PASSED, NOT_RUN, NO_GPU), order=76)
def smoke(facts: Facts, config=None) -> list[Finding]:
    s = facts.smoke
    if s.cpu_only:
        return [Finding(id=NO_GPU, severity=Severity.INFO, title="smoke test not run: no CUDA GPU is usable here",
                        why="The smoke test runs kernels on each GPU; torch sees none (" + (s.error or "?") + ").",
                        remediation="See the GPU findings above; rerun `doctor smoke` once torch sees the GPU.",
                        evidence={"smoke.error": s.error, "torch.cuda_available": facts.torch.cuda_available},
                        confidence=1.0, fix_cost=3)]
    if not s.ran:
        # Facts from a doctor before smoke existed (no toolchain probe either) say nothing about it.
        if not facts.torch.cuda_available or facts.probe("toolchain") is None:
            return []
        return [Finding(id=NOT_RUN, severity=Severity.INFO,
                        title="kernels were not test-run (add --smoke, or run `doctor smoke`)",
                        why="These findings come from what is installed. Whether the GPU really runs a bf16 matmul, "
                            "attention, a triton JIT kernel, torch.compile and bitsandbytes here is only known by "
                            "running them: about 30 s on a warm machine.",
                        remediation="Run the smoke test.", commands=["doctor smoke", "doctor run --smoke"],
                        evidence={"smoke.ran": False}, confidence=1.0, fix_cost=1)]
    bad = [st for st in s.steps if st.status in BAD]
    by_layer: dict[str, list[tuple[SmokeStep, Optional[dict]]]] = {}
    for st in bad:
        if st.error and st.error.startswith("not run: "):
            continue        # inherited from the step that broke; that one is reported
        layer, row = classify(st)
        by_layer.setdefault(layer, []).append((st, row))
    out = [_layer_finding(layer, items, facts) for layer, items in by_layer.items()]
    if not bad:
        timings = {label(st): st.seconds for st in s.steps if st.status == "passed"}
        skipped = {label(st): st.detail for st in s.steps if st.status == "skipped"}
        out.append(Finding(
            id=PASSED, severity=Severity.INFO,
            title=f"smoke test passed: {len(timings)} steps in {s.seconds or 0:.1f} s"
                  + (f" ({len(skipped)} skipped)" if skipped else ""),
            why="Each kernel family the fine-tune needs ran on the GPU and gave the right result.",
            evidence={"seconds per step": timings, **({"skipped": skipped} if skipped else {})},
            confidence=1.0, fix_cost=1))
    return out


def _layer_finding(layer: str, items: list, facts: Facts) -> Finding:
    first, row = items[0]
    hung = [st for st, _ in items if st.status == "hung"]
    what = ", ".join(f"{label(st)} {st.status}" for st, _ in items)
    cause = row["cause"] if row else None
    title = f"{LAYER_WORDS[layer]} broke: {what}" + (f" ({cause})" if cause else "")
    error = (first.error or "").strip()
    if row:
        fix, commands = row["fix"], list(row["commands"])
    elif hung:
        fix, commands = ("A step that hangs usually waits on the driver or a compiler; rerun with the step's "
                         "library logging on (NCCL_DEBUG=INFO, TORCH_LOGS=+inductor) and check `nvidia-smi`."), ["nvidia-smi"]
    else:
        fix, commands = "Read the error text; reinstall the library named in it for this torch and CUDA.", []
    return Finding(
        id=FAILED[layer], severity=Severity.ERROR,
        title=title,
        why=f"`doctor smoke` ran {label(first)} in a child process and it {first.status}. Training uses the same "
            f"code path, so it fails (or hangs) the same way. Error: {error[-600:] or '(none)'}",
        remediation=fix, commands=commands,
        evidence={f"smoke.{st.name}" + (f"[{st.device}]" if st.device else ""):
                  {"status": st.status, "seconds": st.seconds, "error": (st.error or "")[-400:] or None}
                  for st, _ in items},
        links=[row["source"]] if row else [], failure_mode=FAILURE_MODE[layer], confidence=0.95, fix_cost=1 if row else 2)
