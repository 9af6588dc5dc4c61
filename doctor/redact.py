"""Redaction: what a bug-report bundle must never carry, removed at one choke point (the archive
writer), for every member, JSON included, and for the issue body.

The rules, in the order they apply (each replacement is a placeholder no rule matches again, so
redacting twice changes nothing):

1. Known secret values: the values of credential-named environment variables seen on this
   machine or in the target process (names per doctor.probes.env.is_secret_name), 8+ characters,
   wherever they appear -> <redacted:env-secret>.
2. Tokens by shape: private-key blocks, Anthropic/OpenAI/Hugging Face/GitHub/GitLab/Slack/npm/PyPI
   tokens, AWS access key ids, JWTs, and the provider shapes of detect-secrets' plugins
   (Stripe, SendGrid, Twilio, Mailchimp, Square, Telegram, Discord), Google API keys.
3. Secrets by context: URL credentials (scheme://user:pass@, scheme://:pass@, a lone
   scheme://TOKEN@ user but not git@), Authorization/Bearer headers, presigned query parameters,
   AWS secret keys, W&B keys, netrc passwords; and any value whose name says credential
   (credential_strength: one predicate for variables, keys, keywords, flags, environment names and
   py-spy locals) in `name = v`, `name: v`, `"name": v`, `os.environ["NAME"] = v`,
   `setdefault("NAME", v)`, `login(v)`, `login(key=v)`, `export NAME=v`, `--name v`, `--name=v`.
4. The home directory -> "~" wherever it appears as a path (always, whatever the user name).
5. Any home-shaped path (/home/NAME, /Users/NAME, C:\\Users\\NAME, /mnt/c/Users/NAME) ->
   NAME becomes <user>, so other users' and the Windows-side profile names go too.
6. The user and host names: in a shell prompt (user@host) whatever their length; inside path
   components (~/proj-alice, /data/alice_runs) when distinctive, as a whole component when 2
   characters long; as free words (not inside a longer word or dotted name), case-insensitively,
   only when distinctive: 3+ characters and not a common word (root, user, ubuntu, cuda ...; see
   COMMON_NAMES). Replacing "cuda" or "pc" everywhere would destroy /usr/local/cuda-12.1 and
   ordinary text, and a 1-2 character name identifies no one.
7. E-mail addresses (not git@host), nvidia-smi serial numbers.
8. High-entropy tokens anywhere (is_high_entropy; calibration in benchmarks/redaction.md); hex is
   left alone (sha256 sums, commit ids, GPU UUIDs).

Python source (Redactor.redact_file, redact_python) is redacted token by token so it still parses.

What must survive, and is tested: versions (2.2.0+cu121, 2.5.0a0+git1234abc), GPU names, model
names (unsloth/Meta-Llama-3.1-8B-bnb-4bit), CUDA paths, commit hashes, sha256 sums.
"""
from __future__ import annotations

import math
import re
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

USER = "<user>"
HOST = "<host>"
HOME = "~"


def placeholder(kind: str) -> str:
    return f"<redacted:{kind}>"


# Names that are too common to replace as free tokens (rule 6): default accounts, hostnames of
# images and VMs, and words of the training stack a user or machine might be named after.
COMMON_NAMES = frozenset("""
root user users admin administrator guest nobody default public shared home host hostname
localhost redacted ubuntu debian fedora centos arch alpine linux windows wsl docker container
ec2-user jovyan colab kaggle runner vscode codespace codespaces dev developer test tester demo
server desktop laptop workstation machine node worker master main gpu gpus cpu vm box
cuda nvidia python torch pytorch train training model models data work workspace app ml ai
llama mistral gemma qwen phi unsloth peft trl transformers accelerate datasets triton xformers
""".split())
MIN_NAME_LEN = 3
MIN_KNOWN_SECRET_LEN = 8

# A character that may precede a token at its start: not part of a word, or a JSON/py-spy escape
# (\n, \t, \r) that leaves a letter right before the token in serialised text.
_LB = r"(?:(?<=\\[nrt])|(?<![A-Za-z0-9]))"
_RB = r"(?![A-Za-z0-9])"
_BARE = r"[^\s\"'\\,;&<>()\[\]{}]+"          # an unquoted value; never eats quotes or escapes
_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'"
_CODE = r"[A-Za-z_][\w.]*[\(\[]"       # getenv(...), os.environ[...]: code, kept as is

# (kind, pattern, flags): shapes that are secrets wherever they appear (rule 2).
_TOKEN_SHAPES: list[tuple[str, str, int]] = [
    ("private-key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*\Z)",
     re.S),
    ("anthropic-key", _LB + r"sk-ant-[A-Za-z0-9_\-]{20,}", 0),
    ("openai-key", _LB + r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}", 0),
    ("hf-token", r"hf_[A-Za-z0-9]{30,}", 0),
    ("github-token", _LB + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})", 0),
    ("slack-token", _LB + r"xox[baprs]-[A-Za-z0-9\-]{10,}", 0),
    ("aws-access-key-id", _LB + r"(?:AKIA|ASIA)[0-9A-Z]{16}" + _RB, 0),
    ("jwt", _LB + r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", 0),
    # Provider shapes taken from detect-secrets 1.5's plugins (github.com/Yelp/detect-secrets,
    # detect_secrets/plugins/<name>.py), where the entropy rule cannot help: hex bodies (Twilio,
    # Mailchimp) or bodies made of words. benchmarks/redaction.md compares the two detectors.
    ("twilio-key", _LB + r"(?:AC|SK)[a-z0-9]{32}" + _RB, 0),                  # twilio.py
    ("mailchimp-key", _LB + r"[0-9a-z]{32}-us[0-9]{1,2}" + _RB, 0),           # mailchimp.py
    ("square-oauth", _LB + r"sq0csp-[0-9A-Za-z\-_]{43}", 0),                  # square_oauth.py
    ("stripe-key", _LB + r"[rs]k_live_[0-9a-zA-Z]{24,}", 0),                   # stripe.py
    ("sendgrid-key", _LB + r"SG\.[a-zA-Z0-9_\-]{22}\.[a-zA-Z0-9_\-]{43}", 0),    # sendgrid.py
    ("pypi-token", _LB + r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9\-_]{70,}", 0),       # pypi_token.py
    ("gitlab-token", _LB + r"gl(?:pat|dt|ptt|rt|cbt|soat|ffct|agent|oas)-[0-9A-Za-z_\-]{20,}", 0),  # gitlab_token.py
    ("npm-token", _LB + r"npm_[A-Za-z0-9]{36}" + _RB, 0),                      # npm.py (.npmrc authToken)
    ("telegram-token", _LB + r"[0-9]{8,10}:[0-9A-Za-z_\-]{35}" + _RB, 0),      # telegram_token.py
    ("discord-token", _LB + r"[MNO][a-zA-Z0-9_\-]{23,25}\.[a-zA-Z0-9_\-]{6}\.[a-zA-Z0-9_\-]{27}", 0),  # discord.py
    # Google API keys and Hugging Face organisation tokens: documented prefixes
    # (cloud.google.com/docs/authentication/api-keys, huggingface.co/docs/hub/security-tokens)
    ("google-api-key", _LB + r"AIza[0-9A-Za-z_\-]{35}" + _RB, 0),
    ("hf-token", _LB + r"api_org_[A-Za-z0-9]{30,}", 0),
]

# Literals (lower case) without which a rule cannot match: the rule is skipped on text lacking all.
_NEEDLES: dict[str, tuple[str, ...]] = {
    "private-key": ("private key",), "anthropic-key": ("sk-ant-",), "openai-key": ("sk-",), "hf-token": ("hf_", "api_org_"),
    "github-token": ("gh", "github_pat_"), "slack-token": ("xox",), "aws-access-key-id": ("akia", "asia"),
    "jwt": ("eyj",), "twilio-key": ("ac", "sk"), "mailchimp-key": ("-us",), "square-oauth": ("sq0csp-",),
    "stripe-key": ("k_live_",), "sendgrid-key": ("sg.",), "pypi-token": ("pypi-",), "gitlab-token": ("gl",),
    "npm-token": ("npm_",), "telegram-token": (":",), "discord-token": (".",), "google-api-key": ("aiza",),
    "url-credentials": ("://",), "authorization": ("authorization",), "bearer": ("bearer",),
    "presigned-url": ("=",), "aws-secret-key": ("aws_secret_access_key",), "wandb-key": ("wandb",),
    "netrc-password": ("password",), "secret-flag": ("-",), "email": ("@",), "serial-number": ("serial",),
    "secret-value": ("token", "secret", "pass", "pw", "auth", "key", "cookie", "credential", "pat", "login"),
}


# Credential names (rule 3): ONE predicate for code names, config keys, JSON keys, argv flags,
# environment names and py-spy locals. A name is split into words (snake, kebab, dotted and
# camelCase: HF_TOKEN, hfToken, wandb-api-key, cfg.db.pass); it says credential when its last
# word is one of CREDENTIAL_WORDS, or any word is one of ALWAYS_CREDENTIAL (AWS_SECRET_ACCESS_KEY,
# password_file ...). "key" alone is weaker: api_key, access_key, secret_key, wandb_key ... are
# credentials, but a bare `key` or sort_key / text_key names a column or a sort order, so under a
# weak name a value that is a plain word or a dotted identifier (text, length, model.layers.0) stays.
CREDENTIAL_WORDS = frozenset("token secret password passwd pwd pw pass passphrase credential credentials "
                             "cookie auth apikey pat".split())
ALWAYS_CREDENTIAL = frozenset("secret secrets password passwd passphrase credential credentials apikey".split())
# A key after one of these is a credential whatever its value (hf_key, db_key: the qualifier names
# a service or a kind of key, not a column).
KEY_QUALIFIERS = frozenset("api access secret private account client auth signing encryption license "
                           "master session service storage sas ssh gpg pgp wandb openai anthropic hf hub "
                           "github gh gitlab aws azure gcp s3 db database redis mongo postgres mysql "
                           "slack discord telegram stripe comet neptune mlflow".split())
_NAME_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_WEAK_PLAIN = re.compile(r"\A(?:[A-Za-z_ \-]{1,40}|[A-Za-z_]\w*(?:\.\w+)+)\Z")
# Tokenizer special tokens are vocabulary, not credentials: `pad_token = tokenizer.eos_token`.
_SPECIAL_TOKEN_KEY = re.compile(
    r"(?:^|[_\-.])(?:pad|eos|bos|unk|sep|cls|mask|image|audio|video|start|end|im_start|im_end|"
    r"think|special|additional_special|chat|boi|eoi|boa|eoa|fim_\w+)[_\-]token\Z", re.I)
STRONG, WEAK = 2, 1


def credential_strength(name: str) -> int:
    """STRONG (every literal value is a secret), WEAK (only values that are not plain words), or 0."""
    name = name.strip().lstrip("-$").strip("'\"")
    if not name or len(name) > 120 or _SPECIAL_TOKEN_KEY.search(name):
        return 0
    words = [w.lower() for w in _NAME_WORDS.findall(name)]
    if not words:
        return 0
    last = words[-1]
    if last in CREDENTIAL_WORDS or ALWAYS_CREDENTIAL.intersection(words):
        return STRONG
    if last in ("key", "keys"):
        return STRONG if len(words) > 1 and words[-2] in KEY_QUALIFIERS else WEAK
    return 0


def is_secret_key(key: str) -> bool:
    """Whether a name (variable, key, flag, local, environment variable) says credential."""
    return credential_strength(key) > 0


def is_secret_value(strength: int, value: str) -> bool:
    """Whether a literal under a name of that strength is to be replaced."""
    v = value.strip()
    if not strength or _NOT_SECRET_LITERAL.match(v):
        return False
    return strength == STRONG or not _WEAK_PLAIN.match(v)


# Values that are not secrets: literals, shell variables, and (unquoted only) code that fetches
# one: os.environ[...], getenv(...), args.token.
# Also the placeholders of docs and notebooks: "hf_...", "YOUR_HF_TOKEN", "<your token>", "xxxx".
_NOT_SECRET_LITERAL = re.compile(
    r"\A(?:|none|null|nil|true|false|yes|no|\*+|x{3,}|\.{3}|<[^<>]*>|\$\{?\w+\}?|"
    r"[A-Za-z_]{0,4}\.\.\.|your[_\- ][\w\- ]*(?:token|key|password|secret)[\w\- ]*)\Z", re.I)
_CODE_VALUE = re.compile(
    r"\A(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*[\(\[].*|(?:os|sys|args|self|config|cfg|settings|env)\.\S*)\Z",
    re.S)

_CONTEXT_RULES: list[tuple[str, str, int]] = [
    ("url-credentials", r"(?<=://)[^/\s:@<>\"'\\]*:[^/\s@<>\"'\\]+(?=@)", 0),
    # a user with no password is a token when it is one (https://TOKEN@github.com); plain git@ is not
    ("url-credentials", r"(?<=://)(?!(?:git|hg|anonymous|ftp)@)(?!<)[^/\s:@<>\"'\\]+(?=@[A-Za-z0-9])", 0),
    ("authorization", r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|bot)\s+)?)"
                      r"(?!(?:bearer|basic|token|bot)\b)(?!<)" + _BARE, 0),
    ("bearer", r"(?i)(\bbearer\s+)(?!<)[A-Za-z0-9._~+/=\-]{8,}", 0),
    ("presigned-url", r"(?i)([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
                      r"x-goog-credential|sig|signature|token|access_token|auth|key)=)(?!<)[^&\s\"'\\<>#]+", 0),
    ("aws-secret-key", r"(?i)(aws_secret_access_key[\"']?\s*[:=]\s*[\"']?)(?!<)[A-Za-z0-9/+=]{20,}", 0),
    ("wandb-key", r"(?i)((?:wandb[_\-]?api[_\-]?key[\"']?\s*[:=]?\s*[\"']?|wandb\s+login\s+(?:--?\S+\s+)*)"
                  r"|machine\s+\S*wandb\S*\s+login\s+\S+\s+password\s+)[0-9a-f]{40}(?![0-9a-f])", 0),
    ("netrc-password", r"(?im)((?:^[ \t]*|\bmachine\s+\S+\s+login\s+\S+\s+)password[ \t]+)(?![=:<])\S+", 0),
]

# `NAME = value`, `NAME: value`, `"NAME": value`, `os.environ["NAME"] = value`,
# `setdefault("NAME", "value")`, `export NAME=value`: any name, judged by credential_strength in
# the callback (the lookahead only skips names with no credential word in them, for speed).
_CRED_HINT = r"(?=[A-Za-z0-9_.\-]{0,80}?(?i:token|secret|pass|pw|pwd|auth|key|cookie|credential|pat))"
_KEY_VALUE = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<q>[\"']?)" + _CRED_HINT + r"(?P<key>[A-Za-z_][A-Za-z0-9_.\-]{0,80}?)(?P=q)"
    r"(?P<sep>\]?[ \t]*[:=][ \t]*|[ \t]*,[ \t]*(?=[\"']))"
    r"(?P<value>" + _QUOTED + r"|" + _CODE + r"|" + _BARE + r")")
# wandb.login(key="..."), huggingface_hub.login("..."): the call says credential, whatever the name.
_LOGIN_ARG = re.compile(r"(?P<key>\blogin[ \t]*\([ \t]*(?:(?:key|token)[ \t]*=[ \t]*)?)(?P<sep>)"
                        r"(?P<value>" + _QUOTED + r")")
_FLAG_VALUE = re.compile(
    r"(?<![A-Za-z0-9\-])(?P<key>--?" + _CRED_HINT + r"[A-Za-z][A-Za-z0-9_\-]{0,80}?)(?P<sep>=|[ \t]+)(?![-\s])"
    r"(?P<value>" + _QUOTED + r"|" + _CODE + r"|" + _BARE + r")")
# ["--token", "abc"]: an argv list as Python or JSON text
_QUOTED_FLAG = re.compile(r"(?P<q>[\"'])(?P<key>--?" + _CRED_HINT + r"[A-Za-z][A-Za-z0-9_\-]{0,80}?)(?P=q)"
                          r"(?P<sep>[ \t]*,[ \t]*)(?P<value>" + _QUOTED + r")")
# A YAML block scalar under a credential name (`password: |` and its more-indented lines).
_YAML_BLOCK = re.compile(r"(?m)^(?P<indent>[ \t]*)(?P<key>[\"']?[A-Za-z_][\w.\-]{0,80}[\"']?)[ \t]*:[ \t]*"
                         r"[|>][+\-]?[0-9]?[ \t]*(?:#.*)?\n(?P<body>(?:(?P=indent)[ \t]+\S.*(?:\n|\Z)|[ \t]*\n)+)")
_YAML_INDICATOR = re.compile(r"\A[|>][+\-]?[0-9]?\Z")
_SETTER_CALL = re.compile(r"(?:setdefault|putenv|setenv|__setitem__)[ \t]*\([ \t]*\Z")
_FLAG = re.compile(r"--?[A-Za-z][A-Za-z0-9_\-]*\Z")      # an argv element: the next one is its value

_HOME_SHAPED = re.compile(
    r"(?P<prefix>/home/|(?i:/mnt/[a-z]/users/)|(?i:[a-z]:(?:\\\\|\\|/)users(?:\\\\|\\|/))|/Users/)"
    r"(?!<)(?P<name>[^/\\\s\"'<>:*?|,;()\[\]{}]+)")
_NOT_A_PERSON = {"public", "default", "default user", "all users", "shared", "linuxbrew", "all"}
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+\-])(?!git@)[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+"
                    r"(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9\-])")
_SERIAL = re.compile(r"(?im)^(\s*Serial Number\s*:\s*)(?!N/A\s*$)(?!<)(\S.*?)\s*$")


def is_distinctive(name: Optional[str]) -> bool:
    """Whether a user or host name may be replaced as a free token (rule 6)."""
    return bool(name) and len(name) >= MIN_NAME_LEN and name.lower() not in COMMON_NAMES


def looks_like_secret(value: str) -> bool:
    """A lone high-entropy token (24+ characters of letters and digits mixed, no path, no spaces):
    used for the values of allowlisted environment variables only, never on free text, where it
    would eat commit hashes and checksums."""
    v = value.strip()
    if len(v) < 24 or not re.fullmatch(r"[A-Za-z0-9+/=_\-.]+", v) or "/" in v:
        return False
    classes = sum(bool(re.search(p, v)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    return classes >= 3


@dataclass
class Redactor:
    """Removes secrets and identity from text. Build one per bundle; `counts` totals what it did.

    enabled=False (--no-redact) makes every method the identity.
    """
    usernames: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    homes: tuple[str, ...] = ()
    known_secrets: tuple[str, ...] = ()
    enabled: bool = True
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self.usernames = tuple(dict.fromkeys(u for u in self.usernames if u))
        self.hostnames = tuple(dict.fromkeys(h for h in self.hostnames if h))
        # Longest home first, so /home/alice/work (a HOME set to a subfolder) wins over /home/alice.
        self.homes = tuple(sorted({h.rstrip("/\\") for h in self.homes if h and len(h.rstrip("/\\")) >= 2},
                                  key=len, reverse=True))
        self.known_secrets = tuple(sorted({s for s in self.known_secrets
                                           if s and len(s) >= MIN_KNOWN_SECRET_LEN}, key=len, reverse=True))
        self._rules = self._compile()
        names = {"username": self.usernames, "hostname": [h.split(".")[0] for h in self.hostnames],
                 "identity": ("@",)}
        self._needles = [tuple(n.lower() for n in names[k]) if k in names else _NEEDLES.get(k)
                         for k, _, _ in self._rules]

    # -- building -----------------------------------------------------------------------------
    def _compile(self) -> list[tuple[str, re.Pattern, Any]]:
        rules: list[tuple[str, re.Pattern, Any]] = []
        if self.known_secrets:
            rules.append(("env-secret", re.compile("|".join(map(re.escape, self.known_secrets))), None))
        for kind, pattern, flags in _TOKEN_SHAPES:
            rules.append((kind, re.compile(pattern, flags), None))
        for kind, pattern, flags in _CONTEXT_RULES:
            rx = re.compile(pattern, flags)
            rules.append((kind, rx, _keep_group1 if rx.groups else None))
        rules.append(("secret-value", _YAML_BLOCK, _yaml_block))
        rules.append(("secret-value", _KEY_VALUE, _key_value))
        rules.append(("secret-value", _LOGIN_ARG, _key_value))
        rules.append(("secret-flag", _FLAG_VALUE, _key_value))
        rules.append(("secret-flag", _QUOTED_FLAG, _key_value))
        for home in self.homes:
            # A home path ends at a separator or at a character no path name continues with.
            rules.append(("home", re.compile(re.escape(home) + r"(?![A-Za-z0-9_.\-])"), lambda m: HOME))
            if "\\" in home:   # the same path as it appears inside JSON text
                esc = home.replace("\\", "\\\\")
                rules.append(("home", re.compile(re.escape(esc) + r"(?![A-Za-z0-9_.\-])"), lambda m: HOME))
        rules.append(("home-path", _HOME_SHAPED, _home_shaped))
        ids = [(u, USER) for u in self.usernames] + [(h, HOST) for h in self.hostnames] + \
              [(h.split(".")[0], HOST) for h in self.hostnames if "." in h]
        if self.usernames and self.hostnames:   # a shell prompt: user@host, whatever their length
            rules.append(("identity", re.compile(
                r"(?<![A-Za-z0-9_.\-])(?:" + "|".join(map(re.escape, self.usernames)) + r")@(?:" +
                "|".join(map(re.escape, self.hostnames)) + r")(?![A-Za-z0-9_\-])", re.I), lambda m: f"{USER}@{HOST}"))
        in_paths = _path_names(ids)
        if in_paths:
            rules.append(("identity-in-path", _PATH_COMPONENT, lambda m: _in_component(m.group(0), in_paths)))
        users = [u for u in self.usernames if is_distinctive(u)]
        if users:
            rules.append(("username", _token_rx(users, domain=False), lambda m: USER))
        hosts = {h for h in self.hostnames if is_distinctive(h)}
        hosts |= {h.split(".")[0] for h in self.hostnames if "." in h and is_distinctive(h.split(".")[0])}
        if hosts:
            rules.append(("hostname", _token_rx(sorted(hosts), domain=True), lambda m: HOST))
        rules.append(("email", _EMAIL, None))
        rules.append(("high-entropy", _ENTROPY_CANDIDATE, _mask_high_entropy))
        rules.append(("serial-number", _SERIAL, _keep_group1))
        return rules

    # -- applying -----------------------------------------------------------------------------
    def redact_counted(self, text: str, add: bool = True) -> tuple[str, Counter]:
        """(redacted text, counts by kind for this text); also added to self.counts."""
        counts: Counter = Counter()
        if not self.enabled or not text:
            return text, counts
        # Rules are written to be idempotent in one pass; the second pass is a guard for the
        # rare overlap where one replacement exposes another match.
        for _ in range(3):
            before = text
            low = text.lower()
            for (kind, rx, repl), needles in zip(self._rules, self._needles):
                # most rules need a literal that most text lacks: `in` is far cheaper than a scan
                if needles is None or any(n in low for n in needles):
                    text = _sub(rx, kind, repl, text, counts)
            if text == before:
                break
        if add:
            self.counts.update(counts)
        return text, counts

    def redact(self, text: str) -> str:
        return self.redact_counted(text)[0]

    def _scan(self, text: str) -> tuple[str, Counter]:
        """redact_counted without adding to self.counts (the caller adds what it keeps)."""
        return self.redact_counted(text, add=False)

    def redact_file(self, name: str, text: str) -> tuple[str, Counter]:
        """A file's text, by its kind: Python source token by token (so it still parses, see
        redact_python), anything else as text (YAML and JSON keep their shape: a quoted value
        stays quoted, a bare one becomes a bare placeholder)."""
        lower = str(name).lower()
        if self.enabled and lower.endswith((".py", ".pyw")):
            done = redact_python(self, text)
            if done is not None:
                return done
        if self.enabled and lower.endswith((".py.diff", ".pyw.diff")):
            return self._redact_python_diff(text)
        return self.redact_counted(text)

    def _redact_python_diff(self, text: str) -> tuple[str, Counter]:
        """A unified diff of a script: each code line redacted as Python on its own (a line that
        does not tokenize alone, as text), so its context lines still match the user's file."""
        out, counts = [], Counter()
        for line in text.splitlines(keepends=True):
            body = line[1:]
            done = redact_python(self, body) if line[:1] in (" ", "+", "-") and not line.startswith(("+++", "---")) \
                else None
            red, c = done if done is not None else self.redact_counted(body)
            out.append(line[:1] + red)
            counts.update(c)
        return "".join(out), counts

    def redact_obj(self, obj: Any, counts: Optional[Counter] = None) -> Any:
        """A JSON-able object with every string (keys too) redacted, and the value of every key
        that names a credential replaced whole. Works on decoded strings, so JSON escaping can
        neither hide a secret nor be broken by a replacement."""
        counts = Counter() if counts is None else counts
        if not self.enabled:
            return obj
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                key = self._str(str(k), counts)
                if isinstance(v, str) and is_secret_value(credential_strength(str(k)), v):
                    self._count(counts, "secret-value")
                    out[key] = placeholder("secret-value")
                else:
                    out[key] = self.redact_obj(v, counts)
            return out
        if isinstance(obj, (list, tuple)):
            out_list = []
            for k, v in enumerate(obj):
                prev = obj[k - 1] if k else None
                # argv as a list: ["--password", "x"] has the context in the element before
                if (isinstance(v, str) and isinstance(prev, str) and _FLAG.match(prev) and not v.startswith("-")
                        and is_secret_value(credential_strength(prev), v)):
                    self._count(counts, "secret-flag")
                    out_list.append(placeholder("secret-flag"))
                else:
                    out_list.append(self.redact_obj(v, counts))
            return out_list
        if isinstance(obj, str):
            return self._str(obj, counts)
        return obj

    def _count(self, counts: Counter, kind: str, n: int = 1) -> None:
        counts[kind] += n
        self.counts[kind] += n

    def _str(self, s: str, counts: Counter) -> str:
        red, c = self.redact_counted(s)
        counts.update(c)
        return red

    def redact_env(self, env: Mapping[str, str], counts: Optional[Counter] = None) -> dict[str, str]:
        """Allowlist first (doctor.probes.env), then each kept value redacted; a value that looks
        like a secret is replaced whole even under an allowed name."""
        from doctor.probes.env import SECRET_PLACEHOLDER, select_env

        counts = Counter() if counts is None else counts
        if not self.enabled:
            return dict(env)
        kept = select_env(env)
        dropped = len(env) - len(kept)
        if dropped:
            self._count(counts, "env-dropped", dropped)
        out = {}
        for name, value in kept.items():
            if value != SECRET_PLACEHOLDER and looks_like_secret(value):
                self._count(counts, "env-secret")
                out[name] = placeholder("env-secret")
            else:
                out[name] = self._str(value, counts)
        return out


def portable_name(member: str) -> str:
    """A redacted archive member name that every OS can extract: Windows refuses < > : in file
    names, so config/train-<user>.py becomes config/train-_user_.py."""
    return re.sub(r"<(\w+)(?::[\w\-]+)?>", r"_\1_", member).replace("<", "_").replace(">", "_").replace(":", "_")


def _token_rx(names: Iterable[str], domain: bool) -> re.Pattern:
    """A whole-token match: not inside a longer word, dotted name or path component name."""
    alt = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    tail = r"(?:\.[A-Za-z0-9\-]+)*" if domain else ""      # alice-pc.corp.example.com
    return re.compile(r"(?:(?<=\\[nrt])|(?<![A-Za-z0-9_\-.]))(?:" + alt + ")" + tail +
                      r"(?![A-Za-z0-9_\-])(?!\.[A-Za-z0-9])", re.I)


def _sub(rx: re.Pattern, kind: str, repl: Optional[Callable], text: str, counts: Counter) -> str:
    n = 0

    def one(m: re.Match) -> str:
        nonlocal n
        out = repl(m) if repl is not None else placeholder(kind)
        if out == m.group(0):
            return out
        n += 1
        return out.replace("\0", kind)

    text = rx.sub(one, text)
    if n:
        counts[kind] += n
    return text


def _keep_group1(m: re.Match) -> str:
    return m.group(1) + placeholder("\0")


def _key_value(m: re.Match) -> str:
    key, value = m.group("key"), m.group("value")
    if m.re is _LOGIN_ARG:
        strength = STRONG
    else:
        q = m.groupdict().get("q") or ""
        if not q and ("]" in m.group("sep") or "," in m.group("sep")):
            return m.group(0)       # x[i] = ..., f(a, "b"): only a quoted name has that context
        if "," in m.group("sep") and not key.startswith("-") and \
                not _SETTER_CALL.search(m.string, max(0, m.start() - 40), m.start()):
            return m.group(0)       # ("TOKEN", "KEY"): a list of names, not setdefault("TOKEN", "...")
        strength = credential_strength(key)
    quoted = value[:1] in "\"'" and len(value) >= 2
    inner = value[1:-1] if quoted else value
    if not is_secret_value(strength, inner) or (not quoted and _CODE_VALUE.match(inner)) or \
            (key.startswith("-") and inner.startswith("-")) or \
            (not quoted and _YAML_INDICATOR.match(inner)):    # `password: |`: _YAML_BLOCK takes the lines
        return m.group(0)
    quote = value[0] if quoted else ""
    return m.group(0)[: m.start("value") - m.start(0)] + f"{quote}{placeholder(chr(0))}{quote}"


# -- identity inside path components ---------------------------------------------------------
# A component of a path (after / or \\): ~/proj-alice, /data/alice_runs, C:\\work\\alice-pc.
_PATH_COMPONENT = re.compile(r"(?<=[/\\])[^/\\\s\"'<>:|*?,;()\[\]{}=@]+")


def _path_names(ids: list[tuple[str, str]]) -> list[tuple[re.Pattern, str]]:
    """(pattern, placeholder) per user/host name for path components. A distinctive name (3+
    characters, not common) goes wherever it is delimited by a non-alphanumeric character inside a
    component; a 2-character name only as a whole component (/data/al/x); a 1-character or common
    name never (a user "c" would eat /mnt/c, "cuda" /usr/local/cuda)."""
    out = []
    for name, ph in dict.fromkeys(ids):
        if not name:
            continue
        if is_distinctive(name):
            out.append((re.compile(r"(?<![A-Za-z0-9])" + re.escape(name) + r"(?![A-Za-z0-9])", re.I), ph))
        elif len(name) == 2 and name.lower() not in COMMON_NAMES:
            out.append((re.compile(r"\A" + re.escape(name) + r"\Z", re.I), ph))
    return out


def _in_component(comp: str, names: list[tuple[re.Pattern, str]]) -> str:
    if comp.startswith("<"):
        return comp
    for rx, ph in names:
        comp = rx.sub(ph, comp)
    return comp


# -- high entropy ------------------------------------------------------------------------------
# A run of base64/token characters. Pure hexadecimal is never masked by entropy: sha256 sums in
# the manifest, commit ids, dataset fingerprints and object addresses are hex, and hex secrets
# (W&B keys) are caught by their context instead. Thresholds: see benchmarks/redaction.md.
_ENTROPY_CANDIDATE = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/=_\-]{%d,}(?![A-Za-z0-9+/=_\-])" % 20)
ENTROPY_MIN_LEN = 20
# Calibrated on 5,000 random tokens against the 44k distinct 20+-character tokens of this
# repository, the venv's file paths and pip freeze (benchmarks/redaction.md): 0.80 of the maximal
# entropy and word pieces of 2.5 characters on average mask 95% of random tokens (the rest lack a
# digit or a case: shapes and context catch those) and none of the ordinary ones.
ENTROPY_BITS = 0.80
MAX_PIECE_LEN = 2.5
# hex, with dashes, after an optional short word: sha256 sums, commit ids, GPU-<uuid>, MIG-<uuid>
_HEX_ONLY = re.compile(r"\A(?:[A-Za-z]{1,8}[\-_:])?[0-9a-fA-F\-]+\Z")
# word pieces: Auto|Model|For|Vision|2|Seq; a random token breaks into pieces of 1-2 characters
_PIECES = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def shannon_bits(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def is_high_entropy(token: str) -> bool:
    """A token that is random rather than made of words: 20+ characters; upper and lower case
    letters and digits all present; not hex; its word pieces short (MAX_PIECE_LEN on average); and
    Shannon entropy at or above ENTROPY_BITS x the most a string of its length can have."""
    t = token.strip("=")
    if len(t) < ENTROPY_MIN_LEN or _HEX_ONLY.match(t):
        return False
    if not (re.search(r"[a-z]", t) and re.search(r"[A-Z]", t) and re.search(r"[0-9]", t)):
        return False
    pieces = _PIECES.findall(t)
    if sum(map(len, pieces)) > MAX_PIECE_LEN * len(pieces):
        return False
    return shannon_bits(t) >= ENTROPY_BITS * math.log2(min(len(t), 64))


def _mask_high_entropy(m: re.Match) -> str:
    return placeholder("high-entropy") if is_high_entropy(m.group(0)) else m.group(0)


def _yaml_block(m: re.Match) -> str:
    if not credential_strength(m.group("key")):
        return m.group(0)
    body = m.group("body")
    first = next(ln for ln in body.splitlines() if ln.strip())
    pad = first[: len(first) - len(first.lstrip())]
    tail = "\n" if body.endswith("\n") else ""
    return m.group(0)[: m.start("body") - m.start(0)] + pad + placeholder("\0") + tail


def _home_shaped(m: re.Match) -> str:
    if m.group("name").lower() in _NOT_A_PERSON:
        return m.group(0)
    return m.group("prefix") + USER


# -- Python source ----------------------------------------------------------------------------
# In a script the rules above would see `token = hf_token,` as a bare secret and break the file.
# So a script is redacted token by token: a string literal whose context says credential is
# replaced whole by a placeholder literal with the same prefix and quotes; every other string's
# content and every comment go through the text rules (a placeholder holds no quote, backslash or
# newline, so a literal stays a literal); names and operators are never touched.
_SETTERS = frozenset({"setdefault", "putenv", "setenv", "set", "get", "__setitem__", "update"})
_STR_PREFIX = re.compile(r"\A([A-Za-z]*)('''|\"\"\"|'|\")")
MAX_PYTHON_CHARS = 2_000_000     # ~2 s per MB here; beyond it (or when it does not tokenize) the text rules apply


def _literal_value(tok: str) -> str:
    """The content of a plain string token (no f-string), else ""."""
    m = _STR_PREFIX.match(tok)
    if not m or "f" in m.group(1).lower():
        return ""
    return tok[m.end():len(tok) - len(m.group(2))]


def _string_context(sig: list, calls: list) -> int:
    """Credential strength of the string token that follows `sig` (the significant tokens before
    it, as (type, text)); calls: the names of the calls it is inside, innermost last."""
    def at(k):
        return sig[-k] if len(sig) >= k else (None, "")

    (_, s1), (t2, s2), (t3, s3), (t4, s4) = at(1), at(2), at(3), at(4)
    if s1 == "=" and t2 == tokenize.NAME and calls and calls[-1] == "login":
        return STRONG                                                # wandb.login(key="...")
    if s1 == "=" and t2 == tokenize.NAME and s3 == ":" and t4 == tokenize.NAME:
        return credential_strength(s4)                               # token: str = "..."
    if s1 in ("=", ":", ":=") and t2 == tokenize.NAME:               # token = "...", f(token="...")
        return credential_strength(s2)
    if s1 == "(" and s2 in ("=", ":") and t3 == tokenize.NAME:       # pw = ("abc" "def")
        return credential_strength(s3)
    if s1 == ":" and t2 == tokenize.STRING:                          # {"api_key": "..."}
        return credential_strength(_literal_value(s2))
    if s1 == "=" and s2 == "]" and t3 == tokenize.STRING:            # os.environ["WANDB_API_KEY"] = "..."
        return credential_strength(_literal_value(s3))
    if s1 == "," and t2 == tokenize.STRING and s3 == "(" and s4 in _SETTERS:
        return credential_strength(_literal_value(s2))               # os.environ.setdefault("HF_TOKEN", "...")
    if s1 == "," and t2 == tokenize.STRING and _FLAG.match(_literal_value(s2)):
        return -credential_strength(_literal_value(s2))              # ["--token", "..."]: argv in a script
    if s1 == "(" and s2 == "login":
        return STRONG                                                # huggingface_hub.login("...")
    return 0


def redact_python(r: "Redactor", text: str) -> Optional[tuple[str, Counter]]:
    """Python source redacted so that it still parses whenever it did (see above); None when it
    cannot be tokenized (the caller falls back to the text rules)."""
    import io

    if len(text) > MAX_PYTHON_CHARS:
        return None
    toks = []
    unfinished = False
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.ERRORTOKEN and tok.string.strip():
                return None       # an unterminated quote: what follows would be read as names
            toks.append(tok)
    except tokenize.TokenError:
        unfinished = True   # EOF inside brackets or a string (a fragment: a diff line)
    except (SyntaxError, ValueError):
        return None
    starts = [0]
    for line in io.StringIO(text):       # the tokenizer's idea of lines (\n, \r\n, \r)
        starts.append(starts[-1] + len(line))

    def offset(pos):
        return starts[pos[0] - 1] + pos[1] if pos[0] - 1 < len(starts) else len(text)

    counts: Counter = Counter()
    edits: list[tuple[int, int, str]] = []
    sig: list = []
    calls: list[str] = []
    replaced_prev = False
    for tok in toks:
        typ, val = tok.type, tok.string
        if typ == tokenize.COMMENT:
            red, c = r.redact_counted(val)
            if red != val:
                edits.append((offset(tok.start), offset(tok.end), red))
                counts.update(c)
            continue
        if typ in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            if typ == tokenize.NEWLINE:
                sig.clear()
                calls.clear()
            continue
        if typ == tokenize.STRING:
            # "abc" "def" after a credential name: the continuation is part of the secret
            strength = STRONG if replaced_prev and sig and sig[-1][0] == tokenize.STRING else \
                _string_context(sig, calls)
            if strength < 0:     # after a flag: unless it is the next flag
                strength = 0 if _literal_value(val).startswith("-") else -strength
            m = _STR_PREFIX.match(val)
            new = val
            if m:
                inner = val[m.end():len(val) - len(m.group(2))]
                if strength and ("f" in m.group(1).lower() or is_secret_value(strength, inner)):
                    new = m.group(1) + m.group(2) + placeholder("secret-value") + m.group(2)
                    counts["secret-value"] += 1
                else:
                    red, c = r._scan(inner)
                    if red != inner:
                        new = val[:m.end()] + red + m.group(2)
                        counts.update(c)
            replaced_prev = new != val and strength > 0
            if new != val:
                edits.append((offset(tok.start), offset(tok.end), new))
        else:
            replaced_prev = False
            if typ in (tokenize.NAME, tokenize.NUMBER) and len(val) >= 16:
                red, c = r._scan(val)      # an unquoted token: hf_... typed without quotes
                if red != val:
                    kind = next(iter(c), "secret")
                    edits.append((offset(tok.start), offset(tok.end), "redacted_" + re.sub(r"\W", "_", kind)))
                    counts.update(c)
        if typ == tokenize.OP and val in ("(", "[", "{"):
            calls.append(sig[-1][1] if val == "(" and sig and sig[-1][0] == tokenize.NAME else "")
        elif typ == tokenize.OP and val in (")", "]", "}") and calls:
            calls.pop()
        sig.append((typ, val))
        del sig[:-6]
    if unfinished:   # the rest (an unterminated string) as text
        tail = offset(toks[-1].end) if toks else 0
        red, c = r._scan(text[tail:])
        if red != text[tail:]:
            edits.append((tail, len(text), red))
            counts.update(c)
    out = text
    for a, b, new in sorted(edits, reverse=True):
        out = out[:a] + new + out[b:]
    if out != text and _parses(text) and not _parses(out):
        return _redact_python_wholesale(r, text, toks, offset)
    r.counts.update(counts)
    return out, counts


def _parses(text: str) -> bool:
    import ast

    try:
        ast.parse(text)
        return True
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False


def _redact_python_wholesale(r: "Redactor", text: str, toks: list, offset) -> tuple[str, Counter]:
    """The safety net: every string literal the rules would change is replaced whole by a plain
    placeholder literal, every comment that would change by a placeholder comment."""
    counts: Counter = Counter()
    edits = []
    for tok in toks:
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            red, c = r._scan(tok.string)
            if red != tok.string:
                counts.update(c)
                new = f'"{placeholder("string")}"' if tok.type == tokenize.STRING else f"# {placeholder('comment')}"
                edits.append((offset(tok.start), offset(tok.end), new))
    out = text
    for a, b, new in sorted(edits, reverse=True):
        out = out[:a] + new + out[b:]
    r.counts.update(counts)
    return out, counts
