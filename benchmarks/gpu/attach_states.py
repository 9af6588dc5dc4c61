"""GPU run for `doctor attach` (issue 4): a real CUDA training process in three states, attached to
with diagnose_pid; records the raw py-spy JSON, the snapshot and the AttachReport of each.

    PYTHONPATH=. python benchmarks/gpu/attach_states.py OUT_DIR              # on the GPU machine, ~1 min
    python benchmarks/gpu/attach_states.py OUT_DIR --cpu-smoke               # here: the same on CPU

States (target: tests/fixtures/attach/cuda_states.py):
  training     a tiny Llama training continuously                       -> running-normally
  cuda-sync    200 bf16 16384^2 matmuls queued, blocked in .item()     -> cuda-sync-wait (GPU busy)
               (attached with native=True: py-spy --native shows the CUDA sync under the Python line)
  loader-hang  training whose DataLoader worker hangs in __getitem__    -> dataloader-worker-hang

Writes OUT_DIR/<state>/{snapshot.json, report.json, expected.json, pyspy-<pid>-<n>.json} and
OUT_DIR/summary.{json,md}. Copy OUT_DIR/<state>/ to tests/fixtures/attach/gpu/<state>/ (snapshot.json and
expected.json are what tests/test_attach_replay.py reads). Exit code 0 when every state got its
expected cause.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from attach_helpers import FIXTURES, wait_ready  # noqa: E402
from doctor.attach.api import diagnose_pid  # noqa: E402
from doctor.attach.command import save_dumps  # noqa: E402
from doctor.proctree import kill_tree, wait_for  # noqa: E402

# state -> (target mode, native, expected cause on CUDA, expected cause in --cpu-smoke)
STATES = {
    "training": ("train", None, "running-normally", "running-normally"),
    # on CPU the matmuls run synchronously inside torch.matmul: busy, not waiting on a device
    "cuda-sync": ("sync", True, "cuda-sync-wait", "busy-python"),
    "loader-hang": ("loader", None, "dataloader-worker-hang", "dataloader-worker-hang"),
}
SETTLE_S = {"training": 1.0, "cuda-sync": 0.5, "loader-hang": 2.0}   # after READY, before attaching


def run_state(name: str, out: Path, device: str) -> dict:
    mode, native, expect_cuda, expect_cpu = STATES[name]
    expected = expect_cuda if device == "cuda" else expect_cpu
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(FIXTURES / "cuda_states.py"), mode, "--device", device],
                            cwd=str(FIXTURES), env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t_start = time.monotonic()
        wait_ready(proc, timeout_s=240)
        ready_s = time.monotonic() - t_start
        time.sleep(SETTLE_S[name])
        if name == "loader-hang":       # the main thread has used up the prefetched batches and waits
            wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_SLEEPING, 30, 0.1)
        t0 = time.monotonic()
        report = diagnose_pid(proc.pid, samples=3, interval_s=0.25, native=native)
        wall = time.monotonic() - t0
    except BaseException:
        kill_tree(proc.pid)
        err = proc.stderr.read().decode(errors="replace")[-3000:] if proc.poll() is not None else ""
        (folder / "error.txt").write_text(err)
        raise
    finally:
        kill_tree(proc.pid)
    save_dumps(report, folder)
    data = report.to_dict()
    data["attach_wall_s"] = round(wall, 3)
    (folder / "report.json").write_text(json.dumps(data, indent=1, default=str))
    meta = {"state": name, "device": device, "expected_cause": expected, "live_cause": report.cause,
            "situation": report.situation, "native": native, "attach_wall_s": round(wall, 3),
            "target_ready_s": round(ready_s, 1), "primary": report.findings[0].title if report.findings else None,
            "ok": report.cause == expected}
    (folder / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def _gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    except Exception as exc:  # noqa: BLE001 - a summary line, never a failure
        return f"torch unavailable: {exc}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--cpu-smoke", action="store_true", help="run the same states on CPU (no GPU needed)")
    ap.add_argument("--state", action="append", choices=sorted(STATES), help="only these states")
    args = ap.parse_args()
    device = "cpu" if args.cpu_smoke else "cuda"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    t0 = time.monotonic()
    for name in args.state or list(STATES):
        try:
            meta = run_state(name, args.out_dir, device)
        except Exception as exc:  # noqa: BLE001 - record and go on to the next state
            meta = {"state": name, "device": device, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        results.append(meta)
        print(json.dumps(meta), flush=True)
    summary = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(), "gpu": _gpu_name(),
               "python": platform.python_version(), "total_s": round(time.monotonic() - t0, 1), "states": results}
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [f"# doctor attach on {summary['gpu']} ({device})", "", f"{summary['date']}, python {summary['python']}, "
             f"total {summary['total_s']} s", "", "| state | expected | live cause | situation | attach s | ok |",
             "|---|---|---|---|---|---|"]
    for m in results:
        lines.append(f"| {m['state']} | {m.get('expected_cause')} | {m.get('live_cause', m.get('error'))} | "
                     f"{m.get('situation', '')} | {m.get('attach_wall_s', '')} | {'yes' if m['ok'] else 'NO'} |")
    (args.out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(m["ok"] for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
