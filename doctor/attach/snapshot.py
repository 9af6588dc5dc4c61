"""What the sampler measured, as plain data: the input of the classifier.

A Snapshot holds the raw py-spy JSON samples of every process of the tree plus what /proc, psutil
and NVML said during the same window. It round-trips through JSON, so a recorded snapshot (from a
user's bundle, `--save-dumps`, or the GPU machine) is classified exactly like a live one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from doctor.serde import JsonRecord

SNAPSHOT_VERSION = 1


@dataclass
class KernelWait:
    """Where the kernel says one OS thread is, at one sample."""
    state: Optional[str] = None          # R S D T Z (from /proc/<pid>/task/<tid>/stat)
    wchan: Optional[str] = None          # kernel function it sleeps in, e.g. "futex_wait_queue"
    syscall: Optional[int] = None        # syscall number it is blocked in (arch-specific), None if running


@dataclass
class ProcessSample:
    pid: int
    ppid: Optional[int] = None
    name: str = ""
    exe: Optional[str] = None
    cmdline: list[str] = field(default_factory=list)
    role: str = "main"                   # main | launcher | rank N | dataloader-worker | child | non-python
    rank: Optional[int] = None           # RANK from /proc/<pid>/environ (torchrun/accelerate)
    local_rank: Optional[int] = None
    world_size: Optional[int] = None
    cuda_visible_devices: Optional[str] = None   # from /proc/<pid>/environ: maps LOCAL_RANK to a GPU
    python: Optional[bool] = None        # None = could not tell before dumping
    skipped: Optional[str] = None        # why it was not dumped
    exited: bool = False                 # gone before or during sampling
    states: list[str] = field(default_factory=list)          # /proc state at each sample
    state_before: Optional[str] = None
    state_after: Optional[str] = None
    resumed: bool = False                # we found it stopped after sampling and sent SIGCONT
    cpu_percent: Optional[float] = None  # over the window, 100 = one core
    cpu_window_s: Optional[float] = None # wall time the CPU figures cover
    rss: Optional[int] = None
    swap: Optional[int] = None           # VmSwap, bytes
    num_threads: Optional[int] = None
    wchan: Optional[str] = None
    open_files: list[str] = field(default_factory=list)      # read only when in D state
    nonblocking: bool = False            # dumped without pausing it (many threads, D or T state)
    dumps: list[list[dict]] = field(default_factory=list)    # py-spy `dump --json` samples, verbatim
    native_dump: Optional[list[dict]] = None                 # one `--native` sample, when taken
    kernel: list[dict[str, KernelWait]] = field(default_factory=list)  # per sample: tid -> wait
    thread_cpu_s: dict[str, float] = field(default_factory=dict)       # tid -> CPU seconds in window
    source: dict[str, str] = field(default_factory=dict)     # "file:line" -> that source line
    errors: list[str] = field(default_factory=list)


@dataclass
class GpuDevice:
    index: int
    name: str = ""
    uuid: Optional[str] = None
    util: list[int] = field(default_factory=list)            # utilization.gpu % per sample
    mem_util: list[int] = field(default_factory=list)
    power_mw: list[int] = field(default_factory=list)
    power_limit_mw: Optional[int] = None                     # enforced limit
    sm_clock_mhz: list[int] = field(default_factory=list)
    sm_clock_max_mhz: Optional[int] = None
    clock_event_reasons: Optional[int] = None                # bitmask, last sample
    clock_event_names: list[str] = field(default_factory=list)
    pcie_tx_kbs: list[int] = field(default_factory=list)
    pcie_rx_kbs: list[int] = field(default_factory=list)
    pcie_gen: Optional[int] = None
    pcie_gen_max: Optional[int] = None
    pcie_width: Optional[int] = None
    pcie_width_max: Optional[int] = None
    pstate: Optional[int] = None
    temperature_c: Optional[int] = None
    memory_used: Optional[int] = None
    memory_total: Optional[int] = None
    processes: list[dict] = field(default_factory=list)      # {"pid", "used_memory" (None under WDDM)}


@dataclass
class GpuSample:
    available: bool = False
    driver: Optional[str] = None
    devices: list[GpuDevice] = field(default_factory=list)
    target_memory: dict[str, Optional[int]] = field(default_factory=dict)  # pid -> bytes on any GPU
    unavailable: list[str] = field(default_factory=list)     # what could not be read, and why


@dataclass
class Snapshot(JsonRecord):
    target_pid: int
    version: int = SNAPSHOT_VERSION
    taken_at: str = ""
    samples: int = 0
    interval_s: float = 0.0
    window_s: float = 0.0                # first to last sample
    duration_s: float = 0.0              # whole sampling, wall time
    arch: str = ""                       # machine (syscall numbers depend on it)
    wsl: bool = False
    pyspy: dict[str, Any] = field(default_factory=dict)     # path, version
    native_requested: Optional[bool] = None
    include_children: bool = True
    gpu_requested: bool = True           # False: --no-gpu, so no GPU readings are expected
    processes: list[ProcessSample] = field(default_factory=list)
    gpu: GpuSample = field(default_factory=GpuSample)
    errors: list[str] = field(default_factory=list)

    def process(self, pid: int) -> Optional[ProcessSample]:
        return next((p for p in self.processes if p.pid == pid), None)

    def raw_dumps(self) -> dict[str, list[list[dict]]]:
        return {str(p.pid): p.dumps for p in self.processes if p.dumps}




