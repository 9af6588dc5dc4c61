"""The checks on the release table: release-moves (torch ranges that block a runnable torch),
release-drift (patchers paired with much newer dependencies), release-metadata (declared
requirements and Python from the table when the facts lack metadata). Real fact snapshots plus
hand-written machines; the healthy real captures get no new error or critical finding."""
from __future__ import annotations

import pytest

from checks.release_drift import DRIFT, release_drift
from checks.release_metadata import PYTHON, UNMET, release_metadata
from checks.release_moves import BLOCKS, release_moves
from checks_helpers import ids, linux_gpu, one, requires, snapshot
from doctor.engine import run_checks
from doctor.findings import Severity

SNAPSHOT_KEY = "checks/data/releases.json.gz snapshot"


def test_rtx5090_xformers_pin_blocks_every_torch_that_runs_and_names_the_first_that_does_not():
    f = one(release_moves(snapshot("rtx5090-old-torch.json")), BLOCKS)
    assert f.severity is Severity.ERROR
    assert f.title.startswith("xformers 0.0.28.post3 declares torch==2.5.1")
    assert "the first xformers that allows one is 0.0.30 (2025-04-28)" in f.title
    assert f.evidence["xformers 0.0.28.post3 released"] == "2024-10-30"
    assert f.evidence[SNAPSHOT_KEY] >= "2026-12-03"
    assert f.commands and "torch==2." in f.commands[0] and "+cu128" in f.commands[0]
    assert any(line.startswith("torch==") for line in f.evidence["install pins"])


def test_old_driver_sends_a_too_new_pin_back_to_an_older_release():
    # driver 520 runs CUDA 11.8: cu118 builds exist up to torch 2.8; xformers 0.0.33.post1 pins torch 2.9.0
    facts = snapshot("driver-too-old.json")
    facts.packages["xformers"].version = "0.0.33.post1"
    facts.packages["xformers"].requires = ["torch==2.9.0"]
    f = one(release_moves(facts), BLOCKS)
    assert "newest older release that does is 0.0.32.post2" in f.title
    assert "cu118" in f.evidence["runnable torch"]


def test_versions_only_facts_use_the_table_copy_of_the_declared_range():
    facts = linux_gpu("NVIDIA GeForce RTX 5090", (12, 0), torch="2.5.1+cu124", xformers="0.0.28.post3")
    f = one(release_moves(facts), BLOCKS)
    assert SNAPSHOT_KEY in " ".join(f.evidence)          # the range came from the table
    requires(facts, "xformers", "torch>=2.4")            # live metadata wins over the table
    assert release_moves(facts) == []


def test_drift_names_the_pairing_the_dates_and_which_to_move():
    f = one(release_drift(snapshot("driver-too-old.json")), DRIFT)   # peft 0.14.0 with transformers 4.50.0
    assert f.severity is Severity.WARNING
    assert f.title.startswith("peft 0.14.0 (2024-12-06) runs with transformers 4.50.0 (2025-03-21, 105 days later)")
    assert f.evidence["next peft release"] == "0.15.0 (2025-03-19)"
    assert "upgrade peft to 0.15.1 (2025-03-27)" in f.remediation


def test_drift_moves_unsloth_zoo_to_one_release_that_covers_every_newer_dependency():
    facts = snapshot("unsloth-zoo-skew.json")
    facts.packages.pop("unsloth")       # with unsloth 2026.9.1 the zoo skew owns this stale zoo (below)
    f = one(release_drift(facts), DRIFT)
    assert "unsloth-zoo 2025.3.9 (2025-03-13)" in f.title and "torch 2.10.0+cu128 (2026-01-21" in f.title
    assert "upgrade unsloth-zoo to 2026.1.4 (2026-01-22)" in f.remediation


def test_no_drift_within_the_grace_or_when_a_declared_ceiling_vouches():
    # trl 0.12.2 (2024-12-06) declares transformers<4.47.0: that ceiling is the maintainers' word
    facts = linux_gpu(trl="0.12.2", transformers="4.46.3")
    assert release_drift(facts) == []
    # peft 0.14.0 (2024-12-06) with transformers 4.47.1 (2024-12-17): 11 days, within the grace
    assert release_drift(linux_gpu(peft="0.14.0", transformers="4.47.1")) == []
    assert ids(release_drift(linux_gpu(peft="0.14.0", transformers="4.50.0"))) == [DRIFT]


def test_table_fills_in_requirements_and_python_when_facts_carry_only_versions():
    facts = linux_gpu(trl="0.12.2", transformers="4.57.1")
    facts.platform.python_version = "3.8.10"
    found = release_metadata(facts, None)
    unmet = one(found, UNMET)
    assert unmet.severity is Severity.ERROR and "trl 0.12.2 (2024-12-06) declares transformers<4.47.0" in unmet.title
    py = [f for f in found if f.id == PYTHON]
    assert {f.title.split(" ")[0] for f in py} >= {"trl", "transformers"}
    # with the package's own metadata read, the live check (version_matrix) owns it
    requires(facts, "trl", "transformers>=4.46", python=">=3.8")
    assert all("trl" not in f.title.split(" ")[0] for f in release_metadata(facts, None))


@pytest.mark.parametrize("name", ["h100-real.json", "h200-real.json", "cpu-only-laptop.json"])
def test_healthy_real_captures_get_no_error_from_the_release_checks(name):
    from checks.release_plan import release_plan
    from checks.release_table import release_table

    facts = snapshot(name)
    for check in (release_moves, release_drift, release_metadata, release_plan, release_table):
        assert [f.id for f in check(facts, None) if f.severity.is_failure] == []


def test_release_findings_registered_and_in_the_engine_run():
    findings = run_checks(snapshot("rtx5090-old-torch.json"), None)
    assert BLOCKS in ids(findings)
    f = one(findings, BLOCKS)
    assert f.check == "release-moves"


def test_versions_newer_than_the_table_are_named_with_the_snapshot_date():
    from checks.release_table import OUTDATED, REFRESH, release_table

    assert release_table(snapshot("h200-real.json")) == []
    f = one(release_table(linux_gpu(transformers="9.0.0", peft="0.14.0")), OUTDATED)
    assert f.severity is Severity.INFO and "transformers 9.0.0" in f.title and "peft" not in f.title
    assert f.commands == [REFRESH] and f.evidence[SNAPSHOT_KEY] >= "2026-12-03"


def test_cli_reports_the_table_snapshot():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    run = subprocess.run([sys.executable, "-m", "doctor", "run", "--facts", str(root / "examples/facts/h200-real.json"),
                          "--json"], capture_output=True, text=True, env=env, timeout=300, cwd=root)
    envelope = json.loads(run.stdout)
    assert envelope["release_table_snapshot"][:10] >= "2026-12-03"
    listing = subprocess.run([sys.executable, "-m", "doctor", "checks"], capture_output=True, text=True, env=env,
                             timeout=300, cwd=root)
    assert "release table: PyPI snapshot 20" in listing.stdout.replace("\n", " ")
    for cid in ("release-moves", "release-drift", "release-metadata", "release-table"):
        assert cid in listing.stdout


def test_one_install_command_when_the_installed_stack_breaks_a_constraint():
    from checks.release_plan import PLAN, release_plan

    f = one(release_plan(snapshot("rtx5090-old-torch.json")), PLAN)
    assert f.severity is Severity.INFO and f.commands[0].startswith("pip install ")   # ranks with its causes
    assert "+cu128" in f.commands[0] and "--extra-index-url https://download.pytorch.org/whl/cu128" in f.commands[0]
    assert any("is a cu124 build, not one this GPU and driver run (cu128)" in b for b in f.evidence["constraints broken"])
    assert len(f.evidence["install pins"]) >= len(f.commands[0].split('=="')) - 1
    zoo = one(release_plan(snapshot("unsloth-zoo-skew.json")), PLAN)
    assert "unsloth 2026.9.1 declares unsloth-zoo>=2026.8.16" in zoo.evidence["constraints broken"]
    for healthy in ("h100-real.json", "h200-real.json", "cpu-only-laptop.json", "h100-healthy.json"):
        assert release_plan(snapshot(healthy)) == []


# ------------------------------------------------- one cause, one answer (issue 10, corpus2)

def test_a_pin_for_another_torch_that_runs_here_is_left_to_the_pair_check():
    """unslothai/unsloth#1856: a 5090 with a cu128 torch nightly and xformers 0.0.29.post3 (torch==2.6.0).
    The installed torch runs here, so 'install the xformers built for it' is the whole fix: the pair
    check owns it and release-moves stays silent; with a torch that cannot run here it still speaks."""
    from checks.version_matrix import XFORMERS, version_matrix

    nightly = linux_gpu("NVIDIA GeForce RTX 5090", (12, 0), torch="2.8.0.dev20250331+cu128", xformers="0.0.29.post3")
    assert release_moves(nightly) == []
    assert "built for torch==2.6.0" in one(version_matrix(nightly, None), XFORMERS).title
    old = linux_gpu("NVIDIA GeForce RTX 5090", (12, 0), torch="2.5.1+cu124", cuda="12.4", xformers="0.0.29.post3")
    assert BLOCKS in ids(release_moves(old))


def test_violations_count_a_known_bad_row_only_where_its_machine_conditions_hold():
    """kb.unsloth-zoo-python-3.10-unpack is about Python < 3.11: on 3.11 the installed set does not
    break it (the plan still avoids that zoo everywhere)."""
    from checks._resolver import violations

    facts = linux_gpu(unsloth="2025.6.2", unsloth_zoo="2025.7.1")          # Python 3.11.9
    assert not [v for v in violations(facts) if "python-3.10-unpack" in v]
    facts.platform.python_version = "3.10.12"
    assert [v for v in violations(facts) if "python-3.10-unpack" in v]


def test_the_install_command_comes_with_its_cause_not_before_it():
    """unslothai/unsloth#1026: the cause (xformers built for torch 2.3.0 under 2.4.0) ranks first and
    points to the install command, which says 'explained by' it; the log symptom is explained too."""
    from doctor.knowledge.logmatch import match_text
    from doctor.findings import explained_by

    facts = linux_gpu("Tesla T4", (7, 5), torch="2.4.0+cu121", cuda="12.1", unsloth="2024.9", xformers="0.0.26.post1")
    facts.log_matches = match_text("xFormers can't load C++/CUDA extensions", source="test")
    found = run_checks(facts)
    order = ids(found)
    assert order[0] == "versions.xformers-torch-mismatch", order
    plan = order.index("releases.install-command")
    assert found[plan].severity is Severity.INFO
    assert 0 in explained_by(found)[plan] and 0 in explained_by(found)[order.index("log.xformers-cant-load")]


def test_a_skewed_unsloth_pair_is_said_once_by_the_zoo_skew_not_again_as_drift():
    """zoo 2025.3.9 under unsloth 2026.9.1: the zoo is also months older than transformers/peft, but
    that is the same stale zoo; upgrading both together (the skew's fix) answers both."""
    facts = snapshot("unsloth-zoo-skew.json")
    found = ids(run_checks(facts))
    assert "versions.unsloth-zoo-skew" in found and DRIFT not in found
    # the same stale zoo without unsloth: no skew, so the drift speaks
    facts.packages.pop("unsloth")
    assert "unsloth-zoo 2025.3.9" in one(release_drift(facts), DRIFT).title
