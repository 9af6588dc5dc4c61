"""Turn benchmarks/gpu/vram_grid.py's JSON into benchmarks/vram-validation.md.

    python benchmarks/vram_report.py OUT_DIR/vram_grid.json [MORE.json ...] [--out benchmarks/vram-validation.md]

Several JSON files (e.g. an `--only hf` and an `--only unsloth` run) are merged into one report.

Per row: what was measured (peak reserved + the process's CUDA context), doctor's low/mid/high
estimate and the error of the mid value; then the median and worst |error| against the goal
(10% median, 20% worst), and a static-memory check (allocated between steps vs the estimate's
weights + adapters + optimizer) to tell a wrong constant from a wrong token term.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

GIB = 1024 ** 3
GOAL_MEDIAN, GOAL_WORST = 0.10, 0.20


def _g(n) -> str:
    return "-" if n is None else f"{n / GIB:.2f}"


def summarize(rows: list[dict]) -> dict:
    errs = [abs(r["error_mid"]) for r in rows if r.get("error_mid") is not None]
    out = {"measured": len(errs), "rows": len(rows),
           "oom": sum(1 for r in rows if (r.get("measured") or {}).get("status") == "oom"),
           "in_band": sum(1 for r in rows if r.get("in_band"))}
    if errs:
        out["median"] = statistics.median(errs)
        out["worst"] = max(errs)
        out["meets_goal"] = out["median"] <= GOAL_MEDIAN and out["worst"] <= GOAL_WORST
    by = {}
    for r in rows:
        if r.get("error_mid") is not None:
            by.setdefault(r["framework"], []).append(abs(r["error_mid"]))
    out["by_framework"] = {k: {"median": statistics.median(v), "worst": max(v), "n": len(v)} for k, v in by.items()}
    return out


def static_check(r: dict):
    """(allocated between steps, estimate of what stays allocated between steps)."""
    m, comps = r.get("measured") or {}, (r.get("estimate") or {}).get("components") or {}
    if m.get("allocated_between_steps") is None or not comps:
        return None, None
    return m["allocated_between_steps"], sum(comps.get(k, 0) for k in ("weights", "lora", "optimizer"))


def render(data: dict) -> str:
    rows = data["rows"]
    s = summarize(rows)
    gpu = data.get("gpu") or {}
    v = data.get("versions") or {}
    lines = ["# VRAM estimator validation", "",
             f"Measured with `benchmarks/gpu/vram_grid.py` on {gpu.get('name') or data.get('device')} "
             f"({_g(gpu.get('total'))} GiB), {data.get('started', '')}; "
             + ", ".join(f"{k} {val}" for k, val in sorted(v.items())) + ".", "",
             "Measured = `torch.cuda.max_memory_reserved()` after 3 optimizer steps + the process's CUDA "
             "context (driver-reported process memory minus reserved). Estimate = `doctor vram` for the same "
             "settings (low / mid / high). Error = (mid - measured) / measured. Random-weight Llama-shaped "
             "models built from a config; LoRA r=16 on all seven projections; bitsandbytes AdamW8bit.", ""]
    if s.get("measured"):
        goal = "meets" if s["meets_goal"] else "does not meet"
        lines += [f"**Median |error| {s['median']:.1%}, worst {s['worst']:.1%}** over {s['measured']} measured rows "
                  f"({s['in_band']} inside the low-high band, {s['oom']} OOM); this {goal} the goal "
                  f"({GOAL_MEDIAN:.0%} median, {GOAL_WORST:.0%} worst).", ""]
        for fw, st in sorted(s["by_framework"].items()):
            lines.append(f"- {fw}: median {st['median']:.1%}, worst {st['worst']:.1%} ({st['n']} rows)")
        lines.append("")
    else:
        lines += ["No row was measured (CPU smoke run or every row failed).", ""]
    lines += ["| row | status | reserved | context | measured | low | mid | high | error | static: alloc / est |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ctx_default = (data.get("context_probe") or {}).get("context_bytes")
    for r in rows:
        m, e = r.get("measured") or {}, r.get("estimate") or {}
        ctx = m.get("context_bytes") if (m.get("context_bytes") or 0) > 0 else ctx_default
        alloc, est_static = static_check(r)
        err = r.get("error_mid")
        lines.append(f"| {r['id']} | {m.get('status', '-')} | {_g(m.get('peak_reserved'))} | {_g(ctx)} | "
                     f"{_g(r.get('measured_total'))} | {_g(e.get('low'))} | {_g(e.get('mid'))} | {_g(e.get('high'))} | "
                     + (f"{err:+.1%}" if err is not None else "-")
                     + f" | {_g(alloc)} / {_g(est_static)} |")
    errors = [r for r in rows if (r.get("measured") or {}).get("status") not in ("ok", None)]
    if errors:
        lines += ["", "Rows without a measurement:", ""]
        lines += [f"- `{r['id']}`: {r['measured'].get('status')}: {r['measured'].get('error', '')}" for r in errors]
    lines += ["", "All sizes in GiB. Reproduce: `python benchmarks/gpu/vram_grid.py OUT && "
                  "python benchmarks/vram_report.py OUT/vram_grid.json`.", ""]
    return "\n".join(lines)


def recompute(data: dict) -> dict:
    """Re-estimate every row with the estimator as it is now, so the report validates today's code
    against the stored measurements (the measurements themselves never change)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.gpu.vram_grid import estimate_row

    total = (data.get("gpu") or {}).get("total")
    for r in data["rows"]:
        r["estimate"] = estimate_row(r, data.get("versions") or {}, total)
        m = r.get("measured_total")
        if m:
            r["error_mid"] = (r["estimate"]["mid"] - m) / m
            r["in_band"] = r["estimate"]["low"] <= m <= r["estimate"]["high"]
    return data


def merge(paths: list[Path]) -> dict:
    runs = [json.loads(p.read_text()) for p in paths]
    data = dict(runs[0])
    data["rows"] = [row for run in runs for row in run["rows"]]
    return data


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="vram_grid.py JSON -> vram-validation.md")
    ap.add_argument("json", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "vram-validation.md")
    ap.add_argument("--as-measured", action="store_true",
                    help="keep the estimates stored at measurement time instead of re-estimating")
    args = ap.parse_args(argv)
    data = merge(args.json)
    if not args.as_measured:
        data = recompute(data)
    args.out.write_text(render(data))
    s = summarize(data["rows"])
    if s.get("measured"):
        print(f"{args.out}: median {s['median']:.1%}, worst {s['worst']:.1%} over {s['measured']} rows")
    else:
        print(f"{args.out}: no measured rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
