#!/usr/bin/env python3
"""GPU benchmark for `doctor repro` (issue 5): the reference config at the real Llama 3.1 8B shape,
then every injected fault, with step times, peak memory and detection latency per run.

    python benchmarks/gpu/repro_runs.py OUT_DIR              # on the GPU machine (~6-8 min on an H100)
    python benchmarks/gpu/repro_runs.py OUT_DIR --cpu-smoke  # the same code path on CPU, tiny model (~1-2 min)

Runs, in order (each one a `run_repro` call, as `doctor repro` makes it):
  1. reference-8b     the reference config (examples/train_unsloth_llama31_8b.py): 4-bit, batch 2,
                      grad-accum 4, seq 2048, adamw_8bit, 20 steps; Unsloth if it imports, else
                      transformers + PEFT + bitsandbytes. Alone on the GPU, so its step times are clean.
                      If it crashes with Unsloth, it is repeated with --backend transformers.
  2. vram-squeeze     1B shape, transformers backend, squeeze at step 11 (alone: it fills the GPU).
  3. dataloader-hang, cuda-stall, host-memory, long-sample
                      1B shape, transformers backend (no 45 s Unsloth import each), fault at step 11,
                      run side by side (each mostly waits for the watchdog).
Writes OUT_DIR/repro_runs.json, OUT_DIR/repro_runs.md and OUT_DIR/runs/<name>/ (events, child log,
result.json, step_times.png). The random checkpoints go to --model-cache (default
/tmp/doctor-repro-models), not OUT_DIR: the 8B one is ~16 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # the repo, when not installed

from doctor.config.loader import apply_overrides          # noqa: E402
from doctor.config.flags import ConfigOverrides            # noqa: E402
from doctor.repro.api import ReproOptions, run_repro       # noqa: E402
from doctor.repro.diagnose import EXPECTED_CAUSE           # noqa: E402
from doctor.repro.events import read_all                   # noqa: E402
from doctor.repro.spec import reference_config             # noqa: E402

GIB = 1 << 30
FAULT_STEP = 11
BUDGET_S = 540.0            # the lead's limit is ~9 minutes: later runs are skipped past it


@dataclass
class Run:
    name: str
    size: str
    backend: str
    inject: list = field(default_factory=list)
    steps: int = 20
    floor_s: float = 20.0
    factor: float = 10.0
    max_wall_s: float = 150.0
    expected: tuple = ("none",)


def gpu_plan() -> list[list[Run]]:
    """Groups run one after the other; the runs of a group run side by side."""
    def fault(kind: str, **kw) -> Run:
        return Run(kind, "1b", "transformers", [f"{kind}@{FAULT_STEP}"], steps=FAULT_STEP + 1,
                   expected=EXPECTED_CAUSE[kind], **kw)
    return [[Run("reference-8b", "8b", "auto", steps=20, floor_s=60.0, max_wall_s=330.0)],
            [fault("vram-squeeze")],
            [fault("dataloader-hang"), fault("cuda-stall"), fault("host-memory"), fault("long-sample")]]


def smoke_plan() -> list[list[Run]]:
    step = 3
    def fault(kind: str, expected=None) -> Run:
        return Run(kind, "tiny", "transformers", [f"{kind}@{step}"], steps=step + 1, floor_s=6.0, factor=5.0,
                   max_wall_s=120.0, expected=expected or EXPECTED_CAUSE[kind])
    return [[Run("reference-tiny", "tiny", "auto", steps=20, floor_s=6.0, factor=5.0, max_wall_s=120.0)],
            [fault("vram-squeeze", expected=("none",))],
            [fault("dataloader-hang"), fault("cuda-stall"), fault("host-memory"), fault("long-sample")]]


def config_for(smoke: bool):
    cfg = reference_config()
    if smoke:   # CPU: short samples, one micro-batch per step, so the smoke test takes seconds per run
        apply_overrides(cfg, ConfigOverrides(seq_len=64, batch_size=1, grad_accum=1, gc="false"))
    return cfg


def phase_times(events: list[dict]) -> dict:
    """Seconds spent in each start-up phase, and until the first step ended."""
    out: dict[str, float] = {}
    marks = [(e["t"], f"{e['phase']}:{e.get('detail', '')}".rstrip(":")) for e in events if e["kind"] == "phase"]
    for (t0, name), (t1, _) in zip(marks, marks[1:]):
        out[name] = round(t1 - t0, 2)
    train = next((e["t"] for e in events if e["kind"] == "phase" and e["phase"] == "training"), None)
    first = next((e["t"] for e in events if e["kind"] == "step"), None)
    if events and train is not None:
        out["start-to-training"] = round(train - events[0]["t"], 2)
    if train is not None and first is not None:
        out["first-step (incl. trainer setup)"] = round(first - train, 2)
    return out


def summarize(run: Run, result, wall_s: float) -> dict:
    steps = result.steps
    times = [s.duration_s for s in steps if s.duration_s is not None]
    steady = [s.duration_s for s in steps if s.duration_s is not None and s.step > 1]
    peaks = [s.mem_peak for s in steps if s.mem_peak]
    events = read_all(Path(result.events_path))
    return {
        "name": run.name, "model_size": run.size, "requested_backend": run.backend, "inject": run.inject,
        "backend": result.info.get("backend"), "trainer": result.info.get("trainer"),
        "device": result.info.get("device"), "gpu": result.info.get("gpu"),
        "precision": result.info.get("precision"), "optim": result.info.get("optim"),
        "load_in_4bit": result.info.get("load_in_4bit"), "versions": result.info.get("versions"),
        "steps_done": len(steps), "steps_planned": run.steps,
        "first_step_s": round(times[0], 3) if times else None,
        "median_step_s": round(statistics.median(steady), 3) if steady else None,
        "max_step_s": round(max(steady), 3) if steady else None,
        "step_times_s": [round(t, 3) for t in times],
        "peak_vram_gib": round(max(peaks) / GIB, 2) if peaks else None,
        "max_reserved_gib": round(max((s.mem_reserved or 0) for s in steps) / GIB, 2) if steps else None,
        "max_host_rss_gib": round(max((s.host_rss or 0) for s in steps) / GIB, 2) if steps else None,
        "tokens_per_step": [s.tokens for s in steps],
        "stalled": result.stalled, "stall_step": result.stall_step,
        "detection_latency_s": result.detection_latency_s,
        "deadline_s": round(result.stall.deadline_s, 2) if result.stall else None,
        "deadline_reason": result.stall.reason if result.stall else None,
        "crashed": result.crashed, "crash": (f"{result.crash.type}: {result.crash.message[:300]}"
                                             if result.crash else None),
        "cause": result.cause, "expected": list(run.expected), "found": result.cause in run.expected,
        "attach_cause": (result.diagnosis or {}).get("cause"), "attach_error": result.diagnosis_error,
        "findings": [f"{f.severity.value} {f.id}: {f.title}" for f in result.findings],
        "notes": result.notes, "faults": [f.__dict__ for f in result.faults],
        "phases_s": phase_times(events), "wall_s": round(wall_s, 1),
        "leftover_pids": result.leftover_pids, "out_dir": result.out_dir,
    }


def execute(run: Run, out: Path, cfg, smoke: bool, cache: Path) -> dict:
    t0 = time.monotonic()
    opts = ReproOptions(config=cfg, model_size=run.size, steps=run.steps, inject=run.inject,
                        stall_floor_s=run.floor_s, stall_factor=run.factor,
                        first_step_grace_s=240.0, startup_grace_s=240.0, device="cpu" if smoke else "cuda",
                        out_dir=out / "runs" / run.name, backend=run.backend,
                        squeeze_limit=(256 << 20) if smoke else (8 << 30), model_cache=cache,
                        max_wall_s=run.max_wall_s)
    try:
        result = run_repro(opts, on_event=lambda e: _progress(run.name, e))
    except Exception as exc:  # one broken run must not lose the others' numbers
        return {"name": run.name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "found": False, "wall_s": round(time.monotonic() - t0, 1)}
    return summarize(run, result, time.monotonic() - t0)


def _progress(name: str, e: dict) -> None:
    if e["kind"] in ("phase", "stall", "crash", "inject", "note") or (e["kind"] == "step" and e["step"] % 5 == 0):
        what = e.get("phase") or e.get("fault") or e.get("text") or e.get("type") or f"step {e.get('step')}"
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {e['kind']} {what}", flush=True)


def markdown(rows: list[dict], meta: dict) -> str:
    head = ["# doctor repro: benchmark runs", "",
            f"Machine: {meta['machine']}. Mode: {meta['mode']}. Total wall time {meta['total_s']:.0f} s.", "",
            "| run | backend | model | steps | first step (s) | median step (s) | slowest later step (s) | "
            "peak VRAM (GiB) | stall step | detection latency (s) | deadline (s) | cause | found |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            head.append(f"| {r['name']} | error: {r['error'][:80]} | | | | | | | | | | | no |")
            continue
        head.append(
            f"| {r['name']} | {r['backend']} ({r['precision']}, {r['optim']}{', 4-bit' if r['load_in_4bit'] else ''}) "
            f"| {r['model_size']} | {r['steps_done']}/{r['steps_planned']} | {_f(r['first_step_s'])} | "
            f"{_f(r['median_step_s'])} | {_f(r['max_step_s'])} | {_f(r['peak_vram_gib'])} | {r['stall_step'] or ''} | "
            f"{_f(r['detection_latency_s'])} | {_f(r['deadline_s'])} | {r['cause']} | "
            f"{'yes' if r['found'] else 'NO'} |")
    head += ["", "Start-up phases (s):", ""]
    for r in rows:
        if "phases_s" in r:
            head.append(f"- {r['name']}: " + ", ".join(f"{k} {v}" for k, v in r["phases_s"].items()))
    head += ["", "Not mirrored / notes:", ""]
    for r in rows:
        for n in r.get("notes", []):
            head.append(f"- {r['name']}: {n}")
    return "\n".join(head) + "\n"


def _f(v) -> str:
    return "" if v is None else (f"{v:.3f}" if isinstance(v, float) and v < 10 else f"{v}")


def machine() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
        return f"CPU, torch {torch.__version__}"
    except Exception as exc:
        return f"unknown ({exc})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on CPU: the same code path, fast")
    ap.add_argument("--only", default="", help="comma-separated run names")
    ap.add_argument("--model-cache", type=Path, default=Path("/tmp/doctor-repro-models"))
    ap.add_argument("--budget-s", type=float, default=BUDGET_S)
    args = ap.parse_args(argv)
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if args.cpu_smoke:
        os.environ["OMP_NUM_THREADS"] = "1"   # several CPU children side by side
    only = {n for n in args.only.split(",") if n}
    cfg = config_for(args.cpu_smoke)
    t0 = time.monotonic()
    rows: list[dict] = []
    for group in (smoke_plan() if args.cpu_smoke else gpu_plan()):
        group = [r for r in group if not only or r.name in only]
        if not group:
            continue
        left = args.budget_s - (time.monotonic() - t0)
        if left < max(r.max_wall_s for r in group) * 0.5:
            rows += [{"name": r.name, "error": f"skipped: {left:.0f} s of the budget left", "found": False}
                     for r in group]
            continue
        with ThreadPoolExecutor(max_workers=len(group)) as pool:
            done = list(pool.map(lambda r: execute(r, out, cfg, args.cpu_smoke, args.model_cache), group))
        for r, row in zip(group, done):
            rows.append(row)
            if (r.name == "reference-8b" and row.get("crashed") and row.get("backend") == "unsloth"
                    and args.budget_s - (time.monotonic() - t0) > 300):
                retry = Run("reference-8b-transformers", "8b", "transformers", steps=20, floor_s=60.0,
                            max_wall_s=300.0)
                rows.append(execute(retry, out, cfg, args.cpu_smoke, args.model_cache))
        (out / "repro_runs.json").write_text(json.dumps({"runs": rows}, indent=1, default=str))
    meta = {"machine": machine(), "mode": "cpu-smoke" if args.cpu_smoke else "gpu",
            "total_s": time.monotonic() - t0}
    (out / "repro_runs.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1, default=str))
    (out / "repro_runs.md").write_text(markdown(rows, meta))
    print((out / "repro_runs.md").read_text())
    return 0 if all(r.get("found") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
