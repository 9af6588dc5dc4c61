"""Platform facts: OS, WSL1/WSL2 (and the signals that show it), container, Colab/Kaggle, memory,
/dev/shm, the working directory's filesystem, ptrace scope, and the .wslconfig memory cap.

Parsing is in pure functions of text; probe() only reads files and asks the OS.
"""
from __future__ import annotations

import glob
import os
import platform
import re
import sys
import threading
from typing import Callable, Iterable, Mapping, Optional, TypeVar

from doctor.facts import PlatformInfo
from doctor.probes.timeouts import WSLCONFIG_READ_S, scaled

T = TypeVar("T")

WSL_PATHS = ("/dev/dxg", "/usr/lib/wsl/lib")
CONTAINER_PATHS = ("/.dockerenv", "/run/.containerenv")
WINDOWS_FS_TYPES = ("drvfs", "9p", "v9fs")
_WINDOWS_DRIVE = re.compile(r"^/mnt/[A-Za-z](/|$)")
_NOT_A_PROFILE = {"public", "default", "default user", "all users"}


# ---------------------------------------------------------------- pure parsing

def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release KEY=value lines (values may be quoted) -> dict."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def detect_wsl(osrelease: str, environ: Mapping[str, str],
               existing_paths: Iterable[str]) -> tuple[bool, Optional[int], list[str]]:
    """(is_wsl, 1|2|None, signals). WSL2 kernels say "-microsoft-standard[-WSL2]"; WSL1 reports the
    Windows build, e.g. "4.4.0-19041-Microsoft". /dev/dxg and /usr/lib/wsl/lib exist only on WSL2."""
    signals = []
    lower = osrelease.lower()
    if "microsoft" in lower or "wsl" in lower:
        signals.append(f"kernel release {osrelease}")
    for name in ("WSL_DISTRO_NAME", "WSL_INTEROP"):
        if environ.get(name):
            signals.append(f"env {name}")
    paths = [p for p in WSL_PATHS if p in set(existing_paths)]
    signals.extend(paths)
    if not signals:
        return False, None, []
    if "wsl2" in lower or "microsoft-standard" in lower or paths:
        version: Optional[int] = 2
    elif "microsoft" in lower:
        version = 1
    else:
        version = None
    return True, version, signals


def detect_container(environ: Mapping[str, str], existing_paths: Iterable[str],
                     cgroup_text: str = "") -> Optional[str]:
    existing = set(existing_paths)
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if "/run/.containerenv" in existing or environ.get("container") == "podman":
        return "podman"
    if "/.dockerenv" in existing:
        return "docker"
    for marker, kind in (("kubepods", "kubernetes"), ("docker", "docker"), ("containerd", "containerd"),
                         ("libpod", "podman"), ("lxc", "lxc")):
        if marker in cgroup_text:
            return kind
    if environ.get("container"):
        return environ["container"]
    return None


def _unescape_mount(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes (\040 ...).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[tuple[str, str, str]]:
    """/proc/mounts -> [(mount point, fs type, options)]."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append((_unescape_mount(parts[1]), parts[2], parts[3]))
    return out


def mount_for(path: str, mounts: list[tuple[str, str, str]]) -> Optional[tuple[str, str, str]]:
    """The mount that holds path: the longest mount point that is path or a parent of it.
    A later mount on the same point hides an earlier one, so the last wins ties."""
    best = None
    for entry in mounts:
        point = entry[0].rstrip("/") or "/"
        if point == "/" or path == point or path.startswith(point + "/"):
            if best is None or len(point) >= len(best[0].rstrip("/") or "/"):
                best = entry
    return best


def on_windows_mount(path: str, is_wsl: bool, fstype: Optional[str], options: str = "") -> bool:
    """A Windows drive seen from WSL: /mnt/<letter>/ or a drvfs mount (9p with aname=drvfs)."""
    if not is_wsl:
        return False
    return bool(_WINDOWS_DRIVE.match(path)) or fstype == "drvfs" or "aname=drvfs" in options


def parse_wslconfig_memory(text: str) -> Optional[str]:
    """memory= in the [wsl2] section of a .wslconfig (INI; keys are case-insensitive)."""
    section = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
        elif section == "wsl2" and "=" in line:
            key, _, value = line.partition("=")
            if key.strip().lower() == "memory":
                return value.strip().strip("\"'") or None
    return None


def pick_wslconfig(paths: list[str], username: Optional[str]) -> Optional[str]:
    """The .wslconfig of the Windows user: the profile named like the Linux user, else the only one."""
    candidates = [p for p in paths if os.path.basename(os.path.dirname(p)).lower() not in _NOT_A_PROFILE]
    if username:
        for p in candidates:
            if os.path.basename(os.path.dirname(p)).lower() == username.lower():
                return p
    return candidates[0] if len(candidates) == 1 else None


# ---------------------------------------------------------------- thin I/O

def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _bounded(fn: Callable[[], T], timeout_s: float) -> Optional[T]:
    """fn() in a daemon thread; None if it raises or does not return within timeout_s."""
    box: list = []

    def target():
        try:
            box.append(fn())
        except Exception:
            pass

    th = threading.Thread(target=target, daemon=True, name="probe-platform-bounded")
    th.start()
    th.join(timeout_s)
    return box[0] if box else None


def _os_name(system: str) -> str:
    if system == "Linux":
        for path in ("/etc/os-release", "/usr/lib/os-release"):
            text = _read(path)
            if text:
                info = parse_os_release(text)
                return info.get("PRETTY_NAME") or " ".join(filter(None, (info.get("NAME"), info.get("VERSION"))))
        return ""
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"
    return platform.platform()


def _cpu_count() -> Optional[int]:
    # The CPUs this process may use (taskset, cgroup cpusets), which is what DataLoader workers get.
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _memory(info: PlatformInfo, errors: list[str]) -> None:
    try:
        import psutil

        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        info.ram_total, info.ram_available = int(vm.total), int(vm.available)
        info.swap_total, info.swap_free = int(sw.total), int(sw.free)
    except Exception as exc:  # psutil missing or unreadable /proc
        errors.append(f"memory: {type(exc).__name__}: {exc}")


def _shm(info: PlatformInfo) -> None:
    try:
        st = os.statvfs("/dev/shm")
    except (OSError, AttributeError):
        return
    info.shm_total, info.shm_free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def iommu_state(iommu_units: list[str], cmdline: str) -> str:
    """An IOMMU translating DMA makes PCIe switches route peer-to-peer through the root complex
    (ACS): NCCL's P2P crawls or hangs. iommu=pt (passthrough) keeps it out of the GPUs' way."""
    if not iommu_units:
        return "off"
    args = cmdline.split()
    return "passthrough" if "iommu=pt" in args or "iommu.passthrough=1" in args else "on"


def _iommu(info: PlatformInfo) -> None:
    try:
        units = sorted(os.listdir("/sys/class/iommu"))
    except OSError:
        return          # not Linux, or sysfs not mounted: unknown
    info.iommu = iommu_state(units, _read("/proc/cmdline") or "")


def _user() -> Optional[str]:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no USER and no passwd entry (some containers)
        return None


def _colab() -> bool:
    if os.environ.get("COLAB_GPU") is not None or os.environ.get("COLAB_RELEASE_TAG"):
        return True
    try:
        from importlib.metadata import version

        version("google-colab")
        return True
    except Exception:
        return False


def _wslconfig_memory(username: Optional[str]) -> Optional[str]:
    def read():
        path = pick_wslconfig(glob.glob("/mnt/c/Users/*/.wslconfig"), username)
        text = _read(path) if path else None
        return parse_wslconfig_memory(text) if text else None

    return _bounded(read, scaled(WSLCONFIG_READ_S))


def probe() -> tuple[PlatformInfo, Optional[str]]:
    errors: list[str] = []
    system = platform.system()
    info = PlatformInfo(
        system=system,
        kernel_release=(_read("/proc/sys/kernel/osrelease") or platform.release()).strip(),
        os_name=_os_name(system),
        machine=platform.machine(),
        python_version=platform.python_version(),
        python_executable=sys.executable,
        in_virtualenv=sys.prefix != getattr(sys, "base_prefix", sys.prefix)
        or os.environ.get("CONDA_PREFIX") == sys.prefix,
        is_windows_native=system == "Windows",
        kaggle=bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE")),
        colab=_colab(),
        cpu_count=_cpu_count(),
        hostname=platform.node() or None,
        username=_user(),
        home=os.path.expanduser("~"),
    )
    existing = [p for p in WSL_PATHS + CONTAINER_PATHS if os.path.exists(p)]
    if system == "Linux":
        info.is_wsl, info.wsl_version, info.wsl_signals = detect_wsl(info.kernel_release, os.environ, existing)
    info.container = detect_container(os.environ, existing, _read("/proc/1/cgroup") or "")
    _memory(info, errors)
    _shm(info)
    _iommu(info)
    try:
        info.cwd = os.getcwd()
    except OSError as exc:  # the working directory was deleted under us
        errors.append(f"cwd: {exc}")
    mounts_text = _read("/proc/mounts")
    if info.cwd and mounts_text:
        mount = mount_for(info.cwd, parse_mounts(mounts_text))
        if mount:
            info.cwd_filesystem = mount[1]
            info.cwd_on_windows_mount = on_windows_mount(info.cwd, info.is_wsl, mount[1], mount[2])
    elif info.cwd:
        info.cwd_on_windows_mount = on_windows_mount(info.cwd, info.is_wsl, None)
    scope = _read("/proc/sys/kernel/yama/ptrace_scope")
    if scope and scope.strip().isdigit():
        info.ptrace_scope = int(scope.strip())
    if info.is_wsl:
        info.wsl_config_memory = _wslconfig_memory(info.username)
    return info, ("; ".join(errors) or None)
