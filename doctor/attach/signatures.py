"""The stack-signature table (checks/data/stack_signatures.json), compiled, and the matching of one
thread's frames against it. Pure: no I/O beyond loading the table once."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from doctor.knowledge import load

_STDLIB = re.compile(r"/lib/python\d\.\d+/(?!.*(site|dist)-packages/)")
_SITE = re.compile(r"(site|dist)-packages/")


def is_native(frame: dict) -> bool:
    return bool(frame.get("module"))


def is_user_code(frame: dict) -> bool:
    fn = frame.get("filename") or ""
    return not (_SITE.search(fn) or _STDLIB.search(fn) or fn.startswith("<frozen"))


def short_name(frame: dict) -> str:
    return frame.get("short_filename") or (frame.get("filename") or "?").rsplit("/", 1)[-1]


def short_function(name: str, limit: int = 32) -> str:
    """`_MultiProcessingDataLoaderIter._try_get_data` -> `_try_get_data` when the qualname is long."""
    parts = [p for p in name.split(".") if p != "<locals>"]
    if len(".".join(parts)) <= limit or len(parts) == 1:
        return ".".join(parts)
    tail = parts[-2:] if parts[-1].startswith("<") else parts[-1:]
    return ".".join(tail)


def format_frame(frame: dict) -> str:
    if is_native(frame):
        lib = (frame.get("module") or "").rsplit("/", 1)[-1]
        return f"{short_function(frame.get('name') or '?', 48)} ({lib})"
    return f"{short_function(frame.get('name') or '?')} ({short_name(frame)}:{frame.get('line', 0)})"


def _fullmatch_name(rx: re.Pattern, name: str) -> bool:
    return bool(rx.fullmatch(name) or rx.fullmatch(name.rsplit(".", 1)[-1]))


@dataclass
class Pattern:
    file: Optional[re.Pattern] = None
    function: Optional[re.Pattern] = None
    code: Optional[re.Pattern] = None
    library: Optional[re.Pattern] = None
    native: bool = False
    innermost: bool = False
    innermost_interesting: bool = False
    kernel: tuple[str, ...] = ()
    user_code: bool = False

    @classmethod
    def from_row(cls, row: dict) -> "Pattern":
        rx = lambda k: re.compile(row[k]) if row.get(k) else None  # noqa: E731
        return cls(file=rx("file"), function=rx("function"), code=rx("code"), library=rx("library"),
                   native=row.get("frame") == "native", innermost=bool(row.get("innermost")),
                   innermost_interesting=bool(row.get("innermost_interesting")),
                   kernel=tuple(row.get("kernel") or ()), user_code=bool(row.get("user_code")))

    @property
    def frame_free(self) -> bool:
        """Only thread-level conditions (kernel wait, user code): no frame regex at all."""
        return not (self.file or self.function or self.code or self.library or self.native)

    def frame_matches(self, frame: dict, code: Callable[[dict], Optional[str]]) -> bool:
        if self.native != is_native(frame):
            return False
        if self.file and not self.file.search(frame.get("filename") or ""):
            return False
        if self.function and not _fullmatch_name(self.function, frame.get("name") or ""):
            return False
        if self.library and not self.library.search(frame.get("module") or ""):
            return False
        if self.code:
            text = code(frame)
            if not text or not self.code.search(text):
                return False
        return True


@dataclass
class Cause:
    id: str
    tier: int
    when: str                            # stuck | any
    thread: str                          # main | any
    patterns: list[Pattern]
    refines: tuple[str, ...] = ()
    confirm_native: bool = False
    report: bool = True
    order: int = 0                       # position in the table: breaks ties
    row: dict = field(default_factory=dict)   # the table row: texts, severity, gpu/stuck overrides


@dataclass
class ThreadStack:
    """One thread's frames (innermost first; native frames merged in when a --native dump exists)."""
    frames: list[dict]
    code: Callable[[dict], Optional[str]]
    kernel: Optional[str] = None         # kernel wait kind
    wrappers: tuple[re.Pattern, ...] = ()

    @functools.cached_property
    def python_frames(self) -> list[dict]:
        return [f for f in self.frames if not is_native(f)]

    @functools.cached_property
    def inner_native(self) -> list[dict]:
        """Native frames inner to the innermost Python frame: the C call that line is in."""
        out = []
        for f in self.frames:
            if not is_native(f):
                break
            out.append(f)
        return out

    def is_wrapper(self, frame: dict) -> bool:
        fn = frame.get("filename") or ""
        return any(w.search(fn) for w in self.wrappers)

    @functools.cached_property
    def interesting(self) -> list[dict]:
        """Python frames with the threading/queue/selectors wrappers skipped (for display and matching)."""
        return [f for f in self.python_frames if not self.is_wrapper(f)]


@dataclass
class Match:
    cause: Cause
    depth: int                           # index of the Python frame; native frames count as 0
    frame: Optional[dict]


def match_cause(cause: Cause, ts: ThreadStack) -> Optional[Match]:
    py = ts.python_frames
    innermost_user = bool(py) and is_user_code(py[0])
    best: Optional[Match] = None
    for pat in cause.patterns:
        if pat.kernel and ts.kernel not in pat.kernel:
            continue
        if pat.user_code and not innermost_user:
            continue
        if pat.frame_free:
            m = Match(cause, 0, py[0] if py else None)
        elif pat.native:
            hit = next((f for f in ts.inner_native if pat.frame_matches(f, ts.code)), None)
            m = Match(cause, 0, hit) if hit else None
        elif pat.innermost_interesting:
            first = ts.interesting[0] if ts.interesting else None
            m = Match(cause, py.index(first), first) if first and pat.frame_matches(first, ts.code) else None
        else:
            frames = py[:1] if pat.innermost else py
            idx = next((i for i, f in enumerate(frames) if pat.frame_matches(f, ts.code)), None)
            m = Match(cause, idx, frames[idx]) if idx is not None else None
        if m and (best is None or m.depth < best.depth):
            best = m
    return best


def best_match(causes: list[Cause], ts: ThreadStack) -> Optional[Match]:
    """Lowest tier wins, then the innermost matching frame, then the table's order."""
    found = [m for m in (match_cause(c, ts) for c in causes) if m]
    return min(found, key=lambda m: (m.cause.tier, m.depth, m.cause.order)) if found else None


@dataclass
class Table:
    causes: list[Cause]
    wrappers: tuple[re.Pattern, ...]
    progress: list[tuple[Pattern, str]]  # training frames and the phase they mean (forward, backward ...)
    kernel_waits: list[dict]
    process_states: dict[str, dict]      # /proc state letter -> row
    fallbacks: dict[str, dict]

    def cause(self, cid: str) -> Optional[Cause]:
        return next((c for c in self.causes if c.id == cid), None)

    def row(self, cid: str) -> dict:
        c = self.cause(cid)
        if c is not None:
            return c.row
        for r in self.process_states.values():
            if r["id"] == cid:
                return r
        return self.fallbacks[cid]

    def kernel_kind(self, wait: Any, arch: str) -> Optional[str]:
        """sleep | futex | poll | read | wait-child | running | io | None, from state/syscall/wchan."""
        if wait is None:
            return None
        if wait.state == "R":
            return "running"
        if wait.state == "D":
            return "io"
        for row in self.kernel_waits:
            if wait.syscall is not None and wait.syscall in (row["syscalls"].get(arch) or ()):
                return row["kind"]
        for row in self.kernel_waits:
            if wait.wchan and re.search(row["wchan"], wait.wchan):
                return row["kind"]
        return None

    def phase(self, frames: list[dict]) -> Optional[str]:
        """The training phase of the innermost training frame, None outside training code."""
        for f in frames:
            if is_native(f):
                continue
            for pat, phase in self.progress:
                if pat.frame_matches(f, lambda _f: None):
                    return phase
        return None


@functools.lru_cache(maxsize=None)
def table() -> Table:
    data = load("stack_signatures")
    data = dict(data, causes=data["causes"] + load("stack_signatures_workloads")["causes"])   # workloads hook
    causes = [Cause(id=r["id"], tier=int(r["tier"]), when=r.get("when", "stuck"), thread=r.get("thread", "main"),
                    patterns=[Pattern.from_row(p) for p in r["patterns"]], refines=tuple(r.get("refines") or ()),
                    confirm_native=bool(r.get("confirm_native")), report=r.get("report", True), order=i, row=r)
              for i, r in enumerate(data["causes"])]
    return Table(causes=causes,
                 wrappers=tuple(re.compile(w["file"]) for w in data["wrapper_frames"]),
                 progress=[(Pattern.from_row(p), p["phase"]) for p in data["progress_frames"]],
                 kernel_waits=data["kernel_waits"],
                 process_states={r["state"]: r for r in data["process_states"]},
                 fallbacks={r["id"]: r for r in data["fallbacks"]})


def load_raw() -> dict:
    """The table as JSON (GPU thresholds, side findings), for what needs no compiling."""
    return load("stack_signatures")
