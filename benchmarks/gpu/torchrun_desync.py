"""GPU run: attach to a torchrun job (2 ranks) whose ranks diverged, from the launcher's pid.

Usage: python benchmarks/gpu/torchrun_desync.py OUT_DIR
Writes OUT_DIR/torchrun-desync.json (the AttachReport) and prints the diagnosis.
Needs 2 GPUs; NVLink multicast stays off (NCCL_NVLS_ENABLE=0).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from doctor.attach.api import diagnose_pid
from doctor.proctree import kill_tree, wait_for


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ready = out / "ddp-ready"
    ready.mkdir(exist_ok=True)
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")
    worker = Path(__file__).with_name("ddp_desync_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(worker), str(ready)]
    launcher = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        ok = wait_for(lambda: (ready / "rank0.ready").exists() and (ready / "ckpt").exists(), 180, 0.2)
        if not ok:
            print("ranks never became ready", file=sys.stderr)
            return 1
        time.sleep(2.0)   # let rank 0 enter the all_reduce
        t0 = time.monotonic()
        rep = diagnose_pid(launcher.pid, samples=3, interval_s=0.3)
        took = time.monotonic() - t0
        data = rep.to_dict()
        data["attach_wall_s"] = round(took, 3)
        (out / "torchrun-desync.json").write_text(json.dumps(data, indent=1, default=str))
        print(f"cause={rep.cause} situation={rep.situation} took={took:.2f}s")
        for f in rep.findings[:4]:
            print(f" - [{f.severity.value}] {f.id}: {f.title}")
        for p in rep.processes:
            print(f"   pid {p.pid} role={p.role} state={p.state} cause={p.cause} where={p.where}")
        return 0
    finally:
        kill_tree(launcher.pid)


if __name__ == "__main__":
    sys.exit(main())
