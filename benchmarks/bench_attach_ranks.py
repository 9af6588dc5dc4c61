"""Time to diagnosis of `doctor attach` on gloo torchrun jobs (CPU), one per failure the line-up names.

Usage: python benchmarks/bench_attach_ranks.py [--record DIR] [--runs N]
Writes benchmarks/attach-ranks.md. With --record, also saves each job's `--save-dumps` folder under
DIR/<scenario>/ (the replay fixtures of tests/test_attach_ranks_units.py).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from attach_helpers import start_ranks_job  # noqa: E402
from doctor.attach.api import diagnose_pid  # noqa: E402
from doctor.attach.command import save_dumps  # noqa: E402
from doctor.proctree import kill_tree  # noqa: E402

SCENARIOS = [  # name, mode, ranks, odd rank, flight recorder on
    ("skip-4-flight", "skip", 4, 2, True),
    ("skip-2", "skip", 2, 1, False),
    ("dataloader-2", "dataloader", 2, 1, False),
    ("dataloader-4", "dataloader", 4, 3, False),
    ("dead-4", "dead", 4, 3, False),
]


def _spawn(cmd, **kw):
    kw.setdefault("start_new_session", True)
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen(cmd, **kw)


def one(name, mode, n, odd, flight, runs, record: Path | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="doctor-ranks-"))
    env = {"TORCH_FR_BUFFER_SIZE": "200", "TORCH_FR_DUMP_TEMP_FILE": str(tmp / "fr_rank_")} if flight else {}
    t0 = time.monotonic()
    proc = start_ranks_job(_spawn, mode, n, odd, env)
    start_s = time.monotonic() - t0
    try:
        if flight:
            (tmp / "fr_rank_go").touch()
            deadline = time.monotonic() + 60
            while not all((tmp / f"fr_rank_{r}").exists() for r in range(n)) and time.monotonic() < deadline:
                time.sleep(0.1)
        cli = []
        for _ in range(runs):
            t = time.monotonic()
            out = subprocess.run([sys.executable, "-m", "doctor", "attach", str(proc.pid), "--no-gpu", "--json"],
                                 capture_output=True, text=True, timeout=300, cwd=str(ROOT),
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)))
            cli.append(time.monotonic() - t)
        data = json.loads(out.stdout)
        t = time.monotonic()
        rep = diagnose_pid(proc.pid, gpu=False)
        inproc = time.monotonic() - t
        if record is not None:
            save_dumps(rep, record / name)
        lu = data["sections"]["attach"].get("ranks") or {}
        return {"name": name, "ranks": n, "odd": odd, "verdict": lu.get("verdict"), "first": lu.get("first"),
                "by": lu.get("first_by"), "cli": cli, "inproc": inproc, "start": start_s,
                "title": next((f["title"] for f in data["findings"] if f["id"].startswith("attach.ranks.")), "")}
    finally:
        kill_tree(proc.pid)
        proc.wait(timeout=10)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results = [one(*s, args.runs, args.record) for s in SCENARIOS]
    load = os.getloadavg()
    import torch  # noqa: PLC0415 - only for its version string

    lines = ["# `doctor attach` on multi-rank jobs: time to diagnosis", "",
             f"Written by `python benchmarks/bench_attach_ranks.py` on {datetime.date.today()}.", "",
             f"- Machine: {platform.node() and 'vm'}, {os.cpu_count()} CPUs, {platform.platform()}; "
             f"load average {load[0]:.1f} / {load[1]:.1f} while it ran (8 engineers share the 2 cores).",
             f"- Python {platform.python_version()}, torch {torch.__version__}, gloo backend, "
             "`python -m torch.distributed.run --nproc_per_node N` (tests/fixtures/attach/ranks_job.py).",
             f"- `doctor attach LAUNCHER_PID --no-gpu --json` in a fresh interpreter, {args.runs} runs each "
             "(defaults: 3 samples 0.25 s apart per process, every rank and worker dumped concurrently); "
             "in-process `diagnose_pid` once.", "",
             "| job | verdict | rank named (by) | CLI median s (min-max) | in-process s | job start s |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} ({r['ranks']} ranks, odd rank {r['odd']}) | {r['verdict']} | "
                     f"{r['first']} ({r['by']}) | {statistics.median(r['cli']):.2f} ({min(r['cli']):.2f}-"
                     f"{max(r['cli']):.2f}) | {r['inproc']:.2f} | {r['start']:.1f} |")
    lines += ["", "Findings as printed:", ""] + [f"- {r['name']}: {r['title']}" for r in results]
    md = ROOT / "benchmarks" / "attach-ranks.md"
    old = md.read_text() if md.exists() else ""
    gpu = old[old.index("\n## NCCL"):] if "\n## NCCL" in old else ""   # the GPU section is kept as written
    md.write_text("\n".join(lines) + "\n" + gpu)
    print("\n".join(lines))
    return 0 if all(r["first"] == r["odd"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
