"""One case per leak issue 15 lists (tests/fixtures/redaction/leaks.json), each in a real bundle:
the secret is in no member of the archive and not in the printed issue body, the bundled script
still parses, and `doctor analyze` reads that script rather than falling back to the stored config."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from doctor import archive as A
from doctor.bundle.analyze import bundle_config
from doctor.redact import Redactor
from tests.bundle_helpers import fenced_python, plant_bundle, texts_of, token_present

CASES = json.loads((Path(__file__).parent / "fixtures" / "redaction" / "leaks.json").read_text())["cases"]
USER, HOST = "morgan77", "morgan77-laptop"

SCRIPT = '''from unsloth import FastLanguageModel
import os, wandb
{line}
model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "unsloth/Meta-Llama-3.1-8B-bnb-4bit", max_seq_length = 2048, load_in_4bit = True)
trainer = SFTTrainer(model = model, args = TrainingArguments(per_device_train_batch_size = 2,
    gradient_accumulation_steps = 4, optim = "adamw_8bit", output_dir = "outputs"))
'''


def _fill(s: str, home: str) -> str:
    return s.replace("{user}", USER).replace("{host}", HOST).replace("{home}", home)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_issue_15_leak_is_closed(case, tmp_path):
    home = str(tmp_path / "home" / USER)
    text = _fill(case["text"], home)
    place = case["place"]
    script = SCRIPT.format(line=text if place == "script" else "")
    argv = ["python", f"{home}/proj/train.py"] + (text.replace("=", " = ").split() if False else text.split()
                                                  if place == "argv" else [])
    log = "step 1 loss 1.2345\n" + (text if place == "log" else "") + "\nstep 2 loss 1.1111\n"
    source = text if place == "stack" else "    trainer.train()"
    result, g = plant_bundle(tmp_path, user=USER, host=HOST, config_name="train.py", config_text=script,
                             argv=argv, log=log, stack_source=source, locals_=[], env={"CUDA_VISIBLE_DEVICES": "0"})
    members = texts_of(result.path)
    printed = result.issue.text + result.issue.short_text
    secrets = [_fill(s, home) for s in case["secrets"]] + [home]
    for name, body in list(members.items()) + [("printed issue body", printed)]:
        for s in secrets:
            assert s not in name + "\n" + body, (case["id"], name, s)
        assert not token_present(USER, body) and not token_present(HOST, body), (case["id"], name)
    everything = "\n".join(members.values())
    for keep in case.get("keep", []):
        assert _fill(keep, home) in everything, (case["id"], keep)
    stored = members["config/train.py"]
    ast.parse(stored)
    for block in fenced_python(result.issue.text):
        ast.parse(block)
    cfg = bundle_config(A.open_bundle(result.path))
    assert cfg.source_path == "train.py", "analyze fell back to the stored config"
    assert cfg.model_name == "unsloth/Meta-Llama-3.1-8B-bnb-4bit"


def test_short_names_rule():
    """Names under 3 characters (and common ones) are not replaced as free words ("pc", "t4" and
    "ai" are words of ordinary text; 2 characters identify no one), but they are in a shell prompt
    and as a whole path component; a 1-character name only in home-shaped paths."""
    r = Redactor(usernames=("al",), hostnames=("pc",), homes=("/home/al",))
    out = r.redact("al@pc:~$ python train.py on a pc with a T4\n/data/al/runs /data/pc/x /home/al/proj /mnt/c/al-data")
    assert out == ("<user>@<host>:~$ python train.py on a pc with a T4\n/data/<user>/runs /data/<host>/x ~/proj "
                   "/mnt/c/al-data")
    one = Redactor(usernames=("c",), homes=("/home/c",)).redact("/home/c/x /mnt/c/Users c@box")
    assert one == "~/x /mnt/c/Users c@box"


def test_sha256_versions_and_paths_survive_the_entropy_rule():
    keep = ("sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 "
            "GPU-5f2e9c1a-0d3b-4c7e-9a61-2b8f7d4e1c10 torch-2.5.0a0+git1234abc "
            "/usr/local/lib/python3.11/site-packages/PIL/Hdf5StubImagePlugin.py "
            "Qwen2_5_VLForConditionalGeneration unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit "
            "5.15.153.1-microsoft-standard-WSL2 AutoModelForVision2Seq")
    assert Redactor().redact(keep) == keep


def test_locals_masking_shares_the_predicate():
    from doctor.bundle.stacks import mask_secret_locals, secret_local_values

    frame = {"locals": [{"name": "wandbKey", "repr": "'0a1b2c3d4e5f60718293a4b5c6d7e8f901234567'"},
                        {"name": "db_pass", "repr": "'opensesame'"}, {"name": "pw", "repr": "'x9'"},
                        {"name": "key", "repr": "'input_ids'"}, {"name": "sort_key", "repr": "'length'"},
                        {"name": "pad_token", "repr": "'<pad>'"}, {"name": "batch_size", "repr": "2"}]}
    out = mask_secret_locals(frame)["locals"]
    assert [v["repr"] == "<redacted:secret-local>" for v in out] == [True, True, True, False, False, False, False]
    assert secret_local_values(frame) == ["0a1b2c3d4e5f60718293a4b5c6d7e8f901234567", "opensesame", "x9"]


@pytest.mark.parametrize("src,expected", [
    ('x = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789', 'x = "<redacted:hf-token>'),             # unterminated
    ('x = """hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\n', 'x = """<redacted:hf-token>\n'),     # EOF in a string
    ("token = hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\n", "token = redacted_hf_token\n"),      # quotes forgotten
    ('f(a, token="abc",', 'f(a, token="<redacted:secret-value>",'),                          # a diff line
    ("    token = hf_token,\n", "    token = hf_token,\n"),
    ('token: str = "abc"\nb"x" if pw else rb\'y\'\n', 'token: str = "<redacted:secret-value>"\nb"x" if pw else rb\'y\'\n'),
    ('pw = ("abc"\n      "def")\n', 'pw = ("<redacted:secret-value>"\n      "<redacted:secret-value>")\n'),
])
def test_python_fragments(src, expected):
    assert Redactor().redact_file("train.py", src)[0] == expected


def test_argv_lists_in_scripts_and_logs():
    r = Redactor()
    src = 'subprocess.run(["python", "t.py", "--token", "abc", "--pw", "--x", "--max-tokens", "5"])\n'
    assert r.redact_file("train.py", src)[0] == \
        'subprocess.run(["python", "t.py", "--token", "<redacted:secret-value>", "--pw", "--x", "--max-tokens", "5"])\n'
    assert r.redact("argv: ['t.py', '--db-pass', 'opensesame', '--steps', '10']") == \
        "argv: ['t.py', '--db-pass', '<redacted:secret-flag>', '--steps', '10']"


def test_member_names_lose_identity_and_stay_portable(tmp_path):
    """A script named after its user (train-morgan77.py) is stored without the name, under a name
    Windows can extract (no < > :), and analyze still reads it."""
    result, _ = plant_bundle(tmp_path, user=USER, host=HOST, config_name=f"train-{USER}.py",
                             config_text=SCRIPT.format(line=""), argv=["python"], log="", stack_source="",
                             locals_=[], env={})
    names = list(texts_of(result.path))
    assert "config/train-_user_.py" in names
    assert not [n for n in names if USER in n or set("<>:") & set(n)]
    assert bundle_config(A.open_bundle(result.path)).model_name == "unsloth/Meta-Llama-3.1-8B-bnb-4bit"


def test_yaml_block_scalar_under_a_credential_key():
    import yaml

    text = "hub:\n  password: |\n    line one s3cret\n    line two\n  other: 2\nnotes: |\n  keep me\n"
    out = Redactor().redact(text)
    assert "s3cret" not in out and "line two" not in out
    assert yaml.safe_load(out) == {"hub": {"password": "<redacted:secret-value>\n", "other": 2}, "notes": "keep me\n"}
