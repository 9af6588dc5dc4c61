"""Per-rank progress under a launcher (torchrun, accelerate launch): every rank's hook reports its
steps with its pid and RANK / LOCAL_RANK; this folds them into one row per rank and says which rank
stopped first. Pure: works on the event list.

"Stopped first" = the rank furthest behind: the lowest last finished step; between equals, one that
has not begun the next step is behind one that has (a rank that began step N+1 got its batch and
waits in the collective for the other); then the rank attach's line-up of the stacks names; then
the oldest last event.
"""
from __future__ import annotations

from statistics import median
from typing import Optional


def rank_progress(events: list[dict]) -> list[dict]:
    """One row per reporting rank (only when at least one event carried a rank), sorted by rank."""
    rows: dict[int, dict] = {}
    for e in events:
        rank = e.get("rank")
        if not isinstance(rank, int) or e.get("kind") not in ("step", "step-begin", "phase"):
            continue
        row = rows.setdefault(rank, {"rank": rank, "local_rank": e.get("local_rank"), "pid": e.get("pid"),
                                     "last_step": 0, "last_step_t": None, "began": 0, "last_t": None,
                                     "durations": []})
        row["last_t"] = max(row["last_t"] or 0.0, float(e.get("t") or 0.0))
        if e["kind"] == "step" and isinstance(e.get("step"), int) and e["step"] >= row["last_step"]:
            row["last_step"], row["last_step_t"] = e["step"], e.get("t")
            if isinstance(e.get("duration_s"), (int, float)):
                row["durations"].append(float(e["duration_s"]))
        elif e["kind"] == "step-begin" and isinstance(e.get("step"), int):
            row["began"] = max(row["began"], e["step"])
    out = []
    for rank in sorted(rows):
        row = rows[rank]
        d = row.pop("durations")
        row["steps"] = len(d)
        row["median_step_s"] = round(median(d), 4) if d else None
        row["last_step_s"] = round(d[-1], 4) if d else None
        row["began_next"] = row.pop("began") > row["last_step"]
        out.append(row)
    return out


def first_stopped(rows: list[dict], lineup_first: Optional[int] = None) -> Optional[dict]:
    """The rank furthest behind (see the module doc); None with fewer than two ranks.

    lineup_first: the rank attach's line-up (doctor.attach.ranks) names as the first to diverge, from
    the stacks. Ranks that tie on progress (they all finished the same step, the one in a collective
    too, when it waits in a gather before its step begins) are told apart by it before the clock."""
    if len(rows) < 2:
        return None
    behind = min((r["last_step"], r["began_next"]) for r in rows)
    tied = [r for r in rows if (r["last_step"], r["began_next"]) == behind]
    named = next((r for r in tied if r["rank"] == lineup_first), None)
    return named or min(tied, key=lambda r: r["last_t"] or 0.0)


def describe(rows: list[dict], first: Optional[dict]) -> str:
    """'rank 0: step 4, began 5, median 0.05 s; rank 1: step 4 (stopped first)' for the report."""
    parts = []
    for r in rows:
        s = f"rank {r['rank']} (pid {r['pid']}): step {r['last_step']}"
        if r["began_next"]:
            s += f", began {r['last_step'] + 1}"
        if r["median_step_s"] is not None:
            s += f", median {r['median_step_s']:.2f} s"
        if first is not None and r["rank"] == first["rank"]:
            s += " (stopped first)"
        parts.append(s)
    return "; ".join(parts)
