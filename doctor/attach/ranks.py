"""Every rank of a distributed job side by side: which collective and call site each one is in, which
ranks are elsewhere or gone, which diverged first, and the likely cause.

Pure: works on an AttachReport and the Snapshot it came from (one host), or on several of them (one
per node, `doctor analyze`). The collective frames, the cause groups and the finding texts live in
checks/data/rank_lineup.json; the flight recorder dumps were read by the sampler
(doctor/attach/flight_recorder.py) into snapshot.flight_records.
"""
from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from doctor.knowledge import load
from doctor.attach import flight_recorder as fr
from doctor.attach import signatures as sig
from doctor.attach.attach_findings import make_finding
from doctor.attach.gpu import gpu_state, rank_device
from doctor.attach.model import AttachReport
from doctor.attach.snapshot import ProcessSample, Snapshot
from doctor.findings import Finding
from doctor.serde import to_jsonable

_LOCAL_HOSTS = re.compile(r"^(localhost|127\.|::1$|0\.0\.0\.0$)")


@dataclass
class RankRow:
    rank: int
    pid: Optional[int]
    local_rank: Optional[int] = None
    host: str = ""                       # the node label (analyze over several hosts), "" for this host
    state: str = "?"                     # /proc state letter, or "gone"
    cause: Optional[str] = None          # the process's own attach cause
    collective: Optional[str] = None     # all_reduce, barrier, init_process_group ... (None: not in one)
    site: Optional[str] = None           # the user frame that called it, "train.py:42"
    where: Optional[str] = None          # where its main thread is, when not in a collective
    exit_code: Optional[int] = None
    flight: dict = field(default_factory=dict)   # {"enqueued", "started", "completed", "op"} from its dump

    @property
    def key(self) -> Optional[tuple[str, str]]:
        return (self.collective, self.site or "?") if self.collective else None


@dataclass
class Lineup:
    rows: list[RankRow]
    world_size: Optional[int] = None
    expected_here: Optional[int] = None  # LOCAL_WORLD_SIZE (ranks this host should have)
    missing: list[int] = field(default_factory=list)      # global ranks expected here and not alive
    odd: list[int] = field(default_factory=list)          # the ranks not where the majority is
    first: Optional[int] = None          # the rank that diverged first, when it can be told
    first_by: str = ""                   # "flight recorder" | "stacks" | "its process is gone"
    verdict: Optional[str] = None        # the rank_lineup.json verdict id
    flight_on: bool = False              # the job records collectives (env of its ranks)
    flight_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return to_jsonable(self)


@functools.lru_cache(maxsize=None)
def _data() -> dict:
    raw = load("rank_lineup")
    frames = [sig.Pattern.from_row(r) for r in raw["collective_frames"]]
    away = {cause: group for group, causes in raw["away"].items() for cause in causes}
    return {"frames": frames, "away": away, "rows": {r["id"]: r for r in raw["verdicts"]},
            "rendezvous": re.compile(raw["rendezvous_functions"])}


def verdict_rows() -> dict[str, dict]:
    """The finding rows of rank_lineup.json by id (also used by `doctor analyze` over several nodes)."""
    return _data()["rows"]


def verdict_ids() -> list[str]:
    """Every finding id the line-up can emit (for documentation and the contract test)."""
    return [f"attach.ranks.{r}" for r in _data()["rows"]]


def _int(v) -> Optional[int]:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _main_frames(ps: ProcessSample) -> list[dict]:
    if not ps.dumps:
        return []
    last = ps.dumps[-1]
    main = next((t for t in last if t.get("thread_name") == "MainThread" or t.get("os_thread_id") == ps.pid),
                last[0] if last else None)
    return [f for f in (main or {}).get("frames") or [] if not sig.is_native(f)]


def collective_of(frames: list[dict]) -> tuple[Optional[str], Optional[str]]:
    """(collective, call site) of a main thread's Python frames (innermost first): the innermost frame
    of torch.distributed/accelerate/deepspeed that is a collective, and the first user frame outside it."""
    pats = _data()["frames"]
    nothing = lambda _f: None  # noqa: E731 - collective patterns never look at source lines
    for i, f in enumerate(frames):
        if any(p.frame_matches(f, nothing) for p in pats):
            name = (f.get("name") or "?").rsplit(".", 1)[-1]
            # torch's internal waits (store get inside init_process_group): name the API call outside them
            for outer in frames[i + 1:]:
                if sig.is_user_code(outer):
                    break
                if any(p.frame_matches(outer, nothing) for p in pats) and outer.get("name") != "wrapper":
                    name = (outer.get("name") or name).rsplit(".", 1)[-1]
            return name, _user_site(frames[i + 1:])
    return None, None


def _spinning(snap: Snapshot, ps: ProcessSample) -> bool:
    """Its GPU busy-polls at idle power while the host waits in a CUDA sync: an NCCL kernel waiting for
    the other ranks (all_reduce returned at once; the host then waits in the next sync). The same
    test as classify.py's, per rank."""
    mine = {ps.pid} | {p.pid for p in snap.processes if p.ppid == ps.pid}
    by_rank = rank_device(snap.gpu, ps.local_rank, ps.cuda_visible_devices)
    return gpu_state(snap.gpu, mine, sig.load_raw()["gpu_states"], only_mine=True, fallback=by_rank)[0] == "spinning"


def _user_site(frames: list[dict]) -> Optional[str]:
    user = next((g for g in frames if sig.is_user_code(g)), None)
    return f"{sig.short_name(user)}:{user.get('line', 0)}" if user else None


def _rank_rows(report: AttachReport, snap: Snapshot, host: str) -> list[RankRow]:
    views = {v.pid: v for v in report.processes}
    rows = []
    for ps in snap.processes:
        if not (ps.role.startswith("rank ") and ps.rank is not None):
            continue
        v = views.get(ps.pid)
        frames = _main_frames(ps)
        coll, site = collective_of(frames)
        main = next((t for t in v.threads if t.main), None) if v is not None else None
        if main is not None and main.moved:
            coll = site = None          # passing through a collective in a healthy step is no wait
        if coll is None and v is not None and v.cause == "cuda-sync-wait" and _spinning(snap, ps):
            coll, site = "NCCL kernel (async)", _user_site(frames)
        row = RankRow(rank=ps.rank, pid=ps.pid, local_rank=ps.local_rank, host=host,
                      state="gone" if ps.exited else (v.state if v and v.state else (ps.state_after or "?")),
                      cause=v.cause if v else None, collective=coll, site=site,
                      where=None if coll else _short(v.where if v else None), exit_code=ps.exit_code)
        rec = snap.flight_records.get(str(ps.rank))
        if rec and not rec.get("error"):
            prog = fr.progress(rec)
            entry = fr.entry_at(rec, prog["enqueued"])
            row.flight = dict(prog, op=(entry or {}).get("profiling_name"))
        rows.append(row)
    return sorted(rows, key=lambda r: (r.host, r.rank))


def _layout(snap: Snapshot, rows: list[RankRow]) -> tuple[Optional[int], Optional[int], list[int]]:
    """(world size, ranks expected on this host, the expected global ranks that are not alive)."""
    ranked = [p for p in snap.processes if p.role.startswith("rank ") and p.rank is not None]
    envs = [p.dist_env for p in ranked]
    world = next((_int(e.get("WORLD_SIZE")) for e in envs if _int(e.get("WORLD_SIZE"))), None) or \
        next((p.world_size for p in ranked if p.world_size), None)
    local_n = next((_int(e.get("LOCAL_WORLD_SIZE")) for e in envs if _int(e.get("LOCAL_WORLD_SIZE"))), None)
    if local_n is None and world is not None:
        # no LOCAL_WORLD_SIZE (a hand-rolled mp.spawn): the whole world is here only when the master is local
        if all(_LOCAL_HOSTS.match(e.get("MASTER_ADDR", "localhost")) for e in envs):
            local_n = world
    if local_n is None or not ranked:
        return world, local_n, []
    p0 = ranked[0]
    base = (p0.rank - p0.local_rank) if p0.local_rank is not None else 0
    alive = {r.rank for r in rows if r.state not in ("gone", "Z")}
    missing = [base + lr for lr in range(local_n) if base + lr not in alive]
    return world, local_n, missing


def _zombie_exit(snap: Snapshot, missing: list[int]) -> dict[int, int]:
    """A rank that exited but that its launcher has not reaped yet keeps its status in the kernel:
    a zombie child has no readable environment, so match it only when one rank is missing."""
    zombies = [p for p in snap.processes if (p.state_before == "Z" or "Z" in p.states) and p.exit_code is not None
               and p.pid != snap.target_pid]
    if len(missing) == 1 and len(zombies) == 1:
        return {missing[0]: zombies[0].exit_code}
    return {}


def build(parts: list[tuple[AttachReport, Snapshot, str]]) -> Optional[Lineup]:
    """The line-up over one host (one part) or several (one part per node). None: not a distributed job."""
    rows: list[RankRow] = []
    missing: list[tuple[str, int]] = []
    world = expected = None
    flight_on = False
    errors: list[str] = []
    exits: dict[int, int] = {}
    for report, snap, host in parts:
        mine = _rank_rows(report, snap, host)
        w, n, miss = _layout(snap, mine)
        world = world or w
        expected = (expected or 0) + (n or len(mine)) if (n or mine) else expected
        missing += [(host, m) for m in miss]
        exits.update(_zombie_exit(snap, miss))
        rows += mine
        flight_on |= any(fr.enabled(p.dist_env) for p in snap.processes if p.role.startswith("rank "))
        errors += [f"rank {r}: {rec['error']}" for r, rec in snap.flight_records.items() if rec.get("error")]
        flight_on |= bool(snap.flight_records)
    if not rows and not missing:
        return None
    if world is not None and world <= 1 and not missing:
        return None
    lu = Lineup(rows=rows, world_size=world, expected_here=expected, missing=sorted({m for _h, m in missing}),
                flight_on=flight_on, flight_errors=errors)
    for host, m in sorted(set(missing)):
        lu.rows.append(RankRow(rank=m, pid=None, host=host, state="gone", exit_code=exits.get(m)))
    lu.rows.sort(key=lambda r: (r.host, r.rank))
    _judge(lu)
    return lu


def _judge(lu: Lineup) -> None:
    """The odd ranks out, the first to diverge, and the verdict."""
    live = [r for r in lu.rows if r.state != "gone"]
    groups = Counter(r.key for r in live if r.key)
    if not groups and not lu.missing:
        return                                        # nobody waits for anybody: training, or elsewhere
    major = groups.most_common(1)[0][0] if groups else None
    tie = len(groups) > 1 and groups.most_common(2)[1][1] == groups[major]
    lu.odd = [r.rank for r in live if r.key != major]
    laggard = _flight_laggard(live)
    if lu.missing:
        lu.first, lu.first_by, lu.verdict = lu.missing[0], "its process is gone", "dead-rank"
        return
    if not lu.odd:
        lu.verdict = "all-in-collective"
        return
    if laggard is not None:
        lu.first, lu.first_by = laggard, "flight recorder"
    elif tie:
        lu.notes.append("the ranks split evenly between collectives: the stacks cannot tell which one diverged "
                        "first (the flight recorder can)")
        not_zero = [r for r in lu.odd if r != 0]   # no majority: name the one not grouped with rank 0
        lu.first, lu.first_by = (not_zero or lu.odd)[0], "stacks"
    else:
        lu.first, lu.first_by = lu.odd[0], "stacks"
    row = next(r for r in live if r.rank == lu.first)
    if row.collective:
        lu.verdict = "skipped-collective"
    else:
        lu.verdict = {"dataloader": "rank-in-dataloader", "io": "rank-in-io",
                      "computing": "rank-computing"}.get(_data()["away"].get(row.cause or ""), "rank-elsewhere")


def _flight_laggard(rows: list[RankRow]) -> Optional[int]:
    """The rank that issued the fewest collectives, or the one whose last collective differs from the
    others' at the same sequence number; None without dumps or when they do not single one out."""
    withfr = [r for r in rows if r.flight.get("enqueued") is not None]
    if len(withfr) < 2:
        return None
    low = min(r.flight["enqueued"] for r in withfr)
    lows = [r for r in withfr if r.flight["enqueued"] == low]
    if len(lows) < len(withfr):
        return lows[0].rank if len(lows) == 1 else None
    ops = Counter(r.flight.get("op") for r in withfr)
    if len(ops) > 1:
        odd_op = min(ops, key=lambda o: ops[o])
        odd = [r for r in withfr if r.flight.get("op") == odd_op]
        return odd[0].rank if len(odd) == 1 else None
    return None


def _where_majority(lu: Lineup) -> tuple[str, str, str]:
    """(collective, site, "ranks 0, 1, 3 wait in all_reduce at train.py:42") of the majority."""
    live = [r for r in lu.rows if r.state != "gone"]
    groups = Counter(r.key for r in live if r.key)
    if not groups:
        return "?", "?", "no other rank is in a collective"
    (coll, site), _n = groups.most_common(1)[0]
    ranks = [r.rank for r in live if r.key == (coll, site) and r.rank != lu.first]
    who = "rank" if len(ranks) == 1 else "ranks"
    verb = "waits" if len(ranks) == 1 else "wait"
    return coll, site, f"{who} {', '.join(map(str, ranks))} {verb} in {coll} at {site}"


def findings(lu: Lineup) -> list[Finding]:
    rows = _data()["rows"]
    out: list[Finding] = []
    coll, site, others = _where_majority(lu)
    first = next((r for r in lu.rows if r.rank == lu.first), None)
    live = [r for r in lu.rows if r.state != "gone"]
    alike = [r.rank for r in live if first is not None and r.rank != first.rank and r.rank in lu.odd
             and (r.key, r.cause if not r.key else None) == (first.key, first.cause if not first.key else None)]
    also = f" (and rank{'s' if len(alike) > 1 else ''} {', '.join(map(str, alike))}, alike)" if alike else ""
    values = {"collective": coll, "site": site, "others": others, "live": len(live), "also": also,
              "expected": lu.expected_here or "?", "world": lu.world_size or "?", "detail": "", "exit": "",
              "env": "no TORCH_NCCL_TRACE_BUFFER_SIZE / TORCH_FR_BUFFER_SIZE in the ranks' environment"}
    if first is not None:
        values.update(rank=first.rank, pid=first.pid or "?",
                      where=first.where or (f"{first.collective} at {first.site}" if first.collective else "?"))
        if first.collective:
            values["collective"], values["site"] = first.collective, first.site or "?"
    if lu.verdict == "dead-rank" and first is not None:
        values["exit"] = (f" (exit status {first.exit_code})" if first.exit_code is not None and first.exit_code >= 0
                          else f" (killed by signal {-first.exit_code})" if first.exit_code is not None
                          else "; its exit status is gone (the launcher reaped it)")
        values["collective"], values["site"] = coll, site
    if lu.verdict == "all-in-collective" and lu.world_size and lu.world_size > len(live):
        values["detail"] = f" (world size {lu.world_size}: the other nodes' ranks are not seen from here)"
    if lu.verdict:
        ev = _evidence(lu)
        even_split = any("evenly" in n for n in lu.notes)
        conf = 0.9 if lu.first_by in ("flight recorder", "its process is gone") else (0.6 if even_split else 0.8)
        out.append(make_finding(f"ranks.{lu.verdict}", rows[lu.verdict], values, ev, conf))
    fr_rows = [r for r in lu.rows if r.flight.get("enqueued") is not None]
    if fr_rows:
        out.append(_flight_finding(lu, fr_rows, rows["flight-recorder"], values))
    elif lu.verdict and not lu.flight_on:
        out.append(make_finding("ranks.flight-recorder-off", rows["flight-recorder-off"], values, {}, 0.9))
    return out


def _flight_finding(lu: Lineup, fr_rows: list[RankRow], row: dict, values: dict) -> Finding:
    counts = "; ".join(f"rank {r.rank}: issued {r.flight['enqueued']}"
                       + (f", completed {r.flight['completed']}" if r.flight.get("completed") is not None else "")
                       + (f", last {r.flight['op']}" if r.flight.get("op") else "") for r in fr_rows)
    lag = _flight_laggard(fr_rows)
    if lag is not None:
        r = next(x for x in fr_rows if x.rank == lag)
        most = max(x.flight["enqueued"] for x in fr_rows)
        detail = (f"issued the fewest collectives ({r.flight['enqueued']} of {most})" if r.flight["enqueued"] < most
                  else f"issued {r.flight.get('op')} where the others issued another collective "
                       f"(sequence {r.flight['enqueued']})")
    else:
        lag, detail = fr_rows[0].rank, "and every other rank issued the same collectives"
        detail = f"issued {fr_rows[0].flight['enqueued']} collectives, {detail}"
    return make_finding("ranks.flight-recorder", row, dict(values, rank=lag, detail=detail),
                        {"per rank": counts,
                         **({"unreadable": "; ".join(lu.flight_errors)} if lu.flight_errors else {})},
                        0.9)


def _evidence(lu: Lineup) -> dict:
    ev = {"ranks": "; ".join(_describe(r) for r in lu.rows)}
    if lu.world_size:
        ev["world size"] = lu.world_size
    if lu.first is not None:
        ev["diverged first"] = f"rank {lu.first} (by {lu.first_by})"
    if lu.notes:
        ev["note"] = "; ".join(lu.notes)
    return ev


def _describe(r: RankRow) -> str:
    host = f"{r.host}/" if r.host else ""
    if r.state == "gone":
        return f"{host}rank {r.rank} gone"
    what = f"in {r.collective} at {r.site or '?'}" if r.collective else f"{r.cause or '?'} {r.where or ''}".strip()
    return f"{host}rank {r.rank} (pid {r.pid}) {what}"


def add_to_report(report: AttachReport, snap: Snapshot) -> AttachReport:
    """The line-up of a live or replayed snapshot, added to its report: a section and findings (placed
    right after the primary diagnosis, which they explain)."""
    lu = build([(report, snap, "")])
    if lu is None:
        return report
    if snap.walked_up_from is not None:
        lu.notes.append(f"pid {snap.walked_up_from} is a rank; its launcher pid {snap.target_pid} was sampled "
                        "to see every rank")
    report.ranks = lu.to_dict()
    new = findings(lu)
    report.findings = report.findings[:1] + new + report.findings[1:]
    return report


def _short(where: Optional[str]) -> Optional[str]:
    """'waits in save (t.py:15) ← main (t.py:29) (sleep)' -> 'waits in save (t.py:15)'."""
    return where.split(" ← ")[0] if where else where
