#!/usr/bin/env python3
"""GPU benchmark for `doctor watch` (issue 13): an Unsloth QLoRA run of the Llama 3.1 8B shape (doctor
repro's child, random weights, the reference config) as the watched command, with a DataLoader hang
planted mid-run. Does the watchdog sit through the import, the model load and the compiling first
step without a false stall, and how long after the last step does it report the planted one?

    python benchmarks/gpu/watch_unsloth.py OUT_DIR              # GPU: 8B shape, Unsloth if it imports
    python benchmarks/gpu/watch_unsloth.py OUT_DIR --cpu-smoke  # the same path on CPU, tiny model

The command is exactly what a user types: `python -m doctor watch --kill-on-stall --stall-floor F
--out OUT_DIR/watch -- python -m doctor.repro.child --spec spec.json`. Writes OUT_DIR/watch_unsloth.json
and .md, plus OUT_DIR/watch/ (result.json, report.md, step_times.png, events).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # the repo, when not installed

from doctor.repro.api import ReproOptions, prepare             # noqa: E402
from doctor.repro.spec import reference_config                 # noqa: E402
from doctor.repro.supervisor import child_env                  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--fault-step", type=int, default=10)
    ap.add_argument("--floor", type=float, default=None)
    ap.add_argument("--limit-s", type=float, default=280.0)
    a = ap.parse_args()
    smoke = a.cpu_smoke
    floor = a.floor or (6.0 if smoke else 20.0)
    opts = ReproOptions(config=reference_config(), model_size="tiny" if smoke else "8b", steps=a.fault_step + 2,
                        inject=[f"dataloader-hang@{a.fault_step}"], device="cpu" if smoke else "cuda",
                        backend="transformers" if smoke else "auto", out_dir=a.out / "child",
                        model_cache=Path("/tmp/doctor-repro-models"))
    spec, child_dir = prepare(opts)
    watch_dir = a.out / "watch"
    cmd = [sys.executable, "-m", "doctor", "watch", "--out", str(watch_dir.resolve()), "--stall-floor", str(floor),
           "--kill-on-stall", "--", sys.executable, "-m", "doctor.repro.child", "--spec",
           str((child_dir / "spec.json").resolve())]
    t0 = time.time()
    with open(a.out / "watch.stdout", "wb") as out, open(a.out / "watch.stderr", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=str(child_dir.resolve()), env=child_env(), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)
        try:
            rc = proc.wait(timeout=a.limit_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            rc = proc.wait(timeout=30)
    wall = time.time() - t0
    res_path = watch_dir / "result.json"
    summary = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": smoke, "rc": rc,
               "wall_s": round(wall, 1), "floor_s": floor, "fault_step": a.fault_step}
    if res_path.exists():
        r = json.loads(res_path.read_text())
        steps = r["steps"]
        summary.update(
            steps=len(steps), progress=r["progress"], info=r.get("info"), cause=r["cause"],
            first_step_s=steps[0]["duration_s"] if steps else None, median_step_s=r.get("median_step_s"),
            peak_vram=max((s.get("mem_peak") or 0 for s in steps), default=None),
            first_step_grace_s=r["policy"]["first_step_grace_s"], startup_grace_s=r["policy"]["startup_grace_s"],
            stalls=[{"step": s["info"]["step"], "phase": s["info"]["phase"], "waited_s": round(s["info"]["waited_s"], 2),
                     "deadline_s": s["info"]["deadline_s"], "reason": s["info"]["reason"], "report_s": s["report_s"],
                     "attach_cause": (s.get("diagnosis") or {}).get("cause"), "attach_error": s.get("diagnosis_error"),
                     "after_last_step_s": round(s["info"]["detected_at"] - steps[-1]["t_end"], 2) if steps else None}
                    for s in r["stalls"]],
            findings=[(f["id"], f["title"][:160]) for f in r["findings"]], leftover=r["leftover_pids"])
        events = [json.loads(x) for x in (child_dir / "events.jsonl").read_text().splitlines() if x.strip()] \
            if (child_dir / "events.jsonl").exists() else []
        summary["child_phases"] = [(e.get("phase"), round(e["t"] - t0, 1)) for e in events if e.get("kind") == "phase"]
    (a.out / "watch_unsloth.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
