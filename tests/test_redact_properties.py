"""Redaction as a property: secrets generated in every form a credential takes (a credential-named
variable, key, keyword, flag, environment variable, os.environ / setdefault / putenv, login(key=),
dict key, `export X=`, URL credentials with or without a user, a high-entropy string with no
context at all) and identity inside path components, planted in every place a bundle takes text
from (the script or YAML/JSON config, argv, the log, a py-spy stack's source line and locals, the
environment, and so the issue body), in a real bundle: nothing planted survives in any byte of the
archive or the printed issue body; the bundled script (and its patched copy, and the issue's code
block) still parses; ordinary values survive, so redaction cannot pass by erasing everything."""
from __future__ import annotations

import ast
import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from doctor.redact import is_high_entropy
from tests import redact_strategies as S
from tests.bundle_helpers import doctor_writes, fenced_python, plant_bundle, texts_of, token_present

# derandomized: the same examples every run (CI cannot flake); ~10 s per config kind here
# (no shrinking: a failure prints its example, and shrinking a bundle build takes minutes)
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# What a maintainer needs: every one must survive (checked in the stored script and in the log).
KEEP_SCRIPT = ['model_name = "unsloth/Meta-Llama-3.1-8B-bnb-4bit"', "per_device_train_batch_size = 2",
               "learning_rate = 2e-4", 'optim = "adamw_8bit"', "max_seq_length = 2048", "lora_alpha = 16"]
KEEP_LOG = ["{'loss': 1.2345, 'grad_norm': 0.731, 'learning_rate': 0.0002, 'epoch': 0.01}",
            "torch 2.2.0+cu121", "CUDA_VISIBLE_DEVICES=0", "unsloth/Meta-Llama-3.1-8B-bnb-4bit"]

PY = '''from unsloth import FastLanguageModel
import os, wandb
from trl import SFTTrainer
from transformers import TrainingArguments
{name} = "{s1}"
os.environ["{env}"] = "{s2}"
os.environ.setdefault("{env}", "{s3}")
os.putenv("{env}", "{s4}")
wandb.login(key="{s5}")
creds = {{"{name}": "{s6}", "project": "demo"}}
# export {env}={s7}
store = connect("redis://:{s8}@cache.internal:6379", "postgres://u:{s9}@db.internal/x",
                "https://{tok}@github.com/acme/private.git", client_id="{rnd}")
{name2} = {other},
data_dir = "{home}/proj-{user}/{user}-data"
model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "unsloth/Meta-Llama-3.1-8B-bnb-4bit", max_seq_length = 2048, load_in_4bit = True,
    token = hf_token,
)
model = FastLanguageModel.get_peft_model(model, r = 16, lora_alpha = 16,
    use_gradient_checkpointing = "unsloth", random_state = 3407)
trainer = SFTTrainer(model = model, tokenizer = tokenizer, {name}="{s10}",
    args = TrainingArguments(per_device_train_batch_size = 2, gradient_accumulation_steps = 4,
        learning_rate = 2e-4, optim = "adamw_8bit", max_steps = 60, output_dir = "outputs"))
'''

YAML = '''base_model: unsloth/Meta-Llama-3.1-8B-bnb-4bit
load_in_4bit: true
sequence_len: 2048
micro_batch_size: 2
gradient_accumulation_steps: 4
learning_rate: 0.0002
optimizer: adamw_8bit
{name}: {s1}
{name2}: "{s2}"
hub:
  {name}: '{s3}'
redis_url: redis://:{s8}@cache.internal:6379
db_url: postgres://u:{s9}@db.internal/x
repo: https://{tok}@github.com/acme/private.git
client_id: {rnd}
output_dir: {home}/proj-{user}/{user}-data
'''

JSON = '''{{
  "model_name_or_path": "unsloth/Meta-Llama-3.1-8B-bnb-4bit",
  "per_device_train_batch_size": 2,
  "gradient_accumulation_steps": 4,
  "learning_rate": 0.0002,
  "optim": "adamw_8bit",
  "{name}": "{s1}",
  "hub": {{"{name2}": "{s2}", "url": "redis://:{s8}@cache.internal:6379"}},
  "db_url": "postgres://u:{s9}@db.internal/x",
  "repo": "https://{tok}@github.com/acme/private.git",
  "client_id": "{rnd}",
  "output_dir": "{home}/proj-{user}/{user}-data"
}}
'''

KINDS = {"train.py": PY, "train.yaml": YAML, "train.json": JSON}


def _plant(tmp: Path, kind: str, user: str, host: str, name: str, name2: str, env: str, flag: str,
           secrets: list[str], tok: str, rnd: str, other: str, redact: bool = True):
    s = {f"s{k}": v for k, v in enumerate(secrets, 1)}
    home = str(tmp / "home" / user)
    text = KINDS[kind].format(name=name, name2=name2, env=env, tok=tok, rnd=rnd, other=other, home=home,
                              user=user, **s)
    argv = ["python", f"{home}/proj/{kind}", flag, s["s11"], f"{flag}={s['s12']}", "--max_steps", "60"]
    log = "\n".join([
        f"{user}@{host}:~/proj-{user}$ export {env}={s['s13']}",
        f"{env}={s['s14']} " + " ".join(argv),
        f"connecting to redis://:{s['s8']}@cache.internal:6379 as {rnd}",
        *KEEP_LOG,
        "Traceback (most recent call last):",
        f'  File "{home}/proj-{user}/{kind}", line 9, in <module>',
        f'    wandb.login(key="{s["s5"]}")',
        f"wandb.errors.AuthenticationError: API key must be 40 characters long ({name}={s['s1']})",
    ])
    stack_source = f'    client.connect(host="cache.internal", {name}="{s["s15"]}", timeout=30)'
    locals_ = [{"name": name, "repr": f"'{s['s16']}'"}, {"name": "batch_size", "repr": "2"},
               {"name": "cfg", "repr": f"{{'{name}': '{s['s1']}', 'lr': 0.0002}}"}]
    envd = {env: s["s2"], "HF_HOME": f"{home}/.cache/huggingface", "CUDA_VISIBLE_DEVICES": "0",
            "MASTER_ADDR": f"redis://:{s['s8']}@10.0.0.7"}
    return plant_bundle(tmp, user=user, host=host, config_name=kind, config_text=text, argv=argv, log=log,
                        stack_source=stack_source, locals_=locals_, env=envd, redact=redact)


def _check(kind, user, host, name, name2, env, flag, secrets, tok, rnd, other):
    with tempfile.TemporaryDirectory() as tmp:
        result, g = _plant(Path(tmp), kind, user, host, name, name2, env, flag, secrets, tok, rnd, other)
        members = texts_of(result.path)
        home = g.facts.platform.home
        planted = list(secrets) + [tok, rnd, home]
        leaks = [(m, x) for m, text in members.items() for x in planted if x in m + "\n" + text]
        leaks += [(m, x) for m, text in members.items() for x in (user, host) if token_present(x, m + "\n" + text)]
        assert leaks == [], leaks
        printed = result.issue.text + result.issue.short_text + result.issue.title
        assert [x for x in planted if x in printed] == []
        assert not token_present(user, printed) and not token_present(host, printed)
        # the username inside a path component is gone too (proj-USER, USER-data)
        for text in list(members.values()) + [printed]:
            assert f"-{user}" not in text and f"{user}-data" not in text
        # ordinary values survive
        stored = members[f"config/{kind}"]
        assert "unsloth/Meta-Llama-3.1-8B-bnb-4bit" in stored and "adamw_8bit" in stored
        for keep in KEEP_LOG:
            assert keep in members["logs/train.log"], keep
        config = json.loads(members["config/config.json"])
        assert config["per_device_train_batch_size"] == 2
        assert config["model_name"] == "unsloth/Meta-Llama-3.1-8B-bnb-4bit"
        return members, printed


_common = dict(user=S.name, host=S.hostname, name=S.code_name, name2=S.code_name, env=S.env_name, flag=S.flag,
               secrets=st.lists(S.any_secret, min_size=16, max_size=16), tok=S.github_token,
               rnd=S.random_token.filter(is_high_entropy), other=st.sampled_from(["hf_token", "args.token", "TOKEN"]))


def _distinct(user, host, secrets):
    assume(user not in host and len({user, host}) == 2)
    # a generated password that is a substring of a kept value would be a false alarm
    kept = " ".join(KEEP_LOG + KEEP_SCRIPT) + " doctor-bundle-test.zip train.py train.yaml train.json python"
    assume(not any(s in kept for s in secrets) and not token_present(user, kept) and not token_present(host, kept))
    assume(not any(doctor_writes(s) for s in secrets))


@given(**_common)
@SETTINGS
def test_python_script_planted_everywhere(user, host, name, name2, env, flag, secrets, tok, rnd, other):
    _distinct(user, host, secrets)
    members, printed = _check("train.py", user, host, name, name2, env, flag, secrets, tok, rnd, other)
    stored = members["config/train.py"]
    ast.parse(stored)                                  # still a script: analyze re-reads it
    for keep in KEEP_SCRIPT:
        assert keep in stored, keep
    assert "    token = hf_token,\n" in stored
    for name_, text in members.items():
        if name_.endswith(".py"):
            ast.parse(text)                            # the patched copy too
    # the diff still applies to the stored script: its context and removed lines are lines of it
    diff = members.get("config/train.py.diff", "")
    assert "token = hf_token," in diff, "the patch touches the model call: its context has the bare name"
    lines = set(stored.splitlines())
    for line in diff.splitlines():
        if line[:1] in (" ", "-") and not line.startswith("---"):
            assert line[1:] in lines, line
    blocks = fenced_python(printed)
    assert blocks, "the issue body shows the script"
    for block in blocks:
        ast.parse(block)


@given(**_common)
@SETTINGS
def test_yaml_config_planted_everywhere(user, host, name, name2, env, flag, secrets, tok, rnd, other):
    _distinct(user, host, secrets)
    members, _ = _check("train.yaml", user, host, name, name2, env, flag, secrets, tok, rnd, other)
    import yaml

    data = yaml.safe_load(members["config/train.yaml"])
    assert data["micro_batch_size"] == 2 and data["optimizer"] == "adamw_8bit"


@given(**_common)
@SETTINGS
def test_json_config_planted_everywhere(user, host, name, name2, env, flag, secrets, tok, rnd, other):
    _distinct(user, host, secrets)
    members, _ = _check("train.json", user, host, name, name2, env, flag, secrets, tok, rnd, other)
    data = json.loads(members["config/train.json"])     # still JSON
    assert data["per_device_train_batch_size"] == 2 and data["optim"] == "adamw_8bit"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_planted_value_reaches_an_unredacted_bundle(kind, tmp_path):
    """The control: with --no-redact every planted value is in the archive, so the properties above
    test redaction, not a place the bundle never reads. (A credential-named local is blanked even
    then: that masking is not the redactor's, see doctor/bundle/stacks.py.)"""
    secrets = [f"Plant{k:02d}x{k * 7919:06d}" for k in range(1, 17)]
    result, g = _plant(tmp_path, kind, "morgan77", "morgan77-laptop", "db_pass", "hubToken", "WANDB_API_KEY",
                       "--wandb-key", secrets, "ghp_" + "Z9" * 18, "Xk9Qm2Vt7LpR4Wz8Nc3Bh6Jd", "hf_token",
                       redact=False)
    members = texts_of(result.path)
    everything = "\n".join(members.values())
    # s1 s5 s8 s11-s15: argv, log, stack source, the `cfg` local; s2: the environment; the rest: the config
    used = {int(n) for n in re.findall(r"\{s(\d+)\}", KINDS[kind])} | {1, 2, 5, 8, 11, 12, 13, 14, 15}
    planted = [secrets[k - 1] for k in sorted(used)] + ["ghp_" + "Z9" * 18, "Xk9Qm2Vt7LpR4Wz8Nc3Bh6Jd", "proj-morgan77"]
    assert [x for x in planted if x not in everything] == []
    assert secrets[14] in members["attach/diagnosis.json"]          # the stack's source line
    assert secrets[0] in members["attach/pyspy-4242.json"]          # inside a frame's `cfg` local
    assert secrets[15] not in everything                            # the credential-named local: blanked
