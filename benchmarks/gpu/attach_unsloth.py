"""GPU run: attach to a real Unsloth training (the reference config at the Llama 3.1 8B shape,
4-bit, "unsloth" offloaded checkpointing) while it trains, and once with an injected DataLoader
hang, to record what Unsloth's processes look like to py-spy and how the doctor classifies them.

    PYTHONPATH=/tmp/site:. python benchmarks/gpu/attach_unsloth.py OUT_DIR [--cpu-smoke]

Writes OUT_DIR/<name>/snapshot.json + expected.json (for tests/fixtures/attach/gpu/) and
OUT_DIR/attach_unsloth.md. ~3 minutes on an H100 (Unsloth import ~45 s, 8B load, compile).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil

from doctor.attach.api import diagnose_pid
from doctor.config.loader import load_config
from doctor.repro.api import ReproOptions, run_repro

REPO = Path(__file__).resolve().parents[2]


def child_pid() -> int | None:
    for p in psutil.Process().children(recursive=True):
        try:
            if "doctor.repro.child" in " ".join(p.cmdline()):
                return p.pid
        except psutil.Error:
            continue
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(REPO / "examples" / "train_unsloth_llama31_8b.py", None)
    size, backend = ("tiny", "transformers") if args.cpu_smoke else ("8b", "unsloth")
    taken: list[dict] = []

    def on_event(ev: dict) -> None:
        # sample mid-training (steps 6 and 7 done: compile is over, steady state)
        if ev.get("kind") == "step" and ev.get("step") in (6,) and not taken:
            pid = child_pid()
            if pid:
                t0 = time.monotonic()
                rep = diagnose_pid(pid, samples=4, interval_s=0.3)
                taken.append({"name": "unsloth-training", "report": rep, "s": time.monotonic() - t0})

    runs = [("unsloth-training", dict(steps=10, inject=[])),
            ("unsloth-loader-hang", dict(steps=12, inject=["dataloader-hang@9"], stall_floor_s=20.0, stall_factor=5.0))]
    rows = []
    for name, kw in runs:
        opts = ReproOptions(config=cfg, model_size=size, backend=backend, out_dir=args.out / f"run-{name}",
                            model_cache=Path("/tmp/doctor-repro-models"), max_wall_s=300.0, **kw)
        res = run_repro(opts, on_event=on_event if name == "unsloth-training" else None)
        if name == "unsloth-training" and taken:
            rep, secs = taken[0]["report"], taken[0]["s"]
            snap = rep.snapshot
            expected = "running-normally"
        elif res.diagnosis:
            from doctor.attach.model import snapshot_from_report_dict
            from doctor.attach.api import diagnose_snapshot
            snap = snapshot_from_report_dict(res.diagnosis)
            rep, secs, expected = diagnose_snapshot(snap), None, "dataloader-worker-hang"
        else:
            rows.append(f"| {name} | no sample (completed={res.completed}, crashed={res.crashed}) | | |")
            continue
        folder = args.out / name
        folder.mkdir(exist_ok=True)
        snap.save(folder / "snapshot.json")
        (folder / "expected.json").write_text(json.dumps({
            "expected_cause": expected, "live_cause": rep.cause,
            "note": f"{backend} backend, {size} shape, reference config; doctor repro + attach on the GPU machine"}, indent=1))
        frames = [t.key_frames[:3] for p in rep.processes for t in p.threads if t.main]
        rows.append(f"| {name} | {rep.cause} | {rep.situation} | {secs and round(secs, 2)} | {frames[:1]} |")
        print(name, rep.cause, rep.situation, frames[:1], flush=True)
    md = ["| run | cause | situation | attach s | main-thread frames |", "|---|---|---|---|---|"] + rows
    (args.out / "attach_unsloth.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
