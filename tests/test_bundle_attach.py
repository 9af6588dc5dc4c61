"""`doctor bundle --pid`: a real stuck Python process with secrets in its argv and environment and
its script under a home directory; the real attach (py-spy) samples it; nothing secret or
identifying reaches the archive, and the stacks do."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from doctor.bundle.build import BundleOptions, make_bundle
from doctor.proctree import wait_for
from tests.attach_helpers import wait_ready
from tests.bundle_helpers import leaks, planted_facts, read_members

TARGET = '''import os, sys, time
def stuck_in_here(n):
    while True:
        time.sleep(0.2)
print("READY", flush=True)
stuck_in_here(len(sys.argv))
'''
HF_ARGV = "hf_" + "Pl4nt3dArgvT0ken" * 2 + "xy"
HF_ENV = "hf_" + "Pl4nt3dEnvT0ken0" * 2 + "zz"
OPAQUE = "Zq8xPLMw3nR7vT2kQ9sB"          # no known shape: only the target's environment says it is secret
PASSWORD = "Hunter2Pass!"


@pytest.mark.slow
def test_bundle_of_a_live_process_keeps_stacks_not_secrets(tmp_path, spawn):
    user, host = "quincy42", "quincy42-laptop"
    home = tmp_path / "home" / user
    (home / "proj").mkdir(parents=True)
    script = home / "proj" / "train_stuck.py"
    script.write_text(TARGET)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "HF_TOKEN": HF_ENV, "MY_SERVICE_TOKEN": OPAQUE,
           "USER": user}
    proc = spawn([sys.executable, str(script), "--hf-token", HF_ARGV, "--password", PASSWORD, "--blob", OPAQUE],
                 env=env, cwd=str(home / "proj"))
    wait_ready(proc)
    assert wait_for(lambda: open(f"/proc/{proc.pid}/stat").read().split()[2] == "S", 30)
    facts_file = tmp_path / "facts.json"
    planted_facts(user, host, str(home), {"CUDA_VISIBLE_DEVICES": "0"}).save(facts_file)

    result = make_bundle(BundleOptions(out=tmp_path / "out" / "doctor-bundle-live.zip", pid=proc.pid,
                                       facts_path=facts_file))

    members = read_members(result.path)
    manifest = json.loads(members["manifest.json"])
    assert not [n for n in manifest["notes"] if "attach" in n], manifest["notes"]
    dumps = json.loads(members[f"attach/pyspy-{proc.pid}.json"])
    frames = [fr for sample in dumps for th in sample for fr in th["frames"]]
    assert any(fr["name"] == "stuck_in_here" and fr["filename"] == "~/proj/train_stuck.py" for fr in frames)
    assert "locals" not in members[f"attach/pyspy-{proc.pid}.json"].decode()
    diagnosis = json.loads(members["attach/diagnosis.json"])
    assert diagnosis["pid"] == proc.pid and diagnosis["cause"]
    assert "stuck_in_here (~/proj/train_stuck.py:" in result.issue.text
    assert leaks(result.path, [HF_ARGV, HF_ENV, OPAQUE, PASSWORD, str(home)], [user, host]) == []
    for text in (result.issue.text, result.issue.short_text):
        assert not [s for s in (HF_ARGV, HF_ENV, OPAQUE, PASSWORD, str(home)) if s in text]
    assert proc.poll() is None                        # sampling left the target running


def test_pip_runs_with_the_targets_own_interpreter(spawn, tmp_path):
    from doctor.bundle.build import _target_python

    venv_bin = Path(sys.executable).parent
    absolute = spawn([sys.executable, "-c", "import time; print('READY', flush=True); time.sleep(60)"])
    wait_ready(absolute)
    assert _target_python(absolute.pid, {}) == sys.executable          # not the resolved base interpreter
    name = Path(sys.executable).name
    relative = spawn([name, "-c", "import time; print('READY', flush=True); time.sleep(60)"],
                     env={"PATH": f"{venv_bin}:/usr/bin:/bin"}, cwd=str(tmp_path))
    wait_ready(relative)
    assert _target_python(relative.pid, {"PATH": f"{venv_bin}:/usr/bin:/bin"}) == str(venv_bin / name)
    sleeper = spawn(["sleep", "60"])
    assert _target_python(sleeper.pid, {}) is None


LOCALS_TARGET = '''import sys, time
def waiting_for_batch(step):
    batch_label = "pineapple-batch-17"
    api_key = sys.argv[1]                 # no known token shape: only its name says secret
    hf_token = sys.argv[2]
    print("READY", flush=True)
    while True:
        time.sleep(0.2)
waiting_for_batch(11)
'''


@pytest.mark.slow
def test_include_locals_keeps_variables_but_not_credentials(tmp_path, spawn):
    opaque_key = "Mv7Qp2Lx9Rt4Wz8Ks3Nb"
    script = tmp_path / "train_locals.py"          # a file: with -c the source would be in argv
    script.write_text(LOCALS_TARGET)
    proc = spawn([sys.executable, str(script), opaque_key, HF_ENV])
    wait_ready(proc)
    assert wait_for(lambda: open(f"/proc/{proc.pid}/stat").read().split()[2] == "S", 30)
    facts_file = tmp_path / "facts.json"
    planted_facts("quincy42", "quincy42-laptop", "/home/quincy42", {}).save(facts_file)

    without = make_bundle(BundleOptions(out=tmp_path / "plain.zip", pid=proc.pid, facts_path=facts_file))
    assert b"pineapple-batch-17" not in b"".join(read_members(without.path).values())

    result = make_bundle(BundleOptions(out=tmp_path / "locals.zip", pid=proc.pid, facts_path=facts_file,
                                       include_locals=True))
    members = read_members(result.path)
    dumps = json.loads(members[f"attach/pyspy-{proc.pid}.json"])
    frame = next(fr for sample in dumps for th in sample for fr in th["frames"] if fr["name"] == "waiting_for_batch")
    values = {v["name"]: v.get("repr") for v in frame["locals"]}
    assert values["batch_label"].strip("'\"") == "pineapple-batch-17" and values["step"] == "11"
    assert values["api_key"] == values["hf_token"] == "<redacted:secret-local>"
    assert leaks(result.path, [opaque_key, HF_ENV], []) == []
    manifest = json.loads(members["manifest.json"])
    assert "secret-local" in json.dumps(manifest)
    assert proc.poll() is None
