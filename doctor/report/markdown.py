"""Markdown rendering of a report: for files (--markdown) and issue bodies."""
from __future__ import annotations

import re
from typing import Optional, Sequence

from doctor.findings import Finding, explained_by
from doctor.report.envelope import Report
from doctor.report.summary import summary_rows


def md_escape_cell(s: str) -> str:
    """Prose in a table cell: one line, pipes escaped, and HTML-like text (`<module>`) kept."""
    return html_text(str(s).replace("|", "\\|").replace("\n", " "))


def html_text(s: str) -> str:
    """Escape for prose and HTML: GitHub would swallow a placeholder like <user> as a tag."""
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_span(s, table: bool = False) -> str:
    """Code-like text (a frame name like `<module>`, a value, a path) as an inline code span that
    nothing inside can close: the fence is longer than any backtick run in it. In a table cell,
    pipes are escaped (GitHub unescapes them inside code spans there)."""
    text = str(s).replace("\r", " ").replace("\n", " ")
    if table:
        text = text.replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" or (text and not text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}" if text else "` `"


def fenced(text: str, lang: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside, so content cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def details(summary: str, body: str, lang: Optional[str] = None) -> str:
    """A collapsible block. body is Markdown, or code fenced as `lang` when lang is given (not "md").
    The blank lines make GitHub render the Markdown inside."""
    inner = fenced(body, lang) if lang not in (None, "md") else body.rstrip()
    return f"<details>\n<summary>{html_text(summary)}</summary>\n\n{inner}\n\n</details>\n"


def finding_md(n: int, f: Finding, causes: Sequence[int] = ()) -> str:
    # prose is HTML-escaped (GitHub drops `<module>` as a tag); code-like text goes in code spans
    lines = [f"{n}. **[{f.severity.value}] {html_text(f.title)}** ({code_span(f.id)})"
             + (" explained by " + ", ".join(f"#{c}" for c in causes) if causes else "")]
    if f.why:
        lines.append(f"   - Why: {html_text(f.why)}")
    if f.evidence:
        ev = "; ".join(f"{code_span(k)} = {code_span(v)}" for k, v in f.evidence.items())
        lines.append(f"   - Evidence: {ev}")
    if f.remediation:
        lines.append(f"   - Fix: {html_text(f.remediation)}")
    for cmd in f.commands:
        lines.append(f"     {code_span(cmd)}")
    for ch in f.config_changes:
        lines.append(f"   - Config: {code_span(f'{ch.setting} = {ch.value!r}')} ({html_text(ch.reason)})")
    if f.links:
        lines.append("   - See: " + ", ".join(f.links))
    return "\n".join(lines)


def summary_table(report: Report) -> str:
    if report.facts is None:
        return ""
    rows = ["| | |", "|---|---|"]
    rows += [f"| {md_escape_cell(k)} | {md_escape_cell(v)} |" for k, v in summary_rows(report.facts)]
    return "\n".join(rows) + "\n"


def render_markdown(report: Report, sections: Sequence[str] = (), title: str = "") -> str:
    parts = [f"## {title or 'finetune doctor ' + report.command}\n", summary_table(report)]
    parts += [s.rstrip() + "\n" for s in sections if s]
    counts = report.counts()
    parts.append("### Findings\n")
    parts.append(", ".join(f"{v} {k}" for k, v in counts.items() if v) or "No problems found.")
    parts.append("")
    causes = explained_by(report.findings)
    parts += [finding_md(n, f, [c + 1 for c in causes.get(n - 1, [])]) for n, f in enumerate(report.findings, 1)]
    return "\n".join(parts).rstrip() + "\n"
