#!/usr/bin/env python3
"""Overhead of `doctor watch`'s in-child step reports, and the time from the last step to the report.

    python benchmarks/bench_watch.py [--steps 300] [--rounds 3]

1. hook cost: the DoctorCallback's on_step_begin + on_step_end + on_log per step, writing to a real
   event file (what every step pays), timed over many calls.
2. A/B: the tiny CPU Trainer (tests/watch_scripts/tiny_train.py) for --steps steps, bare vs under
   `doctor watch`, alternating, median of the Trainer's own train_runtime per step.
3. detection: the same script with its collator blocking at step 11 under `doctor watch
   --kill-on-stall --stall-floor F`: from the last step's end to the stall, against the deadline,
   and the time the diagnosis (py-spy sampling) took.
Prints a Markdown table for benchmarks/watch.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TINY = ROOT / "tests" / "watch_scripts" / "tiny_train.py"


def hook_cost(n: int = 20000) -> float:
    from transformers import TrainerCallback

    from doctor.watch.instrument import doctor_watch_hook as h

    with tempfile.TemporaryDirectory() as tmp:
        os.environ[h.ENV_EVENTS] = str(Path(tmp) / "events.jsonl")
        cb = h.make_callback_class(TrainerCallback)()

        class State:
            global_step = 0
            max_steps = n
        st = State()
        cb.on_train_begin(None, st, None)
        t0 = time.perf_counter()
        for i in range(n):
            st.global_step = i
            cb.on_step_begin(None, st, None)
            st.global_step = i + 1
            cb.on_step_end(None, st, None)
            cb.on_log(None, st, None, logs={"loss": 1.0, "learning_rate": 1e-4})
        dt = (time.perf_counter() - t0) / n
        del os.environ[h.ENV_EVENTS]
    return dt


def runtime_per_step(watched: bool, steps: int, tmp: Path) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(TINY), "--steps", str(steps), "--out", str(tmp / "o")]
    if watched:
        cmd = [sys.executable, "-m", "doctor", "watch", "--out", str(tmp / f"w{time.monotonic_ns()}"), "--"] + cmd
    out = subprocess.run(cmd, env=env, cwd=str(tmp), capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"'train_runtime': '?([\d.]+)", out)
    return float(m.group(1)) / steps


def detection(floor: float, tmp: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = tmp / "block"
    subprocess.run([sys.executable, "-m", "doctor", "watch", "--out", str(out), "--stall-floor", str(floor),
                    "--kill-on-stall", "--", sys.executable, str(TINY), "--steps", "20", "--block-at", "11",
                    "--out", str(tmp / "o")], env=env, cwd=str(tmp), capture_output=True, timeout=600)
    r = json.loads((out / "result.json").read_text())
    s = r["stalls"][0]
    return {"step": s["info"]["step"], "deadline_s": s["info"]["deadline_s"],
            "after_last_step_s": s["info"]["detected_at"] - r["steps"][-1]["t_end"], "report_s": s["report_s"],
            "cause": r["cause"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--floor", type=float, default=5.0)
    a = ap.parse_args()
    cost = hook_cost()
    bare, watched = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for _ in range(a.rounds):
            bare.append(runtime_per_step(False, a.steps, tmp))
            watched.append(runtime_per_step(True, a.steps, tmp))
        det = detection(a.floor, tmp)
    b, w = statistics.median(bare), statistics.median(watched)
    print("| measure | value |\n|---|---|")
    print(f"| hook cost per step (begin + end + log, real event file) | {cost * 1e6:.1f} µs |")
    print(f"| tiny CPU Trainer step, bare (median of {a.rounds} x {a.steps} steps) | {b * 1e3:.2f} ms |")
    print(f"| same, under doctor watch | {w * 1e3:.2f} ms ({(w - b) / b * 100:+.1f}%, noise included) |")
    print(f"| hook cost / tiny step | {cost / b * 100:.2f}% |")
    print(f"| stall at step {det['step']}: last step end -> detected | {det['after_last_step_s']:.2f} s "
          f"(deadline {det['deadline_s']:.1f} s) |")
    print(f"| detected -> diagnosis done (py-spy sampling, host state) | {det['report_s']:.2f} s |")
    print(f"| cause | {det['cause']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
