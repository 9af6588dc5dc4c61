"""The corpus of real reports: the confirmed cause must be the top finding often enough.

Thresholds are over the corpus, not per record (benchmarks/diagnosis-corpus.md lists the misses
and why). Also: the new checks add no error or critical finding on healthy real captures.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from checks_helpers import snapshot
from corpus_helpers import load_records, record_config, record_facts, sufficient
from doctor.engine import run_checks
from doctor.facts import Facts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from score_corpus import score  # noqa: E402

RECORDS = load_records()
TOP1, TOP3 = 0.70, 0.85
NO_KNOWN_MESSAGE = {"unsloth-2775"}     # the report's excerpt is cut before the error's name


def test_the_corpus_has_forty_records_each_with_its_source():
    assert len(RECORDS) >= 40 and len(sufficient(RECORDS)) >= 30
    assert len({r["id"] for r in RECORDS}) == len(RECORDS)
    for r in RECORDS:
        assert r["link"].startswith("https://github.com/"), r["id"]
        assert r["title"] and r["cause"] and r["confirmed_by"] and r["expect"], r["id"]
        assert isinstance(r["env"], dict) and "packages" in r["env"], r["id"]
        assert "insufficient" not in r or len(r["insufficient"]) > 10, r["id"]


@pytest.mark.parametrize("rec", sufficient(RECORDS), ids=lambda r: r["id"])
def test_every_record_builds_facts_that_round_trip(rec):
    f = record_facts(rec)
    assert Facts.from_dict(json.loads(json.dumps(f.to_dict()))).to_dict() == f.to_dict()
    if rec.get("log") and rec["id"] not in NO_KNOWN_MESSAGE:
        assert f.log_matches, f"{rec['id']}: its log excerpt matched no signature"


def test_the_confirmed_cause_is_the_top_finding_often_enough():
    s = score(RECORDS)
    misses = "\n".join(f"  {r['id']}: expected {r['expect']} at {r['rank']}, top3 {r['top3']}"
                       for r in s["rows"] if r["rank"] != 1)
    assert s["top1_rate"] >= TOP1 and s["top3_rate"] >= TOP3, (
        f"top-1 {s['top1']}/{s['sufficient']}, top-3 {s['top3']}/{s['sufficient']}; misses:\n{misses}")


def test_the_score_would_fail_on_a_wrong_expectation():
    """The scorer itself can fail: flip every expectation to an id no check emits."""
    broken = [dict(r, expect="nothing.here") for r in sufficient(RECORDS)[:5]]
    s = score(broken)
    assert s["top1"] == 0 and s["top3"] == 0 and s["sufficient"] == 5


@pytest.mark.parametrize("name", ["h100-real.json", "h200-real.json", "cpu-only-laptop.json"])
def test_no_new_failure_on_healthy_captures(name):
    found = run_checks(snapshot(name))
    new = [f for f in found if f.check in ("known-bad", "log-signatures") and f.severity.is_failure]
    assert not new, [(f.id, f.title) for f in new]
    assert not [f for f in found if f.id == "doctor.check-crashed"]


def test_a_record_with_a_config_is_checked_with_it():
    rec = next(r for r in RECORDS if r["id"] == "unsloth-1797")
    ids = [f.id for f in run_checks(record_facts(rec), record_config(rec))]
    assert ids[0] == "wsl.pinned-memory-offload", ids
    assert "log.cuda-oom" in ids and ids.index("log.cuda-oom") > 0


def test_a_record_replays_through_the_cli_with_the_same_top_finding(tmp_path):
    """The snapshot the scorer builds is an ordinary facts file: `doctor run --facts --log` agrees."""
    from probe_helpers import run_doctor

    rec = next(r for r in RECORDS if r["id"] == "pytorch-167244")
    facts = record_facts(rec)
    facts.log_matches = []
    facts.save(tmp_path / "f.json")
    (tmp_path / "r.log").write_text(rec["log"])
    run = run_doctor(["run", "--facts", str(tmp_path / "f.json"), "--log", str(tmp_path / "r.log"), "--json"])
    assert run.returncode == 1, run.stderr
    assert run.json()["findings"][0]["id"] == rec["expect"] == run_checks(record_facts(rec))[0].id
