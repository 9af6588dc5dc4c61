"""The attach-specific sections of the terminal and Markdown reports: each process of the tree with
its role, state and CPU, and each thread's key frames. Findings go through the shared renderers."""
from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from doctor.attach.model import AttachReport, ProcessView, ThreadView
from doctor.text import code_span, md_escape_cell

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


def _avg(xs) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None


def gpu_lines(report: AttachReport) -> list[str]:
    """One line per GPU: utilisation, power vs limit, SM clock vs max, reasons, PCIe, memory."""
    lines = []
    target = {int(pid) for pid in report.raw_dumps} | {p.pid for p in report.processes}
    for d in report.gpu.devices:
        bits = [f"GPU {d.index} {d.name}"]
        util = _avg(d.util)
        bits.append(f"util {util:.0f}%" if util is not None else "util n/a")
        power = _avg(d.power_mw)
        if power is not None:
            bits.append(f"power {power / 1000:.0f}" + (f"/{d.power_limit_mw / 1000:.0f} W" if d.power_limit_mw else " W"))
        if d.sm_clock_mhz:
            bits.append(f"SM {d.sm_clock_mhz[-1]}" + (f"/{d.sm_clock_max_mhz} MHz" if d.sm_clock_max_mhz else " MHz"))
        if d.clock_event_names:
            bits.append("reasons " + "+".join(d.clock_event_names))
        if d.pcie_gen and d.pcie_width:
            pcie = f"PCIe gen{d.pcie_gen} x{d.pcie_width}"
            if d.pcie_tx_kbs or d.pcie_rx_kbs:
                pcie += f" TX {_avg(d.pcie_tx_kbs) or 0:.0f} RX {_avg(d.pcie_rx_kbs) or 0:.0f} KB/s"
            bits.append(pcie)
        if d.memory_used is not None and d.memory_total:
            bits.append(f"memory {d.memory_used / 2**30:.1f}/{d.memory_total / 2**30:.0f} GiB")
        mine = [p for p in d.processes if p.get("pid") in target]
        if mine:
            used = [p.get("used_memory") for p in mine]
            bits.append("target: " + ", ".join(f"pid {p['pid']} {u / 2**30:.1f} GiB" if u is not None else
                                                f"pid {p['pid']} n/a" for p, u in zip(mine, used)))
        lines.append(", ".join(bits))
    lines += [f"not readable: {u}" for u in report.gpu.unavailable]
    return lines


RANK_COLUMNS = ("rank", "pid", "state", "collective", "call site / where")


def rank_rows(lu: dict) -> list[tuple[str, ...]]:
    """The line-up of a distributed job's ranks (doctor/attach/ranks.py Lineup.to_dict()), one row per rank."""
    first, odd = lu.get("first"), set(lu.get("odd") or [])
    out = []
    for r in lu.get("rows") or []:
        mark = " ←" if r["rank"] == first else (" *" if r["rank"] in odd else "")
        label = (f"{r['host']}/" if r.get("host") else "") + f"{r['rank']}{mark}"
        state = r.get("state") or "?"
        if state == "gone" and r.get("exit_code") is not None:
            state = f"gone (exit {r['exit_code']})"
        where = r.get("site") or "" if r.get("collective") else (r.get("where") or r.get("cause") or "")
        out.append((label, str(r.get("pid") or "-"), state, r.get("collective") or "-", where))
    return out


def rank_head(lu: dict) -> str:
    alive = len([r for r in lu.get("rows") or [] if r.get("state") != "gone"])
    head = f"Ranks: world size {lu.get('world_size') or '?'}, {alive} alive"
    if lu.get("first") is not None:
        head += f"; rank {lu['first']} diverged first (by {lu.get('first_by')}, marked ←)"
    return head


def print_rank_table(console: Console, lu: dict) -> None:
    console.print(Text(rank_head(lu), style="bold"))
    t = Table(box=None, show_header=True, header_style="dim", padding=(0, 1))
    for col in RANK_COLUMNS:
        t.add_column(col, no_wrap=col != RANK_COLUMNS[-1])
    for row in rank_rows(lu):
        t.add_row(*(escape(c) for c in row))
    console.print(t)


def rank_table_markdown(lu: dict) -> list[str]:
    lines = [md_escape_cell(rank_head(lu)), "", "| " + " | ".join(RANK_COLUMNS) + " |",
             "|" + "---|" * len(RANK_COLUMNS)]
    return lines + ["| " + " | ".join(md_escape_cell(c) for c in row) + " |" for row in rank_rows(lu)] + [""]


def terminal_section(report: AttachReport):
    def section(console: Console) -> None:
        console.print(Text(f"Situation: {report.situation}", style="bold"))
        for line in gpu_lines(report):
            console.print(Text("  " + line, style="dim" if line.startswith("not readable") else ""))
        if report.ranks:
            print_rank_table(console, report.ranks)
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
    lines = ["### Process tree", "", f"Situation: **{md_escape_cell(report.situation)}**, primary cause "
             f"{code_span(report.cause)}.", ""]
    lines += [f"- {md_escape_cell(g)}" for g in gpu_lines(report)] + [""]
    if report.ranks:
        lines += rank_table_markdown(report.ranks)
    for p in report.processes:
        lines.append(f"- **{md_escape_cell(_proc_head(p))}**: {code_span(p.cmdline[:160])}")
        if p.skipped:
            lines.append(f"  - skipped: {md_escape_cell(p.skipped)}")
            continue
        if p.where:
            lines.append(f"  - main thread {code_span(p.where)}" + (f" → {code_span(p.cause)}" if p.cause else ""))
        if p.threads:
            lines += ["", "  | thread | state | CPU | innermost frames |", "  |---|---|---|---|"]
            for th in _threads(p):
                cpu = f"{th.cpu_percent:.0f}%" if th.cpu_percent is not None else ""
                # frames are code (`<module>`, `__call__`): code spans, or GitHub eats them as HTML/emphasis
                frames = " ← ".join(code_span(fr, table=True) for fr in th.key_frames[:2]) or "?"
                lines.append(f"  | {md_escape_cell(th.name or th.tid)} | {_flags(th)} | {cpu} | {frames} |")
            lines.append("")
    if report.errors:
        lines += ["", "Notes:"] + [f"- {md_escape_cell(e)}" for e in report.errors]
    return "\n".join(lines) + "\n"
