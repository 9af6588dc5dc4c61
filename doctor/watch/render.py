"""The watch section of the terminal and Markdown reports (findings are rendered by doctor.report
like every command's). Formatting only."""
from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.table import Table

from doctor.units import gib
from doctor.watch.chart import memory_label, memory_sparkline, step_sparkline
from doctor.watch import ranks as rank_view
from doctor.watch.diagnose import rank_focus
from doctor.watch.result import WatchResult


def _s(v: Optional[float]) -> str:
    return "?" if v is None else f"{v:.2f} s"


def summary_rows(r: WatchResult) -> list[tuple[str, str]]:
    rows = [("Command", " ".join(r.command)[:200])]
    ended = (f"exit code {r.exit_code}" + (f" (signal {r.signal})" if r.signal else "")
             + (" after --kill-on-stall" if r.killed_on_stall else ""))
    rows.append(("Ended", ended))
    if r.progress == "trainer":
        peak = max((s.mem_peak for s in r.steps if s.mem_peak), default=None)
        waits = [s.data_wait_s for s in r.steps if s.data_wait_s is not None]
        rows.append(("Steps", f"{len(r.steps)} reported, median {_s(r.median_step_s())}"
                              + (f", peak VRAM {gib(peak, 2)}" if peak else "")
                              + (f", batch wait median {_s(sorted(waits)[len(waits) // 2])}" if waits else "")))
        spark = step_sparkline(r)
        if spark.strip():
            rows.append(("Step time", spark))
        mem = memory_sparkline(r)
        if mem.strip():
            rows.append((memory_label(r), mem))
    else:
        rows.append(("Progress", f"not available: {r.progress_note}"))
    if r.ranks:
        named = r.stalls[-1].first_stopped_rank if r.stalls else None        # as the stall named it
        rows.append(("Ranks", rank_view.describe(r.ranks, next((x for x in r.ranks if x["rank"] == named), None))))
    for i, s in enumerate(r.stalls, 1):
        at = f"step {s.info.step}" if s.info.step else f"phase '{s.info.phase}'"
        rows.append((f"Stall {i}", f"{at}: no progress for {s.info.waited_s:.1f} s (deadline {s.info.deadline_s:.1f} s, "
                                   f"{s.info.reason}); attach: {(rank_focus(s) or {}).get('cause') or s.diagnosis_error}"
                                   + ("; recovered" if s.recovered else "")
                                   + (f"; rank {s.first_stopped_rank} stopped first" if s.first_stopped_rank is not None
                                      else "")))
    if r.crash:
        what = f"{r.crash.get('exc_type') or ''} {r.crash.get('message', '')[:160]}".strip() or f"exit code {r.exit_code}"
        rows.append(("Crash", f"{r.crash.get('id')}: {what}"))
    rows.append(("Cause", r.cause))
    rows.append(("Output", r.out_dir + (" (chart step_times.png)" if r.chart_path else "")))
    return rows


def terminal_section(r: WatchResult):
    def render(console: Console) -> None:
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        for k, v in summary_rows(r):
            t.add_row(k, v)
        console.print(t)
        if r.crash and r.crash.get("traceback"):
            console.print()
            console.print("[bold]Traceback[/bold] (last lines)")
            console.print("\n".join(r.crash["traceback"].splitlines()[-12:]), markup=False, highlight=False)
    return render


def markdown_section(r: WatchResult) -> str:
    lines = ["## Watched run", "", "| | |", "|---|---|"]
    for k, v in summary_rows(r):
        lines.append(f"| {k} | {str(v).replace('|', '/')} |")
    if r.crash and r.crash.get("traceback"):
        lines += ["", "```", r.crash["traceback"][-4000:], "```"]
    return "\n".join(lines) + "\n"
