"""Redaction: what a bug-report bundle must never carry, removed at one choke point (the archive
writer), for every member, JSON included.

The rules, in the order they apply (each replacement is a placeholder no rule matches again, so
redacting twice changes nothing):

1. Known secret values: the values of credential-named environment variables seen on this
   machine or in the target process (names per doctor.probes.env.is_secret_name), 8+ characters,
   wherever they appear -> <redacted:env-secret>.
2. Tokens by shape: private-key blocks, Anthropic/OpenAI/Hugging Face/GitHub/Slack tokens, AWS
   access key ids, JWTs -> <redacted:KIND>.
3. Secrets by context: URL credentials (scheme://user:pass@), Authorization/Bearer headers,
   presigned query parameters (X-Amz-Signature, sig=, token= ...), AWS secret keys, W&B API keys,
   netrc passwords, `key = value` / `--flag value` where the key names a credential (token,
   password, api_key, secret ...; tokenizer special tokens such as pad_token are not credentials).
4. The home directory -> "~" wherever it appears as a path (always, whatever the user name).
5. Any home-shaped path (/home/NAME, /Users/NAME, C:\\Users\\NAME, /mnt/c/Users/NAME) ->
   NAME becomes <user>, so other users' and the Windows-side profile names go too.
6. The user name -> <user> and the host name -> <host> as whole tokens (not inside a longer word,
   a path component or a dotted name), case-insensitively, but only when distinctive: at least
   3 characters and not a common word (root, user, ubuntu, cuda, ...; see COMMON_NAMES). A short
   or common name is covered by rules 4-5 only: replacing "cuda" everywhere would destroy
   /usr/local/cuda-12.1, and "root" or "a" would mangle ordinary text.
7. E-mail addresses (not git@host) and nvidia-smi serial numbers.

What must survive, and is tested: versions (2.2.0+cu121, 2.5.0a0+git1234abc), GPU names, model
names (unsloth/Meta-Llama-3.1-8B-bnb-4bit), CUDA paths, commit hashes.
"""
from __future__ import annotations

import re
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
]

# Key names that hold credentials (rule 3), as the last part of a dotted/underscored name.
_SECRET_KEY = (r"(?:[A-Za-z0-9]+[_\-.])*(?:api[_\-]?key|apikey|access[_\-]?key|secret[_\-]?key|"
               r"private[_\-]?key|account[_\-]?key|auth[_\-]?token|access[_\-]?token|refresh[_\-]?token|"
               r"token|secret|password|passwd|passphrase|credentials?|cookie|client[_\-]?secret)")
_SECRET_KEY_FULL = re.compile(_SECRET_KEY + r"\Z", re.I)
# Tokenizer special tokens are vocabulary, not credentials: `pad_token = tokenizer.eos_token`.
_SPECIAL_TOKEN_KEY = re.compile(
    r"(?:^|[_\-.])(?:pad|eos|bos|unk|sep|cls|mask|image|audio|video|start|end|im_start|im_end|"
    r"think|special|additional_special|chat|boi|eoi|boa|eoa|fim_\w+)[_\-]token\Z", re.I)
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
    ("url-credentials", r"(?<=://)[^/\s:@<>\"'\\]+:[^/\s@<>\"'\\]+(?=@)", 0),
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

_KEY_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(?P<key>" + _SECRET_KEY + r")(?P<sep>[\"']?[ \t]*[:=][ \t]*)"
    r"(?P<value>" + _QUOTED + r"|" + _CODE + r"|" + _BARE + r")", re.I)
_FLAG_KEY = (r"--?(?:[A-Za-z0-9]+[_\-])*(?:token|password|passwd|secret|api[_\-]?key|access[_\-]?key|"
             r"secret[_\-]?key|auth)")
_FLAG_VALUE = re.compile(
    r"(?<![A-Za-z0-9\-])(?P<key>" + _FLAG_KEY + r")(?P<sep>=|[ \t]+)(?!-)(?P<value>" + _QUOTED + r"|" + _CODE +
    r"|" + _BARE + r")", re.I)
_FLAG_KEY_FULL = re.compile(_FLAG_KEY + r"\Z", re.I)      # an argv element: the next one is its value

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
        rules.append(("secret-value", _KEY_VALUE, _key_value))
        rules.append(("secret-flag", _FLAG_VALUE, _key_value))
        for home in self.homes:
            # A home path ends at a separator or at a character no path name continues with.
            rules.append(("home", re.compile(re.escape(home) + r"(?![A-Za-z0-9_.\-])"), lambda m: HOME))
            if "\\" in home:   # the same path as it appears inside JSON text
                esc = home.replace("\\", "\\\\")
                rules.append(("home", re.compile(re.escape(esc) + r"(?![A-Za-z0-9_.\-])"), lambda m: HOME))
        rules.append(("home-path", _HOME_SHAPED, _home_shaped))
        users = [u for u in self.usernames if is_distinctive(u)]
        if users:
            rules.append(("username", _token_rx(users, domain=False), lambda m: USER))
        hosts = {h for h in self.hostnames if is_distinctive(h)}
        hosts |= {h.split(".")[0] for h in self.hostnames if "." in h and is_distinctive(h.split(".")[0])}
        if hosts:
            rules.append(("hostname", _token_rx(sorted(hosts), domain=True), lambda m: HOST))
        rules.append(("email", _EMAIL, None))
        rules.append(("serial-number", _SERIAL, _keep_group1))
        return rules

    # -- applying -----------------------------------------------------------------------------
    def redact_counted(self, text: str) -> tuple[str, Counter]:
        """(redacted text, counts by kind for this text); also added to self.counts."""
        counts: Counter = Counter()
        if not self.enabled or not text:
            return text, counts
        # Rules are written to be idempotent in one pass; the second pass is a guard for the
        # rare overlap where one replacement exposes another match.
        for _ in range(3):
            before = text
            for kind, rx, repl in self._rules:
                text = _sub(rx, kind, repl, text, counts)
            if text == before:
                break
        self.counts.update(counts)
        return text, counts

    def redact(self, text: str) -> str:
        return self.redact_counted(text)[0]

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
                if isinstance(v, str) and is_secret_key(str(k)) and not _NOT_SECRET_LITERAL.match(v.strip()):
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
                if (isinstance(v, str) and isinstance(prev, str) and _FLAG_KEY_FULL.match(prev)
                        and not _SPECIAL_TOKEN_KEY.search(prev.lstrip("-")) and not v.startswith("-")
                        and not _NOT_SECRET_LITERAL.match(v.strip())):
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


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY_FULL.match(key)) and not _SPECIAL_TOKEN_KEY.search(key)


def _key_value(m: re.Match) -> str:
    key, value = m.group("key"), m.group("value")
    quoted = value[:1] in "\"'" and len(value) >= 2
    inner = value[1:-1] if quoted else value
    if (_SPECIAL_TOKEN_KEY.search(key.lstrip("-")) or _NOT_SECRET_LITERAL.match(inner.strip())
            or (not quoted and _CODE_VALUE.match(inner))):
        return m.group(0)
    quote = value[0] if value[:1] in "\"'" else ""
    return f"{key}{m.group('sep')}{quote}{placeholder(chr(0))}{quote}"


def _home_shaped(m: re.Match) -> str:
    if m.group("name").lower() in _NOT_A_PERSON:
        return m.group(0)
    return m.group("prefix") + USER
