"""The faults, as the training child plants them (see doctor/repro/faults.py for the list).

Two hook points cover all of them, whatever the backend (TRL, HF Trainer, plain loop):
- the data collator, which runs in the DataLoader workers: dataloader-hang, long-sample;
- the start of an optimizer step, in the main thread: cuda-stall, host-memory, vram-squeeze.
Micro-batch m (0-based) belongs to optimizer step m // grad_accum + 1.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable, Optional

from doctor.repro.events import EventWriter
from doctor.units import GIB

SQUEEZE_CHUNK = 64 << 20              # host squeeze allocates in 64 MiB pieces
SQUEEZE_AVAILABLE_FRACTION = 0.7      # never take more than this share of MemAvailable
SQUEEZE_FLOOR_FRACTION = 0.10         # stop once MemAvailable is below this share of RAM
CUDA_STALL_SECONDS = 3600             # the spinning kernel's length: far past any deadline


class FaultPlan:
    def __init__(self, injections: list, events: EventWriter, grad_accum: int, max_seq_length: int,
                 long_factor: float, squeeze_limit: Optional[int], device: str, seed: int,
                 vocab_size: int):
        self.by_kind = {i.kind: i.step for i in injections}
        self.events = events
        self.grad_accum = max(1, grad_accum)
        self.max_seq_length = max_seq_length
        self.long_factor = long_factor
        self.squeeze_limit = squeeze_limit
        self.device = device
        self.seed = seed
        self.vocab_size = vocab_size
        self._held: list[Any] = []        # memory the squeezes keep alive
        self.last_step_peak: Optional[int] = None   # max_memory_allocated of the last step (recorder)

    def wants(self, kind: str) -> bool:
        return kind in self.by_kind

    def skip_inapplicable(self) -> None:
        if self.wants("vram-squeeze") and self.device != "cuda":
            self.events.emit("inject-skipped", fault="vram-squeeze",
                             reason="no CUDA device: a VRAM squeeze is not applicable on CPU")
            del self.by_kind["vram-squeeze"]

    # ---------------------------------------------------------------- collator side

    def wrap_collator(self, collator: Callable, lookahead: int = 0) -> Callable:
        """lookahead: batches the loader fetches before the step that trains on them (accelerate's
        DataLoaderShard reads one ahead), so a hung worker blocks step N, not step N-1."""
        if not (self.wants("dataloader-hang") or self.wants("long-sample")):
            return collator
        return FaultyCollator(collator, self, lookahead)

    # ---------------------------------------------------------------- step side

    def on_step_begin(self, step: int) -> None:
        if self.by_kind.get("vram-squeeze") == step:
            self._vram_squeeze(step)
        if self.by_kind.get("host-memory") == step:
            self._host_squeeze(step)
        if self.by_kind.get("cuda-stall") == step:
            self._cuda_stall(step)

    def _cuda_stall(self, step: int) -> None:
        import torch

        if self.device == "cuda":
            rate_khz = _clock_rate_khz(torch)
            cycles = int(rate_khz * 1000 * CUDA_STALL_SECONDS)
            self.events.emit("inject", fault="cuda-stall", step=step, emulated=False,
                             detail=f"launched a spinning kernel of ~{CUDA_STALL_SECONDS} s "
                                    f"(torch.cuda._sleep({cycles})); the next sync blocks on it")
            torch.cuda._sleep(cycles)     # returns at once; the trainer's next sync waits on it
            return
        from doctor.repro import emulated_cuda

        self.events.emit("inject", fault="cuda-stall", step=step, emulated=True,
                         detail="no GPU: the main thread blocks forever in a native call behind a "
                                "sync-shaped function (doctor.repro.emulated_cuda.synchronize)")
        emulated_cuda.synchronize()

    def _host_squeeze(self, step: int) -> None:
        import psutil

        vm = psutil.virtual_memory()
        cap = int(vm.available * SQUEEZE_AVAILABLE_FRACTION)
        target = min(cap, self.squeeze_limit) if self.squeeze_limit else cap
        floor = int(vm.total * SQUEEZE_FLOOR_FRACTION)
        taken = 0
        while taken < target and psutil.virtual_memory().available > floor:
            n = min(SQUEEZE_CHUNK, target - taken)
            self._held.append(b"\x5a" * n)        # bytes repetition writes every page: resident
            taken += n
        after = psutil.virtual_memory()
        self.events.emit("inject", fault="host-memory", step=step, emulated=False,
                         detail=f"holding {taken / GIB:.2f} GiB of host RAM; MemAvailable "
                                f"{vm.available / GIB:.1f} -> {after.available / GIB:.1f} GiB "
                                f"of {vm.total / GIB:.1f} GiB",
                         allocated=taken, available_before=vm.available, available_after=after.available,
                         total=vm.total, limit=self.squeeze_limit, cap=cap)
        _wait_for_memory()

    def _vram_squeeze(self, step: int) -> None:
        import torch

        torch.cuda.synchronize()
        peak = self.last_step_peak or torch.cuda.max_memory_allocated()
        now = torch.cuda.memory_allocated()
        need = max(peak - now, 64 << 20)          # what the last step needed on top of what stays
        torch.cuda.empty_cache()                  # the cache could serve the step: give it back
        free, total = torch.cuda.mem_get_info()
        goal = need // 2
        chunk = 256 << 20
        while free > goal and chunk >= (1 << 20):
            try:
                self._held.append(torch.empty(min(chunk, free - goal), dtype=torch.uint8, device="cuda"))
            except RuntimeError:                  # fragmentation: try smaller pieces
                chunk //= 2
            free, total = torch.cuda.mem_get_info()
        held = sum(t.numel() for t in self._held if hasattr(t, "numel"))
        self.events.emit("inject", fault="vram-squeeze", step=step, emulated=False,
                         detail=f"holding {held / GIB:.2f} GiB of VRAM; free {free / GIB:.2f} GiB of "
                                f"{total / GIB:.1f} GiB, the last step needed {need / GIB:.2f} GiB more",
                         held=held, free_after=free, total=total, step_need=need)


class FaultyCollator:
    """Wraps the trainer's collator; counts micro-batches per process (workers are forked)."""

    def __init__(self, inner: Callable, plan: FaultPlan, lookahead: int = 0):
        self.inner = inner
        self.plan = plan
        self.lookahead = lookahead
        self.calls = 0

    def _first_batch_of(self, step: Optional[int], index: int, shift: int = 0) -> bool:
        return step is not None and index - shift == (step - 1) * self.plan.grad_accum

    def __call__(self, examples):
        index = self._global_index()
        self.calls += 1
        long_step = self.plan.by_kind.get("long-sample")
        if self._first_batch_of(long_step, index):            # the batch step N trains on
            examples = self._lengthen(list(examples), long_step)
        hang_step = self.plan.by_kind.get("dataloader-hang")
        if self._first_batch_of(hang_step, index, shift=self.lookahead):   # first fetched only for step N
            self.plan.events.emit("inject", fault="dataloader-hang", step=hang_step, emulated=False,
                                  detail=f"DataLoader worker blocks forever collating micro-batch {index}")
            threading.Event().wait()              # a worker stuck in collate: never returns
        return self.inner(examples)

    def _global_index(self) -> int:
        try:
            from torch.utils.data import get_worker_info

            info = get_worker_info()
        except ImportError:
            info = None
        if info is None:
            return self.calls
        return self.calls * info.num_workers + info.id    # the DataLoader deals batches round-robin

    def _lengthen(self, examples: list, step: int) -> list:
        length = int(self.plan.max_seq_length * self.plan.long_factor)
        first = dict(examples[0])
        old = len(first["input_ids"])
        rng = random.Random(self.plan.seed + step)
        ids = list(first["input_ids"]) + [rng.randrange(4, self.plan.vocab_size)
                                          for _ in range(length - old)]
        for key, value in list(first.items()):
            if key == "input_ids":
                first[key] = ids
            elif key == "labels":
                first[key] = list(ids)
            elif isinstance(value, list) and len(value) == old:   # masks: every new token counts
                first[key] = list(value) + [1] * (length - old)
        examples[0] = first
        self.plan.events.emit("inject", fault="long-sample", step=step, emulated=False,
                              detail=f"one sample of {length} tokens (max_seq_length {self.plan.max_seq_length}) "
                                     "in the first micro-batch of the step, untruncated",
                              length=length, max_seq_length=self.plan.max_seq_length)
        return examples


def _wait_for_memory() -> None:
    """The squeezed step does not go on: a stand-in for a process stuck in reclaim or swap."""
    while True:
        time.sleep(0.5)


def _clock_rate_khz(torch) -> int:
    try:
        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).clock_rate)
    except Exception:  # property missing in some torch builds: assume 2 GHz
        return 2_000_000
