"""The redactor on text: every secret kind in the contexts it is found in, identities, what must
survive, idempotence, JSON, and the environment allowlist."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from doctor.redact import Redactor, is_distinctive, looks_like_secret
from tests import redact_strategies as S
from tests.bundle_helpers import token_present

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- secrets in context

@given(hf=S.hf_token, oa=S.openai_key, an=S.anthropic_key, gh=S.github_token, sl=S.slack_token,
       akid=S.aws_key_id, aws=S.aws_secret, wb=S.wandb_key, pw=S.password, up=S.url_pass, br=S.bearer)
@SETTINGS
def test_planted_secrets_never_survive(hf, oa, an, gh, sl, akid, aws, wb, pw, up, br):
    text = "\n".join([
        f"HF_TOKEN={hf} python train.py --hf-token {hf}",
        f"export OPENAI_API_KEY={oa}; client = OpenAI(api_key=\"{oa}\")",
        f"ANTHROPIC_API_KEY: {an}",
        f"git clone https://x-access-token:{gh}@github.com/acme/private.git",
        f"slack webhook token {sl}",
        f"[default]\naws_access_key_id = {akid}\naws_secret_access_key = {aws}",
        f"WANDB_API_KEY={wb}",
        f"machine api.wandb.ai\n  login user\n  password {wb}",
        f"wandb login {wb}",
        f"db password={pw} retry",
        f"python train.py --password {pw} --steps 10",
        f"'password': '{pw}',",
        f"pip install git+https://builder:{up}@git.example.com/pkg.git",
        f"Authorization: Bearer {br}",
        f"GET https://bucket.s3.amazonaws.com/w.bin?X-Amz-Credential={akid}%2F20240101&X-Amz-Signature={wb}&x=1",
        f"https://cdn.example.com/model.safetensors?sig={br}&se=2024",
        f"https://api.example.com/v1?token={pw}",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + up + "\n-----END RSA PRIVATE KEY-----",
    ])
    out = Redactor().redact(text)
    for secret in (hf, oa, an, gh, sl, akid, aws, wb, pw, up, br):
        assert secret not in out, (secret, out)
    assert "MIIEowIBAAKCAQEA" not in out
    # the structure around the secrets is kept for the reader
    assert "python train.py --password <redacted:" in out
    assert "git.example.com/pkg.git" in out and "Authorization: Bearer <redacted:" in out


@pytest.mark.parametrize("text,kind", [
    ("token hf_" + "a1B2" * 9, "hf-token"),
    ("sk-proj-" + "x" * 48, "openai-key"),
    ("sk-ant-api03-" + "y" * 80, "anthropic-key"),
    ("ghp_" + "Z9" * 18, "github-token"),
    ("github_pat_" + "A1_" * 25, "github-token"),
    ("xoxb-1234567890-abcdefABCDEF", "slack-token"),
    ("AKIAIOSFODNN7EXAMPLE", "aws-access-key-id"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpM", "jwt"),
    ("https://user:pa55word@host.example.com/x", "url-credentials"),
    ("WANDB_API_KEY=" + "0123456789abcdef" * 2 + "01234567", "wandb-key"),
])
def test_each_kind_is_counted(text, kind):
    out, counts = Redactor().redact_counted(text)
    assert counts[kind] >= 1, (out, counts)
    assert f"<redacted:{kind}>" in out


# ---------------------------------------------------------------- identities

@given(user=S.name, host=S.hostname)
@SETTINGS
def test_identity_replaced_in_paths_prompts_and_dumps(user, host):
    home = f"/home/{user}"
    text = "\n".join([
        f'File "{home}/proj/train.py", line 12, in <module>',
        f"{user}@{host}:~/proj$ python train.py",
        f"(venv) {user}@{host}.corp.example.com",
        f"cwd: {home}",
        f"HF_HOME={home}/.cache/huggingface",
        f"Windows profile: C:\\Users\\{user}\\AppData and /mnt/c/Users/{user}/Desktop",
        f'{{"filename": "{home}/.venv/lib/python3.11/site-packages/x.py"}}',
        f"logged in as {user}.",
    ])
    r = Redactor(usernames=(user,), hostnames=(host,), homes=(home,))
    out = r.redact(text)
    assert home not in out
    assert not token_present(user, out), out
    assert not token_present(host, out), out
    assert "~/proj/train.py" in out and "<user>@<host>" in out


def test_home_is_always_replaced_even_for_common_names():
    r = Redactor(usernames=("root",), hostnames=("vm",), homes=("/root",))
    out = r.redact("File /root/proj/train.py; /rootfs/x; rooted; root cause; vm.max_map_count; vm")
    assert out == "File ~/proj/train.py; /rootfs/x; rooted; root cause; vm.max_map_count; vm"


@pytest.mark.parametrize("user", ["cuda", "a", "ab", "user", "python", "nvidia"])
def test_short_or_common_usernames_do_not_mangle_text(user):
    home = f"/home/{user}"
    text = (f"/usr/local/cuda-12.1/lib64 a python user torch 2.2.0+cu121 nvidia-smi "
            f"{home}/proj/train.py /home/{user}")
    out = Redactor(usernames=(user,), homes=(home,)).redact(text)
    assert out.startswith("/usr/local/cuda-12.1/lib64 a python user torch 2.2.0+cu121 nvidia-smi ")
    assert out.endswith("~/proj/train.py ~")
    assert not is_distinctive(user)


def test_other_users_homes_are_replaced_too():
    out = Redactor().redact("/home/bob/x /Users/carol/y C:\\Users\\Dave\\z /mnt/c/Users/erin/w /home/linuxbrew/.linuxbrew C:/Users/Public")
    assert out == "/home/<user>/x /Users/<user>/y C:\\Users\\<user>\\z /mnt/c/Users/<user>/w /home/linuxbrew/.linuxbrew C:/Users/Public"


# ---------------------------------------------------------------- what must survive

@given(user=S.name, host=S.hostname, secret=S.hf_token)
@SETTINGS
def test_ordinary_values_survive(user, host, secret):
    survivors = "\n".join(S.SURVIVORS)
    assume(not token_present(user, survivors) and not token_present(host, survivors))
    r = Redactor(usernames=(user,), hostnames=(host,), homes=(f"/home/{user}",), known_secrets=(secret,))
    assert r.redact(survivors) == survivors


def test_tokenizer_and_code_are_not_secrets():
    code = ('tokenizer.pad_token = tokenizer.eos_token\nmodel, tok = FastLanguageModel.from_pretrained('
            'model_name="unsloth/Meta-Llama-3.1-8B-bnb-4bit", token=os.environ["HF_TOKEN"])\n'
            'login(token=getenv("HF_TOKEN"))\nhub_token=None\nmax_new_tokens = 128\n'
            '# token = "hf_...", # use one if using gated models\ntoken = "YOUR_HF_TOKEN"\n')
    assert Redactor().redact(code) == code


def test_literal_secret_in_config_is_removed_but_code_kept():
    code = 'model = load("unsloth/Meta-Llama-3.1-8B-bnb-4bit", token = "my-private-token-123")\n'
    out = Redactor().redact(code)
    assert "my-private-token-123" not in out
    assert out == 'model = load("unsloth/Meta-Llama-3.1-8B-bnb-4bit", token = "<redacted:secret-value>")\n'


# ---------------------------------------------------------------- idempotence

_fragment = st.one_of(
    S.hf_token, S.openai_key, S.github_token, S.aws_key_id, S.wandb_key, S.password, S.name,
    st.sampled_from(S.SURVIVORS),
    st.sampled_from(["password=", "--token ", "Authorization: Bearer ", "https://", "@", ":", "/home/",
                     "?sig=", "&token=", "\n", " ", '"', "'", "\\n", "=", "WANDB_API_KEY=", "wandb login ",
                     "aws_secret_access_key = ", "-----BEGIN PRIVATE KEY-----", "C:\\Users\\", "<user>",
                     "<redacted:hf-token>", "~"]),
    st.text(max_size=12),
)


@given(parts=st.lists(_fragment, max_size=14), user=S.name, host=S.hostname, secret=S.password)
@settings(max_examples=300, deadline=None)
def test_redaction_is_idempotent(parts, user, host, secret):
    r = Redactor(usernames=(user,), hostnames=(host,), homes=(f"/home/{user}",), known_secrets=(secret,))
    once = r.redact("".join(parts))
    assert r.redact(once) == once


# ---------------------------------------------------------------- JSON and env

@given(user=S.name, hf=S.hf_token, pw=S.password)
@SETTINGS
def test_json_objects_stay_valid_and_clean(user, hf, pw):
    home = f"/home/{user}"
    obj = {"cmdline": ["python", f"{home}/train.py", "--token", hf, "--password", pw, "--pad-token", "<pad>"],
           "log": f"line1\n{user}@box: {hf}\n", "password": pw, "nested": {f"{home}/key": [f"{user} ran it", None, 3]},
           "pad_token": "<|finetune_right_pad_id|>"}
    r = Redactor(usernames=(user,), homes=(home,))
    text = json.dumps(r.redact_obj(obj), ensure_ascii=False)
    back = json.loads(text)
    for bad in (hf, pw, home):
        assert bad not in text
    assert not token_present(user, text)
    assert back["pad_token"] == "<|finetune_right_pad_id|>"
    assert back["cmdline"][4:] == ["--password", "<redacted:secret-flag>", "--pad-token", "<pad>"]
    assert back["cmdline"][:2] == ["python", "~/train.py"] and back["nested"]["~/key"] == ["<user> ran it", None, 3]


def test_env_allowlist_first_then_values():
    env = {"HF_TOKEN": "hf_" + "q" * 34, "AWS_SECRET_ACCESS_KEY": "abc" * 14, "PATH": "/home/zed01/bin:/usr/bin",
           "CUDA_VISIBLE_DEVICES": "0", "HF_HOME": "/home/zed01/.cache/hf",
           "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "NCCL_SOCKET_IFNAME": "eth0",
           "UNSLOTH_RANDOM_VALUE": "Zx9" + "aB3" * 10, "MASTER_ADDR": "https://bob:secretpw@10.0.0.1"}
    r = Redactor(usernames=("zed01",), homes=("/home/zed01",))
    out = r.redact_env(env)
    assert "HF_TOKEN" not in out and "PATH" not in out and "AWS_SECRET_ACCESS_KEY" not in out
    assert out["CUDA_VISIBLE_DEVICES"] == "0"
    assert out["HF_HOME"] == "~/.cache/hf"
    assert out["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert out["UNSLOTH_RANDOM_VALUE"] == "<redacted:env-secret>"
    assert "secretpw" not in out["MASTER_ADDR"]
    assert r.counts["env-dropped"] == 3


def test_looks_like_secret_spares_paths_versions_and_hashes():
    assert looks_like_secret("aB3" * 10)
    for v in ("/usr/local/cuda-12.1/lib64", "2.2.0+cu121", "3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a",
              "expandable_segments:True", "0,1,2,3"):
        assert not looks_like_secret(v)


def test_disabled_redactor_is_the_identity():
    r = Redactor(usernames=("alice99",), homes=("/home/alice99",), enabled=False)
    text = "hf_" + "a" * 34 + " /home/alice99 alice99"
    assert r.redact(text) == text
    assert r.redact_obj({"password": "x"}) == {"password": "x"}
