"""Rich terminal rendering: ranked, grouped by severity, readable in 80 columns.

Colour is off when stdout is not a TTY (rich decides; NO_COLOR is honoured).
"""
from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from doctor.exitcodes import MEANINGS
from doctor.findings import Finding, Severity, explained_by
from doctor.report_model import Report
from doctor.report.summary import summary_rows

STYLE = {Severity.CRITICAL: "bold white on red", Severity.ERROR: "bold red",
         Severity.WARNING: "yellow", Severity.INFO: "cyan"}
ICON = {Severity.CRITICAL: "✖✖", Severity.ERROR: "✖", Severity.WARNING: "!", Severity.INFO: "i"}

Section = Callable[[Console], None]


_TRAILING = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)(?=\n)")


class DoctorConsole(Console):
    """rich's Console, minus two things users hit: the spaces rich pads every table and wrapped
    line with (trailing spaces on each line of a pasted report), and its exit 1 when the reader
    of a pipe goes away (a BrokenPipeError instead, which the command wrapper turns into a quiet 141)."""

    def _render_buffer(self, buffer) -> str:
        return _TRAILING.sub(r"\1", super()._render_buffer(buffer))

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def make_console(file=None, width: Optional[int] = None) -> Console:
    return DoctorConsole(file=file, width=width, highlight=False, soft_wrap=False)


def render_finding(console: Console, n: int, f: Finding, verbose: bool = True,
                   causes: Sequence[int] = ()) -> None:
    head = Text()
    head.append(f"{n:>2}. ", style="bold")
    head.append(f"[{ICON[f.severity]} {f.severity.value}] ", style=STYLE[f.severity])
    head.append(f.title, style="bold")
    head.append(f"  ({f.id})", style="dim")
    if causes:
        head.append("  explained by " + ", ".join(f"#{c}" for c in causes), style="bold")
    console.print(head)
    # label | text, indented, so wrapped lines hang under their text rather than at column 0
    body = Table.grid(padding=(0, 1))
    body.add_column(no_wrap=True, style="dim")
    body.add_column(overflow="fold")
    if verbose and f.why:
        body.add_row("why", Text(f.why))
    if f.evidence:
        body.add_row("evidence", Text("; ".join(f"{k} = {v}" for k, v in f.evidence.items())))
    if f.remediation:
        body.add_row(Text("fix", style="green"), Text(f.remediation))
    for cmd in f.commands:
        body.add_row("", Text("$ " + cmd, style="bold green"))
    for ch in f.config_changes:
        body.add_row(Text("config", style="green"),
                     Text(f"{ch.setting} = {ch.value!r}", style="bold") + Text(f"  ({ch.reason})", style="dim"))
    if verbose and f.links:
        body.add_row("see", Text(", ".join(f.links), style="dim"))
    console.print(Padding(body, (0, 0, 0, 4)))


def render_summary(console: Console, report: Report) -> None:
    if report.facts is None:
        return
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for k, v in summary_rows(report.facts):
        t.add_row(k, escape(v))
    console.print(t)
    failed = [p for p in report.facts.probes if not p.ok]
    for p in failed:
        console.print(Text(f"  probe {p.name}: {p.error or 'failed'}", style="yellow"))


def render_report(report: Report, console: Console, sections: Sequence[Section] = (),
                  title: Optional[str] = None, verbose: bool = True) -> None:
    console.rule(Text(title or f"finetune doctor {report.command}", style="bold"))
    render_summary(console, report)
    for section in sections:
        console.print()
        section(console)
    console.print()
    if not report.findings:
        console.print(Text("✔ No problems found.", style="bold green"))
    causes = explained_by(report.findings)
    for n, f in enumerate(report.findings, 1):
        render_finding(console, n, f, verbose=verbose, causes=[c + 1 for c in causes.get(n - 1, [])])
        console.print()
    counts = report.counts()
    line = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no findings"
    console.print(Text(f"Summary: {line}. Exit code {report.code}: {MEANINGS.get(report.code, '')}.",
                       style="bold"))
