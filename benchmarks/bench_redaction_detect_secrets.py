"""The hand-written redactor (doctor/redact.py) against detect-secrets 1.5 (keyword, entropy
and provider plugins, default settings and filters, as `detect-secrets scan` runs them), on the
forms the property tests generate (tests/redact_strategies.py) and on ordinary text.

Caught, for the redactor: the secret is gone from its output. For detect-secrets: it reports a
secret on that line whose value contains the planted one (it only reports; the bundle would still
have to cut it out). Ordinary text: this repository's text, the venv's file paths and pip freeze;
a line counts when the redactor changes it (no identity configured) or detect-secrets reports on it.
Run: PYTHONPATH=. python benchmarks/bench_redaction_detect_secrets.py"""
from __future__ import annotations

import os
import random
import string
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import strategies as st

from doctor.redact import Redactor, is_high_entropy
from tests import redact_strategies as S

sys.path.insert(0, str(Path(__file__).parent))
N = int(os.environ.get("N", "200"))


def draw(strategy, rng):
    return strategy.example()


FORMS = {  # name: (file suffix, line template with {name} {env} {flag} {s})
    "py: NAME = \"S\"": (".py", '{name} = "{s}"'),
    "py: os.environ[ENV] = \"S\"": (".py", 'os.environ["{env}"] = "{s}"'),
    "py: os.environ.setdefault(ENV, \"S\")": (".py", 'os.environ.setdefault("{env}", "{s}")'),
    "py: os.putenv(ENV, \"S\")": (".py", 'os.putenv("{env}", "{s}")'),
    "py: wandb.login(key=\"S\")": (".py", 'wandb.login(key="{s}")'),
    "py: {\"NAME\": \"S\"}": (".py", 'creds = {{"{name}": "{s}"}}'),
    "py: f(NAME=\"S\")": (".py", 'client = Client(host="db", {name}="{s}")'),
    "py: # export ENV=S": (".py", "# export {env}={s}"),
    "yaml: NAME: S": (".yaml", "{name}: {s}"),
    "json: \"NAME\": \"S\"": (".json", '  "{name}": "{s}",'),
    "argv: --flag S": (".txt", "python train.py {flag} {s} --max_steps 60"),
    "argv: --flag=S": (".txt", "python train.py {flag}={s} --max_steps 60"),
    "log: export ENV=S": (".txt", "$ export {env}={s}"),
    "url: redis://:S@host": (".txt", "connecting to redis://:{s}@cache.internal:6379/0"),
    "url: postgres://u:S@host": (".txt", "DB=postgres://u:{s}@db.internal/metrics"),
    "url: https://TOKEN@github.com": (".txt", "git clone https://{tok}@github.com/acme/x.git"),
    "no context: random token": (".txt", "client initialised with {rnd} ok"),
    "no context: token shapes": (".txt", "using {shape} now"),
}


def samples(rng):
    out = []
    for _ in range(N):
        out.append(dict(name=draw(S.code_name, rng), env=draw(S.env_name, rng), flag=draw(S.flag, rng),
                        s=draw(S.any_secret, rng), tok=draw(S.github_token, rng),
                        rnd=draw(S.random_token.filter(is_high_entropy), rng),
                        shape=draw(st.one_of(S.hf_token, S.openai_key, S.github_token, S.aws_key_id,
                                             S.slack_token, S.anthropic_key), rng)))
    return out


def planted(template: str, v: dict) -> str:
    return v["tok"] if "{tok}" in template else v["rnd"] if "{rnd}" in template else \
        v["shape"] if "{shape}" in template else v["s"]


def detect_secrets_lines(suffix: str, lines: list[str]) -> dict[int, list[str]]:
    """line number (1-based) -> secret values detect-secrets reports, scanning one file."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"sample{suffix}"
        path.write_text("\n".join(lines) + "\n")
        found: dict[int, list[str]] = {}
        with default_settings():
            coll = SecretsCollection()
            coll.scan_file(str(path))
            for _, secret in coll:
                found.setdefault(secret.line_number, []).append(secret.secret_value or "")
    return found


def main() -> None:
    rng = random.Random(15)
    vals = samples(rng)
    r = Redactor()
    print(f"{N} generated examples per form")
    print("| form | redactor | detect-secrets | either |\n|---|---|---|---|")
    tot = [0, 0, 0, 0]
    for form, (suffix, template) in FORMS.items():
        lines = [template.format(**v) for v in vals]
        secrets = [planted(template, v) for v in vals]
        ds = detect_secrets_lines(suffix, lines)
        if suffix == ".py":
            ours = [s not in r.redact_file("x.py", ln)[0] for ln, s in zip(lines, secrets)]
        else:
            ours = [s not in r.redact(ln) for ln, s in zip(lines, secrets)]
        theirs = [any(s in found for found in ds.get(k + 1, [])) for k, s in enumerate(secrets)]
        either = [a or b for a, b in zip(ours, theirs)]
        tot = [tot[0] + sum(ours), tot[1] + sum(theirs), tot[2] + sum(either), tot[3] + len(lines)]
        print(f"| {form} | {sum(ours) / N:.0%} | {sum(theirs) / N:.0%} | {sum(either) / N:.0%} |")
    print(f"| all forms | {tot[0] / tot[3]:.1%} | {tot[1] / tot[3]:.1%} | {tot[2] / tot[3]:.1%} |")

    # provider shapes, random bodies (the forms of detect-secrets' provider plugins and a few more)
    def rnd(alphabet, n):
        return "".join(rng.choice(alphabet) for _ in range(n))
    a, lh, d = string.ascii_letters + string.digits, "0123456789abcdef", string.digits
    shapes = {
        "Stripe": lambda: "sk_live_" + rnd(a, 24), "GitLab": lambda: "glpat-" + rnd(a, 20),
        "PyPI": lambda: "pypi-AgEIcHlwaS5vcmc" + rnd(a + "-_", 80), "npm": lambda: "npm_" + rnd(a, 36),
        "SendGrid": lambda: "SG." + rnd(a, 22) + "." + rnd(a, 43), "Twilio": lambda: "SK" + rnd(lh, 32),
        "Mailchimp": lambda: rnd(lh, 32) + "-us" + rnd(d, 2), "Square": lambda: "sq0csp-" + rnd(a, 43),
        "Telegram": lambda: rnd(d, 9) + ":" + rnd(a, 35), "Discord": lambda: "M" + rnd(a, 23) + "." + rnd(a, 6) + "." + rnd(a, 27),
        "Google API": lambda: "AIza" + rnd(a, 35), "HF org": lambda: "api_org_" + rnd(a, 34),
        "Azure AccountKey=": lambda: "AccountKey=" + rnd(a + "+/", 86) + "==",
    }
    print("\n| provider shape, no context | redactor | detect-secrets |\n|---|---|---|")
    for kind, make in shapes.items():
        vals_k = [make() for _ in range(50)]
        lines = [f"using {v} now" for v in vals_k]
        ds = detect_secrets_lines(".txt", lines)
        ours = sum(v not in r.redact(ln) for v, ln in zip(vals_k, lines))
        theirs = sum(any(v in f or (len(f) > 12 and f in v) for f in ds.get(k + 1, [])) for k, v in enumerate(vals_k))
        print(f"| {kind} | {ours / 50:.0%} | {theirs / 50:.0%} |")

    # ordinary text
    from bench_redaction_entropy import corpus

    lines = [ln for t in corpus() for ln in t.splitlines() if ln.strip()]
    rng.shuffle(lines)
    lines = lines[:20000]
    t0 = time.perf_counter()
    changed = [ln for ln in lines if r.redact(ln) != ln]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = detect_secrets_lines(".txt", lines)
    t_ds = time.perf_counter() - t0
    size = sum(len(ln) + 1 for ln in lines) / 1e6
    print(f"\nordinary text: {len(lines)} lines ({size:.1f} MB) of this repository, venv paths and pip freeze")
    print(f"redactor changes {len(changed)} lines ({t_ours:.2f} s); detect-secrets reports on {len(ds)} lines ({t_ds:.2f} s)")
    for ln in changed[:12]:
        print("  ours:", ln[:140], "->", r.redact(ln)[:140])
    for k in list(ds)[:8]:
        print("  detect-secrets:", lines[k - 1][:140], ds[k])


if __name__ == "__main__":
    main()
