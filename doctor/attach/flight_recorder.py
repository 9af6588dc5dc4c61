"""PyTorch's flight recorder (NCCL and gloo process groups): find the per-rank dumps, read them safely,
and say how far each rank got.

With TORCH_NCCL_TRACE_BUFFER_SIZE (or TORCH_FR_BUFFER_SIZE) > 0, every process group keeps a ring of
its last collectives; with TORCH_NCCL_DUMP_ON_TIMEOUT=1 the NCCL watchdog writes it on a timeout to
`<prefix><global rank>`, prefix from TORCH_FR_DUMP_TEMP_FILE or TORCH_NCCL_DEBUG_INFO_TEMP_FILE, default
/tmp/nccl_trace_rank_ (pytorch docs, torch_nccl_environment_variables; DebugInfoWriter::getWriter in
torch/csrc/distributed/c10d/FlightRecorder.cpp). The file is a pickle of plain types (what
torch._C._distributed_c10d._dump_fr_trace returns; torch/distributed/flight_recorder/components/loader.py
reads it with pickle.load): {"version", "pg_config", "pg_status": {pg_id: {"last_enqueued_collective",
"last_started_collective", "last_completed_collective"}}, "entries": [{"record_id", "pg_id",
"process_group": (name, desc), "collective_seq_id", "p2p_seq_id", "profiling_name" ("nccl:all_reduce"),
"state" (scheduled | started | completed), "frames": [{"name", "filename", "line"}], ...}]}.
_dump_fr_trace_json gives the same as JSON. We accept JSON, or a pickle through an unpickler that
refuses every global: a dump can be handed over by anyone, and a pickle with globals runs code.
"""
from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any, Optional

DEFAULT_PREFIX = "/tmp/nccl_trace_rank_"
PREFIX_VARS = ("TORCH_FR_DUMP_TEMP_FILE", "TORCH_NCCL_DEBUG_INFO_TEMP_FILE")
BUFFER_VARS = ("TORCH_FR_BUFFER_SIZE", "TORCH_NCCL_TRACE_BUFFER_SIZE")
MAX_BYTES = 64 * 2**20       # a 20000-entry ring with stacks is a few MB; refuse anything far larger
KEEP_ENTRIES = 16            # per rank, the newest: enough to line the ranks up
KEEP_FRAMES = 8
_ENTRY_KEYS = ("record_id", "pg_id", "process_group", "collective_seq_id", "p2p_seq_id", "profiling_name",
               "state", "input_sizes", "is_p2p", "retired", "timeout_ms", "time_created_ns")


class _PlainUnpickler(pickle.Unpickler):
    """Only dicts, lists, tuples, strings, numbers, bools and None: every global is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused global {module}.{name} in a flight recorder dump")


def parse(data: bytes) -> dict:
    """A dump's bytes -> its dict. Raises ValueError on anything else (a pickle with globals included)."""
    if len(data) > MAX_BYTES:
        raise ValueError(f"dump of {len(data)} bytes is over the {MAX_BYTES // 2**20} MiB limit")
    head = data.lstrip()[:1]
    try:
        obj = json.loads(data) if head in (b"{", b"[") else _PlainUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError,
            UnicodeDecodeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not a flight recorder dump: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("entries", []), list):
        raise ValueError("not a flight recorder dump: no 'entries' list")
    return obj


def _trim_entry(e: Any) -> Optional[dict]:
    if not isinstance(e, dict):
        return None
    out = {k: e.get(k) for k in _ENTRY_KEYS if k in e}
    if isinstance(out.get("process_group"), tuple):
        out["process_group"] = list(out["process_group"])
    frames = e.get("frames") if isinstance(e.get("frames"), list) else []
    out["frames"] = [{"name": str(f.get("name", "")), "filename": str(f.get("filename", "")),
                      "line": f.get("line") if isinstance(f.get("line"), int) else 0}
                     for f in frames[:KEEP_FRAMES] if isinstance(f, dict)]
    return json.loads(json.dumps(out, default=str))      # plain JSON types only


def summarize(raw: dict, path: str = "") -> dict:
    """What the snapshot keeps of one dump: its status per process group and the newest entries."""
    entries = [t for t in (_trim_entry(e) for e in raw.get("entries") or []) if t is not None]
    status = raw.get("pg_status") if isinstance(raw.get("pg_status"), dict) else {}
    return {"path": path, "version": str(raw.get("version", "")),
            "pg_status": json.loads(json.dumps(status, default=str)),
            "entries": entries[-KEEP_ENTRIES:], "total_entries": len(entries)}


def read_dump(path: Path) -> dict:
    """summarize(parse(file)), or {"path", "error"}: a bad dump is reported, never raised."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"{size} bytes is over the {MAX_BYTES // 2**20} MiB limit")
        return summarize(parse(path.read_bytes()), str(path))
    except (OSError, ValueError) as exc:
        return {"path": str(path), "error": str(exc)}


def enabled(env: dict) -> bool:
    """The flight recorder records when one of its buffer sizes is a positive number."""
    for var in BUFFER_VARS:
        try:
            if int(env.get(var, "0")) > 0:
                return True
        except ValueError:
            continue
    return False


def dump_path(env: dict, rank: int, cwd: Optional[str] = None) -> Path:
    prefix = next((env[v] for v in PREFIX_VARS if env.get(v)), DEFAULT_PREFIX)
    path = Path(f"{prefix}{rank}")
    return path if path.is_absolute() or not cwd else Path(cwd) / path


def collect(ranks: list[tuple[int, dict, Optional[str], float]]) -> dict[str, dict]:
    """ranks: (global rank, its dist env, its cwd, its start time). The dumps written since the job
    started (a stale file from an earlier job in /tmp is ignored), by rank."""
    out: dict[str, dict] = {}
    for rank, env, cwd, started in ranks:
        path = dump_path(env, rank, cwd)
        try:
            if not path.is_file() or os.path.getmtime(path) + 1.0 < started:
                continue
        except OSError:
            continue
        out[str(rank)] = read_dump(path)
    return out


def progress(record: dict, pg: str = "0") -> dict[str, Optional[int]]:
    """{"enqueued", "started", "completed"}: the last collective sequence number of process group pg
    (the default group is "0") this rank reached, from pg_status, else from its entries."""
    st = (record.get("pg_status") or {}).get(pg)
    if isinstance(st, dict):
        return {k: _int(st.get(f"last_{k}_collective")) for k in ("enqueued", "started", "completed")}
    mine = [e for e in record.get("entries") or [] if str(e.get("pg_id")) == pg and not e.get("is_p2p")]
    seqs = lambda states: [e["collective_seq_id"] for e in mine if e.get("state") in states  # noqa: E731
                           and isinstance(e.get("collective_seq_id"), int)]
    top = lambda xs: max(xs) if xs else None  # noqa: E731
    return {"enqueued": top(seqs(("scheduled", "started", "completed"))),
            "started": top(seqs(("started", "completed"))), "completed": top(seqs(("completed",)))}


def entry_at(record: dict, seq: Optional[int], pg: str = "0") -> Optional[dict]:
    return next((e for e in reversed(record.get("entries") or []) if str(e.get("pg_id")) == pg
                 and e.get("collective_seq_id") == seq and not e.get("is_p2p")), None)


def _int(v) -> Optional[int]:
    try:
        return int(v) if v is not None and int(v) >= 0 else None
    except (TypeError, ValueError):
        return None
