"""The attach-specific sections of the terminal and Markdown reports: each process of the tree with
its role, state and CPU, and each thread's key frames. Findings go through the shared renderers."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from doctor.attach.model import AttachReport, ProcessView, ThreadView
from doctor.report.markdown import md_escape_cell

MAX_THREADS = 12             # per process; torch processes can have dozens of Python threads


def _mib(n) -> str:
    return f"{n / 2**20:.0f} MiB" if n else "-"


def _flags(t: ThreadView) -> str:
    bits = ["moving" if t.moved else ("stuck" if t.stuck else "?")]
    if t.busy:
        bits.append("busy")
    if t.owns_gil:
        bits.append("GIL")
    if t.kernel_wait and not t.busy:
        bits.append(t.kernel_wait)
    return " ".join(bits)


def _threads(p: ProcessView) -> list[ThreadView]:
    """Main thread first, then the busy and the matched ones; idle pool threads last."""
    ranked = sorted(p.threads, key=lambda t: (not t.main, not t.busy, t.cause is None, t.name))
    return ranked[:MAX_THREADS]


def _proc_head(p: ProcessView) -> str:
    cpu = f"{p.cpu_percent:.0f}%" if p.cpu_percent is not None else "?"
    head = f"pid {p.pid} [{p.role}] state {p.state or '?'}, CPU {cpu}, RSS {_mib(p.rss)}"
    if p.swap:
        head += f", swap {_mib(p.swap)}"
    return head


def terminal_section(report: AttachReport):
    def section(console: Console) -> None:
        console.print(Text(f"Situation: {report.situation}", style="bold"))
        for p in report.processes:
            console.print(Text(_proc_head(p), style="bold"))
            console.print(Text("  " + p.cmdline[:120], style="dim"))
            if p.skipped:
                console.print(Text(f"  skipped: {p.skipped}", style="yellow"))
                continue
            if p.where:
                console.print(Text(f"  main thread {p.where}" + (f"  → {p.cause}" if p.cause else "")))
            t = Table(box=None, show_header=True, header_style="dim", padding=(0, 1))
            t.add_column("thread", no_wrap=True, max_width=24)
            t.add_column("", no_wrap=True)
            t.add_column("CPU", justify="right")
            t.add_column("innermost frames")
            for th in _threads(p):
                frames = th.key_frames[0] if th.key_frames else "?"
                if th.native_frames:
                    frames = f"[{th.native_frames[0]}] " + frames
                cpu = f"{th.cpu_percent:.0f}%" if th.cpu_percent is not None else ""
                t.add_row(escape(th.name or str(th.tid)), _flags(th), cpu, escape(frames))
            console.print(t)
            if len(p.threads) > MAX_THREADS:
                console.print(Text(f"  ... {len(p.threads) - MAX_THREADS} more threads (see --json)", style="dim"))
            if p.open_files:
                console.print(Text("  open files: " + ", ".join(p.open_files[:5]), style="dim"))
        for e in report.errors:
            console.print(Text(f"note: {e}", style="yellow"))
    return section


def markdown_section(report: AttachReport) -> str:
    lines = ["### Process tree", "", f"Situation: **{report.situation}**, primary cause `{report.cause}`.", ""]
    for p in report.processes:
        lines.append(f"- **{md_escape_cell(_proc_head(p))}**: `{md_escape_cell(p.cmdline[:160])}`")
        if p.skipped:
            lines.append(f"  - skipped: {p.skipped}")
            continue
        if p.where:
            lines.append(f"  - main thread {md_escape_cell(p.where)}" + (f" → `{p.cause}`" if p.cause else ""))
        if p.threads:
            lines += ["", "  | thread | state | CPU | innermost frames |", "  |---|---|---|---|"]
            for th in _threads(p):
                cpu = f"{th.cpu_percent:.0f}%" if th.cpu_percent is not None else ""
                frames = " ← ".join(th.key_frames[:2]) or "?"
                lines.append(f"  | {md_escape_cell(th.name or th.tid)} | {_flags(th)} | {cpu} | {md_escape_cell(frames)} |")
            lines.append("")
    if report.errors:
        lines += ["", "Notes:"] + [f"- {md_escape_cell(e)}" for e in report.errors]
    return "\n".join(lines) + "\n"
