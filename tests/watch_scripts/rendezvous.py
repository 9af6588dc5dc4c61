"""One gloo rank of a world of WORLD_SIZE (from the env) whose peers never start: it waits at the
rendezvous. No Trainer: the watchdog only has output and CPU activity."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch.distributed as dist  # noqa: E402

print(f"rank {os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')}: joining", flush=True)
dist.init_process_group("gloo")
print("joined")
