"""The GPU validation scripts' pure parts: the grid covers what issue 3 asks, estimates are sane,
and the report computes median / worst error correctly (the GPU run itself is the lead's)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.vram_helpers import load_script

ROOT = Path(__file__).resolve().parent.parent


grid_mod = load_script("benchmarks/gpu/vram_grid.py")
report_mod = load_script("benchmarks/vram_report.py")


def test_grid_covers_models_quantization_gc_batch_seq_and_unsloth():
    rows = grid_mod.grid(smoke=False)
    assert {r["model"] for r in rows} == {"1b", "8b"}
    assert {r["quant"] for r in rows if r["framework"] == "transformers"} == {"none", "4bit"}
    assert {r["gc"] for r in rows if r["framework"] == "transformers"} == {"hf", "off"}
    assert len({r["batch"] for r in rows}) > 1 and len({r["seq"] for r in rows}) > 1
    assert any(r["framework"] == "unsloth" for r in rows)
    assert all(r["steps"] >= 2 and r["timeout"] > 0 for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)


ALL_SETS = [(n, r) for n in (0, 1, 2, 3, 4, 5) for r in grid_mod.grid(smoke=False, holdout=n)]


def test_every_model_of_every_set_has_a_shape_and_a_family():
    for _n, row in ALL_SETS:
        assert grid_mod.shape_for(row["model"]) is not None, row["model"]
    families = {grid_mod.family(r["model"]) for _n, r in ALL_SETS}
    assert families == {"llama", "qwen2", "mistral", "gemma2"}


@pytest.mark.parametrize("row", [r for _n, r in ALL_SETS], ids=[f"set{n}-{r['id']}" for n, r in ALL_SETS])
def test_estimate_for_each_row(row):
    e = grid_mod.estimate_row(row, {"unsloth": "2026.10.9", "trl": "1.15.0", "transformers": "5.17.0"}, 80 * 2 ** 30)
    assert 0 < e["low"] < e["mid"] <= e["high"]
    assert e["inputs"]["quant"] == row["quant"] and e["inputs"]["gc"] == row["gc"]
    if row["framework"] == "unsloth":
        assert e["inputs"]["loss"] == "fused" and not e["inputs"]["upcast"]
    else:
        assert e["inputs"]["upcast"] == (row["quant"] == "4bit")


def test_report_median_worst_and_goal():
    def row(i, err, status="ok"):
        return {"id": f"r{i}", "framework": "transformers", "error_mid": err, "in_band": abs(err) < 0.15,
                "measured": {"status": status, "peak_reserved": 10 * 2 ** 30}, "measured_total": 10 * 2 ** 30,
                "estimate": {"low": 1, "mid": 2, "high": 3, "components": {"weights": 5}}}
    rows = [row(0, 0.05), row(1, -0.08), row(2, 0.30)]
    s = report_mod.summarize(rows)
    assert s["median"] == pytest.approx(0.08) and s["worst"] == pytest.approx(0.30) and s["meets_goal"] is False
    rows.append({"id": "oom", "framework": "unsloth", "measured": {"status": "oom", "error": "CUDA out of memory"},
                 "estimate": {"low": 1, "mid": 2, "high": 3}})
    md = report_mod.render({"rows": rows, "gpu": {"name": "H100", "total": 80 * 2 ** 30}, "versions": {"torch": "2.11"}})
    assert "Median |error| 8.0%, worst 30.0%" in md and "does not meet" in md and "`oom`: oom" in md
    assert all(f"\n| r{i} | 1 | ok |" in md for i in range(3))


def test_report_merges_runs_from_different_cards_and_keeps_each_cards_facts(tmp_path):
    def run(name, total, row_id):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps({"gpu": {"name": name, "total": total}, "versions": {"torch": "2.11"},
                                 "started": "2026-11-30", "rows": [{"id": row_id, "framework": "transformers"}]}))
        return p
    data = report_mod.merge([run("H100", 80 * 2 ** 30, "a"), run("H200", 140 * 2 ** 30, "b")])
    assert [(r["id"], r["set"]) for r in data["rows"]] == [("a", 1), ("b", 2)]
    md = report_mod.render(data)
    assert "Set 1: `H100.json`" in md and "on H100 (80.00 GiB)" in md
    assert "Set 2: `H200.json`" in md and "on H200 (140.00 GiB)" in md


def test_report_keeps_the_hand_written_part_above_the_marker():
    generated = "## Current estimator vs all measurements\n\nnew table\n"
    old = "# VRAM estimator validation\n\nHow the constants were set.\n\n" + report_mod.MARKER + "\n\nold table\n"
    out = report_mod.with_preamble(old, generated)
    assert out.startswith("# VRAM estimator validation\n\nHow the constants were set.\n\n" + report_mod.MARKER)
    assert "new table" in out and "old table" not in out
    fresh = report_mod.with_preamble(None, generated)       # a first report gets a title and the marker
    assert fresh.startswith("# VRAM estimator validation") and report_mod.MARKER in fresh


@pytest.mark.parametrize("family", ["qwen2", "mistral", "gemma2"])
def test_other_family_checkpoints_build_and_train_on_cpu(family, tmp_path):
    """The --holdout 3 path on CPU: a random checkpoint of the family's own config class, loaded the
    way the GPU rows load it (eager attention for Gemma 2), trains two steps."""
    pytest.importorskip("peft")
    model = next(r["model"] for _n, r in ALL_SETS if grid_mod.family(r["model"]) == family)
    made = grid_mod.make_checkpoint({"device": "cpu", "ckpt": str(tmp_path), "family": family, "shape": grid_mod.TINY})
    assert made["status"] == "ok"
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == family
    res = grid_mod.child({"device": "cpu", "ckpt": str(tmp_path), "model": model, "framework": "transformers",
                          "quant": "none", "gc": "hf", "batch": 2, "seq": 32, "steps": 2})
    assert res["status"] == "ok" and len(res["steps"]) == 2 and res["trainable_params"] > 0
