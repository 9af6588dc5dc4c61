"""Property: secrets and identity planted everywhere a bundle takes text from (facts, env, paths,
command lines, logs, pip output, nvidia-smi, kernel lines, py-spy dumps with locals, the training
script) never appear in any byte of the archive, while what maintainers need survives."""
from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings

from doctor.attach.model import AttachReport, ProcessView
from doctor.attach.snapshot import ProcessSample, Snapshot
from doctor.bundle.build import BundleOptions, Gathered, make_bundle
from doctor.bundle.collect import Collected
from doctor.bundle.identity import redactor_for
from doctor.config.loader import load_config
from doctor.findings import Finding, Severity
from doctor.report.emit import sections
from doctor.run_command import build_report
from tests import redact_strategies as S
from tests.bundle_helpers import MUST_SURVIVE, doctor_writes, leaks, planted_facts, read_members, token_present

SCRIPT = '''from unsloth import FastLanguageModel
from trl import SFTTrainer
HF_TOKEN = "{hf}"
model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "unsloth/Meta-Llama-3.1-8B-bnb-4bit", max_seq_length = 2048,
    load_in_4bit = True, token = "{hf}",
)
import wandb; wandb.login(key="{wb}")
# data in {home}/data, pushed with https://{user}:{gh}@github.com/acme/x.git
trainer = SFTTrainer(model = model, args = TrainingArguments(per_device_train_batch_size = 2,
    output_dir = "{home}/outputs", hub_token = "{pw}"))
'''


def gathered(tmp: Path, user: str, host: str, s: dict) -> tuple[Gathered, BundleOptions]:
    home = str(tmp / "home" / user)                     # a real folder, so the script can live there
    (Path(home) / "proj").mkdir(parents=True)
    script = Path(home) / "proj" / "train.py"
    script.write_text(SCRIPT.format(home=home, user=user, **s))
    env = {"HF_TOKEN": s["hf"], "WANDB_API_KEY": s["wb"], "OPENAI_API_KEY": s["oa"],
           "HF_HOME": f"{home}/.cache/huggingface", "LD_LIBRARY_PATH": "/usr/lib/wsl/lib:/usr/local/cuda-12.1/lib64",
           "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
           "MASTER_ADDR": f"https://{user}:{s['pw']}@10.0.0.7", "NCCL_DEBUG": "INFO"}
    facts = planted_facts(user, host, home, env)
    cfg = load_config(script)
    report = build_report(facts, None, command="bundle")
    md = sections(report)[1]
    report.findings.append(Finding(id="test.planted", severity=Severity.INFO,
                                   title=f"planted finding mentioning {home}/proj on {host}",
                                   evidence={"platform.cwd": f"{home}/proj", "env.HF_TOKEN": s["hf"]}))
    cmdline = f"python {home}/proj/train.py --hf-token {s['hf']} --password {s['pw']}"
    dump = [{"pid": 4242, "thread_id": 1, "os_thread_id": 4242, "thread_name": "MainThread", "active": False,
             "owns_gil": False, "frames": [
                 {"name": "train", "filename": f"{home}/proj/train.py", "short_filename": "train.py", "line": 9,
                  "module": None, "locals": [{"name": "token", "repr": f"'{s['oa']}'"},
                                             {"name": "secret_note", "repr": f"'{s['pw']}'"}]}]}]
    sample = ProcessSample(pid=4242, exe=f"{home}/proj/.venv/bin/python", cmdline=[
        "python", f"{home}/proj/train.py", "--password", s["pw"], "--hf-token", s["hf"]],
        source={f"{home}/proj/train.py:9": f'    api.upload(token="{s["pw"]}")'})
    attach = AttachReport(pid=4242, cause="cuda-sync-wait", situation="GPU idle, host waiting",
                          processes=[ProcessView(pid=4242, cmdline=cmdline, role="main")],
                          raw_dumps={"4242": [dump]}, errors=[f"py-spy could not read {home}/.pyenv on {host}"],
                          snapshot=Snapshot(target_pid=4242, processes=[sample]))
    log = "\n".join([
        f"{user}@{host}:~/proj$ HF_TOKEN={s['hf']} python train.py --password {s['pw']}",
        f"wandb: Currently logged in as: {user}. Use `wandb login --relogin` to force relogin",
        f"export AWS_ACCESS_KEY_ID={s['akid']}; aws_secret_access_key = {s['aws']}",
        "Traceback (most recent call last):",
        f'  File "{home}/proj/train.py", line 12, in <module>',
        "    trainer.train()",
        f"OSError: 401 Client Error for https://huggingface.co/api?token={s['pw']} (Bearer {s['oa']})",
    ])
    g = Gathered(facts=facts, config=cfg, report=report, md_sections=md, attach=attach, logs=[("train.log", log)],
                 external=[
                     Collected("env/pip-freeze.txt", "command: python -m pip freeze",
                               f"torch==2.2.0+cu121\nunsloth==2024.8\n-e git+https://{user}:{s['gh']}@github.com/acme/"
                               f"lib.git#egg=lib\nmypkg @ file://{home}/src/mypkg\n"),
                     Collected("gpu/nvidia-smi-q.txt", "command: nvidia-smi -q",
                               "Product Name : NVIDIA GeForce RTX 2080 Ti\n    Serial Number : 0324918012345\n"),
                     Collected("system/kernel-messages.txt", "command: dmesg",
                               f"[ 10.1] {host} kernel: Out of memory: Killed process 4242 (python) uid {user}\n"),
                 ],
                 notes=[f"planted note about {home}/proj"],
                 target_environ={"SECRET_SAUCE_TOKEN": s["pw"] + "Zz9"})
    opts = BundleOptions(out=tmp / "out" / "doctor-bundle-test.zip", config=script, pid=4242)
    return g, opts


FIXED = {"hf": "hf_" + "A1b2C3d4" * 4 + "zz", "oa": "sk-proj-" + "Q9" * 24, "wb": "ab12" * 10,
         "gh": "ghp_" + "x7Y8" * 9, "pw": "Hunter2Pass!", "akid": "AKIAIOSFODNN7EXAMPLE",
         "aws": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
SECRETS = dict(hf=S.hf_token, oa=S.openai_key, wb=S.wandb_key, gh=S.github_token, pw=S.password,
               akid=S.aws_key_id, aws=S.aws_secret)


@given(user=S.name, host=S.hostname, **SECRETS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_planted_secret_or_identity_reaches_the_archive(user, host, **s):
    baseline = "\n".join(sum(MUST_SURVIVE.values(), [])) + " doctor-bundle-test.zip train.py python pip"
    assume(not token_present(user, baseline) and not token_present(host, baseline) and user not in host)
    assume(not any(doctor_writes(v) for v in s.values()))   # the doctor's own words are no leak
    with tempfile.TemporaryDirectory() as tmp:
        g, opts = gathered(Path(tmp), user, host, s)
        result = make_bundle(opts, gathered=g)
        secrets = list(s.values()) + [g.facts.platform.home, g.target_environ["SECRET_SAUCE_TOKEN"]]
        assert leaks(result.path, secrets, [user, host]) == []
        # ... nor in what is printed and put in the URL
        for text in (result.issue.text, result.issue.short_text, result.issue.title):
            assert not [x for x in secrets if x in text]
            assert not token_present(user, text) and not token_present(host, text)
        members = read_members(result.path)
        for name, needed in MUST_SURVIVE.items():
            for value in needed:
                assert value in members[name].decode(), (name, value)
        config = json.loads(members["config/config.json"])
        assert config["model_name"] == "unsloth/Meta-Llama-3.1-8B-bnb-4bit"
        assert config["per_device_train_batch_size"] == 2


def test_manifest_lists_every_member_with_hash_source_and_redactions(tmp_path):
    s = FIXED
    g, opts = gathered(tmp_path, "morgan77", "morgan77-laptop", s)
    result = make_bundle(opts, gathered=g)
    members = read_members(result.path)
    manifest = json.loads(members["manifest.json"])
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) | {"manifest.json"} == set(members)
    import hashlib

    for name, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256(members[name]).hexdigest()
        assert entry["bytes"] == len(members[name]) and entry["source"]
    # HF_TOKEN was in the environment, so its value is a known secret wherever it appears
    assert listed["logs/train.log"]["redactions"]["env-secret"] >= 1
    assert listed["env/pip-freeze.txt"]["redactions"]["github-token"] == 1
    assert listed["facts.json"]["redactions"]["env-dropped"] == 3           # HF_TOKEN, WANDB_API_KEY, OPENAI_API_KEY
    assert manifest["redacted"] is True and manifest["redaction_totals"]["env-secret"] >= 3
    assert any("planted note about ~/proj" == n for n in manifest["notes"])
    # py-spy locals are not kept unless asked
    dump = json.loads(members["attach/pyspy-4242.json"])
    assert "locals" not in json.dumps(dump) and dump[0][0]["frames"][0]["filename"] == "~/proj/train.py"
    facts = json.loads(members["facts.json"])
    assert facts["platform"]["username"] == "<user>" and facts["platform"]["home"] == "~"
    assert facts["env"]["HF_HOME"] == "~/.cache/huggingface" and "HF_TOKEN" not in facts["env"]
    assert facts["env"]["NCCL_DEBUG"] == "INFO"


def test_archive_members_are_already_fixed_points(tmp_path):
    """Idempotence at the archive level: redacting what the bundle stored changes nothing."""
    g, opts = gathered(tmp_path, "morgan77", "morgan77-laptop", FIXED)
    result = make_bundle(opts, gathered=g)
    r = redactor_for(g.facts, [g.target_environ])
    for name, data in read_members(result.path).items():
        text = data.decode()
        if name.endswith(".json"):
            assert r.redact_obj(json.loads(text)) == json.loads(text), name
        else:
            assert r.redact_file(name, text)[0] == text, name
    assert r.counts == {}


def test_include_locals_keeps_them_redacted(tmp_path):
    s = FIXED
    g, opts = gathered(tmp_path, "morgan77", "morgan77-laptop", s)
    opts.include_locals = True
    result = make_bundle(opts, gathered=g)
    with zipfile.ZipFile(result.path) as zf:
        dump = json.loads(zf.read("attach/pyspy-4242.json"))
    local = dump[0][0]["frames"][0]["locals"]
    assert local[0] == {"name": "token", "repr": "<redacted:secret-local>"}   # a credential-named local
    # secret_note: a credential word anywhere in the name (secret, password ...) is enough
    assert local[1] == {"name": "secret_note", "repr": "<redacted:secret-local>"}


def test_no_redact_keeps_everything(tmp_path):
    s = FIXED
    g, opts = gathered(tmp_path, "morgan77", "morgan77-laptop", s)
    opts.redact = False
    result = make_bundle(opts, gathered=g)
    members = read_members(result.path)
    assert s["hf"] in members["logs/train.log"].decode()
    assert json.loads(members["manifest.json"])["redacted"] is False
    assert json.loads(members["facts.json"])["env"]["HF_TOKEN"] == s["hf"]
