"""The issue body: the bug template's fields, Markdown that a real renderer parses the way GitHub
would (markdown-it, CommonMark + tables), and GitHub's size limits with truncation that says so."""
from __future__ import annotations

import re
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from doctor.bundle.issue import (ISSUE_BODY_LIMIT, NEW_ISSUE_URL_LIMIT, IssueInputs, build_issue,
                                 extract_traceback, fenced)
from doctor.redact import Redactor
from doctor.engine import run_checks
from doctor.facts import Facts
from tests.conftest import FACT_SNAPSHOTS

WSL = FACT_SNAPSHOTS / "wsl2-2080ti-unsloth-2024.8.json"
MD = MarkdownIt("commonmark").enable("table")

CONFIG = '''from unsloth import FastLanguageModel
from trl import SFTTrainer
"""docstring with ``` a fence and </details> inside"""
model, tok = FastLanguageModel.from_pretrained("unsloth/Meta-Llama-3.1-8B-bnb-4bit", max_seq_length=2048)
trainer = SFTTrainer(model=model, args=TrainingArguments(per_device_train_batch_size=2))
'''
TRACEBACK = '''Traceback (most recent call last):
  File "/home/alice/proj/train.py", line 5, in <module>
    trainer.train()
RuntimeError: CUDA error: an illegal memory access was encountered | with a pipe'''


def facts() -> Facts:
    return Facts.load(WSL)


def inputs(**kw) -> IssueInputs:
    f = facts()
    base = dict(facts=f, findings=run_checks(f), bundle_name="doctor-bundle-20240910-120000.zip",
                config_name="train.py", config_text=CONFIG, traceback=TRACEBACK, traceback_source="train.log",
                attach_summary="Diagnosis: `cuda-sync-wait`. Situation: GPU idle, host waiting.",
                stacks="Process 42 (main)\n  Thread 42 MainThread (idle)\n      synchronize (torch/cuda/__init__.py:801)\n",
                patch_diff="--- train.py\n+++ train.patched.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n",
                nvidia_smi="| NVIDIA-SMI 560.35 | Driver Version: 560.94 | CUDA Version: 12.6 |",
                nvidia_smi_q="==============NVSMI LOG==============\nSerial Number : 1234567890\n",
                pip_freeze="torch==2.2.0+cu121\nunsloth==2024.8\nnumpy==1.26.4\n",
                kernel="[ 12.3] misc dxg: dxgk: dxgkio_query_adapter_info: Ioctl failed: -22\n")
    base.update(kw)
    return IssueInputs(**base)


# ---------------------------------------------------------------- Markdown structure

def structure(md: str) -> dict:
    tokens = MD.parse(md)
    html = "".join(t.content for t in tokens if t.type == "html_block")
    fences = [t for t in tokens if t.type == "fence"]
    lines = md.split("\n")
    for t in fences:
        closing = lines[t.map[1] - 1].strip()
        assert closing and set(closing) == {t.markup[0]} and len(closing) >= len(t.markup), \
            f"fence opened at line {t.map[0] + 1} is never closed"
    inline_html = [c.content for t in tokens if t.type == "inline" for c in (t.children or [])
                   if c.type == "html_inline"]
    return {
        "headings": [tokens[k + 1].content for k, t in enumerate(tokens) if t.type == "heading_open"],
        "details_open": len(re.findall(r"<details>", html)),
        "details_close": len(re.findall(r"</details>", html)),
        "summaries": re.findall(r"<summary>(.*?)</summary>", html),
        "fences": fences,
        "tables": sum(t.type == "table_open" for t in tokens),
        "table_rows": sum(t.type == "tr_open" for t in tokens),
        "inline_html": inline_html,
    }


def test_body_answers_the_template_and_renders_cleanly():
    body = build_issue(inputs(), redactor=Redactor(usernames=("alice",), homes=("/home/alice",))).text
    s = structure(body)
    assert s["headings"] == ["Describe the bug", "Traceback (from train.log)",
                             "Where the process is stuck (py-spy, `doctor attach`)",
                             "What finetune doctor found", "Environment details"]
    for question in ("Did you update?", "`Colab` or `Kaggle` or local / cloud", "Number GPUs used",
                     "Which notebook?", "Which Unsloth version, TRL version, transformers version, PyTorch version?",
                     "Which trainer?", "Minimal code to reproduce error"):
        assert question in body
    assert "under WSL2 on Windows" in body and "NVIDIA GeForce RTX 2080 Ti (sm 7.5" in body
    assert "**6. Which trainer?** `SFTTrainer`" in body
    assert s["details_open"] == s["details_close"] == 8
    assert s["summaries"] == ["nvidia-smi", "train.py (secrets removed)", "complete traceback",
                              "stacks of every thread", "suggested config changes (diff)", "pip freeze",
                              "nvidia-smi -q", "kernel messages (dxg, NVRM, OOM)"]
    assert len(s["fences"]) == 8
    config_fence = next(t for t in s["fences"] if "FastLanguageModel" in t.content)
    assert config_fence.content == CONFIG and config_fence.info == "python"    # ``` inside did not close it
    assert s["tables"] == 1 and s["table_rows"] == 1 + 12                      # header + packages + Python
    assert "| Unsloth | 2024.8 |" in body and "| PyTorch | 2.2.0+cu121 |" in body
    assert "/home/alice" not in body and "/home/<user>/proj/train.py" not in body and "~/proj/train.py" in body
    assert not s["inline_html"]                                                # no raw HTML in prose
    assert "<redacted:serial-number>" in next(t.content for t in s["fences"] if "NVSMI" in t.content)
    assert len(body) < 20000


def test_placeholders_in_prose_are_escaped_but_code_is_verbatim():
    r = Redactor(usernames=("zed42x",), homes=("/home/zed42x",))
    body = build_issue(inputs(attach_summary="stuck in /home/zed42x/x.py run by zed42x",
                              traceback="Traceback (most recent call last):\nValueError: zed42x"), redactor=r).text
    assert "stuck in ~/x.py run by &lt;user&gt;" in body
    assert "ValueError: <user>" in body                      # inside the fenced traceback
    assert not structure(body)["inline_html"]


_awkward = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400) | st.sampled_from(
    ["```", "````\n~~~", "</details>", "<details>", "| a | b |\n|---|---|", "<user>", "# heading", "\n\n\n", "`x`"])


@given(config=_awkward, tb=_awkward, stacks=_awkward, pip=_awkward, smi=_awkward, title=_awkward)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_content_keeps_the_structure(config, tb, stacks, pip, smi, title):
    base = inputs()
    base.findings[0].title = title or "x"
    body = build_issue(inputs(config_text=config or None, traceback=tb or None, stacks=stacks or None,
                              pip_freeze=pip or None, nvidia_smi=smi or None, findings=base.findings)).text
    s = structure(body)
    assert s["details_open"] == s["details_close"]
    assert s["headings"][0] == "Describe the bug" and "What finetune doctor found" in s["headings"]
    assert s["tables"] == 1
    assert body.rstrip().endswith("`._")                     # the footer is outside every block


# ---------------------------------------------------------------- limits and truncation

def _huge_pip() -> str:
    return "torch==2.2.0+cu121\nunsloth==2024.8\n" + "\n".join(f"package-number-{k}==1.{k}.0" for k in range(20000))


def _many_stacks() -> str:
    frames = "\n".join(f"      fn_{k} (/usr/lib/python3.10/site-packages/mod_{k}.py:{k})" for k in range(40))
    return "\n".join(f"  Thread {t} worker-{t} (idle)\n{frames}" for t in range(400))


def test_too_long_body_cuts_pip_freeze_first_and_says_so():
    inp = inputs(pip_freeze=_huge_pip())
    issue = build_issue(inp)
    assert len(issue.text) <= ISSUE_BODY_LIMIT
    assert issue.truncated == ["pip freeze (key packages only)"]
    assert "shortened to fit GitHub's limits: pip freeze (key packages only)" in issue.text
    assert "package-number-" not in issue.text
    assert "torch==2.2.0+cu121" in issue.text and "unsloth==2024.8" in issue.text
    assert "synchronize (torch/cuda/__init__.py:801)" in issue.text     # stacks untouched
    assert structure(issue.text)["details_open"] == structure(issue.text)["details_close"]


def test_everything_huge_still_fits_in_least_useful_first_order():
    big = "x" * 120 + "\n"
    inp = inputs(pip_freeze=_huge_pip(), stacks=_many_stacks(), nvidia_smi_q=big * 3000, kernel=big * 3000,
                 config_text=CONFIG + big * 5000, traceback=TRACEBACK + "\n" + big * 5000,
                 nvidia_smi=big * 2000, patch_diff="+" + big * 3000)
    issue = build_issue(inp)
    assert len(issue.text) <= ISSUE_BODY_LIMIT
    cut = [t.split(" (")[0] for t in issue.truncated]
    order = ["pip freeze", "nvidia-smi -q", "kernel messages", "py-spy stacks", "findings", "config diff",
             "training script", "traceback", "nvidia-smi"]
    assert cut == [c for c in order if c in cut] and cut[:4] == order[:4]
    s = structure(issue.text)
    assert s["details_open"] == s["details_close"]
    assert "What finetune doctor found" in s["headings"] and s["tables"] == 1


def test_url_stays_under_the_limit_and_falls_back_to_the_short_body():
    issue = build_issue(inputs(pip_freeze=_huge_pip(), stacks=_many_stacks()))
    url = issue.url("unslothai/unsloth")
    assert url.startswith("https://github.com/unslothai/unsloth/issues/new?title=")
    assert len(url) <= NEW_ISSUE_URL_LIMIT
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    body = q["body"][0]
    assert "Full report attached in `doctor-bundle-20240910-120000.zip`" in body
    assert "RuntimeError: CUDA error: an illegal memory access" in body      # the exception line stays
    assert "| PyTorch | 2.2.0+cu121 |" in body
    assert q["title"][0].startswith("[Bug]")


def test_small_body_goes_into_the_url_whole():
    inp = inputs(pip_freeze=None, nvidia_smi_q=None, kernel=None, stacks=None, config_text="x = 1\n",
                 findings=[])
    issue = build_issue(inp)
    url = issue.url("acme/repo")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["body"][0] == issue.text
    assert len(url) <= NEW_ISSUE_URL_LIMIT


def test_fenced_outgrows_any_backtick_run():
    text = "a ```` b ``` c"
    assert fenced(text).startswith("`````\n") and fenced(text).endswith("\n`````")


# ---------------------------------------------------------------- traceback from a log

def test_extract_traceback_takes_the_last_chain():
    log = "\n".join([
        "step 1", "Traceback (most recent call last):", '  File "a.py", line 1, in <module>', "KeyError: 'old'",
        "step 2 ok", "Traceback (most recent call last):", '  File "b.py", line 2, in f', "    g()",
        "ValueError: first", "", "During handling of the above exception, another exception occurred:", "",
        "Traceback (most recent call last):", '  File "b.py", line 4, in <module>',
        "RuntimeError: second", "wandb: Waiting for W&B process to finish... (failed 1)"])
    tb = extract_traceback(log)
    assert tb.startswith("Traceback (most recent call last):\n  File \"b.py\", line 2")
    assert tb.endswith("RuntimeError: second")
    assert "KeyError" not in tb and "wandb" not in tb


@pytest.mark.parametrize("log", ["", "all fine\nstep 10 loss 1.2\n"])
def test_no_traceback_is_none(log):
    assert extract_traceback(log) is None
