"""`doctor run` end to end on this machine (no GPU), through the real CLI in subprocesses."""
from __future__ import annotations

import json

import pytest

from probe_helpers import probe_env, run_doctor

pytestmark = pytest.mark.slow
PROBES = {"platform", "packages", "env", "nvidia", "torch", "libcuda", "toolchain"}


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """One real probing run: --json, --markdown and --save-facts together."""
    out = tmp_path_factory.mktemp("run")
    run = run_doctor(["run", "--json", "--markdown", str(out / "report.md"), "--save-facts", str(out / "facts.json")],
                     probe_env())
    return run, out


def _signature(report: dict) -> list[tuple]:
    return [(f["id"], f["severity"], f["title"], f["check"]) for f in report["findings"]]


def test_run_finishes_with_a_parseable_envelope(probed):
    run, _ = probed
    assert run.returncode in (0, 1), run.stderr
    assert not run.leftovers
    report = run.json()
    assert report["schema_version"] >= 1 and report["command"] == "run"
    assert report["exit_code"] == run.returncode
    for f in report["findings"]:
        assert {"id", "severity", "title", "evidence", "remediation"} <= set(f)
    facts = report["facts"]
    assert {p["name"] for p in facts["probes"]} == PROBES
    assert all(p["ok"] for p in facts["probes"]), facts["probes"]   # nothing hangs on a plain machine
    assert facts["torch"]["importable"] and facts["torch"]["cuda_available"] is False
    assert facts["nvidia"]["source"] is None and facts["nvidia"]["error"].startswith("no NVIDIA driver found")
    assert facts["packages"]["nvidia-ml-py"]["version"]


def test_markdown_report_is_written(probed):
    run, out = probed
    text = (out / "report.md").read_text()
    assert text.strip()
    for f in run.json()["findings"]:
        assert f["id"] in text


def test_saved_facts_replay_to_the_same_findings(probed):
    run, out = probed
    saved = json.loads((out / "facts.json").read_text())
    assert saved == run.json()["facts"]
    replay = run_doctor(["run", "--json", "--facts", str(out / "facts.json")])
    assert replay.returncode == run.returncode, replay.stderr
    assert replay.json()["facts"] == saved
    assert _signature(replay.json()) == _signature(run.json())


def test_terminal_report_from_facts(probed):
    _, out = probed
    res = run_doctor(["run", "--facts", str(out / "facts.json")])
    assert res.returncode in (0, 1) and "Traceback" not in res.stderr
    assert "doctor" in res.stdout and "Exit code" in res.stdout


def test_checks_lists_every_check_id():
    listing = run_doctor(["checks", "--json"])
    assert listing.returncode == 0, listing.stderr
    checks = {c["id"]: c for c in json.loads(listing.stdout)}
    assert set(checks["probes"]["finding_ids"]) == {"probe.timed-out", "probe.crashed", "probe.failed",
                                                    "packages.corrupt-metadata", "packages.shadowed"}
    plain = run_doctor(["checks"])
    assert plain.returncode == 0 and all(cid in plain.stdout for cid in checks)


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_bad_facts_file_exits_9_with_one_line(tmp_path, content):
    path = tmp_path / "facts.json"
    if content is not None:
        path.write_text(content)
    res = run_doctor(["run", "--facts", str(path)])
    assert res.returncode == 9
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doctor: error:") and str(path) in lines[0]


def test_check_filter_runs_only_that_check(probed, tmp_path):
    _, out = probed
    facts = json.loads((out / "facts.json").read_text())
    for p in facts["probes"]:
        if p["name"] == "torch":
            p.update(ok=False, timed_out=True, error="`import torch` hung: python timed out after 45.0 s")
    path = tmp_path / "hung.json"
    path.write_text(json.dumps(facts))

    only = run_doctor(["run", "--json", "--facts", str(path), "--check", "probes"])
    assert only.returncode == 1, only.stderr
    assert [(f["id"], f["check"]) for f in only.json()["findings"]] == [("probe.timed-out", "probes")]

    everything = run_doctor(["run", "--json", "--facts", str(path)])
    assert {f["check"] for f in everything.json()["findings"]} > {"probes"}

    unknown = run_doctor(["run", "--facts", str(path), "--check", "no-such-check"])
    assert unknown.returncode == 2 and "unknown check id(s): no-such-check" in unknown.stderr
