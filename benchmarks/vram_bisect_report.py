"""Set 7 (issue 12): benchmarks/gpu/vram_bisect.py's JSON -> a markdown table and the held-out figures.

    python benchmarks/vram_bisect_report.py RUN1.json [RUN2.json ...] [--verdict RESULTS/vram_verdict.json ...]

Several runs merge by row id: a row measured (not skipped) in a later run replaces the earlier one.

Per row: peak reserved + context (what the process held), the least memory that trains (smallest
allocator cap that completed the steps + context), doctor's low / mid / high recomputed with the
estimator as it is now, the error of mid against the least memory, and whether the high edge is at
or above it (below it, "fits" would be a wrong answer on a card of that size). Summaries are given
for FIT and HELD-OUT rows separately; the targets apply to HELD-OUT rows only.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks" / "gpu"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

GIB = 1024 ** 3
TARGET_MEDIAN, TARGET_WORST = 0.05, 0.12


def _g(n) -> str:
    return "-" if n is None else f"{n / GIB:.2f}"


def analyse(data: dict, recompute: bool = True) -> list[dict]:
    """One record per row: measured figures + the (recomputed) estimate + errors."""
    import vram_grid as vg

    total = (data.get("gpu") or {}).get("total")
    out = []
    for e in data["rows"]:
        est = vg.estimate_row(e, data.get("versions") or {}, total) if recompute else e["estimate"]
        peak = e.get("peak_run") or {}
        rec = {"id": e["id"], "set": e["set"], "row": e, "est": est, "status": peak.get("status"),
               "sdpa": peak.get("sdpa"), "peak_total": e.get("peak_total"), "least": e.get("least_total"),
               "least_lower": (e["least_cap_lower"] + e.get("context", 0)) if "least_cap_lower" in e else None,
               "allocated": peak.get("peak_allocated"), "cap": peak.get("cap_bytes"), "context": e.get("context") or peak.get("context_bytes")}
        if peak.get("status") == "oom":   # did not train even with most of the card: truth above that cap
            rec["least_above"] = (peak.get("cap_bytes") or 0) + (peak.get("context_bytes") or 0)
        if rec["least"]:
            rec["error"] = (est["mid"] - rec["least"]) / rec["least"]
            rec["high_ok"] = est["high"] >= rec["least"]
        elif rec.get("least_above"):
            rec["high_ok"] = False if est["high"] <= rec["least_above"] else None
        out.append(rec)
    return out


def summary(recs: list[dict]) -> str:
    errs = [abs(r["error"]) for r in recs if r.get("error") is not None]
    false_fits = [r["id"] for r in recs if r.get("high_ok") is False]
    if not errs:
        return f"no measured rows; false fits: {len(false_fits)}"
    return (f"median |error| {statistics.median(errs):.1%}, worst {max(errs):.1%} over {len(errs)} rows; "
            f"high below the least memory that trains (a false \"fits\"): {len(false_fits)}"
            + (f" ({', '.join(false_fits)})" if false_fits else ""))


def verdicts(runs: list[dict], verdict_files: list[dict]) -> dict:
    """Row id -> {"high": trial, "0.85low": trial} from verdict runs and from measure runs made with
    --low-verdict / --verdict-rows; later sources win per half. A measure run's peak run is the "at
    HIGH" half when its cap plus the measured context is within the HIGH edge it was run against."""
    out: dict[str, dict] = {}
    for src in [*verdict_files, *runs]:
        for e in src.get("rows", []):
            v = dict(e.get("verdict") or {})
            peak = e.get("peak_run") or {}
            if "0.85low" in v and "high" not in v and peak.get("status") in ("ok", "oom") and peak.get("cap_bytes"):
                if peak["cap_bytes"] + (peak.get("context_bytes") or 0) <= e["estimate"]["high"]:
                    v["high"] = dict(peak, from_peak_run=True)
            if v:
                out.setdefault(e["id"], {}).update(v)
    return out


def render(recs: list[dict], verdict: dict | None = None) -> str:
    vmap = verdict or {}
    lines = ["| row | set | model | weights | gc | b x s | autocast | SDPA seen | peak | least | low | mid | high"
             " | error | high >= least | capped run | at high | at 0.85 low |",
             "|---|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|"]
    for r in recs:
        e, est = r["row"], r["est"]
        sd = r.get("sdpa") or {}
        seen = ("eager" if r.get("status") == "ok" else "-") if not sd else ("flash" if sd.get("flash_ok") else "efficient" if sd.get("efficient_ok")
                                   else "math" if "flash_ok" in sd else sd.get("dtype", "?"))
        resolved = r["row"].get("least_cap", 0) - r["row"].get("least_cap_lower", 0) <= 0.5 * GIB + 1
        least = (_g(r["least"]) + ("" if resolved else "*") if r.get("least") else
                 f"> {_g(r['least_above'])}" if r.get("least_above") else r.get("status") or "-")
        v = vmap.get(r["id"], {})
        lines.append(
            f"| {r['id']} | {r['set']} | {e['model']} | {e['quant']} | {e['gc']} | {e['batch']} x {e['seq']} | "
            f"{'-' if e['framework'] == 'unsloth' else 'on' if e.get('autocast', True) else 'off'} | {seen} | "
            f"{_g(r.get('peak_total'))} | {least} | {_g(est['low'])} | {_g(est['mid'])} | {_g(est['high'])} | "
            + (f"{r['error']:+.1%}" if r.get("error") is not None else "-") + " | "
            + {True: "yes", False: "**NO**", None: "-"}[r.get("high_ok")] + " | "
            + (f"{r['status']} at {_g(r['cap'])}" if r.get("cap") else "-") + " | "
            + ((v.get("high") or {}).get("status") or "-") + " | " + ((v.get("0.85low") or {}).get("status") or "-")
            + " |")
    out = ["\n".join(lines), ""]
    sets = list(dict.fromkeys(r["set"] for r in recs))
    for name in sets:
        sub = [r for r in recs if r["set"] == name]
        out.append(f"- **{name.upper()}**: {summary(sub)}")
    for name in [s for s in sets if s != "fit"] if verdict else []:
        held = {r["id"] for r in recs if r["set"] == name}
        vh = {k: v for k, v in vmap.items() if k in held}
        bad = sorted(k for k, v in vh.items() if (v.get("high") or {}).get("status") == "oom")
        loose = sorted(k for k, v in vh.items() if (v.get("0.85low") or {}).get("status") == "ok")
        ran = sorted(k for k, v in vh.items() if (v.get("high") or {}).get("status") in ("ok", "oom"))
        out.append(f"- **Verdict runs, {name.upper()}** ({len(ran)} rows run capped at the high estimate): "
                   f"{len(bad)} ran out of memory there" + (f" ({', '.join(bad)})" if bad else "")
                   + f"; {len(loose)} trained even at 0.85 x low (band too wide there)"
                   + (f": {', '.join(loose)}" if loose else ""))
    return "\n".join(out) + "\n"


def merge(runs: list[dict]) -> dict:
    """Rows by id across runs: the last run that measured a row (peak run not skipped) wins."""
    out = dict(runs[0])
    by_id: dict[str, dict] = {}
    for run in runs:
        for e in run["rows"]:
            measured = (e.get("peak_run") or {}).get("status") not in (None, "skipped")
            if measured or e["id"] not in by_id:
                by_id[e["id"]] = e
    out["rows"] = sorted(by_id.values(), key=lambda e: ("FHN".find(e["id"][0]), int(e["id"][1:])))
    return out


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", type=Path, nargs="+")
    ap.add_argument("--verdict", type=Path, action="append", default=[], help="a verdict run's JSON (repeatable)")
    ap.add_argument("--as-measured", action="store_true", help="the estimates stored in the JSON, not recomputed")
    args = ap.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in args.json]
    data = merge(runs)
    vfiles = [json.loads(p.read_text()) for p in args.verdict if p.exists()]
    sys.stdout.write(render(analyse(data, recompute=not args.as_measured), verdicts(runs, vfiles)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
