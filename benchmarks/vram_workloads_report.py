"""Set 8 (issue 16): benchmarks/gpu/vram_workloads.py's JSON re-scored with the estimator as it is now.

    python benchmarks/vram_workloads_report.py RESULTS/vram_workloads_run2.json [--as-measured]

The measurement (peak reserved + the idle process's CUDA context) does not depend on the estimator,
so a run made before a change scores the change; FIT and HELD-OUT rows are summarised apart, and
the targets (median |error| <= 5%, worst <= 12%, no false "fits") apply to HELD-OUT rows only. Rows
measured with --least (sets 11-12 on) are also scored against the least memory that trains, the
comparator of issue 12 and, since set 12, of issue 16.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks" / "gpu"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def rescore(results: dict, process_context: bool = False) -> dict:
    import vram_workloads as w

    grid = {r["id"]: r for r in w.grid(False)}
    total = int((results.get("gpu") or {}).get("total") or 0)
    ctx = (results.get("gpu") or {}).get("context")
    out = dict(results, rows=[])
    for rec in results["rows"]:
        row = grid.get(rec["id"])
        rec = dict(rec)
        if row is not None:
            rec["set"] = row.get("set", rec.get("set", "-"))
            rec["estimate"] = w.estimate_row(row, total)
        own = (rec.get("measured") or {}).get("process_context") if process_context else None
        out["rows"].append(w.score(rec, own if own is not None else ctx))
    return out


def main(argv=None) -> int:
    import argparse

    import vram_workloads as w

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", type=Path)
    ap.add_argument("--as-measured", action="store_true", help="the estimates stored in the JSON, not recomputed")
    ap.add_argument("--process-context", action="store_true",
                    help="truth = peak reserved + each training process's own context (set 10 on), not the idle probe's")
    args = ap.parse_args(argv)
    data = json.loads(args.json.read_text())
    sys.stdout.write(w.markdown(data if args.as_measured else rescore(data, args.process_context)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
