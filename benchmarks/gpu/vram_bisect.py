"""Set 7 (issue 12): peak reserved AND the least memory that trains, per row; then the fit verdict.

    python benchmarks/gpu/vram_bisect.py OUT_DIR measure [--budget-s 420] [--rows F1,H3] [--cpu-smoke]
    python benchmarks/gpu/vram_bisect.py OUT_DIR verdict --measured OUT_DIR/vram_bisect.json [--budget-s 200]

measure: per row, one run under a generous cap (never reached, so it is the uncapped peak: reserved,
allocated, the process's CUDA context), then a bisection of the allocator cap
(`torch.cuda.set_per_process_memory_fraction`, each trial a fresh process) between peak allocated
(nothing can train below the live bytes) and peak reserved (trained) down to RESOLUTION: the
smallest cap that completes 2 optimizer steps. Least memory that trains = that cap + the process's context.
Rows run concurrently on the one GPU; a scheduler keeps the caps (+ a context allowance) under the
card, and the CPU count bounded.

verdict: per HELD-OUT row, run capped at the doctor's HIGH estimate (minus the row's measured
context: the doctor's figure includes it) - it must train - and at 0.85 x its LOW estimate - it
should not (where it does, the band is too wide there).

Writes OUT_DIR/vram_bisect.json (or vram_verdict.json) after every trial: a killed run keeps what it
has. Rows are the ones committed in benchmarks/vram-validation.md before measuring.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vram_grid as vg   # noqa: E402  (the child, checkpoints, the estimate path)
from vram_grid import device_full   # noqa: E402  (trials share the card)

GIB = 1024 ** 3
RESOLUTION = 0.5 * GIB
CTX_ALLOWANCE = 1.5 * GIB      # per process, outside the cap: CUDA context + non-torch allocations
CARD_BUDGET = 128 * GIB        # of the H200's 139.8 GiB: what the caps + allowances may sum to
MAX_PROCS = 12                 # 16 cores; loading is CPU-bound
MAX_UNSLOTH = 3                # Unsloth's import + compile is the CPU-heavy part

# (id, framework, model, quant, gc, batch, seq, autocast): benchmarks/vram-validation.md, set 7
ROWS = [
    ("F1", "transformers", "1b", "none", "off", 4, 1024, True),
    ("F2", "transformers", "1b", "4bit", "hf", 2, 8192, True),
    ("F3", "transformers", "8b", "4bit", "hf", 1, 8192, True),
    ("F4", "transformers", "8b", "none", "off", 1, 2048, True),
    ("F5", "transformers", "3b", "4bit", "off", 2, 2048, True),
    ("F6", "transformers", "3b", "none", "hf", 16, 1024, True),
    ("F7", "transformers", "qwen3-1.7b", "none", "hf", 1, 32768, True),
    ("F8", "transformers", "qwen3-1.7b", "4bit", "off", 1, 4096, True),
    ("F9", "transformers", "qwen2.5-1.5b", "none", "off", 8, 1024, True),
    ("F10", "transformers", "mistral-7b", "none", "hf", 4, 4096, True),
    ("F11", "transformers", "gemma-3-1b", "none", "hf", 2, 8192, True),
    ("F12", "transformers", "gemma-2-2b", "4bit", "hf", 1, 4096, True),
    ("F13", "transformers", "phi-3.5-mini", "4bit", "hf", 2, 4096, True),
    ("F14", "transformers", "phi-3.5-mini", "none", "off", 1, 2048, True),
    ("F15", "transformers", "granite-3.1-2b", "none", "hf", 4, 2048, True),
    ("F16", "transformers", "8b", "4bit", "hf", 1, 4096, False),
    ("F17", "unsloth", "3b", "4bit", "unsloth", 4, 4096, None),
    ("F18", "transformers", "qwen3-4b", "none", "hf", 1, 16384, True),
    ("H1", "transformers", "8b", "4bit", "hf", 1, 16384, True),
    ("H2", "transformers", "1b", "none", "hf", 16, 2048, True),
    ("H3", "transformers", "3b", "4bit", "hf", 1, 32768, True),
    ("H4", "transformers", "8b", "none", "hf", 2, 8192, True),
    ("H5", "transformers", "qwen3-1.7b", "4bit", "hf", 8, 2048, True),
    ("H6", "transformers", "qwen2.5-1.5b", "none", "hf", 2, 16384, True),
    ("H7", "transformers", "qwen2.5-1.5b", "4bit", "off", 2, 1024, True),
    ("H8", "transformers", "mistral-7b", "none", "off", 1, 4096, True),
    ("H9", "transformers", "gemma-3-1b", "4bit", "off", 4, 2048, True),
    ("H10", "transformers", "gemma-2-2b", "none", "hf", 4, 2048, True),
    ("H11", "transformers", "phi-3.5-mini", "none", "hf", 1, 16384, True),
    ("H12", "transformers", "granite-3.1-2b", "4bit", "off", 2, 4096, True),
    ("H13", "transformers", "3b", "none", "off", 1, 8192, True),
    ("H14", "transformers", "1b", "4bit", "hf", 4, 8192, False),
    ("H15", "unsloth", "8b", "4bit", "unsloth", 1, 16384, None),
    ("H16", "unsloth", "qwen3-1.7b", "4bit", "unsloth", 8, 2048, None),
    # set 11: HELD-OUT for the second refit (logits 12.5 bytes, slack 6%), written and committed with
    # their estimates before measuring: shapes no earlier set measured (Qwen2.5-0.5B/3B, Qwen3-0.6B/8B,
    # Phi-4-mini) and new configurations of measured ones; transformers only (the refit leaves Unsloth's
    # path as it was); sized to run four at a time on the card
    ("N1", "transformers", "qwen2.5-0.5b", "none", "hf", 8, 2048, True),
    ("N2", "transformers", "qwen3-0.6b", "4bit", "off", 2, 2048, True),
    ("N3", "transformers", "qwen2.5-3b", "4bit", "hf", 1, 8192, True),
    ("N4", "transformers", "qwen3-8b", "4bit", "hf", 1, 4096, True),
    ("N5", "transformers", "phi-4-mini", "none", "hf", 2, 2048, True),
    ("N6", "transformers", "phi-4-mini", "4bit", "off", 1, 2048, True),
    ("N7", "transformers", "1b", "none", "off", 1, 4096, True),
    ("N8", "transformers", "3b", "none", "hf", 4, 2048, True),
    ("N9", "transformers", "gemma-3-1b", "4bit", "hf", 1, 8192, True),
    ("N10", "transformers", "granite-3.1-2b", "none", "off", 1, 4096, True),
    ("N11", "transformers", "qwen3-0.6b", "none", "hf", 1, 16384, True),
    ("N12", "transformers", "qwen2.5-3b", "none", "off", 1, 2048, True),
]
SETS = {"F": "fit", "H": "held-out", "N": "set11"}   # by the id's letter
HELD = ("held-out", "set11")                       # sets never used to fit: they get the verdict
SMOKE = [
    ("S1", "transformers", "tiny", "none", "off", 2, 64, False),
    ("S2", "transformers", "tiny", "none", "hf", 2, 128, False),
]


def rows(selected: str | None, smoke: bool) -> list[dict]:
    out = []
    for rid, fw, model, quant, gc, b, s, ac in (SMOKE if smoke else ROWS):
        if selected and rid not in selected.split(","):
            continue
        out.append(dict(id=rid, set=SETS.get(rid[0], "smoke"),
                        model=model, framework=fw, quant=quant, gc=gc, batch=b, seq=s, autocast=ac, steps=2,
                        timeout=420 if fw == "unsloth" else 240))
    return out


class Budget:
    """GPU bytes and process slots shared by the trial threads (caps + allowances under the card).
    Small trials may overtake a waiting large one only for STARVE_S; after that it goes first."""
    STARVE_S = 1e9   # run 1 (2026-12-03): a full-card trial starving the rest cost the run; greedy now

    def __init__(self, total: float):
        self.total, self.used, self.procs, self.unsloth = total, 0.0, 0, 0
        self.waiting: dict[int, float] = {}   # ticket -> since
        self.next = 0
        self.cv = threading.Condition()

    def _fits(self, need: float, unsloth: bool) -> bool:
        return (self.used + need <= self.total and self.procs < MAX_PROCS
                and (not unsloth or self.unsloth < MAX_UNSLOTH))

    def take(self, need: float, unsloth: bool, deadline: float) -> bool:
        need = min(need, self.total)
        with self.cv:
            ticket, self.next = self.next, self.next + 1
            self.waiting[ticket] = time.time()
            try:
                while True:
                    starved = [t for t, since in self.waiting.items() if time.time() - since > self.STARVE_S]
                    first = min(starved) if starved else ticket
                    if first == ticket and self._fits(need, unsloth) or not starved and self._fits(need, unsloth):
                        break
                    if time.time() > deadline:
                        return False
                    self.cv.wait(1)
            finally:
                del self.waiting[ticket]
            self.used += need
            self.procs += 1
            self.unsloth += unsloth
            return True

    def give(self, need: float, unsloth: bool) -> None:
        with self.cv:
            self.used -= min(need, self.total)
            self.procs -= 1
            self.unsloth -= unsloth
            self.cv.notify_all()


class Runner:
    def __init__(self, args, device: str, env: dict, ckpt_root: Path):
        self.args, self.device, self.env, self.ckpt_root = args, device, env, ckpt_root
        self.start = time.time()
        self.deadline = self.start + args.budget_s
        self.budget = Budget(args.card_gib * GIB if device == "cuda" else 1e18)
        self.lock = threading.Lock()

    def spec(self, row: dict, cap: float | None) -> dict:
        shape = vg.shape_for(row["model"])
        spec = {**row, "device": self.device, "ckpt": str(self.ckpt_root / row["model"]), "family": vg.family(row["model"]),
                "shape": {k: getattr(shape, k) for k in vg.TINY}, "cap_bytes": int(cap) if cap else None}
        spec["from_config"] = row["quant"] == "none" and row["framework"] != "unsloth"
        if spec["autocast"] is None:
            spec["autocast"] = True
        return spec

    def trial(self, row: dict, cap: float | None, reserve: float) -> dict:
        """One fresh process capped at `cap` bytes of reserved memory (None: uncapped)."""
        ev = getattr(self, "ready", {}).get(row["model"])
        if ev is not None and (row["quant"] != "none" or row["framework"] == "unsloth"):
            ev.wait(max(1.0, self.deadline - time.time()))
        unsloth = row["framework"] == "unsloth"
        if time.time() > self.deadline or not self.budget.take(reserve + CTX_ALLOWANCE, unsloth, self.deadline):
            return {"status": "skipped", "error": "over the time budget", "cap_bytes": cap}
        try:
            left = max(30.0, self.deadline + 60 - time.time())   # a started trial may overrun a little
            out = vg.run_child(self.spec(row, cap), min(row["timeout"], left), self.env)
        finally:
            self.budget.give(reserve + CTX_ALLOWANCE, unsloth)
        out.setdefault("cap_bytes", cap)
        keep = ("status", "error", "cap_bytes", "peak_reserved", "peak_allocated", "context_bytes",
                "process_peak_driver", "load_s", "wall_s", "sdpa", "autocast", "trainable_params", "stderr_tail")
        return {k: out[k] for k in keep if k in out}

    def log(self, msg: str) -> None:
        print(f"[{time.time() - self.start:5.0f}s] {msg}", flush=True)


def est_for(row: dict, versions: dict, total) -> dict:
    return vg.estimate_row(row, versions, total)


def measure_row(r: Runner, entry: dict, save) -> None:
    row, est = entry, entry["estimate"]
    # 1. the peak, capped at the doctor's HIGH estimate minus a typical context (0.75 GiB): a trial
    # that trains there is also the verdict "trains at HIGH" for the estimator of this run; one that
    # runs out of memory there is a wrong "fits". It reserves only the MID estimate in the scheduler
    # (over-subscription shows as a device-full OOM, which is retried with the whole cap reserved).
    cap = min(max(GIB, est["high"] - 0.75 * GIB), CARD_BUDGET - CTX_ALLOWANCE)
    peak = r.trial(row, cap if r.device == "cuda" else None, min(cap, max(est["mid"], 2 * GIB)))
    if peak.get("status") == "oom" and device_full(peak):
        peak = dict(r.trial(row, cap, cap), retried_after="device-full")
    entry["peak_run"] = peak
    save()
    r.log(f"{row['id']:<4} peak {peak.get('status')} reserved {peak.get('peak_reserved', 0) / GIB:.2f} "
          f"allocated {peak.get('peak_allocated', 0) / GIB:.2f} GiB")
    if peak.get("status") != "ok" or r.device != "cuda":
        return
    # 2. bisect: lo = peak allocated (the live bytes: no cap below trains), hi = peak reserved (trained)
    if r.args.low_verdict and row["set"] in HELD:   # the verdict's other half; the peak run was "at HIGH"
        low_verdict(r, entry, peak.get("context_bytes") or int(0.75 * GIB), save)
    lo, hi = float(peak["peak_allocated"]), float(peak["peak_reserved"])
    entry["bisect"] = []

    def trial(cap: float) -> dict:
        t = r.trial(row, cap, cap)
        if t.get("status") == "oom" and device_full(t):
            t = dict(r.trial(row, cap, cap), retried_after="device-full")
        entry["bisect"].append(t)
        save()
        return t
    # run 2 (2026-12-03): a first trial just above the live bytes ran out of memory on 12 of 12
    # rows (fragmentation under a cap is real), so bisect from the midpoint unless asked
    lo, hi, _ = vg.bisect_cap(trial, lo, hi, RESOLUTION, r.args.max_bisect,
                              first=lo + RESOLUTION if r.args.first_above_live else None,
                              log=lambda cap, t: r.log(f"{row['id']:<4} cap {cap / GIB:.2f} GiB: {t.get('status')}"))
    ctx = peak.get("context_bytes") or 0
    entry["least_cap"] = int(hi)
    entry["least_cap_lower"] = int(lo)
    entry["least_resolved"] = hi - lo <= RESOLUTION + 1
    entry["context"] = int(ctx)
    entry["least_total"] = int(hi + ctx)
    entry["peak_total"] = int(peak["peak_reserved"] + ctx)
    save()


def low_verdict(r: Runner, entry: dict, ctx: int, save) -> None:
    """Capped at 0.85 x the LOW edge (minus the context): it should run out of memory."""
    total = 0.85 * entry["estimate"]["low"]
    cap = max(0.25 * GIB, total - ctx)
    t = r.trial(entry, cap, cap)
    if t.get("status") == "oom" and device_full(t):
        t = dict(r.trial(entry, cap, cap), retried_after="device-full")
    entry.setdefault("verdict", {})["0.85low"] = t
    save()
    r.log(f"{entry['id']:<4} at 0.85low ({total / GIB:.2f} GiB total, cap {cap / GIB:.2f}): {t.get('status')}")


def verdict_row(r: Runner, entry: dict, measured: dict, save) -> None:
    est = entry["estimate"]
    ctx = (measured.get(entry["id"]) or {}).get("context") or int(0.75 * GIB)
    entry["context"] = ctx
    entry["verdict"] = {}
    for name, total in (("high", est["high"]), ("0.85low", 0.85 * est["low"])):
        cap = max(0.25 * GIB, total - ctx)
        t = r.trial(entry, cap, cap)
        entry["verdict"][name] = t
        save()
        r.log(f"{entry['id']:<4} at {name} ({total / GIB:.2f} GiB total, cap {cap / GIB:.2f}): {t.get('status')}")


def refit(results: dict) -> dict:
    """The mechanical refit, FIT rows only (written before any measurement): per edge, the ratio
    r = (least memory that trains - the edge's static part) / its token part, slack excluded, over the
    transformers FIT rows that trained; the edge's slack `margin` becomes: low min(r) - 1 - 0.02,
    mid median(r) - 1, high max(r) - 1 + 0.10 (the high edge leans out: a false "fits" is the
    costliest answer). Unsloth rows keep their constants (their own kernels, fitted on sets 1-3)."""
    import statistics
    from dataclasses import replace

    from doctor.vram import estimator as E

    ratios = {"low": [], "mid": [], "high": []}
    for e in results["rows"]:
        if e["set"] != "fit" or e["framework"] == "unsloth" or not e.get("least_total"):
            continue
        shape, *ins, _notes = vg.row_inputs(e, results["versions"], (results.get("gpu") or {}).get("total"))
        for edge, inp, k in zip(("low", "mid", "high"), ins, (E.LOW, E.MID, E.HIGH)):
            bd = E.estimate(shape, inp, replace(k, margin=0.0))
            if bd.dynamic > 0:
                ratios[edge].append((e["least_total"] - bd.static) / bd.dynamic)
    if len(ratios["mid"]) < 3:
        return {"status": "too few FIT rows measured", "n": len(ratios["mid"])}
    mid = statistics.median(ratios["mid"]) - 1
    # low never above mid (run 2026-12-03: min(r_low) - 1 - 0.02 = 0.06 > mid 0.01 put low over mid)
    margins = {"low": min(min(ratios["low"]) - 1 - 0.02, mid, 0.0), "mid": mid,
               "high": max(ratios["high"]) - 1 + 0.10}
    return {"status": "ok", "n": len(ratios["mid"]), "margins": margins, "ratios": ratios}


def apply_refit(fit: dict) -> None:
    from dataclasses import replace

    from doctor.vram import estimator as E

    if fit.get("status") == "ok":
        E.LOW = replace(E.LOW, margin=fit["margins"]["low"])
        E.MID = replace(E.MID, margin=fit["margins"]["mid"])
        E.HIGH = replace(E.HIGH, margin=fit["margins"]["high"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("mode", choices=["measure", "verdict", "all"],
                    help="all: measure, refit on the FIT rows (refit()), then the verdict on the HELD-OUT rows")
    ap.add_argument("--verdict-s", type=float, default=90.0, help="all: time kept for the verdict phase")
    ap.add_argument("--rows", help="comma-separated row ids (default: all; verdict: the HELD-OUT rows)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no trial after this")
    ap.add_argument("--measured", type=Path, help="verdict: the measure run's JSON (per-row CUDA context)")
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--card-gib", type=float, default=CARD_BUDGET / GIB,
                    help="caps + allowances may sum to this (less when another job shares the card)")
    ap.add_argument("--max-bisect", type=int, default=1_000_000, help="measure: at most this many bisection trials a row")
    ap.add_argument("--first-above-live", action="store_true",
                    help="measure: first bisection trial at peak allocated + RESOLUTION (the old order)")
    ap.add_argument("--low-verdict", action="store_true",
                    help="measure: also run each row capped at 0.85 x LOW (the peak run is capped at HIGH)")
    ap.add_argument("--verdict-rows", default="",
                    help="measure: rows that get only the verdict (context from --measured), in the same schedule")
    ap.add_argument("--site", default="/tmp/site" if Path("/tmp/site").is_dir() else None)
    ap.add_argument("--ckpt-dir", type=Path, default=Path("/tmp/vram_grid_ckpt"))
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **vg.OFFLINE_ENV, OMP_NUM_THREADS="2")
    env["PYTHONPATH"] = os.pathsep.join([p for p in (args.site, str(vg.REPO), env.get("PYTHONPATH")) if p])
    info = {"cuda": False} if args.cpu_smoke else vg.gpu_info(env)
    device = "cuda" if info.get("cuda") else "cpu"
    if device == "cpu" and not args.cpu_smoke:
        print("no CUDA GPU visible; use --cpu-smoke for a dry run", file=sys.stderr)
        return 2
    versions = vg.installed_versions(args.site)
    selected = args.rows or (",".join(r[0] for r in ROWS if r[0].startswith("H")) if args.mode == "verdict" else None)
    todo = rows(selected, args.cpu_smoke)
    verdict_only = {r["id"] for r in rows(args.verdict_rows, args.cpu_smoke)} if args.verdict_rows else set()
    if verdict_only:
        todo += [r for r in rows(args.verdict_rows, args.cpu_smoke) if r["id"] not in {t["id"] for t in todo}]
    if "unsloth" not in versions:
        todo = [r for r in todo if r["framework"] != "unsloth"]
    ckpt_root = args.ckpt_dir / ("smoke" if args.cpu_smoke else "grid")
    runner = Runner(args, device, env, ckpt_root)
    results = {"mode": args.mode, "gpu": info, "versions": versions, "device": device,
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "resolution_bytes": RESOLUTION, "rows": []}
    out_json = args.out_dir / f"vram_{'verdict' if args.mode == 'verdict' else 'bisect'}.json"

    def save():
        with runner.lock:
            results["elapsed_s"] = round(time.time() - runner.start, 1)
            tmp = out_json.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=1))
            tmp.replace(out_json)

    # checkpoints for the rows that load one (4-bit quantizes on load; Unsloth loads a directory)
    need = sorted({r["model"] for r in todo if r["quant"] != "none" or r["framework"] == "unsloth"})

    def make(model):
        path = ckpt_root / model
        if (path / "config.json").exists():
            return model, {"status": "cached"}
        shape = vg.shape_for(model)
        spec = {"make_checkpoint": True, "device": device, "ckpt": str(path), "family": vg.family(model),
                "shape": {k: getattr(shape, k) for k in vg.TINY}}
        return model, vg.run_child(spec, 300, env)
    # made in the background: rows built from a config start at once, the others wait for theirs
    ready = {m: threading.Event() for m in need}
    results["checkpoints"] = {}

    def make_bg(model):
        shape = vg.shape_for(model)
        hold = 2.5 * shape.total_params * 2   # bf16 weights on the GPU while saving, with margin
        ok = runner.budget.take(hold, False, time.time() + 600)
        try:
            results["checkpoints"][model] = make(model)[1]
        finally:
            if ok:
                runner.budget.give(hold, False)
            ready[model].set()
            runner.log(f"checkpoint {model}: {results['checkpoints'][model].get('status')}")
    ck_pool = ThreadPoolExecutor(4)
    for m in need:
        ck_pool.submit(make_bg, m)
    runner.ready = ready
    measured = {}
    if args.measured and args.measured.exists():
        measured = {e["id"]: e for e in json.loads(args.measured.read_text()).get("rows", [])}
    for row in todo:
        results["rows"].append({**row, "estimate": est_for(row, versions, info.get("total"))})
    save()
    def phase(entries, work):
        # Unsloth rows first (slowest), then the largest estimates (they wait longest for room)
        order = sorted(entries, key=lambda e: (e["framework"] != "unsloth", -e["estimate"]["high"]))
        with ThreadPoolExecutor(len(order) or 1) as pool:
            for f in [pool.submit(work, e) for e in order]:
                try:
                    f.result()
                except Exception as exc:   # one row's bug must not lose the others' results
                    runner.log(f"row failed: {type(exc).__name__}: {exc}")
        save()

    if args.mode == "verdict":
        phase(results["rows"], lambda e: verdict_row(runner, e, measured, save))
    else:
        if args.mode == "all":
            runner.deadline -= args.verdict_s
        phase(results["rows"], lambda e: (verdict_row(runner, e, measured, save) if e["id"] in verdict_only
                                          else measure_row(runner, e, save)))
    if args.mode == "all":
        results["refit"] = refit(results)
        apply_refit(results["refit"])
        runner.log(f"refit: {results['refit'].get('margins') or results['refit']}")
        measured = {e["id"]: e for e in results["rows"]}
        held = [{k: v for k, v in e.items() if k in ("id", "set", "model", "framework", "quant", "gc", "batch", "seq",
                                                  "autocast", "steps", "timeout")}
                for e in results["rows"] if e["set"] == "held-out"]
        for e in held:
            e["estimate"] = est_for(e, versions, info.get("total"))
        results["verdict_rows"] = held
        runner.deadline = time.time() + args.verdict_s - 20
        phase(held, lambda e: verdict_row(runner, e, measured, save))
    runner.log(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
