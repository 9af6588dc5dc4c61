"""Issue 16: the least-memory refit of the workload constants (mid edge's step_frag and grad_frag).
First on the 14 rows of sets 8-10 measured with --least (set 12 held out: mid step_frag 0, grad_frag
0.5); then, after set 12 was measured, on all 26 bisected rows of sets 8-12 (set 13 held out: mid
step_frag 0.05, grad_frag 0.25, the pairs it prints now; the first fit is in git history).

    python benchmarks/vram_workloads_least_refit.py

Prints the best pairs by median + max/2 of |error| against the least memory that trains; pairs with
grad_frag above HIGH's are marked (the band's order per constant is kept, so they are not taken).
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks" / "gpu"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
RUNS = [REPO / "benchmarks/results/h200-2026-12-03-set11/r1/workloads/vram_workloads.json",   # sets 8-10
        REPO / "benchmarks/results/h200-2026-12-03-set12/r2/workloads/vram_workloads.json"]   # set 12


def main() -> int:
    import vram_workloads as w

    from doctor.vram import estimator as E

    grid = {r["id"]: r for r in w.grid(False)}
    rows = []
    for run in RUNS:
        data = json.loads(run.read_text())
        rows += [dict(r, total=data["gpu"]["total"]) for r in data["rows"] if "least" in (r.get("measured") or {})]
    base = E.MID
    scored = []
    try:
        for sf in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25):
            for gf in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5):
                E.MID = replace(base, step_frag=sf, grad_frag=gf)
                errs = []
                for r in rows:
                    lst = r["measured"]["least"]
                    least = lst["cap"] + lst["context"]
                    errs.append(abs(w.estimate_row(grid[r["id"]], r["total"])["mid"] - least) / least)
                scored.append((statistics.median(errs) + max(errs) / 2, sf, gf, statistics.median(errs), max(errs)))
    finally:
        E.MID = base
    for loss, sf, gf, med, worst in sorted(scored)[:6]:
        mark = "  (grad_frag above HIGH's: not taken)" if gf > E.HIGH.grad_frag else ""
        print(f"step_frag {sf:.2f} grad_frag {gf:.2f}: median {med:.1%}, worst {worst:.1%} over {len(rows)}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
