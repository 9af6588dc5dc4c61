"""A CPU stand-in for a CUDA-side stall, used by `--inject cuda-stall` when there is no GPU.

On a GPU the host blocks in a device sync (`torch.cuda.synchronize`, `.item()`) while a kernel
never finishes: the thread sits in a driver call, in native code, with the GIL released. This
module reproduces that shape on CPU: a function named like the real sync point whose native call
(a read(2) on a pipe nobody writes) never returns. It blocks rather than spins, so CI machines keep
their cores; the GPU run uses a real spinning kernel. It is an emulation, and every report that
uses it says so.
"""
from __future__ import annotations

import os


def synchronize() -> None:  # named like torch.cuda.synchronize on purpose: same stack shape
    never_written, _keep_open = os.pipe()
    os.read(never_written, 1)          # a C call that never returns; the GIL is released meanwhile
