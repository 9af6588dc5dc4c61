"""A torchrun worker whose ranks diverge: rank 1 goes off to "save a checkpoint" (sleeps in a
function of that name) while rank 0 waits in an all_reduce. Used by torchrun_desync.py."""
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist


def save_checkpoint_slowly(path: Path) -> None:
    # stands in for a rank-0-only save or a slow disk: this rank is late to the next collective
    path.write_text("saving")
    time.sleep(3600)


def main() -> None:
    ready_dir = Path(sys.argv[1])
    dist.init_process_group("nccl")
    rank = dist.get_rank()
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    x = torch.ones(1 << 20, device="cuda")
    for _ in range(5):
        dist.all_reduce(x)
    torch.cuda.synchronize()
    (ready_dir / f"rank{rank}.ready").write_text(str(os.getpid()))
    if rank == 1:
        save_checkpoint_slowly(ready_dir / "ckpt")
    dist.all_reduce(x)          # rank 0 waits here for rank 1
    x.sum().item()


if __name__ == "__main__":
    main()
