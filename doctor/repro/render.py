"""The repro section of the terminal and Markdown reports (the findings are rendered by
doctor.report like every command's). Formatting only."""
from __future__ import annotations

import re
from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from doctor.text import details, md_escape_cell
from doctor.repro.chart import STALL_MARK, result_sparkline
from doctor.repro.diagnose import EXPECTED_CAUSE, crash_when
from doctor.repro.result import ReproResult
from doctor.units import gib


def _s(v: Optional[float]) -> str:
    return "?" if v is None else f"{v:.2f} s"


def summary_rows(r: ReproResult) -> list[tuple[str, str]]:
    i, c = r.info, r.config
    ran = (f"{i.get('backend', '?')} ({i.get('trainer', '?')}) on {i.get('device', '?')}"
           + (f" [{i['gpu']}]" if i.get("gpu") else "")
           + f", {i.get('precision', '?')}, {i.get('optim', '?')}"
           + (", 4-bit" if i.get("load_in_4bit") else ""))
    lora = f"LoRA r{c.get('lora_r')} on {len(c.get('target_modules') or [])} modules" if c.get("lora_r") else "full fine-tune"
    model = f"{r.model_size} Llama, random weights"
    if i.get("params"):
        model += f" ({i['params'] / 1e6:.1f} M params, {i.get('trainable_params', 0) / 1e6:.2f} M trainable)"
    rows = [("Ran", ran), ("Model", model),
            ("Mirrored", f"batch {c.get('batch_size')} x grad-accum {c.get('grad_accum')}, seq "
                         f"{c.get('max_seq_length')}, {lora}, gradient checkpointing "
                         f"{i.get('gradient_checkpointing', c.get('gradient_checkpointing'))}, "
                         f"workers {i.get('num_workers', c.get('num_workers'))}")]
    done = len(r.steps)
    peak = max((s.mem_peak for s in r.steps if s.mem_peak), default=None)
    rss = max((s.host_rss for s in r.steps if s.host_rss), default=None)
    rows.append(("Steps", f"{done}/{r.steps_planned} finished, median {_s(r.median_step_s())}"
                          + (f", peak VRAM {gib(peak, 2)}" if peak else "") + (f", host RSS {gib(rss, 2)}" if rss else "")))
    if r.stall:
        rows.append(("Stall", f"step {r.stall.step}: no progress for {r.stall.waited_s:.1f} s "
                              f"(deadline {r.stall.deadline_s:.1f} s, {r.stall.reason})"))
    if r.crash:
        rows.append(("Crash", f"{crash_when(r.crash)}: {r.crash.type or 'exit ' + str(r.crash.exit_code)} "
                              f"{r.crash.message[:160]}"))
    rows.append(("Cause", r.cause))
    for f in r.faults:
        rows.append((f"Fault {f.kind}@{f.step}", fault_outcome(r, f)))
    w = r.wsl or {}
    rows.append(("WSL2", wsl_line(w)))
    rows.append(("Output", r.out_dir + (f" (chart {r.chart_path.rsplit('/', 1)[-1]})" if r.chart_path else "")))
    return rows


def fault_outcome(r: ReproResult, f) -> str:
    if f.skipped:
        return f"not applicable: {f.skipped}"
    if not f.injected:
        return "not planted (the run never reached its step)"
    found = r.cause in EXPECTED_CAUSE.get(f.kind, (f.kind,))
    return (("emulated; " if f.emulated else "") + f"planted: {f.detail}; diagnosed as '{r.cause}' "
            + ("(found)" if found else "(NOT found)"))


def wsl_line(w: dict) -> str:
    if not w.get("applicable"):
        return w.get("why", "not applicable")
    parts = []
    dm = w.get("dmesg") or {}
    parts.append(f"{len(dm.get('lines', []))} dxg line(s) in dmesg" if dm.get("readable") else dm.get("why", "dmesg ?"))
    sh = w.get("shared_gpu_memory") or {}
    if "growth" in sh:
        parts.append(f"shared GPU memory grew {gib(sh['growth'], 2)}")
    else:
        end = sh.get("end") or {}
        parts.append(end.get("why", "shared GPU memory not read"))
    return "; ".join(parts)


def terminal_section(r: ReproResult):
    def section(console: Console) -> None:
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        for k, v in summary_rows(r):
            t.add_row(k, escape(v))
        console.print(t)
        line = Text("Step times  ", style="bold") + Text(result_sparkline(r) or "(no step finished)")
        if r.stalled:
            line += Text(f"   ({STALL_MARK} = step {r.stall.step}, stalled)", style="red")
        console.print(line)
        for n in r.notes:
            console.print(Text("  not mirrored: ", style="yellow") + Text(n))
        if r.stalled and not r.diagnosis and r.stack_dump:    # no attach view: show faulthandler's
            console.print(Text("Main thread at the stall (faulthandler):", style="bold"))
            for frame in main_thread_frames(r.stack_dump):
                console.print(Text("  " + frame))
    return section


_FH_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<fn>\S+)')


def main_thread_frames(dump: str, limit: int = 8) -> list[str]:
    """'fn (pkg/file.py:N)' for the innermost frames of faulthandler's 'Current thread' block."""
    block = next((b for b in dump.split("\n\n") if b.lstrip().startswith("Current thread")), "")
    out = []
    for m in _FH_FRAME.finditer(block):
        path = m.group("file").split("site-packages/")[-1].split("/lib/python3")[-1].lstrip("./")
        out.append(f"{m.group('fn')} ({path}:{m.group('line')})")
    return out[:limit]


def markdown_section(r: ReproResult) -> str:
    rows = ["| | |", "|---|---|"] + [f"| {md_escape_cell(k)} | {md_escape_cell(v)} |" for k, v in summary_rows(r)]
    parts = ["### Reproduction\n", "\n".join(rows) + "\n", f"Step times: `{result_sparkline(r)}`"
             + (f" ({STALL_MARK} = step {r.stall.step}, stalled)" if r.stalled else "") + "\n"]
    if r.chart_path:
        parts.append(f"![step times]({r.chart_path})\n")
    if r.steps:
        table = ["| step | time (s) | loss | tokens | longest | VRAM peak | host RSS |", "|---|---|---|---|---|---|---|"]
        for s in r.steps:
            table.append(f"| {s.step} | {'' if s.duration_s is None else f'{s.duration_s:.3f}'} | "
                         f"{'' if s.loss is None else f'{s.loss:.4f}'} | {s.tokens or ''} | {s.max_len or ''} | "
                         f"{gib(s.mem_peak, 2) if s.mem_peak else ''} | {gib(s.host_rss, 2) if s.host_rss else ''} |")
        parts.append(details("Step log", "\n".join(table) + "\n", lang="md"))
    if r.notes:
        parts.append("Not mirrored on this machine:\n\n" + "\n".join(f"- {n}" for n in r.notes) + "\n")
    if r.stack_dump:
        parts.append(details("Thread stacks at the stall (faulthandler)", r.stack_dump, lang=""))
    if r.crash and r.crash.traceback:
        parts.append(details("Traceback", r.crash.traceback, lang=""))
    return "\n".join(parts)
