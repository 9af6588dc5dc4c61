"""Facts: everything the checks may read, gathered once by the probes.

Plain dataclasses that round-trip through JSON (`doctor run --save-facts` / `--facts`), so any
machine, including one we do not have, can be replayed offline. Sizes are bytes, versions strings.
A value that could not be read is None; *why* it could not be read is in `probes`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from doctor.serde import JsonRecord, from_jsonable

# 2 (2026-12): log_matches, toolchain, smoke, torch.from_cache and the CUDA-library packages were
# added. Every new field has a default, so version-1 files (old bundles, snapshots) still load; a
# doctor that reads only version 1 refuses a version-2 file instead of ignoring what it cannot read.
FACTS_SCHEMA_VERSION = 2


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
    nccl_version: Optional[str] = None           # torch.cuda.nccl.version(), "2.27.3"
    nccl_library: Optional[str] = None           # the libnccl file the torch child mapped


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
    # NVML's peer-to-peer read status per GPU pair ("0-1" -> "ok", "chipset not supported", ...)
    p2p: dict[str, str] = field(default_factory=dict)


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
    iommu: Optional[str] = None                  # "off" | "on" | "passthrough" (iommu=pt): /sys/class/iommu, cmdline


@dataclass
class LibcudaInfo:
    ldconfig_paths: list[str] = field(default_factory=list)    # libcuda.so* known to ldconfig
    ld_library_path_hits: list[str] = field(default_factory=list)
    resolved: Optional[str] = None               # what dlopen("libcuda.so.1") maps, from /proc/self/maps
    wsl_lib_present: bool = False                # /usr/lib/wsl/lib/libcuda.so* exists
    error: Optional[str] = None
    load_error: Optional[str] = None             # why dlopen("libcuda.so.1") failed (none on CPU-only hosts)
    # What triton's `-lcuda` link sees: the folders holding libcuda.so.1 (ldconfig first, else
    # LD_LIBRARY_PATH, as triton searches) and which of them also hold the unversioned libcuda.so.
    so1_dirs: list[str] = field(default_factory=list)
    unversioned: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)          # symlink chain of the first libcuda.so.1
    dangling: list[str] = field(default_factory=list)       # libcuda.so* links whose target is gone
    triton_libcuda_path: Optional[str] = None    # TRITON_LIBCUDA_PATH, which replaces the search


@dataclass
class ToolchainInfo:
    """What triton's JIT, bitsandbytes' loader and extension builds need beside the wheels."""
    cc: Optional[str] = None                     # the compiler triton would use: $CC, else gcc, else clang
    cc_source: Optional[str] = None              # "CC" | "PATH"
    cc_works: Optional[bool] = None              # compiled a trivial C file
    cc_error: Optional[str] = None
    python_include: Optional[str] = None         # sysconfig's include dir (triton's -I)
    python_h: Optional[bool] = None              # Python.h is there
    triton_dir: Optional[str] = None             # the triton package folder (found, not imported)
    triton_libraries: Optional[list[str]] = None  # what triton's launcher links: ["cuda"] = -lcuda (needs libcuda.so)
    ptxas: Optional[str] = None                  # TRITON_PTXAS_PATH, else triton's bundled ptxas
    ptxas_source: Optional[str] = None           # "TRITON_PTXAS_PATH" | "triton"
    ptxas_ok: Optional[bool] = None              # exists, executable, `--version` answered
    ptxas_version: Optional[str] = None
    triton_cache_dir: Optional[str] = None       # TRITON_CACHE_DIR or ~/.triton/cache
    triton_cache_writable: Optional[bool] = None
    triton_cache_error: Optional[str] = None
    cuda_home: Optional[str] = None              # CUDA_HOME / CUDA_PATH, else /usr/local/cuda if present
    nvcc: Optional[str] = None
    nvcc_version: Optional[str] = None           # "12.4"
    cudart_on_path: list[str] = field(default_factory=list)     # libcudart.so* in LD_LIBRARY_PATH folders
    # CUDA libraries in LD_LIBRARY_PATH folders that shadow the pip nvidia-* wheels: real file paths
    cuda_libs_on_path: list[str] = field(default_factory=list)
    bnb_dir: Optional[str] = None                # the bitsandbytes package folder (found, not imported)
    bnb_libraries: Optional[list[str]] = None    # libbitsandbytes_* file names in it
    bnb_cuda_version_env: Optional[str] = None   # BNB_CUDA_VERSION
    error: Optional[str] = None


@dataclass
class SmokeStep:
    name: str                                    # "matmul_bf16", "nccl_allreduce"
    device: Optional[str] = None                 # "0", or "0-1" for a pair; None for process-wide steps
    layer: str = ""                              # driver | runtime | compiler | library-binary | interconnect
    status: str = "passed"                       # passed | failed | hung | crashed | skipped
    seconds: Optional[float] = None
    error: Optional[str] = None                  # the error text (last lines), verbatim
    detail: Optional[str] = None                 # what it measured, or why it was skipped


@dataclass
class SmokeInfo:
    ran: bool = False                            # False: `doctor smoke` / `run --smoke` was not run
    cpu_only: bool = False                       # no CUDA device: nothing to run
    steps: list[SmokeStep] = field(default_factory=list)
    seconds: Optional[float] = None
    error: Optional[str] = None                  # the smoke child could not start at all


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
    toolchain: ToolchainInfo = field(default_factory=ToolchainInfo)
    smoke: SmokeInfo = field(default_factory=SmokeInfo)

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

    @classmethod
    def from_dict_checked(cls, data) -> "Facts":
        """from_dict for files from outside (--facts, a bundle): a facts object of a schema this
        doctor reads, every field of its declared type; ValueError with one line otherwise."""
        if isinstance(data, dict) and "facts" in data and "platform" not in data:
            if not isinstance(data["facts"], dict):
                raise ValueError("a report without facts (only `doctor run --json` carries them), "
                                 "not a facts file")
            data = data["facts"]
        if not isinstance(data, dict):
            raise ValueError(f"expected a facts JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if "platform" not in data or "schema_version" not in data:
            raise ValueError("not a facts file (no schema_version and platform: save one with "
                             "`doctor run --save-facts FILE`)")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FACTS_SCHEMA_VERSION:
            raise ValueError(f"facts schema_version {version!r} is not supported: this doctor reads "
                             f"versions 1 to {FACTS_SCHEMA_VERSION}" + (" (upgrade the doctor)" if isinstance(version, int)
                                                                  and version > FACTS_SCHEMA_VERSION else ""))
        problem = shape_problem(cls, data, "facts")
        if problem:
            raise ValueError(problem)
        return cls.from_dict(data)


def shape_problem(tp, value, where: str) -> Optional[str]:
    """The first place where a JSON value does not have the type the dataclass field declares
    ('facts.env: expected an object, got list'), or None. Unknown keys are allowed (a newer
    doctor's facts). Recurses only along the declared types, so a few levels deep."""
    import dataclasses
    import typing

    from doctor.serde import _hints

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:   # only where the field is Optional: checks read `facts.nvidia.gpus` freely
        optional = tp is typing.Any or (origin is typing.Union and type(None) in args)
        return None if optional else f"{where}: must not be null"
    if origin is typing.Union:
        options = [a for a in args if a is not type(None)]
        problems = [shape_problem(a, value, where) for a in options]
        return None if any(p is None for p in problems) else problems[0]
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "true or false"}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {type(value).__name__}"
        hints = _hints(tp)
        for f in dataclasses.fields(tp):
            if f.name in value:
                problem = shape_problem(hints[f.name], value[f.name], f"{where}.{f.name}")
                if problem:
                    return problem
        return None
    if origin in (list, tuple):
        if not isinstance(value, list):
            return f"{where}: expected a list, got {type(value).__name__}"
        item = args[0] if args else typing.Any
        for i, v in enumerate(value):
            problem = shape_problem(item, v, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {type(value).__name__}"
        item = args[1] if len(args) == 2 else typing.Any
        for k, v in value.items():
            problem = shape_problem(item, v, f"{where}.{k}")
            if problem:
                return problem
        return None
    if tp in (int, float, str, bool):
        ok = (isinstance(value, bool) if tp is bool
              else isinstance(value, (int, float)) and not isinstance(value, bool) if tp is float
              else isinstance(value, int) and not isinstance(value, bool) if tp is int
              else isinstance(value, str))
        if not ok:
            return f"{where}: expected {names[tp]}, got {type(value).__name__}"
        if tp in (int, float) and not abs(value) < 2.0 ** 64:   # also NaN and infinity
            return f"{where}: {value!r} is out of range"
        return None
    return None


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: 'Unsloth_Zoo' -> 'unsloth-zoo'."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()
