"""The issue body: Unsloth's bug-template questions answered from the bundle, in Markdown that
pastes cleanly into GitHub, within GitHub's limits.

The template (unsloth-failure-modes.md §3.1/§3.3): did you update, Colab/Kaggle/local, number of
GPUs + nvidia-smi, which notebook/script, Unsloth/TRL/transformers/PyTorch versions, which trainer,
minimal code with the token removed, the complete traceback; then the doctor's top findings.

Limits: GitHub rejects an issue body over 65,536 characters, and browsers/GitHub reject a
new-issue URL much over 8,000. When the body is too long, the least useful parts shrink first
(pip freeze, then nvidia-smi -q, kernel lines, stacks, findings, config, traceback), each level of
each part bounded, and the body says what was cut. The URL falls back to a short body that points
at the bundle file.
"""
from __future__ import annotations

import copy
import re
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from doctor import __version__
from doctor.redact import Redactor
from doctor.facts import Facts
from doctor.text import details, fenced
from doctor.findings import Finding
from doctor.units import gib

ISSUE_BODY_LIMIT = 65536     # GitHub's maximum issue body, in characters
NEW_ISSUE_URL_LIMIT = 8000   # longer pre-filled URLs are rejected by GitHub or browsers

# The packages maintainers read first (§3.2), with the names the template uses.
TEMPLATE_VERSIONS = (("Unsloth", "unsloth"), ("unsloth_zoo", "unsloth-zoo"), ("TRL", "trl"),
                     ("transformers", "transformers"), ("PyTorch", "torch"), ("PEFT", "peft"),
                     ("accelerate", "accelerate"), ("bitsandbytes", "bitsandbytes"),
                     ("xformers", "xformers"), ("triton", "triton"), ("flash-attn", "flash-attn"),
                     ("datasets", "datasets"))
_KEY_DISTS = {re.sub(r"[-_.]+", "-", d) for _, d in TEMPLATE_VERSIONS} | {"triton-windows", "torchvision", "torchao"}

_PLACEHOLDER = re.compile(r"<((?:user|host|home|set)|redacted:[A-Za-z0-9\-]+)>")
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


@dataclass
class IssueInputs:
    facts: Facts
    findings: list[Finding]
    bundle_name: str
    config_name: Optional[str] = None
    config_text: Optional[str] = None
    patch_diff: Optional[str] = None
    traceback: Optional[str] = None
    traceback_source: Optional[str] = None
    attach_summary: Optional[str] = None     # one paragraph: cause, situation
    stacks: Optional[str] = None             # text rendering of the py-spy dumps
    repro_summary: Optional[str] = None
    nvidia_smi: Optional[str] = None
    nvidia_smi_q: Optional[str] = None
    pip_freeze: Optional[str] = None
    kernel: Optional[str] = None


@dataclass
class IssueBody:
    title: str
    text: str
    truncated: list[str] = field(default_factory=list)    # what was cut, in words
    short_text: str = ""                                   # the body used for the pre-filled URL
    redactions: dict[str, int] = field(default_factory=dict)  # what redaction removed from `text`

    def url(self, repo: str) -> str:
        """A new-issue URL for OWNER/NAME, always under NEW_ISSUE_URL_LIMIT characters."""
        full = new_issue_url(repo, self.title, self.text)
        return full if len(full) <= NEW_ISSUE_URL_LIMIT else new_issue_url(repo, self.title, self.short_text)


def new_issue_url(repo: str, title: str, body: str) -> str:
    query = urllib.parse.urlencode({"title": title, "body": body}, quote_via=urllib.parse.quote)
    return f"https://github.com/{repo}/issues/new?{query}"


# ---------------------------------------------------------------- Markdown helpers

def prose(s: str) -> str:
    """Text outside code: no raw HTML (GitHub would swallow "<user>"), one line."""
    return " ".join(str(s).replace("<", "&lt;").split())


def cell(s: str) -> str:
    return prose(s).replace("|", "\\|")


def escape_placeholders(md: str) -> str:
    """Redaction placeholders outside code become &lt;user&gt;, so GitHub shows them instead of
    treating them as unknown HTML tags; inside code blocks and spans they stay as they are."""
    out, fence = [], None
    for line in md.split("\n"):
        m = _FENCE_OPEN.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) and \
                set(line.strip()) == {fence[0]}:
            fence = None
        elif fence is None:
            line = _escape_outside_spans(line)
        out.append(line)
    return "\n".join(out)


def _escape_outside_spans(line: str) -> str:
    parts, pos = [], 0
    for m in _CODE_SPAN.finditer(line):
        parts.append(_PLACEHOLDER.sub(r"&lt;\1&gt;", line[pos:m.start()]))
        parts.append(m.group(0))
        pos = m.end()
    parts.append(_PLACEHOLDER.sub(r"&lt;\1&gt;", line[pos:]))
    return "".join(parts)


def head_lines(text: str, lines: int, chars: int) -> str:
    kept = text.splitlines()[:lines]
    out = "\n".join(kept)[:chars]
    return out


def tail_lines(text: str, lines: int, chars: int) -> str:
    kept = text.splitlines()[-lines:]
    out = "\n".join(kept)
    return out[-chars:]


# ---------------------------------------------------------------- the template's answers

def where_run(facts: Facts) -> str:
    p = facts.platform
    if p.colab:
        place = "Colab"
    elif p.kaggle:
        place = "Kaggle"
    elif p.container:
        place = f"local / cloud, in a {p.container} container"
    else:
        place = "local / cloud"
    os_line = p.os_name or p.system or "unknown OS"
    if p.is_wsl:
        os_line += f" under WSL{p.wsl_version or ''} on Windows"
    elif p.is_windows_native:
        os_line += " (native Windows)"
    kernel = f", kernel {p.kernel_release}" if p.kernel_release else ""
    return f"{place}: {os_line}{kernel}, Python {p.python_version or '?'}"


def gpu_lines(facts: Facts, limit: int = 16) -> tuple[int, list[str]]:
    nv, t = facts.nvidia, facts.torch
    gpus = nv.gpus
    lines = []
    for g in gpus[:limit]:
        cc = ".".join(map(str, g.capability)) if g.capability else "?"
        mem = f"{gib(g.memory_total)}" + (f", {gib(g.memory_free)} free" if g.memory_free is not None else "")
        lines.append(f"GPU {g.index}: {g.name} (sm {cc}, {mem})")
    if len(gpus) > limit:
        lines.append(f"... and {len(gpus) - limit} more")
    if not gpus and t.devices:
        lines = [f"GPU {d.index}: {d.name} ({gib(d.total_memory)})" for d in t.devices[:limit]]
        return len(t.devices), lines
    return len(gpus), lines


def driver_line(facts: Facts) -> str:
    nv, t = facts.nvidia, facts.torch
    drv = nv.driver_version or "?"
    if facts.platform.is_wsl and nv.driver_version:
        drv += " (Windows driver)"
    cuda = f"CUDA {t.cuda_version}" if t.cuda_version else "CPU-only build" if t.importable else "not importable"
    return f"driver {drv}, supports CUDA {nv.cuda_driver_version or '?'}; torch {t.version or '?'} ({cuda})"


def versions_table(facts: Facts) -> str:
    rows = ["| package | version |", "|---|---|"]
    for label, dist in TEMPLATE_VERSIONS:
        v = facts.version(dist)
        if dist == "triton" and not v:
            v = facts.version("triton-windows")
        if v or label in ("Unsloth", "unsloth_zoo", "TRL", "transformers", "PyTorch"):
            rows.append(f"| {label} | {cell(v or 'not installed')} |")
    rows.append(f"| Python | {cell(facts.platform.python_version or '?')} |")
    return "\n".join(rows)


def trainers_in(config_text: Optional[str]) -> list[str]:
    return sorted(set(re.findall(r"\b([A-Z][A-Za-z0-9]*Trainer)\s*\(", config_text or "")))


def key_packages(pip_freeze: str) -> str:
    keep = []
    for line in pip_freeze.splitlines():
        name = re.split(r"[=<>@ \[;]", line.strip(), maxsplit=1)[0]
        if re.sub(r"[-_.]+", "-", name).lower() in _KEY_DISTS:
            keep.append(line)
    return "\n".join(keep)


def _plural(n: int, severity: str) -> str:
    return f"{n} {severity}" + ("s" if n != 1 and severity in ("error", "warning") else "")


def finding_line(n: int, f: Finding, detail: bool) -> str:
    line = f"{n}. **[{f.severity.value}] {prose(f.title)[:300]}** (`{f.id}`)"
    if detail and f.remediation:
        line += f"\n   - Fix: {prose(f.remediation)[:600]}"
        for cmd in f.commands[:3]:
            line += f"\n   - `{cmd[:300].replace('`', '')}`"
    if detail and f.config_changes:
        changes = ", ".join(f"`{c.setting} = {c.value!r}`" for c in f.config_changes[:6])
        line += f"\n   - Config: {changes}"
    if detail and f.links:
        line += "\n   - See: " + ", ".join(prose(x) for x in f.links[:4])
    return line


# ---------------------------------------------------------------- composing, with levels

# (part, what each level beyond 0 means): the order in which parts shrink when the body is too long.
SHRINK_ORDER: list[tuple[str, tuple[str, ...]]] = [
    ("pip_freeze", ("key packages only", "omitted")),
    ("nvidia_smi_q", ("omitted",)),
    ("kernel", ("last 30 lines", "omitted")),
    ("stacks", ("first 120 lines", "first 40 lines", "omitted")),
    ("findings", ("top 5 only", "top 3 titles only")),
    ("patch", ("omitted",)),
    ("config", ("first 200 lines", "first 60 lines")),
    ("traceback", ("first 30 and last 150 lines", "last 40 lines")),
    ("nvidia_smi", ("first 40 lines", "omitted")),
]
_LABELS = {"pip_freeze": "pip freeze", "nvidia_smi_q": "nvidia-smi -q", "kernel": "kernel messages",
           "stacks": "py-spy stacks", "findings": "findings", "patch": "config diff",
           "config": "training script", "traceback": "traceback", "nvidia_smi": "nvidia-smi"}


_TEXT_FIELDS = ("config_text", "patch_diff", "traceback", "attach_summary", "stacks", "repro_summary",
                "nvidia_smi", "nvidia_smi_q", "pip_freeze", "kernel")


def _clean(text: Optional[str]) -> Optional[str]:
    """One newline convention, no NULs; blank text counts as absent."""
    if text is None:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")
    return text if text.strip() else None


# Stand for the script's block and its diff while the rest of the body is redacted as text: they
# are redacted as source (Redactor.redact_file) so the code still parses and the diff still applies.
_SCRIPT_SLOT = "\x00\x01script\x01\x00"
_DIFF_SLOT = "\x00\x01diff\x01\x00"


class _Composer:
    def __init__(self, inp: IssueInputs, redactor: Optional[Redactor] = None):
        self.inp = copy.copy(inp)
        self.redactor = redactor
        self.slots: dict[str, str] = {}          # slot -> its block, redacted as source
        self.script_counts: Counter = Counter()
        for name in _TEXT_FIELDS:
            setattr(self.inp, name, _clean(getattr(inp, name)))

    def render(self, levels: dict[str, int], truncated: list[str], short: bool = False) -> str:
        i, f = self.inp, self.inp.facts
        lv = levels.get
        out = [f"<!-- Generated by finetune doctor {__version__} (`doctor bundle`). Tokens, passwords, "
               "the user name, home directory and host name were replaced by placeholders; "
               "please read it once more before posting. -->", ""]
        if truncated:
            out += [f"> **Note:** shortened to fit GitHub's limits: {', '.join(truncated)}. "
                    f"Everything is complete in `{i.bundle_name}`.", ""]
        out += ["### Describe the bug", "",
                "_What did you run, what did you expect, and what happened instead? "
                "(Please write this part yourself.)_", ""]
        unsloth, zoo = f.version("unsloth"), f.version("unsloth-zoo")
        out += [f"**1. Did you update?** `pip install --upgrade unsloth unsloth_zoo` -- installed now: "
                f"unsloth `{unsloth or 'not installed'}`, unsloth_zoo `{zoo or 'not installed'}`. "
                "_(yes / no)_", ""]
        out += [f"**2. `Colab` or `Kaggle` or local / cloud:** {prose(where_run(f))}", ""]
        count, lines = gpu_lines(f)
        out += [f"**3. Number GPUs used, use `nvidia-smi`:** {count}" + ("" if lines else " (no NVIDIA GPU seen)"), ""]
        out += [f"- {prose(x)}" for x in lines] + [f"- {prose(driver_line(f))}", ""]
        if i.nvidia_smi and not short:
            smi = i.nvidia_smi if not lv("nvidia_smi") else head_lines(i.nvidia_smi, 40, 4000)
            if lv("nvidia_smi", 0) < 2:
                out += [details("nvidia-smi", fenced(smi)), ""]
        script = f"`{i.config_name}` (below)" if i.config_name else "_(which notebook or script? a link helps)_"
        out += [f"**4. Which notebook? / script:** {script}", ""]
        out += ["**5. Which Unsloth version, TRL version, transformers version, PyTorch version?**", "",
                versions_table(f), ""]
        trainers = trainers_in(i.config_text)
        trainer = ", ".join(f"`{t}`" for t in trainers) if trainers else "_(SFTTrainer, GRPOTrainer, ...?)_"
        out += [f"**6. Which trainer?** {trainer}", ""]
        out += ["**7. Minimal code to reproduce error (Remove Hugging Face token!):**", ""]
        if i.config_text and not short:
            code = i.config_text
            if lv("config") == 1:
                code = head_lines(code, 200, 12000)
            elif lv("config", 0) >= 2:
                code = head_lines(code, 60, 4000)
            lang = "python" if (i.config_name or "").endswith(".py") else \
                "yaml" if (i.config_name or "").endswith((".yaml", ".yml")) else ""
            summary = f"{i.config_name} (secrets removed)"
            if self.redactor is not None:
                code, c = self.redactor.redact_file(i.config_name or "", code)
                self.script_counts.update(c)
                self.slots[_SCRIPT_SLOT] = details(self.redactor.redact(summary), fenced(code, lang))
                out += [_SCRIPT_SLOT, ""]
            else:
                out += [details(summary, fenced(code, lang)), ""]
        elif i.config_text:
            out += [f"_The script (secrets removed) is in `{i.bundle_name}`._", ""]
        else:
            out += ["_(paste the smallest script that shows the problem; remove tokens)_", ""]

        out += self._traceback(levels, short)
        if not short:
            out += self._stacks(levels)
            if i.repro_summary:
                out += ["### Reproduction on this machine (`doctor repro`)", "", prose(i.repro_summary), ""]
        out += self._findings(levels, short)
        if not short:
            out += self._environment(levels)
        out += ["---", f"_Full bundle: `{i.bundle_name}` (facts, findings, config, dumps, pip freeze, "
                f"manifest). Re-check it with a newer doctor: `doctor analyze {i.bundle_name}`._"]
        if short:
            out += ["", f"**Full report attached in `{i.bundle_name}`** (drag the file into this issue; "
                    "GitHub accepts .zip files)."]
        return "\n".join(out) + "\n"

    def _traceback(self, levels: dict[str, int], short: bool) -> list[str]:
        i = self.inp
        if not i.traceback:
            return ["### Traceback", "", "_No traceback was captured: please paste the complete one "
                    "(or run with `doctor bundle --log train.log`)._", ""]
        if short:
            last = i.traceback.strip().splitlines()[-1][:300]
            return ["### Traceback", "", fenced(last), "", f"_Complete traceback in `{i.bundle_name}`._", ""]
        tb, lv = i.traceback, levels.get("traceback", 0)
        if lv == 1:
            lines = tb.splitlines()
            if len(lines) > 180:
                tb = "\n".join(lines[:30] + [f"... ({len(lines) - 180} lines cut) ..."] + lines[-150:])
            tb = tb[:6000] + ("\n..." if len(tb) > 6000 else "") if len(tb) > 12000 else tb
        elif lv >= 2:
            tb = tail_lines(tb, 40, 4000)
        src = f" (from {prose(i.traceback_source)})" if i.traceback_source else ""
        return ["### Traceback" + src, "", details("complete traceback", fenced(tb, "pytb")), ""]

    def _stacks(self, levels: dict[str, int]) -> list[str]:
        i = self.inp
        if not (i.stacks or i.attach_summary):
            return []
        out = ["### Where the process is stuck (py-spy, `doctor attach`)", ""]
        if i.attach_summary:
            out += [prose(i.attach_summary), ""]
        lv = levels.get("stacks", 0)
        if i.stacks and lv < 3:
            st = i.stacks if lv == 0 else head_lines(i.stacks, 120 if lv == 1 else 40, 8000 if lv == 1 else 3000)
            out += [details("stacks of every thread", fenced(st)), ""]
        return out

    def _findings(self, levels: dict[str, int], short: bool) -> list[str]:
        i = self.inp
        lv = 2 if short else levels.get("findings", 0)
        limit, detail = {0: 15, 1: 5}.get(lv, 3), lv < 2
        shown = i.findings[:limit]
        out = ["### What finetune doctor found", ""]
        if not i.findings:
            return out + ["No problems found by the doctor's checks.", ""]
        counts = {}
        for fd in i.findings:
            counts[fd.severity.value] = counts.get(fd.severity.value, 0) + 1
        out += [", ".join(_plural(v, k) for k, v in counts.items()) +
                (f" (top {len(shown)} shown)" if len(shown) < len(i.findings) else ""), ""]
        out += [finding_line(n, fd, detail and not short) for n, fd in enumerate(shown, 1)] + [""]
        if i.patch_diff and not short and levels.get("patch", 0) == 0:
            if self.redactor is not None:
                diff, c = self.redactor.redact_file((i.config_name or "config") + ".diff", i.patch_diff)
                self.script_counts.update(c)
                self.slots[_DIFF_SLOT] = details("suggested config changes (diff)", fenced(diff, "diff"))
                out += [_DIFF_SLOT, ""]
            else:
                out += [details("suggested config changes (diff)", fenced(i.patch_diff, "diff")), ""]
        return out

    def _environment(self, levels: dict[str, int]) -> list[str]:
        i = self.inp
        blocks = []
        if i.pip_freeze:
            lv = levels.get("pip_freeze", 0)
            if lv == 0:
                blocks.append(details("pip freeze", fenced(i.pip_freeze)))
            elif lv == 1:
                blocks.append(details("pip freeze (training stack only)",
                                      fenced(head_lines(key_packages(i.pip_freeze), 60, 4000) or "(none)")))
        if i.nvidia_smi_q and levels.get("nvidia_smi_q", 0) == 0:
            blocks.append(details("nvidia-smi -q", fenced(i.nvidia_smi_q)))
        if i.kernel:
            lv = levels.get("kernel", 0)
            if lv < 2:
                blocks.append(details("kernel messages (dxg, NVRM, OOM)",
                                      fenced(i.kernel if lv == 0 else tail_lines(i.kernel, 30, 4000))))
        if not blocks:
            return []
        return ["### Environment details", ""] + [b + "\n" for b in blocks]


def build_issue(inp: IssueInputs, redactor: Optional[Redactor] = None,
                limit: int = ISSUE_BODY_LIMIT, url_limit: int = NEW_ISSUE_URL_LIMIT,
                repo_for_url: str = "OWNER/NAME") -> IssueBody:
    """Compose the body; shrink parts in SHRINK_ORDER until the redacted body fits `limit`.

    Lengths are measured after redaction and placeholder escaping, since a placeholder can be
    longer than what it replaces.
    """
    comp = _Composer(inp, redactor)
    levels: dict[str, int] = {}
    truncated: list[str] = []
    made: Counter = Counter()

    def final(short: bool = False) -> str:
        comp.slots.clear()
        comp.script_counts.clear()
        text = comp.render(levels, [] if short else truncated, short=short)
        if redactor is not None:
            text, counts = redactor.redact_counted(text)
            if not short:
                made.clear()
                made.update(counts + comp.script_counts)
        text = escape_placeholders(text)
        for slot, block in comp.slots.items():    # after escaping: inside a fence placeholders stay as they are
            text = text.replace(slot, block, 1)
        return text

    body = final()
    for part, meanings in SHRINK_ORDER:
        while len(body) > limit and levels.get(part, 0) < len(meanings) and _present(inp, part):
            levels[part] = levels.get(part, 0) + 1
            truncated[:] = [f"{_LABELS[p]} ({SHRINK_ORDER_DICT[p][lvl - 1]})"
                            for p, lvl in levels.items() if lvl]
            body = final()
    title = redactor.redact(issue_title(inp)) if redactor is not None else issue_title(inp)
    short = final(short=True)
    # The short body keeps the template answers and three findings; if a long name list still
    # overflows the URL, cut lines from the end (the pointer to the bundle goes first in the cut).
    while len(new_issue_url(repo_for_url, title, short)) > url_limit and "\n" in short.strip():
        short = _drop_a_middle_line(short, inp.bundle_name)
    return IssueBody(title=title, text=body, truncated=list(truncated), short_text=short,
                     redactions=dict(made))


SHRINK_ORDER_DICT = dict(SHRINK_ORDER)


def _present(inp: IssueInputs, part: str) -> bool:
    return bool({"pip_freeze": inp.pip_freeze, "nvidia_smi_q": inp.nvidia_smi_q, "kernel": inp.kernel,
                 "stacks": inp.stacks, "findings": inp.findings, "patch": inp.patch_diff,
                 "config": inp.config_text, "traceback": inp.traceback, "nvidia_smi": inp.nvidia_smi}[part])


def _drop_a_middle_line(text: str, bundle_name: str) -> str:
    """Remove the last line that is not the pointer to the bundle (kept to the end)."""
    lines = text.rstrip("\n").split("\n")
    for k in range(len(lines) - 1, -1, -1):
        if bundle_name not in lines[k] or k == 0:
            del lines[k]
            break
    return "\n".join(lines) + "\n"


def issue_title(inp: IssueInputs) -> str:
    f = inp.facts
    gpu = f.nvidia.gpus[0].name if f.nvidia.gpus else (f.torch.devices[0].name if f.torch.devices else "no GPU")
    where = "WSL2" if f.platform.is_wsl else "Windows" if f.platform.is_windows_native else \
        "Colab" if f.platform.colab else "Kaggle" if f.platform.kaggle else (f.platform.system or "?")
    stack = ", ".join(f"{name} {f.version(dist)}" for name, dist in (("unsloth", "unsloth"), ("torch", "torch"))
                      if f.version(dist))
    return f"[Bug] <describe the problem> ({gpu}, {where}" + (f", {stack}" if stack else "") + ")"


# ---------------------------------------------------------------- traceback from a log

_TB_START = "Traceback (most recent call last):"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


def extract_traceback(log: str, max_lines: int = 2000) -> Optional[str]:
    """The last Python traceback in a log, with the exceptions chained before it."""
    lines = log.splitlines()
    starts = [k for k, ln in enumerate(lines) if ln.strip().endswith(_TB_START)]
    if not starts:
        return None
    first = starts[-1]
    # Walk back over chained tracebacks ("During handling of the above exception ...").
    for k in reversed(starts[:-1]):
        between = lines[k:first]
        if any(ln.strip().startswith(_CHAINED) for ln in between):
            first = k
        else:
            break
    end = starts[-1] + 1
    while end < len(lines) and lines[end].startswith((" ", "\t")):
        end += 1
    end += 1                                                      # the exception line
    while end < len(lines) and lines[end].startswith((" ", "\t")):
        end += 1                                                  # its indented continuation
    return "\n".join(lines[first:min(end, first + max_lines)]).strip("\n") or None
