"""`doctor vram` and `doctor run CONFIG` from the command line (in-process, facts from files)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from doctor import exitcodes
from doctor.cli import app
from doctor.report_model import SCHEMA_VERSION
from tests.vram_helpers import EXAMPLES, GIB, REFERENCE, make_facts

SNAPSHOT = EXAMPLES / "facts" / "wsl2-2080ti-unsloth-2024.8.json"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")


@pytest.fixture
def facts_file(tmp_path):
    path = tmp_path / "facts.json"
    make_facts(total_gib=24, free_gib=23, packages={"unsloth": "2025.3.1", "trl": "0.15.2"}).save(path)
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_vram_json_is_bytes_with_the_verdict(facts_file):
    r = invoke("vram", REFERENCE, "--facts", facts_file, "--json")
    assert r.exit_code == 0, r.output
    env = json.loads(r.stdout)     # the versioned envelope (issue 14), the estimate under sections.vram
    assert env["command"] == "vram" and env["schema_version"] == SCHEMA_VERSION and env["exit_code"] == 0
    d = env["sections"]["vram"]
    assert d["verdict"] == "fits" and d["units"] == "bytes"
    assert d["gpu"]["free"] == 23 * GIB and d["gpu"]["name"] == "NVIDIA GeForce RTX 4090"
    comps = {c["key"]: c for c in d["components"]}
    assert {"context", "weights", "dequant", "lora", "grads", "optimizer", "activations", "logits", "slack"} <= set(comps)
    assert all(isinstance(c["bytes"], int) for c in d["components"])
    assert sum(c["bytes"] for c in d["components"] if c["at_peak"]) == pytest.approx(d["total"]["mid"], abs=16)
    assert d["total"]["low"] < d["total"]["mid"] < d["total"]["high"]
    assert d["inputs"]["batch_size"] == 2 and d["inputs"]["seq_len"] == 2048
    assert d["host_ram"]["offload_needed"] > 0


def test_vram_whatif_gpu_and_flags(facts_file):
    r = invoke("vram", REFERENCE, "--facts", facts_file, "--gpu", "RTX 2060", "--json")
    assert r.exit_code == exitcodes.UNHEALTHY
    env = json.loads(r.stdout)
    assert env["exit_code"] == exitcodes.UNHEALTHY
    d = env["sections"]["vram"]
    assert d["verdict"] == "does-not-fit" and d["gpu"]["whatif"] and d["gpu"]["total"] == 6 * GIB
    r = invoke("vram", REFERENCE, "--facts", facts_file, "--batch-size", "8", "--seq-len", "4096", "--json")
    d = json.loads(r.stdout)["sections"]["vram"]
    assert (d["inputs"]["batch_size"], d["inputs"]["seq_len"]) == (8, 4096)


def test_vram_from_flags_alone(facts_file):
    r = invoke("vram", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--batch-size", "4", "--seq-len", "512",
               "--load-in-4bit", "--facts", facts_file, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sections"]["vram"]["inputs"]["quant"] == "4bit"


def test_vram_terminal_bar(facts_file):
    r = invoke("vram", REFERENCE, "--facts", SNAPSHOT)
    assert r.exit_code == 0, r.output
    assert "VRAM estimate" in r.stdout and "usable on NVIDIA GeForce RTX 2080 Ti" in r.stdout.replace("\n", " ")
    assert "█" in r.stdout and "│" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80


@pytest.mark.parametrize("args, code, words", [
    (["vram", "--facts", "{facts}"], exitcodes.USAGE, "--model"),
    (["vram", REFERENCE, "--facts", "{facts}", "--gpu", "A100"], exitcodes.USAGE, "ambiguous"),
    (["vram", REFERENCE, "--facts", "{facts}", "--gpu", "Voodoo 5"], exitcodes.USAGE, "unknown GPU"),
    (["vram", "--model", "acme/unheard-of", "--facts", "{facts}"], exitcodes.CONFIG_INVALID, "unknown model shape"),
    (["vram", "missing.py", "--facts", "{facts}"], exitcodes.CONFIG_INVALID, "not found"),
    (["vram", REFERENCE, "--facts", "{facts}", "--gc", "maybe"], exitcodes.USAGE, "--gc"),
])
def test_vram_errors_are_one_line_with_exit_codes(args, code, words, facts_file):
    r = invoke(*[str(a).replace("{facts}", str(facts_file)) for a in args])
    assert r.exit_code == code, r.output
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--seq-len", "-5"), ("--grad-accum", "0"),
                                         ("--lora-r", "0"), ("--num-workers", "-1")])
def test_impossible_config_numbers_are_usage_errors(flag, value, facts_file):
    r = invoke("vram", REFERENCE, "--facts", facts_file, flag, value)
    assert r.exit_code == exitcodes.USAGE and flag in r.output and "VRAM estimate" not in r.output


def test_run_writes_the_patched_copy(tmp_path):
    """README's main command on the reference case: findings, the VRAM section, a patched copy in --out."""
    out = tmp_path / "reports"
    before = REFERENCE.read_text()
    r = invoke("run", REFERENCE, "--facts", SNAPSHOT, "--out", out, "--mkdir", "--batch-size", "1", "--json")
    assert r.exit_code in (exitcodes.OK, exitcodes.UNHEALTHY), r.output
    sections = json.loads(r.stdout)["sections"]
    assert sections["vram"]["verdict"] in ("fits", "tight") and sections["config"]["per_device_train_batch_size"] == 1
    patched = out / "train_unsloth_llama31_8b.patched.py"
    assert sections["patch"]["path"] == str(patched)
    assert {"setting": "per_device_train_batch_size", "old": "2", "new": 1, "finding": "flag",
            "reason": "set by --batch-size"} in sections["patch"]["changes"]
    from doctor.config.python_parser import parse_python

    assert parse_python(patched.read_text()).per_device_train_batch_size == 1
    assert REFERENCE.read_text() == before   # the example itself is never written


def test_run_terminal_shows_the_vram_and_patch_sections(tmp_path):
    r = invoke("run", REFERENCE, "--facts", SNAPSHOT, "--out", tmp_path, "--batch-size", "1")
    text = r.stdout.replace("\n", " ")
    assert "VRAM estimate" in text and "Patched config:" in text and "original untouched" in text


def test_when_no_batch_fits_it_says_so(facts_file):
    # Gemma 2 without checkpointing at 4096 tokens (eager attention): over 24 GiB even at batch 1
    r = invoke("vram", "--model", "google/gemma-2-2b", "--gc", "false", "--seq-len", "4096", "--batch-size", "1",
               "--gpu", "RTX 4090", "--facts", facts_file)
    text = " ".join(r.stdout.split())
    assert "does not fit" in text and "no batch fits at 4096 tokens" in text and "fits at 4096 tokens: 0" not in text
    assert "eager attention" in text
