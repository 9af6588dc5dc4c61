"""GPU run (needs 2 or more GPUs; not run yet, only 1-GPU machines were lent): the rank line-up on real
NCCL torchrun jobs, with the NCCL flight recorder dumping on the watchdog timeout.

Usage (from the repository root, on an nvidia-h200-x2 or larger machine):
    python benchmarks/gpu/torchrun_ranks_nccl.py OUT_DIR [--nproc 2] [--timeout 40]
For each job of tests/fixtures/attach/ranks_job.py (skip, dataloader, dead) under NCCL:
  1. attach from the launcher while the ranks hang (stacks only)    -> OUT_DIR/<job>/live/snapshot.json
  2. wait for the NCCL watchdog timeout: every rank writes OUT_DIR/<job>/nccl_trace_rank_<r>
     (TORCH_NCCL_TRACE_BUFFER_SIZE=2000, TORCH_NCCL_DUMP_ON_TIMEOUT=1, TORCH_NCCL_DEBUG_INFO_TEMP_FILE);
     TORCH_NCCL_ASYNC_ERROR_HANDLING=0 asks the watchdog not to kill them, so
  3. attach again (the dumps are read live, if the ranks survived)   -> OUT_DIR/<job>/after/snapshot.json
  4. the step-1 snapshot replayed with the dumps, as `doctor analyze` would -> OUT_DIR/<job>/replayed.json
and OUT_DIR/summary.json: verdict, rank named, by what, attach wall time. Copy OUT_DIR/<job>/ into
tests/fixtures/attach/gpu/ranks-nccl-<job>/ and the times into benchmarks/attach-ranks.md.
NVLink multicast stays off (NCCL_NVLS_ENABLE=0), as on every GPU run of this project.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from attach_helpers import start_ranks_job  # noqa: E402
from doctor.attach import flight_recorder as fr  # noqa: E402
from doctor.attach.api import diagnose_pid, diagnose_snapshot  # noqa: E402
from doctor.attach.command import save_dumps  # noqa: E402
from doctor.proctree import kill_tree  # noqa: E402

JOBS = [("skip", 1), ("dataloader", 1), ("dead", 1)]


def _spawn(cmd, **kw):
    kw.setdefault("start_new_session", True)
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen(cmd, **kw)


def one(mode: str, odd: int, nproc: int, timeout_s: int, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    prefix = str(out / "nccl_trace_rank_")
    env = {"RANKS_JOB_BACKEND": "nccl", "RANKS_JOB_TIMEOUT_S": str(timeout_s), "NCCL_NVLS_ENABLE": "0",
           "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
           "TORCH_NCCL_TRACE_BUFFER_SIZE": "2000", "TORCH_NCCL_DUMP_ON_TIMEOUT": "1",
           "TORCH_NCCL_DEBUG_INFO_TEMP_FILE": prefix, "TORCH_NCCL_ASYNC_ERROR_HANDLING": "0"}
    proc = start_ranks_job(_spawn, mode, nproc, odd, env)
    res: dict = {"job": mode, "ranks": nproc, "odd": odd}
    try:
        t = time.monotonic()
        live = diagnose_pid(proc.pid, samples=3, interval_s=0.3)
        res["live_s"] = round(time.monotonic() - t, 3)
        save_dumps(live, out / "live")
        res["live"] = {k: (live.ranks or {}).get(k) for k in ("verdict", "first", "first_by")}
        deadline = time.monotonic() + timeout_s + 120
        want = [r for r in range(nproc) if not (mode == "dead" and r == odd)]
        while time.monotonic() < deadline and not all(Path(f"{prefix}{r}").exists() for r in want):
            time.sleep(1.0)
        time.sleep(3.0)                  # let the writers finish
        res["dumps"] = sorted(p.name for p in out.glob("nccl_trace_rank_*"))
        if proc.poll() is None:
            t = time.monotonic()
            after = diagnose_pid(proc.pid, samples=3, interval_s=0.3)
            res["after_s"] = round(time.monotonic() - t, 3)
            save_dumps(after, out / "after")
            res["after"] = {k: (after.ranks or {}).get(k) for k in ("verdict", "first", "first_by")}
        else:
            res["after"] = f"the job ended (torchrun exit {proc.returncode}) after the timeout"
        snap = live.snapshot
        snap.flight_records = {str(r): fr.read_dump(Path(f"{prefix}{r}")) for r in range(nproc)
                               if Path(f"{prefix}{r}").exists()}
        replayed = diagnose_snapshot(snap)
        (out / "replayed.json").write_text(json.dumps(replayed.to_dict(), indent=1, default=str))
        res["replayed"] = {k: (replayed.ranks or {}).get(k) for k in ("verdict", "first", "first_by")}
        res["titles"] = [f.title for f in replayed.findings if f.id.startswith("attach.ranks.")]
        return res
    finally:
        kill_tree(proc.pid)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=40)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = [one(mode, odd, args.nproc, args.timeout, args.out / mode) for mode, odd in JOBS]
    (args.out / "summary.json").write_text(json.dumps(results, indent=1, default=str))
    print(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
