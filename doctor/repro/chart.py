"""Step-time chart: a sparkline for the terminal and a PNG (matplotlib, Agg) for --out, with the
stalled step marked. The sparkline is pure; the PNG is skipped (None) when matplotlib is missing."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from doctor.repro.result import ReproResult

BARS = "▁▂▃▄▅▆▇█"
STALL_MARK = "✖"


def sparkline(durations: list[Optional[float]], stalled: bool = False) -> str:
    """One block per step, scaled to the slowest; a missing duration is a space; ✖ = the stall."""
    known = [d for d in durations if d is not None]
    top = max(known) if known else 0.0
    out = []
    for d in durations:
        if d is None:
            out.append(" ")
        elif top <= 0:
            out.append(BARS[0])
        else:
            out.append(BARS[min(len(BARS) - 1, int(d / top * (len(BARS) - 1) + 0.5))])
    return "".join(out) + (STALL_MARK if stalled else "")


def result_sparkline(r: ReproResult) -> str:
    by_step = {s.step: s.duration_s for s in r.steps}
    last = max(by_step, default=0)
    return sparkline([by_step.get(i) for i in range(1, last + 1)], stalled=r.stalled)


def write_png(r: ReproResult, path: Path) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # matplotlib missing or broken: the sparkline still tells the story
        return None
    steps = [s.step for s in r.steps if s.duration_s is not None]
    times = [s.duration_s for s in r.steps if s.duration_s is not None]
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    colours = ["#4c72b0"] * len(steps)
    long_steps = {f.evidence.get("step") for f in r.findings if f.id in ("repro.long-sample", "repro.tokens-jump")}
    for i, s in enumerate(steps):
        if s in long_steps:
            colours[i] = "#dd8452"
    ax.bar(steps, times, color=colours, label="step time")
    if r.stall is not None:
        ax.bar([r.stall.step], [r.stall.waited_s], color="none", edgecolor="#c44e52", hatch="//",
               linewidth=1.5, label=f"step {r.stall.step}: stalled ({r.stall.waited_s:.0f} s, no end)")
        ax.axhline(r.stall.deadline_s, color="#c44e52", linestyle="--", linewidth=1,
                   label=f"deadline {r.stall.deadline_s:.1f} s")
    if r.crash is not None and r.crash.step:
        ax.axvline(r.crash.step, color="#8c1c13", linestyle=":", label=f"crash at step {r.crash.step}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("seconds")
    ax.set_title(f"doctor repro: {r.info.get('backend', '?')} on {r.info.get('device', '?')}, "
                 f"{r.model_size} model, cause: {r.cause}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
