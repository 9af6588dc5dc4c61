"""`doctor bundle` and `doctor analyze` from the command line, and the round trip: bundle on this
machine, analyse the copy elsewhere, get the findings `doctor run` gives here."""
from __future__ import annotations

import json
import shutil
import urllib.parse
import zipfile

import pytest
from typer.testing import CliRunner

from doctor import exitcodes
from doctor.cli import app
from doctor.engine import run_checks
from doctor.facts import Facts
from tests.bundle_helpers import WSL_FACTS
from tests.conftest import EXAMPLES

runner = CliRunner()
EXAMPLE = EXAMPLES / "train_unsloth_llama31_8b.py"
LOG = """step 11 loss 1.42
Traceback (most recent call last):
  File "/home/wsluser/proj/train.py", line 98, in <module>
    trainer_stats = trainer.train()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.96 GiB
"""


def test_bundle_prints_the_issue_body_and_a_url(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(LOG)
    out = tmp_path / "doctor-bundle-a.zip"
    res = runner.invoke(app, ["bundle", "--facts", str(WSL_FACTS), "--out", str(out), "--log", str(log),
                              "--repo", "unslothai/unsloth"])
    assert res.exit_code == 0, res.output
    body, url = res.stdout.rsplit("\n", 2)[0] + "\n", res.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(out) as zf:
        assert zf.read("issue.md").decode() == body
        names = zf.namelist()
    assert {"facts.json", "findings.json", "findings.md", "issue.md", "manifest.json", "logs/train.log"} <= set(names)
    assert "torch.OutOfMemoryError: CUDA out of memory" in body and "/home/wsluser" not in body
    assert url.startswith("https://github.com/unslothai/unsloth/issues/new?") and len(url) <= 8000
    assert "[Bug]" in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["title"][0]
    assert f"Wrote {out}" in res.stderr and "not collected: --facts was given" in res.stderr


def test_no_redact_warns(tmp_path):
    res = runner.invoke(app, ["bundle", "--facts", str(WSL_FACTS), "--out", str(tmp_path / "b.zip"), "--no-redact"])
    assert res.exit_code == 0
    assert "warning: --no-redact" in res.stderr and "Do not post them publicly" in res.stderr
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        assert json.loads(zf.read("manifest.json"))["redacted"] is False


@pytest.mark.parametrize("args,words", [
    (["--repo", "not a repo"], "--repo must be OWNER/NAME"),
    (["--archive", "bundle.tar"], "--archive must name a .zip"),
    (["--out", "bundle.tar"], "--archive must name a .zip"),       # the old spelling, still accepted
    (["--log", "/nonexistent/train.log"], "--log: no such file"),
])
def test_usage_errors_are_one_line(tmp_path, args, words):
    res = runner.invoke(app, ["bundle", "--facts", str(WSL_FACTS)] + args)
    assert res.exit_code == exitcodes.USAGE
    assert res.stderr.startswith("doctor: error:") and words in res.stderr and res.stderr.count("\n") == 1


def test_a_pid_that_does_not_exist_fails_before_any_probing(tmp_path):
    res = runner.invoke(app, ["bundle", "--pid", "999999", "--out", str(tmp_path / "b.zip")])
    assert res.exit_code == exitcodes.NO_SUCH_PROCESS
    assert res.stderr.strip() == "doctor: error: no process with pid 999999" and "probing" not in res.stderr
    assert not (tmp_path / "b.zip").exists()


def test_analyze_runs_todays_checks_offline(tmp_path):
    out = tmp_path / "b.zip"
    assert runner.invoke(app, ["bundle", "--facts", str(WSL_FACTS), "--out", str(out)]).exit_code == 0
    md = tmp_path / "report.md"
    res = runner.invoke(app, ["analyze", str(out), "--json", "--markdown", str(md)])
    env = json.loads(res.stdout)
    assert env["command"] == "analyze" and env["schema_version"] == 1
    assert [f["id"] for f in env["findings"]] == [f.id for f in run_checks(Facts.load(WSL_FACTS))]
    assert env["sections"]["bundle"]["file"] == "b.zip" and env["sections"]["bundle"]["redacted"] is True
    assert res.exit_code == env["exit_code"]
    assert "wsl.expandable-segments" in md.read_text()


@pytest.mark.slow
def test_round_trip_bundle_here_analyze_elsewhere(tmp_path):
    """Probe this machine twice (doctor run, doctor bundle): the copy analysed elsewhere must give
    the finding ids doctor run gave here."""
    res = runner.invoke(app, ["run", str(EXAMPLE), "--json", "--out", str(tmp_path / "patch"), "--mkdir"])
    here = [f["id"] for f in json.loads(res.stdout)["findings"]]
    made = tmp_path / "made" / "doctor-bundle-rt.zip"
    res = runner.invoke(app, ["bundle", "--config", str(EXAMPLE), "--out", str(made)])
    assert res.exit_code == 0, res.output
    elsewhere = tmp_path / "elsewhere" / made.name
    elsewhere.parent.mkdir()
    shutil.copy(made, elsewhere)
    shutil.rmtree(made.parent)
    res = runner.invoke(app, ["analyze", str(elsewhere), "--json"])
    there = [f["id"] for f in json.loads(res.stdout)["findings"]]
    assert there == here and here
    with zipfile.ZipFile(elsewhere) as zf:
        names = set(zf.namelist())
        issue = zf.read("issue.md").decode()
    assert {"config/train_unsloth_llama31_8b.py", "config/config.json", "env/pip-freeze.txt",
            "system/kernel-messages.txt"} <= names
    assert "**6. Which trainer?** `SFTTrainer`" in issue and "unsloth/Meta-Llama-3.1-8B-bnb-4bit" in issue


def test_unwritable_output_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = runner.invoke(app, ["bundle", "--facts", str(WSL_FACTS), "--out", str(blocker / "b.zip")])
    assert res.exit_code == exitcodes.USAGE
    last = res.stderr.splitlines()[-1]
    assert last.startswith("doctor: error: cannot write") and "Traceback" not in res.stderr
    assert not (blocker / "b.zip.partial").exists()
