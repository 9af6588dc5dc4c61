"""Hypothesis strategies for the redaction tests: realistic secrets of every kind, identities, and
the ordinary values that redaction must leave alone."""
from __future__ import annotations

import string

from hypothesis import strategies as st

from doctor.redact import COMMON_NAMES

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"


def _s(alphabet: str, n: int, m: int = None):
    return st.text(alphabet, min_size=n, max_size=m or n)


def mixed(s: str) -> bool:
    """Letters and digits both: a planted secret that cannot be a word of the surrounding text."""
    return any(c.isdigit() for c in s) and any(c.isalpha() for c in s)


# (kind, strategy of (secret value as it appears, the part that must never survive))
hf_token = _s(ALNUM, 34).map(lambda b: "hf_" + b)
openai_key = st.tuples(st.sampled_from(["sk-", "sk-proj-"]), _s(ALNUM + "_-", 40, 60)).map("".join)
anthropic_key = _s(ALNUM + "_-", 60, 90).map(lambda b: "sk-ant-api03-" + b)
github_token = st.one_of(
    st.tuples(st.sampled_from(["ghp_", "gho_", "ghs_"]), _s(ALNUM, 36)).map("".join),
    _s(ALNUM + "_", 60, 82).map(lambda b: "github_pat_" + b))
slack_token = st.tuples(st.sampled_from("baprs"), _s(string.digits, 10, 13), _s(ALNUM, 24)).map(
    lambda t: f"xox{t[0]}-{t[1]}-{t[2]}")
aws_key_id = st.tuples(st.sampled_from(["AKIA", "ASIA"]), _s(string.ascii_uppercase + string.digits, 16)).map("".join)
aws_secret = _s(ALNUM + "/+", 40)
wandb_key = _s(HEX, 40)
# (a password after `--password` cannot start with "-": argparse would read it as an option)
password = st.tuples(st.sampled_from(ALNUM), _s(ALNUM + "!#%^*_+-", 7, 23)).map("".join).filter(mixed)
url_pass = _s(ALNUM + "-_~", 8, 24).filter(mixed)
bearer = _s(ALNUM + "._-", 24, 48).filter(mixed)

# Identities: distinctive names (the redactor replaces them as free tokens) and a home under them.
name = st.tuples(st.sampled_from(string.ascii_lowercase), _s(string.ascii_lowercase + string.digits, 4, 11)) \
    .map("".join).filter(lambda n: n not in COMMON_NAMES)
hostname = st.tuples(name, st.sampled_from(["-laptop", "-pc", "-wsl", "", "-gpu01"])).map("".join)

# Values a maintainer needs: none of these may change.
SURVIVORS = [
    "torch==2.2.0+cu121", "2.5.0a0+git1234abc", "0.0.28.dev895+g1234567", "triton 3.0.0",
    "NVIDIA GeForce RTX 2080 Ti", "NVIDIA H100 80GB HBM3", "Tesla T4",
    "unsloth/Meta-Llama-3.1-8B-bnb-4bit", "meta-llama/Llama-3.2-1B-Instruct",
    "/usr/local/cuda-12.1/lib64", "/usr/lib/wsl/lib/libcuda.so.1", "/usr/local/cuda/bin/nvcc",
    "CUDA_VISIBLE_DEVICES=0,1", "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
    "tokenizer.pad_token = tokenizer.eos_token", "max_tokens=512", "use_auth_token=True",
    "commit 3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "git@github.com:unslothai/unsloth.git", "File \"/usr/lib/python3.11/threading.py\", line 320, in wait",
    "per_device_train_batch_size = 2", "optim = \"adamw_8bit\"", "bf16 = is_bfloat16_supported()",
]

# ---------------------------------------------------------------- credential names and secrets in context
# (used by test_redact_properties.py: every form a credential takes in a script, config, argv, log, stack)

def _join(style: str, words: list[str]) -> str:
    words = [w for w in words if w]
    if style == "upper":
        return "_".join(words).upper()
    if style == "camel":
        return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])
    if style == "kebab":
        return "-".join(words)
    return "_".join(words)


CREDENTIAL_TAILS = ["token", "secret", "password", "passwd", "pwd", "pw", "pass", "passphrase", "credential",
                    "auth", "api_key", "apikey", "access_key", "secret_key", "key", "secret_access_key"]
NAME_PREFIXES = ["", "hf", "wandb", "db", "openai", "my", "hub", "aws", "redis", "admin", "comet"]
_parts = st.tuples(st.sampled_from(NAME_PREFIXES), st.sampled_from(CREDENTIAL_TAILS))
# a Python / YAML / JSON name (snake or camel case), an environment name, an argv flag name
code_name = st.tuples(st.sampled_from(["snake", "camel"]), _parts).map(
    lambda t: _join(t[0], [t[1][0]] + t[1][1].split("_")))
env_name = _parts.map(lambda p: _join("upper", [p[0]] + p[1].split("_")))
flag = st.tuples(st.sampled_from(["kebab", "snake"]), _parts).map(
    lambda t: "--" + _join(t[0], [t[1][0]] + t[1][1].split("_")))

random_token = _s(ALNUM, 24, 48)          # no shape, no context: the entropy rule's job
hex40 = wandb_key                         # W&B keys: hex, caught by context only (hashes are hex too)
# A secret in context: any kind, including plain passwords with no shape at all.
any_secret = st.one_of(hf_token, openai_key, github_token, aws_secret, hex40, password, url_pass, random_token)
