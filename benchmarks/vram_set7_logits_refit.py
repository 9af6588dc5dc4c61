"""Set 7 (issue 12): the second refit of the mid edge - the logits constant and the slack fitted on the
18 FIT rows, each least-memory value scored inside its bisection bracket (an estimate between the
bracket's ends counts as exact).

    python benchmarks/vram_set7_logits_refit.py

Prints the FIT and HELD-OUT scores for the constants before the refit (c_logits_hf 15, slack 1%), for
the estimator's current ones and for the best pair on the FIT rows. Measured on 2026-12-03 and held
back (the held-out rows had been seen); applied in the next stop and scored on set 11, rows written
before they were measured (benchmarks/vram-validation.md).
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks", REPO / "benchmarks" / "gpu"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

RUNS = ["benchmarks/results/h200-2026-12-03/vram_bisect_run1.json", "benchmarks/results/h200-2026-12-03/vram_bisect_run2.json",
        "benchmarks/results/h200-2026-12-03-set7b/vram_bisect_run3.json",
        "benchmarks/results/h200-2026-12-03-set7b/vram_bisect_run4.json"]


def parts() -> list[dict]:
    """Per transformers row with a least-memory value: static, logits and other token-dependent bytes
    at the mid edge without slack, and the bracket of the least memory that trains."""
    import vram_bisect_report as rep
    import vram_grid as vg

    from doctor.vram import estimator as E

    data = rep.merge([json.loads((REPO / p).read_text()) for p in RUNS])
    out = []
    for e in data["rows"]:
        if not e.get("least_total") or e["framework"] == "unsloth":
            continue
        shape, _lo, mid, _hi, _ = vg.row_inputs(e, data["versions"], data["gpu"].get("total"))
        bd = E.estimate(shape, mid, replace(E.MID, margin=0.0))
        # the part of the logits that scales with c_logits_hf (not the family's extra tensors: Gemma 2's
        # soft-capping, Granite's scaling)
        logits = sum(c.bytes for c in bd.components if c.key == "logits" and c.at_peak) \
            * E.MID.c_logits_hf / (E.MID.c_logits_hf + shape.logits_extra_bytes)
        out.append({"id": e["id"], "set": e["set"], "upper": e["least_total"], "c0": E.MID.c_logits_hf,
                    "lower": e["least_cap_lower"] + e["context"], "static": bd.static, "logits": logits,
                    "other": bd.dynamic - logits})
    return out


def estimate(r: dict, c: float, m: float) -> float:
    return r["static"] + (r["logits"] * c / r["c0"] + r["other"]) * (1 + m)


def error(r: dict, est: float, inside: bool) -> float:
    lo = r["lower"] if inside else r["upper"]
    if lo <= est <= r["upper"]:
        return 0.0
    t = r["upper"] if est > r["upper"] else lo
    return (est - t) / t


def score(rows, c, m, name, inside) -> str:
    errs = [abs(error(r, estimate(r, c, m), inside)) for r in rows if r["set"] == name]
    return f"median {statistics.median(errs):.1%}, worst {max(errs):.1%} over {len(errs)}"


def main() -> int:
    rows = parts()
    best = None
    for c in [x / 4 for x in range(40, 64)]:
        for m in [x / 100 for x in range(-5, 12)]:
            errs = [abs(error(r, estimate(r, c, m), True)) for r in rows if r["set"] == "fit"]
            loss = statistics.median(errs) + 0.5 * max(errs)
            if best is None or loss < best[0]:
                best = (loss, c, m)
    from doctor.vram.estimator import MID

    for label, c, m in (("before", 15.0, 0.01), ("current", MID.c_logits_hf, MID.margin), ("refit", best[1], best[2])):
        for name in ("fit", "held-out"):
            print(f"{label} (c_logits {c}, slack {m:.0%}) {name}: in the bracket {score(rows, c, m, name, True)}; "
                  f"against the upper end {score(rows, c, m, name, False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
