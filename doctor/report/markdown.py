"""Markdown rendering of a report: for files (--markdown) and issue bodies."""
from __future__ import annotations

from typing import Sequence

from doctor.findings import Finding, explained_by
from doctor.report_model import Report
from doctor.report.summary import summary_rows
from doctor.text import code_span, html_text, md_escape_cell


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
