"""The whole run at a glance: step time and memory per step. Sparklines (doctor.repro.chart's) for the
terminal, a two-panel PNG (matplotlib, Agg) for --out; None when matplotlib is missing."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from doctor.repro.chart import sparkline
from doctor.watch.result import WatchResult

MAX_BARS = 100           # a long run is shown as its last MAX_BARS steps in the terminal


def _by_step(r: WatchResult, attr: str) -> list[Optional[float]]:
    vals = {s.step: getattr(s, attr) for s in r.steps}
    last = max(vals, default=0)
    return [vals.get(i) for i in range(max(1, last - MAX_BARS + 1), last + 1)]


def step_sparkline(r: WatchResult) -> str:
    stalled = bool(r.stalls) and not r.stalls[-1].recovered
    return sparkline(_by_step(r, "duration_s"), stalled=stalled)


def memory_sparkline(r: WatchResult) -> str:
    mem = _by_step(r, "mem_reserved")
    if not any(m is not None for m in mem):
        mem = _by_step(r, "host_rss")
    return sparkline(mem) if any(m is not None for m in mem) else ""


def memory_label(r: WatchResult) -> str:
    return "VRAM reserved" if any(s.mem_reserved is not None for s in r.steps) else "host RSS"


def write_png(r: WatchResult, path: Path) -> Optional[Path]:
    if not r.steps:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # matplotlib missing or broken: the sparklines still tell the story
        return None
    steps = [s.step for s in r.steps]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5), dpi=110, sharex=True)
    ax1.bar(steps, [s.duration_s or 0 for s in r.steps], color="#4c72b0", label="step time")
    waits = [s.data_wait_s or 0 for s in r.steps]
    if any(waits):
        ax1.bar(steps, waits, color="#dd8452", label="of which waiting for the batch")
    for i, st in enumerate(r.stalls, 1):
        if st.info.step:
            ax1.bar([st.info.step], [st.info.waited_s], color="none", edgecolor="#c44e52", hatch="//",
                    label=f"stall {i} at step {st.info.step} ({st.info.waited_s:.0f} s)")
            ax1.axhline(st.info.deadline_s, color="#c44e52", linestyle="--", linewidth=1)
    ax1.set_ylabel("seconds")
    ax1.legend(fontsize=7, loc="upper left")
    gib = float(1 << 30)
    for attr, colour, label in (("mem_allocated", "#55a868", "VRAM allocated"), ("mem_reserved", "#8172b2", "VRAM reserved"),
                                ("host_rss", "#937860", "host RSS")):
        ys = [getattr(s, attr) for s in r.steps]
        if any(y is not None for y in ys):
            ax2.plot(steps, [None if y is None else y / gib for y in ys], color=colour, label=label)
    ax2.set_ylabel("GiB")
    ax2.set_xlabel("optimizer step")
    ax2.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"doctor watch: {' '.join(r.command)[:80]}  (cause: {r.cause})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
