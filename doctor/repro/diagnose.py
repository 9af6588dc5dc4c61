"""ReproResult (measured) -> (cause, findings). Pure: no I/O, so recorded runs replay in tests.

The cause comes from evidence, never from which fault was injected: the attach diagnosis of the
stalled tree (stack signatures), the host memory at the stall against the last finished step,
the step log (tokens and time per step), and the crash's exception. The injected faults are only
used to say whether the detector found what was planted.
"""
from __future__ import annotations

import re
import statistics
from typing import Optional

from doctor.findings import ConfigChange, Finding, Severity
from doctor.knowledge import load
from doctor.knowledge.crashes import cuda_error_class
from doctor.repro.faults import failure_mode
from doctor.repro.result import ReproResult, StepRecord
from doctor.units import gib

MIB = 1 << 20
# The diagnosis thresholds are knowledge with their reasons: checks/data/repro_thresholds.json.
_T = {k: row["value"] for k, row in load("repro_thresholds")["thresholds"].items()}
HOST_GROWTH_MIN = int(_T["host_growth_min_mib"] * MIB)   # the stalled process grew this much since its last step ...
HOST_GROWTH_RATIO = _T["host_growth_ratio"]              # ... and by this share of its size then
HOST_LOW_AVAILABLE = _T["host_low_available"]            # or MemAvailable fell below this share of RAM
TOKENS_JUMP = _T["tokens_jump"]                          # tokens in a step vs the median step
SLOW_STEP = _T["slow_step"]                              # a finished step this many times the median ...
NEAR_STALL = _T["near_stall"]                            # ... that also used this share of the stall floor
EMULATED_SYNC_FRAME = "emulated_cuda.py"   # doctor/repro/emulated_cuda.py, the CPU stand-in
ISSUE_1010 = "https://github.com/unslothai/unsloth/issues/1010"

# attach causes (checks/data/stack_signatures.json) -> the repro cause they establish
ATTACH_TO_CAUSE = {"dataloader-worker-hang": "dataloader-hang", "pin-memory-thread": "dataloader-hang",
                   "cuda-sync-wait": "cuda-stall", "compile": "compile"}

# Declared in checks/data/finding_producers.json (listed by `doctor checks`, covered by the contract test).
FINDING_IDS = tuple(next(p for p in load("finding_producers")["producers"] if p["id"] == "repro")["finding_ids"])

# What each cause means for the fault the repro planted (for repro.fault-missed).
EXPECTED_CAUSE = {"dataloader-hang": ("dataloader-hang",), "long-sample": ("long-sample",),
                  "cuda-stall": ("cuda-stall",), "host-memory": ("host-memory",),
                  "vram-squeeze": ("vram-oom", "cuda-stall")}   # Linux: OOM; WSL2: a spill that stalls


_SHAPE_MISMATCH = re.compile(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)")
_UNSLOTH_TRUNCATE = re.compile(r"Unsloth: Input IDs of length (\d+) > the model's max sequence length of (\d+)")


def _median(values: list[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def steady_steps(steps: list[StepRecord]) -> list[StepRecord]:
    return [s for s in steps if s.step > 1] or list(steps)


# ---------------------------------------------------------------- step log

def long_sample_findings(r: ReproResult) -> list[Finding]:
    seq = r.config.get("max_seq_length")
    steps = r.steps
    med_tokens = _median([s.tokens for s in steady_steps(steps) if s.tokens])
    med_time = r.median_step_s()
    out = []
    warned = _UNSLOTH_TRUNCATE.search(r.log_tail or "")
    for s in steps:
        over = seq and s.max_len and s.max_len > seq
        jump = med_tokens and s.tokens and s.tokens >= TOKENS_JUMP * med_tokens
        if not (over or jump):
            continue
        ratio = f"{s.tokens / med_tokens:.1f}x" if med_tokens and s.tokens else "?"
        slower = (f"{s.duration_s / med_time:.1f}x the median step time" if med_time and s.duration_s
                  else "time unknown")
        evidence = {"step": s.step, "longest_sample": s.max_len, "max_seq_length": seq,
                    "tokens_in_step": s.tokens, "median_tokens_per_step": med_tokens,
                    "step_time_s": _round(s.duration_s), "median_step_s": _round(med_time),
                    "peak_vram": s.mem_peak}
        if warned:
            evidence["unsloth_warning"] = warned.group(0)
        if over:
            out.append(Finding(
                id="repro.long-sample", severity=Severity.ERROR, failure_mode="FM-15", confidence=0.95,
                title=f"Step {s.step} fed a sample of {s.max_len} tokens, longer than max_seq_length {seq}",
                why=f"Tokens per step jumped {ratio} (step time {slower}). Past max_seq_length the "
                    "activations and logits grow with the sample: on a GPU with little headroom this step "
                    "is the one that runs out of memory, or (Windows/WSL2) spills into shared memory and "
                    "crawls. With Unsloth, 'Input IDs of length ... > the model's max sequence length' "
                    "and a tensor size mismatch follow.",
                remediation="Truncate or filter the dataset to max_seq_length before training, and use one "
                            "max_seq_length everywhere (from_pretrained, SFTConfig max_length).",
                evidence=evidence, links=[ISSUE_1010], fix_cost=1))
        else:
            out.append(Finding(
                id="repro.tokens-jump", severity=Severity.WARNING, failure_mode="FM-16", confidence=0.7,
                title=f"Step {s.step} fed {ratio} the median tokens per step ({s.tokens} tokens)",
                why="Heterogeneous sample lengths make some steps much bigger than others: peak memory and "
                    "step time follow the biggest batch, not the average.",
                remediation="Shuffle, group by length, or pack samples so every step carries a similar load.",
                evidence=evidence, fix_cost=1))
    return out


def slow_step_findings(r: ReproResult, skip: set) -> list[Finding]:
    med = r.median_step_s()
    if not med:
        return []
    floor = float(r.policy.get("floor_s") or 0.0)
    out = []
    for s in r.steps:
        if s.step <= 1 or s.step in skip or s.duration_s is None:
            continue
        if s.duration_s >= max(SLOW_STEP * med, NEAR_STALL * floor):
            out.append(Finding(
                id="repro.slow-step", severity=Severity.WARNING, failure_mode="FM-16", confidence=0.6,
                title=f"Step {s.step} took {s.duration_s:.1f} s, {s.duration_s / med:.1f}x the median step "
                      f"(a near-stall: the floor is {floor:g} s)",
                why="A step far slower than its neighbours without more tokens points at the machine: "
                    "memory pressure (host swap, VRAM spilling to shared memory on Windows/WSL2), "
                    "allocator retries, or a recompile.",
                remediation="Compare this step's memory with its neighbours in the step log; rerun with the "
                            "same seed to see if it moves.",
                evidence={"step": s.step, "step_time_s": _round(s.duration_s), "median_step_s": _round(med),
                          "tokens": s.tokens, "peak_vram": s.mem_peak, "host_rss": s.host_rss}))
    return out


# ---------------------------------------------------------------- stall

def attach_main_frames(diagnosis: Optional[dict]) -> list[str]:
    """The key frames of the root process's main thread, innermost first."""
    if not diagnosis:
        return []
    root = next((p for p in diagnosis.get("processes", []) if p.get("pid") == diagnosis.get("pid")), None)
    for th in (root or {}).get("threads", []):
        if th.get("main"):
            return list(th.get("key_frames") or []) + ([th["matched"]] if th.get("matched") else [])
    return []


def host_memory_evidence(r: ReproResult) -> Optional[dict]:
    """Did host memory run out around the stall? Growth of the stalled process or low MemAvailable."""
    host = r.host or {}
    mem = host.get("memory") or {}
    root_pid = host.get("root_pid")
    now = next((p.get("rss") for p in (host.get("tree") or {}).get("processes", [])
                if p.get("pid") == root_pid), None)
    before = r.steps[-1].host_rss if r.steps else None
    growth = (now - before) if (now is not None and before) else None
    total, avail = mem.get("total"), mem.get("available")
    low = bool(total and avail is not None and avail < HOST_LOW_AVAILABLE * total)
    grew = bool(growth is not None and growth >= HOST_GROWTH_MIN and growth >= HOST_GROWTH_RATIO * before)
    if not (low or grew):
        return None
    return {"rss_now": now, "rss_at_last_step": before, "growth": growth, "mem_available": avail,
            "mem_total": total, "swap_used": mem.get("swap_used"), "low_available": low}


def stall_finding(r: ReproResult) -> tuple[str, Finding]:
    st = r.stall
    diag = r.diagnosis or {}
    acause = diag.get("cause")
    primary = (diag.get("findings") or [None])[0]
    frames = attach_main_frames(diag)
    emulated = any(EMULATED_SYNC_FRAME in f for f in frames)
    mem = host_memory_evidence(r)
    med = r.median_step_s()
    evidence = {"stalled_step": st.step, "phase": st.phase, "waited_s": _round(st.waited_s),
                "deadline_s": _round(st.deadline_s), "deadline": st.reason, "median_step_s": _round(med)}
    if acause:
        evidence["attach_cause"] = acause
        evidence["attach_situation"] = diag.get("situation")
    if frames:
        evidence["main_thread"] = frames[0]
    if primary:
        evidence["attach_finding"] = primary.get("title")
    if r.diagnosis_error:
        evidence["attach_error"] = r.diagnosis_error
    if emulated:
        evidence["emulated"] = "CPU stand-in: doctor.repro.emulated_cuda.synchronize"
    where = f"step {st.step}" if st.phase == "training" else f"the '{st.phase}' phase"
    timed_out = "--timeout" in st.reason
    stopped = "Run stopped by its --timeout" if timed_out else "Training stalled"
    waited = f"no progress for {st.waited_s:.1f} s (deadline {st.deadline_s:.1f} s: {st.reason})"
    if mem:
        evidence.update({k: v for k, v in mem.items() if v is not None})
        return "host-memory", Finding(
            id="repro.stall.host-memory", severity=Severity.ERROR, failure_mode="FM-18", confidence=0.8,
            title=f"{stopped} at {where} while host memory ran short "
                  f"(grew {gib(mem['growth'], 2)} since the last step; {gib(mem['mem_available'], 2)} available)",
            why=f"{waited}. The training process took much more host RAM than at its last finished step "
                "and/or the machine is nearly out of it: the step is waiting on memory (reclaim, swap), "
                "and the kernel's OOM killer may end it next. Under WSL2 the VM gets half of Windows' RAM "
                "by default; Unsloth's offloaded checkpointing also holds pinned host buffers (FM-02).",
            remediation="Free host RAM or give the VM more (WSL2: memory= in %UserProfile%\\.wslconfig, then "
                        "`wsl --shutdown`); lower dataset_num_proc; on WSL2 prefer "
                        "use_gradient_checkpointing=True over 'unsloth'.",
            commands=["free -h", "dmesg | grep -i 'killed process' | tail"],
            evidence=evidence, links=[ISSUE_1010], fix_cost=2)
    # The cause comes from the stack signatures alone, for the CPU stand-in too: its stack is
    # labelled as an emulation below, never classified by name.
    cause = ATTACH_TO_CAUSE.get(acause or "")
    if cause == "dataloader-hang":
        return cause, Finding(
            id="repro.stall.dataloader-hang", severity=Severity.ERROR, failure_mode="FM-14", confidence=0.9,
            title=f"{stopped} at {where}: the main thread waits for a DataLoader worker that "
                  "never delivers the batch",
            why=f"{waited}. The main thread sits in the DataLoader's queue get (_try_get_data) while the "
                "worker that owns the next batch is stuck in collate or __getitem__: a blocking call, "
                "a deadlock after fork, or /dev/shm too small in a container.",
            remediation="Run with dataloader_num_workers=0 (tokenized text needs no workers); if workers "
                        "must stay, look at the worker's stack in the diagnosis and at `df -h /dev/shm`.",
            commands=["df -h /dev/shm"],
            config_changes=[ConfigChange("dataloader_num_workers", 0,
                                         "pre-tokenized text needs no workers; removes the stuck worker")],
            evidence=evidence, fix_cost=1)
    if cause == "cuda-stall":
        gpu = diag.get("situation") or "GPU state unknown"
        return cause, Finding(
            id="repro.stall.cuda-stall", severity=Severity.ERROR, failure_mode="FM-04", confidence=0.85,
            title=f"{stopped} at {where}: the host waits on the GPU and the work never completes"
                  + (" (emulated on CPU)" if emulated else f" ({gpu})"),
            why=f"{waited}. The main thread is in a host-device sync ({frames[0] if frames else 'a sync'}). "
                "With the GPU idle this is the step-11 picture of unslothai/unsloth#1010: on WSL2 the "
                "dxgkrnl GPU-PV hang (FM-04) or VRAM spilled to shared memory (FM-01); on Windows a TDR "
                "reset (FM-05); elsewhere a driver fault (dmesg Xid)."
                + (" Here it is the doctor's CPU emulation, which proves the detector; it says nothing "
                   "about a GPU." if emulated else ""),
            remediation="Check `dmesg | grep -iE 'xid|dxg'`; on WSL2 update the Windows NVIDIA driver and "
                        "WSL (`wsl --update`), then `wsl --shutdown`; keep 1-1.5 GB of VRAM headroom.",
            commands=["dmesg | grep -iE 'xid|dxg' | tail"], evidence=evidence, links=[ISSUE_1010], fix_cost=3)
    if cause == "compile":
        return cause, Finding(
            id="repro.stall.compile", severity=Severity.ERROR, failure_mode="FM-17", confidence=0.7,
            title=f"{stopped} at {where} inside torch.compile / Triton",
            why=f"{waited}. The main thread is compiling (Inductor, Triton autotune): a long first compile, "
                "a recompile loop on changing shapes, or autotuning under VRAM pressure.",
            remediation="Give the first steps more time (--first-step-grace), keep shapes stable (padding, "
                        "packing), persist TORCHINDUCTOR_CACHE_DIR; TORCH_LOGS=recompiles shows loops.",
            evidence=evidence, fix_cost=2)
    if acause:
        benign = timed_out and acause == "running-normally"    # still training when the time ran out
        return f"stall:{acause}", Finding(
            id="repro.stall.other", severity=Severity.WARNING if benign else Severity.ERROR, failure_mode=(primary or {}).get("failure_mode"),
            confidence=0.6, title=f"{stopped} at {where}: {(primary or {}).get('title') or acause}"
                                  + (" (the CPU stand-in for a CUDA stall)" if emulated else ""),
            why=f"{waited}. {(primary or {}).get('why') or ''}".strip(),
            remediation=(primary or {}).get("remediation") or "See the attach diagnosis below.",
            commands=list((primary or {}).get("commands") or []), evidence=evidence)
    return "stall-unknown", Finding(
        id="repro.stall.unknown", severity=Severity.ERROR, confidence=0.5,
        title=f"{stopped} at {where}; its stacks could not be read",
        why=f"{waited}. The attach sampler gave no diagnosis ({r.diagnosis_error or 'not available'}); "
            "the faulthandler dump in the report shows where each thread was.",
        remediation="Run `doctor attach PID` on a stalled run yourself, as root if ptrace is restricted.",
        evidence=evidence)


# ---------------------------------------------------------------- crash

def crash_when(c) -> str:
    """'at step 11', or 'while building-trainer' when no step had begun."""
    if c.step:
        return f"at step {c.step}"
    return f"while {c.phase}" if c.phase else "before the first step"


def crash_finding(r: ReproResult) -> tuple[str, Finding]:
    c = r.crash
    when = crash_when(c)
    mem = dict(c.memory or {})
    last = r.steps[-1] if r.steps else None
    evidence = {"step": c.step, "exception": f"{c.type}: {c.message[:300]}" if c.type else None,
                "exit_code": c.exit_code, "signal": c.signal}
    evidence.update({k: v for k, v in mem.items() if v is not None})
    if last is not None and last.mem_peak is not None:
        evidence["last_step_peak"] = last.mem_peak
    evidence = {k: v for k, v in evidence.items() if v is not None}
    text = f"{c.type}: {c.message}"
    squeeze = r.fault("vram-squeeze")
    if c.type == "OutOfMemoryError" or "CUDA out of memory" in text:
        if squeeze and squeeze.injected:
            evidence["squeezed_vram"] = squeeze.data.get("held")
        changes = []
        bs, ga = r.config.get("batch_size"), r.config.get("grad_accum")
        if bs and bs > 1:
            changes = [ConfigChange("per_device_train_batch_size", max(1, bs // 2), "halves activation memory"),
                       ConfigChange("gradient_accumulation_steps", (ga or 1) * 2, "keeps the effective batch")]
        return "vram-oom", Finding(
            id="repro.crash.cuda-oom", severity=Severity.ERROR, failure_mode="FM-01", confidence=0.95,
            title=f"CUDA out of memory {when}: {gib(mem.get('gpu_free'), 2)} free of "
                  f"{gib(mem.get('gpu_total'), 2)}, the last finished step peaked at "
                  f"{gib(last.mem_peak if last else None, 2)}",
            why="The step needed more VRAM than was free. On Linux this is a clean OOM; on Windows/WSL2 "
                "drivers >= 536.40 the same shortage spills into shared system memory instead and the "
                "step crawls or stalls (the step-11 hang)."
                + (" Here the repro squeezed VRAM on purpose before the step." if squeeze and squeeze.injected
                   else ""),
            remediation="Lower per_device_train_batch_size (raise gradient_accumulation_steps), shorten "
                        "max_seq_length, close other GPU programs; keep 1-1.5 GB of headroom on WSL2.",
            config_changes=changes, evidence=evidence, links=[ISSUE_1010], fix_cost=1)
    m = _SHAPE_MISMATCH.search(text)
    if m:
        return "shape-mismatch", Finding(
            id="repro.crash.shape-mismatch", severity=Severity.ERROR, failure_mode="FM-15", confidence=0.85,
            title=f"Crash {when}: tensor sizes {m.group(1)} vs {m.group(2)} (a sample longer than "
                  "max_seq_length was truncated on one side only)",
            why="Unsloth truncates input_ids to the model's max_seq_length but not the labels, so a long "
                "sample ends in a size mismatch (hiyouga/LlamaFactory#2990).",
            remediation="Truncate the dataset to max_seq_length, and pass the same max_seq_length to "
                        "from_pretrained and SFTConfig.",
            evidence=evidence, fix_cost=1)
    if "CUDA error" in text or "CUDA driver error" in text:
        klass, fm = cuda_error_class(text)
        return "cuda-error", Finding(
            id="repro.crash.cuda-error", severity=Severity.ERROR, failure_mode=fm, confidence=0.8,
            title=f"CUDA error {when}: {klass}",
            why=f"The child raised {c.type}: {c.message[:300]}",
            remediation="Rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing kernel; see the failure mode.",
            commands=["CUDA_LAUNCH_BLOCKING=1 doctor repro ..."], evidence=evidence, fix_cost=2)
    if c.signal is not None and not c.type:
        if c.signal == 9:
            return "killed", Finding(
                id="repro.crash.killed", severity=Severity.ERROR, failure_mode="FM-18", confidence=0.7,
                title=f"The training process was killed (SIGKILL) {when}",
                why="Nothing in the doctor sent it: the usual sender is the kernel's OOM killer when host "
                    "RAM runs out (on WSL2 the VM's memory cap).",
                remediation="Check `dmesg | grep -i 'killed process'`; give the machine or the WSL2 VM more "
                            "RAM, lower dataset_num_proc.",
                commands=["dmesg | grep -i 'killed process' | tail"], evidence=evidence, fix_cost=2)
        return "signal", Finding(
            id="repro.crash.signal", severity=Severity.ERROR, confidence=0.7,
            title=f"The training process died of signal {c.signal} {when}",
            why="A native crash (segfault, abort) in a library: the log tail and faulthandler output in "
                "child.log show where.",
            remediation="Read child.log in the output folder; report it with `doctor bundle`.",
            evidence=evidence)
    return "exception", Finding(
        id="repro.crash.exception", severity=Severity.ERROR, confidence=0.8,
        title=f"Training crashed {when}: {c.type or 'exit code ' + str(c.exit_code)}",
        why=(c.message[:500] or "The child exited without a traceback; see child.log."),
        remediation="The traceback is in the report and in child.log in the output folder.",
        evidence=evidence)


# ---------------------------------------------------------------- context findings

def context_findings(r: ReproResult) -> list[Finding]:
    out = []
    if r.notes:
        out.append(Finding(
            id="repro.fidelity", severity=Severity.INFO, confidence=1.0,
            title=f"The repro differs from the config in {len(r.notes)} way(s) on this machine",
            why="; ".join(r.notes), evidence={"backend": r.info.get("backend"), "device": r.info.get("device")}))
    reached = max((s.step for s in r.steps), default=0) + (1 if (r.stalled or r.crashed) else 0)
    for f in r.faults:
        if f.skipped:
            out.append(Finding(id="repro.fault-not-applicable", severity=Severity.INFO, confidence=1.0,
                               title=f"{f.kind}: not applicable here", why=f.skipped,
                               evidence={"fault": f"{f.kind}@{f.step}"}))
        elif not f.injected and f.step > reached:
            out.append(Finding(id="repro.fault-not-reached", severity=Severity.WARNING, confidence=1.0,
                               title=f"{f.kind}@{f.step} was not planted: the run ended at step {reached}",
                               why="The fault's step comes after the last step the run reached.",
                               remediation="Use --steps above the fault's step."))
    return out


def wsl_findings(r: ReproResult) -> list[Finding]:
    w = r.wsl or {}
    if not w.get("applicable"):
        return []
    out = []
    lines = [d for d in (w.get("dmesg") or {}).get("lines", []) if d.get("failure_mode")]
    if lines:
        fm = lines[-1]["failure_mode"]
        out.append(Finding(
            id="repro.wsl.dxg", severity=Severity.ERROR, failure_mode=fm, confidence=0.8,
            title=f"dmesg shows dxgkrnl errors during the run: {lines[-1]['meaning']}",
            why="These come from the WSL2 GPU paravirtualisation layer, not from the training code.",
            remediation="Update the Windows NVIDIA driver and WSL (`wsl --update`), then `wsl --shutdown`; "
                        "set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False before importing unsloth.",
            evidence={"lines": [d["line"] for d in lines[-3:]]}, fix_cost=3))
    growth = (w.get("shared_gpu_memory") or {}).get("growth")
    if growth and growth > 256 * MIB:
        out.append(Finding(
            id="repro.wsl.shared-memory-growth", severity=Severity.WARNING, failure_mode="FM-01",
            confidence=0.7, title=f"Windows shared GPU memory grew {gib(growth, 2)} during the run",
            why="The driver spilled VRAM into system RAM (sysmem fallback): steps crawl instead of failing "
                "with an out-of-memory error.",
            remediation="NVIDIA Control Panel -> CUDA - Sysmem Fallback Policy -> Prefer No Sysmem Fallback; "
                        "lower batch size or max_seq_length.",
            evidence={"growth": growth}, fix_cost=2))
    return out


def missed_fault_findings(r: ReproResult, cause: str) -> list[Finding]:
    out = []
    for f in r.faults:
        if f.injected and cause not in EXPECTED_CAUSE.get(f.kind, (f.kind,)):
            out.append(Finding(
                id="repro.fault-missed", severity=Severity.WARNING, failure_mode=failure_mode(f.kind),
                confidence=1.0, title=f"The injected {f.kind} at step {f.step} was diagnosed as '{cause}'",
                why="The detector did not attribute the planted fault to its own cause: either the fault "
                    "had no effect on this machine, or the classification needs work.",
                evidence={"fault": f"{f.kind}@{f.step}", "detail": f.detail, "diagnosed": cause}))
    return out


def diagnose(r: ReproResult) -> tuple[str, list[Finding]]:
    findings: list[Finding] = []
    long_findings = long_sample_findings(r)
    flagged = {f.evidence.get("step") for f in long_findings}
    if r.crashed and r.crash is not None:
        cause, main = crash_finding(r)
        findings.append(main)
    elif r.stalled and r.stall is not None:
        cause, main = stall_finding(r)
        findings.append(main)
    elif any(f.id == "repro.long-sample" for f in long_findings):
        cause = "long-sample"
    else:
        cause = "none"
    findings += long_findings + slow_step_findings(r, flagged) + context_findings(r) + wsl_findings(r)
    findings += missed_fault_findings(r, cause)
    if r.leftover_pids:
        findings.append(Finding(
            id="repro.leftover-processes", severity=Severity.WARNING, confidence=1.0,
            title=f"{len(r.leftover_pids)} process(es) of the training tree survived the stop",
            why="They ignored SIGTERM and SIGKILL (uninterruptible sleep, state D, usually a driver call).",
            remediation="Check them with `ps -o pid,stat,wchan -p PID`; a reboot (WSL2: `wsl --shutdown`) "
                        "clears a driver-stuck process.", evidence={"pids": r.leftover_pids}))
    return cause, findings


def _round(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(float(v), 3)
