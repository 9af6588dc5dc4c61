"""A CPU stand-in for a CUDA-side stall, used by `--inject cuda-stall` when there is no GPU.

On a GPU the host blocks in a device sync (`torch.cuda.synchronize`, `.item()`) while a kernel
never finishes; the CUDA driver spin-waits, so the thread is running, in native code, with the GIL
released. This module reproduces that shape on CPU: a function with the same name as the real sync
point that never returns and keeps one core busy in native torch kernels. It is an emulation, and
every report that uses it says so.
"""
from __future__ import annotations


def synchronize() -> None:  # named like torch.cuda.synchronize on purpose: same stack shape
    import torch

    torch.set_num_threads(1)          # one spinning core, like the driver's spin-wait
    a = torch.ones(256, 256)
    while True:  # each matmul runs in native code with the GIL released, like a driver spin-wait
        torch.mm(a, a)
