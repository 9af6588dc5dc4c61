"""The external commands a bundle runs: each bounded, each failure a note. Real processes: fake
nvidia-smi / dmesg / python executables on PATH that hang, fail or are denied."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil
import pytest

from doctor.bundle import collect


def fake_bin(tmp_path: Path, name: str, script: str) -> Path:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    exe = d / name
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(0o755)
    return d


@pytest.fixture
def only_path(monkeypatch):
    def _set(d: Path) -> None:
        monkeypatch.setenv("PATH", f"{d}:/usr/bin:/bin")
    return _set


def test_hanging_nvidia_smi_times_out_and_leaves_nothing_behind(tmp_path, only_path, monkeypatch):
    only_path(fake_bin(tmp_path, "nvidia-smi", "exec sleep 31.4159"))
    monkeypatch.setattr(collect, "NVIDIA_SMI_TIMEOUT_S", 1.0)
    table, q = collect.nvidia_smi()
    assert table.text is None and "timed out" in table.note
    assert q.text is None and "skipped" in q.note                 # a wedged driver is not asked twice
    stray = [p for p in psutil.process_iter(["cmdline"]) if "31.4159" in " ".join(p.info["cmdline"] or [])]
    assert stray == []


def test_nvidia_smi_output_is_collected(tmp_path, only_path):
    only_path(fake_bin(tmp_path, "nvidia-smi", 'if [ "$1" = "-q" ]; then echo "==NVSMI LOG=="; '
                                               'else echo "| NVIDIA-SMI 560.35 |"; fi'))
    table, q = collect.nvidia_smi()
    assert table.text.strip() == "| NVIDIA-SMI 560.35 |" and table.note is None
    assert q.text.strip() == "==NVSMI LOG==" and q.source == "command: nvidia-smi -q"


def test_missing_nvidia_smi_is_a_note(tmp_path, only_path, monkeypatch):
    only_path(tmp_path)
    monkeypatch.setattr("doctor.probes.nvidia.SMI_CANDIDATES", ())
    [only] = collect.nvidia_smi()
    assert only.text is None and "not found" in only.note


def test_dmesg_permission_denied_is_a_note(tmp_path, only_path):
    only_path(fake_bin(tmp_path, "dmesg", 'echo "dmesg: read kernel buffer failed: Operation not permitted" >&2; exit 1'))
    got = collect.kernel_messages()
    assert got.text is None and "permission denied" in got.note and "sudo dmesg" in got.note


def test_dmesg_lines_are_filtered_to_what_matters(tmp_path, only_path):
    lines = ["[    0.1] Linux version 5.15.153.1-microsoft-standard-WSL2",
             "[   12.3] misc dxg: dxgk: dxgkio_query_adapter_info: Ioctl failed: -22",
             "[   13.0] hv_utils: Heartbeat IC version 3.0",
             "[ 4000.2] python3 invoked oom-killer: gfp_mask=0x140cca",
             "[ 4000.3] Out of memory: Killed process 4242 (python3) total-vm:52000000kB",
             "[ 5000.0] INFO: task python3:4242 blocked for more than 120 seconds."]
    only_path(fake_bin(tmp_path, "dmesg", "cat <<'EOF'\n" + "\n".join(lines) + "\nEOF"))
    got = collect.kernel_messages()
    kept = got.text.splitlines()
    assert kept[0] == "# 4 of 6 kernel messages match dxg|NVRM|Xid|OOM|hung task"
    assert kept[1:] == [lines[1], lines[3], lines[4], lines[5]]
    assert got.note is None


def test_pip_without_pip_is_a_note(tmp_path):
    d = fake_bin(tmp_path, "python", 'echo "/usr/bin/python: No module named pip" >&2; exit 1')
    out = collect.pip_outputs(python=str(d / "python"))
    assert [c.name for c in out] == ["env/pip-list.txt", "env/pip-freeze.txt"]
    assert all(c.text is None and "No module named pip" in c.note for c in out)


def test_pip_of_this_interpreter():
    lst, freeze = collect.pip_outputs()
    assert lst.note is None and freeze.note is None
    assert any(line.lower().startswith("pytest==") for line in freeze.text.splitlines())
    assert "psutil" in lst.text and lst.source.endswith("-m pip list --disable-pip-version-check")
    assert os.path.basename(sys.executable) in lst.source
