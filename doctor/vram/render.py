"""The VRAM estimate as a bar a person reads at a glance (terminal, 80 columns) and as Markdown."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from doctor.units import gib
from doctor.vram.estimator import DOES_NOT_FIT, FITS, TIGHT, VramEstimate

STYLE = {"context": "grey50", "weights": "blue", "dequant": "cyan", "lora": "green", "grads": "green3",
         "optimizer": "yellow", "checkpoints": "magenta", "activations": "bright_magenta",
         "logits": "red", "slack": "white", "gathered": "blue", "buckets": "green3"}
# distinct glyphs too, so the bar still reads without colour (logs, pasted issues)
CHAR = {"context": "▒", "weights": "█", "dequant": "▓", "lora": "▚", "grads": "▚", "optimizer": "▚",
        "checkpoints": "▄", "activations": "▄", "logits": "▀", "slack": "░"}
VERDICT_STYLE = {FITS: "bold green", TIGHT: "bold yellow", DOES_NOT_FIT: "bold red"}
VERDICT_TEXT = {FITS: "fits", TIGHT: "tight", DOES_NOT_FIT: "does not fit", "unknown": "no GPU to compare"}


def _headline(est: VramEstimate) -> str:
    i = est.inputs
    gc = {"off": "no GC", "hf": "GC", "unsloth": "offloaded GC"}[i.gc]
    tune = "full fine-tune" if i.full_finetune else f"LoRA r={i.lora_r}"
    quant = {"4bit": "4-bit", "8bit": "8-bit", "none": "16-bit" if i.param_bytes == 2 else "fp32"}[i.quant]
    return f"{i.framework}, batch {i.batch_size} x {i.seq_len}, {quant}, {tune}, {gc}, {i.optim}"


def bar(est: VramEstimate, width: int) -> Text:
    """Components at the peak, left to right; the high edge as a faint tail; `│` at the usable limit."""
    scale_to = max(est.high.total, est.gpu_free or 0) or 1.0
    per_char = scale_to / width
    cells: list[tuple[str, str]] = []
    for c in est.mid.components:
        if not c.at_peak or c.bytes <= 0:
            continue
        n = max(1, round(c.bytes / per_char))
        cells += [(CHAR.get(c.key, "█"), STYLE.get(c.key, "white"))] * n
    cells = cells[:width]
    tail = max(0, round(est.high.total / per_char) - len(cells))
    cells += [("·", "grey50")] * min(tail, width - len(cells))
    cells += [(" ", "")] * (width - len(cells))
    if est.gpu_free is not None:
        pos = min(width - 1, max(0, round(est.gpu_free / per_char) - 1))
        over = pos < len([c for c in cells if c[0] not in (" ", "·")])
        cells[pos] = ("│", "bold red" if over else "bold green")
    out = Text()
    for ch, style in cells:
        out.append(ch, style=style or None)
    return out


def terminal_section(console: Console, est: VramEstimate) -> None:
    width = min(console.width or 80, 80)
    console.print(Text("VRAM estimate ", style="bold") + Text(est.model, style="bold cyan"))
    console.print(Text(_headline(est), style="dim"))
    console.print(bar(est, width - 2))
    verdict = est.verdict
    line = Text(f"peak {gib(est.mid.total)} ({gib(est.low.total)[:-4]}-{gib(est.high.total)})")
    if est.gpu_free is not None:
        line.append(f" vs {gib(est.gpu_free)} usable on {est.gpu_name}{' (what-if)' if est.whatif else ''}: ")
    else:
        line.append(": ")
    line.append(VERDICT_TEXT[verdict], style=VERDICT_STYLE.get(verdict, "bold"))
    console.print(line)
    t = Table.grid(padding=(0, 1))
    t.add_column(width=1)
    t.add_column(no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(style="dim", overflow="fold")
    for c in est.mid.components:
        mark = Text(CHAR.get(c.key, "█"), style=STYLE.get(c.key, "white") if c.at_peak else "grey50")
        label = Text(c.label, style=None if c.at_peak else "dim")
        note = c.note + ("" if c.at_peak else " (freed before the peak)")
        t.add_row(mark, label, gib(c.bytes), note)
    console.print(t)
    extras = []
    if est.host_ram_needed:
        extras.append(f"host RAM for offloaded checkpoints: {gib(est.high.host_offload)}"
                      + (f" of {gib(est.host_ram_available)} available" if est.host_ram_available else ""))
    sh = est.to_dict()["sharding"]
    if sh and sh["host_ram_per_rank"]:   # ZeRO / FSDP CPU offload
        extras.append(f"host RAM for CPU offload: {gib(sh['host_ram_per_rank'])} per rank, "
                      f"{gib(sh['host_ram_per_node'])} per node ({sh['world']} ranks assumed on one node)"
                      + (f" of {gib(est.host_ram_available)} available" if est.host_ram_available else ""))
    if est.max_batch_size is not None:
        extras.append(fit_limits(est))
    if est.gpu_reserve >= 0.05 * 1024 ** 3:
        extras.append(f"usable = free minus {gib(est.gpu_reserve)}: {est.gpu_reserve_reason}")
    for e in extras + [f"assumed: {a}" for a in est.assumptions]:
        console.print(Text("  " + e, style="dim"))


def markdown_section(est: VramEstimate) -> str:
    verdict = est.verdict
    lines = ["### VRAM estimate", "",
             f"`{est.model}`: {_headline(est)}.", "",
             f"**Peak {gib(est.mid.total)}** (band {gib(est.low.total)} to {gib(est.high.total)})"
             + (f" vs {gib(est.gpu_free)} usable on {est.gpu_name}{' (what-if)' if est.whatif else ''}"
                if est.gpu_free is not None else "")
             + f": **{VERDICT_TEXT[verdict]}**.", "",
             "| component | estimate | low | high | note |", "|---|---:|---:|---:|---|"]
    d = {c["key"]: c for c in est.to_dict()["components"]}
    for c in est.mid.components:
        row = d[c.key]
        note = c.note + ("" if c.at_peak else " (freed before the peak)")
        lines.append(f"| {c.label} | {gib(row['bytes'])} | {gib(row['low'])} | {gib(row['high'])} | {note} |")
    lines.append("")
    if est.host_ram_needed:
        lines.append(f"- Host RAM for offloaded checkpoints: {gib(est.high.host_offload)}")
    sh = est.to_dict()["sharding"]
    if sh and sh["host_ram_per_rank"]:
        lines.append(f"- Host RAM for CPU offload: {gib(sh['host_ram_per_rank'])} per rank, "
                     f"{gib(sh['host_ram_per_node'])} per node ({sh['world']} ranks assumed on one node)")
    if est.max_batch_size is not None:
        limits = fit_limits(est)
        lines.append(f"- {limits[:1].upper()}{limits[1:]}")
    lines += [f"- Assumed: {a}" for a in est.assumptions]
    return "\n".join(lines).rstrip() + "\n"


def fit_limits(est) -> str:
    """The largest batch and longest sequence that fit (the high estimate), or that nothing does."""
    batch = (f"largest batch that fits at {est.inputs.seq_len} tokens: {est.max_batch_size}" if est.max_batch_size
             else f"no batch fits at {est.inputs.seq_len} tokens")
    seq = (f"longest sequence at batch {est.inputs.batch_size}: {est.max_seq_len}" if est.max_seq_len
           else f"no sequence fits at batch {est.inputs.batch_size}")
    return f"{batch}; {seq}"
