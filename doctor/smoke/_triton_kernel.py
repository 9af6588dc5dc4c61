"""The smoke test's triton kernel. A module of its own because triton reads a kernel's source and
globals (`tl`) from the file it is defined in; imported by child.py's triton_jit step only."""
import triton
import triton.language as tl


@triton.jit
def add(x_ptr, y_ptr, out_ptr, n, salt, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask) + salt, mask=mask)
