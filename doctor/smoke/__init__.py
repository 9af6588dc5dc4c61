"""`doctor smoke`: actually run, in a child process with a watchdog, each kernel family a fine-tune
needs (cuBLAS bf16 matmul, SDPA flash and memory-efficient, a triton JIT kernel, torch.compile,
bitsandbytes 4-bit and 8-bit Adam, the Unsloth import, an NCCL all-reduce per GPU pair), and record
each result with its time in Facts.smoke. checks/smoke.py turns failures into findings that name the
layer that broke (driver, runtime, compiler, library binary, interconnect).

protocol.py is the child/parent line protocol, child.py the steps (run in the child only), steps.py
the plan (which steps, their limits), runner.py the watchdog.
"""
