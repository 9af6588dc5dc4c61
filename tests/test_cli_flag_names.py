"""One name per meaning across commands (issue 14): --include-locals, --nvml, --steps, --out is a
folder (bundle's archive file is --archive). The old spellings still work and are hidden."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from doctor import exitcodes
from doctor.cli import app

ROOT = Path(__file__).resolve().parents[1]
WSL_FACTS = ROOT / "examples" / "facts" / "wsl2-2080ti-unsloth-2024.8.json"
runner = CliRunner()


def _help(command: str) -> str:
    res = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("command,shown,hidden", [
    ("attach", ["--include-locals", "--nvml", "--no-nvml"], ["--locals", "--gpu", "--no-gpu"]),
    ("bundle", ["--archive", "--steps", "--include-locals"], ["--out", "--repro-steps"]),
])
def test_help_shows_the_one_name_and_hides_the_old(command, shown, hidden):
    text = _help(command)
    for flag in shown:
        assert re.search(rf"{flag}\b", text), (command, flag)
    for flag in hidden:
        assert not re.search(rf"(?<![\w-]){flag}(?![\w-])", text), (command, flag)


@pytest.mark.parametrize("flag", ["--archive", "--out"])
def test_bundle_archive_under_either_spelling(tmp_path, flag):
    out = tmp_path / "b.zip"
    res = runner.invoke(app, ["bundle", "--facts", str(WSL_FACTS), flag, str(out)])
    assert res.exit_code in (exitcodes.OK, exitcodes.UNHEALTHY), res.output
    assert zipfile.is_zipfile(out)


@pytest.mark.parametrize("args,nvml,include_locals", [
    ([], True, False),
    (["--no-nvml", "--include-locals"], False, True),
    (["--no-gpu", "--locals"], False, True),          # the old spellings
    (["--gpu"], True, False),
])
def test_attach_flags_and_their_old_spellings_reach_the_command(monkeypatch, args, nvml, include_locals):
    """Only the argument parsing is under test here: the command is replaced by a recorder."""
    import doctor.attach.command as command
    from doctor.report_model import Report

    seen = {}

    def record(pid, samples, interval, native, children, save, timeout, gpu, replay, locals_=False):
        seen.update(gpu=gpu, locals=locals_)
        return Report(command="attach", findings=[])

    monkeypatch.setattr(command, "attach_command", record)
    res = runner.invoke(app, ["attach", "12345", *args])
    assert res.exit_code == exitcodes.OK, res.output
    assert seen == {"gpu": nvml, "locals": include_locals}
