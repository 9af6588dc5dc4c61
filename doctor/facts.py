"""Facts: everything the checks may read, gathered once by the probes.

Plain dataclasses that round-trip through JSON (`doctor run --save-facts` / `--facts`), so any
machine, including one we do not have, can be replayed offline. Sizes are bytes, versions strings.
A value that could not be read is None; *why* it could not be read is in `probes`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from doctor.serde import JsonRecord, from_jsonable

FACTS_SCHEMA_VERSION = 1


@dataclass
class ProbeStatus:
    name: str
    ok: bool = True
    duration_s: float = 0.0
    timed_out: bool = False
    error: Optional[str] = None          # one line: why the probe failed or what it could not read


@dataclass
class PackageInfo:
    name: str
    version: Optional[str] = None        # None = not installed
    requires: list[str] = field(default_factory=list)   # Requires-Dist lines, verbatim
    location: Optional[str] = None
    error: Optional[str] = None          # corrupt metadata etc.
    shadows: list[str] = field(default_factory=list)    # other copies later on sys.path: "2.1.0 at /usr/lib/..."
    requires_python: Optional[str] = None  # Requires-Python, verbatim (">=3.9,<3.15"); None = not declared/unread


@dataclass
class TorchDevice:
    index: int
    name: str = ""
    capability: Optional[list[int]] = None       # [major, minor]
    total_memory: Optional[int] = None
    free_memory: Optional[int] = None            # cudaMemGetInfo at probe time


@dataclass
class TorchInfo:
    importable: bool = False
    version: Optional[str] = None                # torch.__version__, e.g. "2.2.0+cu121"
    cuda_version: Optional[str] = None           # torch.version.cuda, None on CPU builds
    cudnn_version: Optional[int] = None
    hip_version: Optional[str] = None
    cuda_available: Optional[bool] = None
    device_count: int = 0
    devices: list[TorchDevice] = field(default_factory=list)
    arch_list: list[str] = field(default_factory=list)   # torch.cuda.get_arch_list()
    bf16_supported: Optional[bool] = None        # is_bf16_supported(): counts emulation
    bf16_native: Optional[bool] = None           # including_emulation=False / capability >= 8.0
    from_cache: Optional[str] = None             # set when read from the torch facts cache: when it was probed
    init_warning: Optional[str] = None           # e.g. "The NVIDIA driver on your system is too old"
    error: Optional[str] = None


@dataclass
class GPUProcess:
    pid: int
    used_memory: Optional[int] = None            # None under WDDM/WSL (not reported)
    name: Optional[str] = None
    kind: str = "compute"                        # compute | graphics


@dataclass
class GPUInfo:
    index: int
    name: str = ""
    uuid: Optional[str] = None
    pci_bus_id: Optional[str] = None
    capability: Optional[list[int]] = None
    memory_total: Optional[int] = None
    memory_used: Optional[int] = None
    memory_free: Optional[int] = None
    display_active: Optional[bool] = None        # drives a display: TDR and desktop VRAM apply
    persistence_mode: Optional[bool] = None
    driver_model: Optional[str] = None           # WDDM | TCC | MCDM (Windows only)
    power_limit_w: Optional[float] = None
    processes: list[GPUProcess] = field(default_factory=list)


@dataclass
class NvidiaInfo:
    source: Optional[str] = None                 # "nvml" | "nvidia-smi" | None (no driver seen)
    driver_version: Optional[str] = None         # on WSL2 this is the *Windows* driver
    cuda_driver_version: Optional[str] = None    # highest CUDA the driver supports, "12.4"
    nvml_version: Optional[str] = None
    gpus: list[GPUInfo] = field(default_factory=list)
    error: Optional[str] = None


@dataclass
class PlatformInfo:
    system: str = ""                             # Linux | Windows | Darwin
    kernel_release: str = ""                     # /proc/sys/kernel/osrelease or platform.release()
    os_name: str = ""                            # PRETTY_NAME from /etc/os-release
    machine: str = ""                            # x86_64 | aarch64
    python_version: str = ""
    python_executable: str = ""
    in_virtualenv: Optional[bool] = None
    is_wsl: bool = False
    wsl_version: Optional[int] = None            # 1 or 2
    wsl_signals: list[str] = field(default_factory=list)
    is_windows_native: bool = False
    container: Optional[str] = None              # docker | podman | kubernetes | lxc | None
    colab: bool = False
    kaggle: bool = False
    cpu_count: Optional[int] = None
    ram_total: Optional[int] = None
    ram_available: Optional[int] = None
    swap_total: Optional[int] = None
    swap_free: Optional[int] = None
    shm_total: Optional[int] = None              # /dev/shm
    shm_free: Optional[int] = None
    cwd: Optional[str] = None
    cwd_filesystem: Optional[str] = None         # e.g. 9p / v9fs / ext4 / drvfs
    cwd_on_windows_mount: bool = False           # /mnt/c and friends under WSL
    hostname: Optional[str] = None               # kept for redaction; never printed by renderers
    username: Optional[str] = None               # kept for redaction
    home: Optional[str] = None                   # kept for redaction
    ptrace_scope: Optional[int] = None           # /proc/sys/kernel/yama/ptrace_scope
    wsl_config_memory: Optional[str] = None      # memory= from %UserProfile%/.wslconfig when readable


@dataclass
class LibcudaInfo:
    ldconfig_paths: list[str] = field(default_factory=list)    # libcuda.so* known to ldconfig
    ld_library_path_hits: list[str] = field(default_factory=list)
    resolved: Optional[str] = None               # what dlopen("libcuda.so.1") maps, from /proc/self/maps
    wsl_lib_present: bool = False                # /usr/lib/wsl/lib/libcuda.so* exists
    error: Optional[str] = None
    load_error: Optional[str] = None             # why dlopen("libcuda.so.1") failed (none on CPU-only hosts)


@dataclass
class LogMatch:
    """One line of a training log or traceback (`--log`, a bundle's logs) that matched a known
    signature; the text itself stays out of the facts, only the matched line (trimmed)."""
    signature: str                       # id of a checks/data/log_signatures.json row, or a known_bad row
    line: str = ""                       # the matching line, at most 300 characters
    source: str = ""                     # file name the line came from (no directory)


@dataclass
class Facts(JsonRecord):
    schema_version: int = FACTS_SCHEMA_VERSION
    doctor_version: str = ""
    collected_at: str = ""                       # ISO-8601 UTC
    label: Optional[str] = None                  # for snapshots: what machine this describes
    platform: PlatformInfo = field(default_factory=PlatformInfo)
    packages: dict[str, PackageInfo] = field(default_factory=dict)   # key: canonical name
    torch: TorchInfo = field(default_factory=TorchInfo)
    nvidia: NvidiaInfo = field(default_factory=NvidiaInfo)
    env: dict[str, str] = field(default_factory=dict)   # only the variables that matter (allowlist)
    libcuda: LibcudaInfo = field(default_factory=LibcudaInfo)
    probes: list[ProbeStatus] = field(default_factory=list)
    whatif_gpu: Optional[str] = None             # set by `--gpu NAME`: the GPU comes from a table, not a probe
    log_matches: list[LogMatch] = field(default_factory=list)   # known signatures found in a given log

    # -- convenience for checks (pure reads) --
    def version(self, package: str) -> Optional[str]:
        info = self.packages.get(canonical_name(package))
        return info.version if info else None

    def probe(self, name: str) -> Optional[ProbeStatus]:
        return next((p for p in self.probes if p.name == name), None)

    @classmethod
    def from_dict(cls, data: dict) -> "Facts":
        if not isinstance(data, dict):
            raise ValueError("facts must be a JSON object")
        # A report envelope (doctor run --json) carries the facts under "facts".
        if "facts" in data and "platform" not in data and isinstance(data["facts"], dict):
            data = data["facts"]
        return from_jsonable(cls, data)


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: 'Unsloth_Zoo' -> 'unsloth-zoo'."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()
