"""The smoke steps, run only in the child (`python -m doctor.smoke.child PLAN`): never import this
module in the doctor's own process (it imports torch, triton, bitsandbytes, unsloth).

Each step is small (a few MB on the GPU), checks its own result against a reference, and is salted
where a cache could hide the work (a fresh constant for torch.compile and the triton kernel), so a
warm cache does not pass a broken compiler.
"""
from __future__ import annotations

import importlib.util
import random
from typing import Optional

from doctor.smoke.protocol import Skip, serve

torch = None  # imported by the prelude


def _prelude() -> None:
    global torch
    import torch as _torch

    torch = _torch


def _dev(device: Optional[str]):
    index = int(device or 0)
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _close(got, want, what: str, tol: float = 2e-2) -> None:
    err = (got.float() - want.float()).abs().max().item()
    scale = want.float().abs().max().item() or 1.0
    if not err <= tol * scale:      # also catches NaN
        raise AssertionError(f"{what}: wrong result (max error {err:.3g}, scale {scale:.3g})")


def cuda_init(device):
    dev = _dev(device)
    x = torch.ones(4, device=dev)
    torch.cuda.synchronize(dev)
    props = torch.cuda.get_device_properties(dev)
    return f"{props.name}, sm {props.major}.{props.minor}, {float(x.sum()):.0f} ones summed"


def matmul_bf16(device):
    dev = _dev(device)
    a = torch.randn(1024, 1024, device=dev, dtype=torch.bfloat16)
    b = torch.randn(1024, 1024, device=dev, dtype=torch.bfloat16)
    c = a @ b
    torch.cuda.synchronize(dev)
    _close(c, a.float() @ b.float(), "bf16 matmul", tol=5e-2)
    return "1024x1024 bf16 matmul (cuBLAS)"


def _sdpa(device, backend_name: str):
    dev = _dev(device)
    import torch.nn.functional as F

    q, k, v = (torch.randn(1, 8, 256, 64, device=dev, dtype=torch.bfloat16) for _ in range(3))
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        ctx = sdpa_kernel(getattr(SDPBackend, backend_name))
    except ImportError:       # torch < 2.3
        flags = {"FLASH_ATTENTION": dict(enable_flash=True, enable_math=False, enable_mem_efficient=False),
                 "EFFICIENT_ATTENTION": dict(enable_flash=False, enable_math=False, enable_mem_efficient=True)}
        ctx = torch.backends.cuda.sdp_kernel(**flags[backend_name])
    with ctx:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.cuda.synchronize(dev)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    _close(out, ref, f"SDPA {backend_name}", tol=5e-2)
    return f"SDPA {backend_name.lower()} (1x8x256x64 bf16, causal)"


def sdpa_flash(device):
    return _sdpa(device, "FLASH_ATTENTION")


def sdpa_mem_efficient(device):
    return _sdpa(device, "EFFICIENT_ATTENTION")


def triton_jit(device):
    if importlib.util.find_spec("triton") is None:
        raise Skip("triton is not installed")
    import triton

    from doctor.smoke._triton_kernel import add

    dev = _dev(device)
    n = 4096
    x, y = torch.randn(n, device=dev), torch.randn(n, device=dev)
    out = torch.empty_like(x)
    # A fresh BLOCK each run makes a new specialization: ptxas and the cache really run.
    block = random.choice((64, 128, 256, 512, 1024))
    add[(triton.cdiv(n, block),)](x, y, out, n, 0.5, BLOCK=block)
    torch.cuda.synchronize(dev)
    _close(out, x + y + 0.5, "triton kernel", tol=1e-5)
    return f"triton {triton.__version__} add kernel, BLOCK={block}"


def torch_compile(device):
    dev = _dev(device)
    salt = random.uniform(1.0, 2.0)     # a constant in the graph: a new compile, not a cache hit

    def f(x):
        return torch.nn.functional.gelu(x) * salt + x

    compiled = torch.compile(f)
    x = torch.randn(2048, device=dev)
    out = compiled(x)
    torch.cuda.synchronize(dev)
    _close(out, f(x), "torch.compile", tol=1e-4)
    return "torch.compile (inductor -> triton) of gelu(x)*c+x"


def _bnb():
    if importlib.util.find_spec("bitsandbytes") is None:
        raise Skip("bitsandbytes is not installed")
    import bitsandbytes

    return bitsandbytes


def bnb_4bit(device):
    bnb = _bnb()
    dev = _dev(device)
    w = torch.randn(256, 256, device=dev, dtype=torch.bfloat16)
    import bitsandbytes.functional as bnb_functional

    qw, state = bnb_functional.quantize_4bit(w, quant_type="nf4")     # what Linear4bit does on .cuda()
    x = torch.randn(8, 256, device=dev, dtype=torch.bfloat16)
    out = bnb.matmul_4bit(x, qw.t(), quant_state=state)                # Linear4bit.forward's call
    torch.cuda.synchronize(dev)
    _close(out, x @ w.t(), "4-bit matmul", tol=0.25)                  # NF4 is lossy
    return f"bitsandbytes {bnb.__version__} NF4 quantize + matmul_4bit"


def bnb_adam8bit(device):
    bnb = _bnb()
    dev = _dev(device)
    p = torch.nn.Parameter(torch.randn(128, 128, device=dev))   # >= 4096 elements: 8-bit state
    before = p.detach().clone()
    opt = bnb.optim.Adam8bit([p], lr=1e-2)
    p.grad = torch.randn_like(p)
    opt.step()
    torch.cuda.synchronize(dev)
    state = opt.state[p]
    if state["state1"].dtype != torch.uint8:
        raise AssertionError(f"8-bit Adam kept a {state['state1'].dtype} state")
    if torch.equal(before, p.detach()):
        raise AssertionError("8-bit Adam step left the parameter unchanged")
    return "bitsandbytes Adam8bit step (uint8 state)"


def unsloth_import(device):
    if importlib.util.find_spec("unsloth") is None:
        raise Skip("unsloth is not installed")
    import unsloth

    return f"import unsloth {getattr(unsloth, '__version__', '?')}"


def nccl_allreduce(device):
    i, j = (int(d) for d in (device or "0-1").split("-"))
    import torch.cuda.nccl as nccl

    peer = torch.cuda.can_device_access_peer(i, j)
    tensors = [torch.full((1 << 20,), float(k + 1), device=f"cuda:{k}") for k in (i, j)]
    nccl.all_reduce(tensors)
    for k in (i, j):
        torch.cuda.synchronize(k)
    for t in tensors:
        _close(t, torch.full_like(t, 3.0), "NCCL all-reduce", tol=1e-6)
    version = nccl.version()
    version = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    return f"NCCL {version} all-reduce of 4 MiB over GPUs {i},{j}; peer access {'yes' if peer else 'no'}"


STEPS = {f.__name__: f for f in (cuda_init, matmul_bf16, sdpa_flash, sdpa_mem_efficient, triton_jit, torch_compile,
                                 bnb_4bit, bnb_adam8bit, unsloth_import, nccl_allreduce)}

if __name__ == "__main__":
    serve(_prelude, STEPS)
