"""benchmarks/gpu/vram_bisect.py (set 7, issue 12): the row list meets the issue's spread, the
scheduler never over-commits the card, a device-full OOM is told from a cap OOM, the mechanical
refit reads FIT rows only, and the report merges runs. The GPU run itself is in
benchmarks/results/h200-2026-12-03/."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.vram_helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024 ** 3


vb = load_script("benchmarks/gpu/vram_bisect.py")
rep = load_script("benchmarks/vram_bisect_report.py")
V = {"transformers": "5.17.0", "peft": "0.21.0", "unsloth": "2026.10.9", "torch": "2.11.0"}
CARD = int(139.8 * GIB)


def test_rows_meet_the_issue_spread_and_are_split_fit_held_out():
    rows = vb.rows(None, smoke=False)
    assert len([r for r in rows if r["set"] == "held-out"]) >= 10 and len(rows) >= 30
    families = {vb.vg.family(r["model"]) for r in rows}
    assert {"llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "phi3", "granite"} <= families
    assert {r["framework"] for r in rows} == {"transformers", "unsloth"}
    assert {r["quant"] for r in rows} == {"none", "4bit"} and {"off", "hf", "unsloth"} <= {r["gc"] for r in rows}
    assert min(r["seq"] for r in rows) <= 1024 and max(r["seq"] for r in rows) >= 32768
    assert min(r["batch"] for r in rows) == 1 and max(r["batch"] for r in rows) >= 16
    # the row list in benchmarks/vram-validation.md is the one the script runs
    doc = (ROOT / "benchmarks" / "vram-validation.md").read_text()
    for r in rows:
        assert f"| {r['id']} | {r['framework']} |" in doc


def test_device_full_is_told_from_the_cap():
    cap = ("CUDA out of memory. Tried to allocate 32.00 GiB. GPU 0 has a total capacity of 139.80 GiB of which "
           "30.80 GiB is free. Including non-PyTorch memory, this process has 108.99 GiB memory in use. "
           "126.50 GiB allowed; Of the allocated")
    full = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.80 GiB of which "
            "512.00 MiB is free. Including non-PyTorch memory, this process has 10.99 GiB memory in use. "
            "26.50 GiB allowed;")
    assert not vb.device_full({"error": cap}) and vb.device_full({"error": full})
    assert not vb.device_full({"error": "RuntimeError: something else"})


def test_budget_never_over_commits_and_gives_back():
    b = vb.Budget(10 * GIB)
    assert b.take(6 * GIB, False, time.time() + 5)
    got = []
    t = threading.Thread(target=lambda: got.append(b.take(6 * GIB, False, time.time() + 5)))
    t.start()
    time.sleep(0.3)
    assert not got and b.used == 6 * GIB          # the second must wait: 12 > 10
    b.give(6 * GIB, False)
    t.join(5)
    assert got == [True] and b.used == 6 * GIB
    assert not b.take(6 * GIB, False, time.time() + 0.2)   # past its deadline: refused, not hung


def _entry(rid, least_ratio):
    e = dict(vb.rows(rid, smoke=False)[0])
    e["estimate"] = vb.vg.estimate_row(e, V, CARD)
    e["least_total"] = int(e["estimate"]["mid"] * least_ratio)
    e["peak_run"] = {"status": "ok", "cap_bytes": 1, "context_bytes": 0}
    return e


def test_refit_reads_fit_rows_only_and_keeps_the_band_ordered():
    fit_rows = [_entry(r, 1.0) for r in ("F1", "F4", "F5", "F8", "F9")]
    wild = _entry("H7", 3.0)                      # a held-out row far off must not move the fit
    fit = vb.refit({"rows": fit_rows + [wild], "versions": V, "gpu": {"total": CARD}})
    assert fit["status"] == "ok" and fit["n"] == 5
    m = fit["margins"]
    assert m["low"] <= m["mid"] <= m["high"]
    from doctor.vram.estimator import MID
    assert m["mid"] == pytest.approx(MID.margin, abs=0.005)     # least == the current mid: slack unchanged
    assert m["high"] == pytest.approx(max(fit["ratios"]["high"]) - 1 + 0.10)
    few = vb.refit({"rows": fit_rows[:2], "versions": V, "gpu": {"total": CARD}})
    assert few["status"] != "ok"


def test_report_merges_runs_and_flags_a_high_edge_below_the_truth():
    first = {"rows": [dict(_entry("H7", 1.0), peak_run={"status": "skipped"})], "versions": V,
             "gpu": {"total": CARD}}
    good = _entry("H7", 1.0)
    bad = _entry("H5", 2.0)                       # needed twice the mid: above the high edge
    merged = rep.merge([first, {"rows": [good, bad], "versions": V, "gpu": {"total": CARD}}])
    assert [e["id"] for e in merged["rows"]] == ["H5", "H7"]
    recs = rep.analyse(merged, recompute=False)
    by = {r["id"]: r for r in recs}
    assert by["H7"]["high_ok"] is True and by["H5"]["high_ok"] is False
    text = rep.render(recs)
    assert "**NO**" in text and "(H5)" in text


def test_verdicts_take_the_peak_run_as_the_high_half_only_when_its_cap_is_within_high():
    est = {"low": 10 * GIB, "mid": 12 * GIB, "high": 14 * GIB}
    low_oom = {"status": "oom", "cap_bytes": int(7.75 * GIB)}
    within = {"id": "H1", "estimate": est, "verdict": {"0.85low": low_oom},
              "peak_run": {"status": "ok", "cap_bytes": int(13.25 * GIB), "context_bytes": int(0.74 * GIB)}}
    beyond = {"id": "H2", "estimate": est, "verdict": {"0.85low": low_oom},   # cap + context above HIGH
              "peak_run": {"status": "ok", "cap_bytes": int(13.5 * GIB), "context_bytes": int(0.74 * GIB)}}
    old = {"rows": [{"id": "H3", "verdict": {"high": {"status": "ok"}, "0.85low": {"status": "ok"}}}]}
    newer = {"rows": [within, beyond, {"id": "H3", "estimate": est, "verdict": {"0.85low": low_oom}}]}
    v = rep.verdicts([newer], [old])
    assert v["H1"]["high"]["status"] == "ok" and v["H1"]["high"]["from_peak_run"]
    assert "high" not in v["H2"]                                   # not a proof at HIGH: left unknown
    assert v["H3"]["high"] == {"status": "ok"} and v["H3"]["0.85low"]["status"] == "oom"   # later half wins
