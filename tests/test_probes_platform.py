"""Platform probe: WSL1/WSL2/native detection, containers, /proc/mounts, os-release, .wslconfig."""
from __future__ import annotations

import os

import pytest

from doctor.probes import platform_probe as pp

MOUNTS_WSL2 = r"""none /mnt/wsl tmpfs rw,relatime 0 0
/dev/sdc / ext4 rw,relatime,discard,errors=remount-ro,data=ordered 0 0
drivers /usr/lib/wsl/drivers 9p ro,nosuid,nodev,noatime,dirsync,aname=drivers;fmask=222;dmask=222,mmap,access=client,msize=65536,trans=fd,rfd=8,wfd=8 0 0
lib /usr/lib/wsl/lib overlay rw,relatime,lowerdir=/gpu_lib_packaged:/gpu_lib_inbox,upperdir=/gpu_lib/rw/upper 0 0
C:\134 /mnt/c 9p rw,noatime,dirsync,aname=drvfs;path=C:\;uid=1000;gid=1000;symlinkroot=/mnt/,mmap,access=client,msize=65536,trans=fd,rfd=5,wfd=5 0 0
D:\134 /mnt/d 9p rw,noatime,aname=drvfs;path=D:\;uid=1000;gid=1000 0 0
tmpfs /mnt/c/Users/me/My\040Models tmpfs rw 0 0
"""


def test_os_release_pretty_name_with_quotes_and_comments():
    text = '# comment\nNAME="Ubuntu"\nVERSION="22.04.4 LTS (Jammy Jellyfish)"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\n'
    info = pp.parse_os_release(text)
    assert info["PRETTY_NAME"] == "Ubuntu 22.04.4 LTS" and info["ID"] == "ubuntu"
    assert pp.parse_os_release("PRETTY_NAME='Debian GNU/Linux 12 (bookworm)'")["PRETTY_NAME"] == \
        "Debian GNU/Linux 12 (bookworm)"


def test_wsl2_from_kernel_release_env_and_paths():
    is_wsl, version, signals = pp.detect_wsl("5.15.153.1-microsoft-standard-WSL2",
                                             {"WSL_DISTRO_NAME": "Ubuntu", "WSL_INTEROP": "/run/WSL/1_interop"},
                                             ["/dev/dxg", "/usr/lib/wsl/lib", "/.dockerenv"])
    assert (is_wsl, version) == (True, 2)
    assert signals == ["kernel release 5.15.153.1-microsoft-standard-WSL2", "env WSL_DISTRO_NAME",
                       "env WSL_INTEROP", "/dev/dxg", "/usr/lib/wsl/lib"]


def test_wsl1_reports_the_windows_build_in_its_kernel_release():
    is_wsl, version, signals = pp.detect_wsl("4.4.0-19041-Microsoft", {"WSL_DISTRO_NAME": "Ubuntu"}, [])
    assert (is_wsl, version) == (True, 1)
    assert signals == ["kernel release 4.4.0-19041-Microsoft", "env WSL_DISTRO_NAME"]


def test_custom_wsl2_kernel_without_microsoft_in_its_name_is_still_wsl2_by_dxg():
    assert pp.detect_wsl("6.6.36-custom", {"WSL_DISTRO_NAME": "Arch"}, ["/dev/dxg"])[:2] == (True, 2)
    # only an env variable (e.g. leaked into an ssh session): WSL, version unknown
    assert pp.detect_wsl("6.6.36-custom", {"WSL_INTEROP": "/run/x"}, [])[:2] == (True, None)


def test_native_linux_is_not_wsl():
    assert pp.detect_wsl("6.8.0-45-generic", {"HOME": "/root"}, ["/.dockerenv"]) == (False, None, [])


@pytest.mark.parametrize("environ, paths, cgroup, expected", [
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, ["/.dockerenv"], "", "kubernetes"),
    ({}, ["/run/.containerenv"], "", "podman"),
    ({}, ["/.dockerenv"], "", "docker"),
    ({}, [], "12:memory:/docker/3f2a9c\n", "docker"),
    ({}, [], "11:cpuset:/kubepods/besteffort/pod1234\n", "kubernetes"),
    ({}, [], "0::/init.scope\n", None),
    ({"container": "systemd-nspawn"}, [], "0::/\n", "systemd-nspawn"),
])
def test_container_detection(environ, paths, cgroup, expected):
    assert pp.detect_container(environ, paths, cgroup) == expected


def test_mount_longest_prefix_finds_9p_drvfs_under_wsl():
    mounts = pp.parse_mounts(MOUNTS_WSL2)
    assert pp.mount_for("/mnt/c/Users/me/project", mounts)[:2] == ("/mnt/c", "9p")
    assert pp.mount_for("/mnt/c", mounts)[:2] == ("/mnt/c", "9p")
    assert pp.mount_for("/home/me/project", mounts)[:2] == ("/", "ext4")
    # /mnt/cc is not under /mnt/c; octal escapes (\040 = space) are decoded
    assert pp.mount_for("/mnt/cc/x", mounts)[:2] == ("/", "ext4")
    assert pp.mount_for("/mnt/c/Users/me/My Models/llama", mounts)[:2] == ("/mnt/c/Users/me/My Models", "tmpfs")


def test_windows_mount_needs_wsl_and_a_drive_path_or_drvfs():
    mount = pp.mount_for("/mnt/d/data", pp.parse_mounts(MOUNTS_WSL2))
    assert pp.on_windows_mount("/mnt/d/data", True, mount[1], mount[2])
    assert pp.on_windows_mount("/mnt/c", True, None)
    assert pp.on_windows_mount("/win/share", True, "9p", "rw,aname=drvfs;path=E:\\")
    assert not pp.on_windows_mount("/mnt/data/x", True, "ext4", "rw")
    assert not pp.on_windows_mount("/mnt/c/x", False, "ext4", "rw")   # a plain Linux /mnt/c


def test_wslconfig_memory_only_from_the_wsl2_section():
    text = "[experimental]\nmemory=1GB\n\n[wsl2]\n# a comment\nprocessors = 8\nMemory = 12GB  ; twelve\nswap=0\n"
    assert pp.parse_wslconfig_memory(text) == "12GB"
    assert pp.parse_wslconfig_memory("[wsl2]\nprocessors=4\n") is None
    assert pp.parse_wslconfig_memory("memory=8GB\n") is None   # no section: WSL ignores it


def test_pick_wslconfig_prefers_the_matching_profile_and_refuses_to_guess():
    paths = ["/mnt/c/Users/Public/.wslconfig", "/mnt/c/Users/Alice/.wslconfig", "/mnt/c/Users/bob/.wslconfig"]
    assert pp.pick_wslconfig(paths, "alice") == "/mnt/c/Users/Alice/.wslconfig"
    assert pp.pick_wslconfig(paths, "carol") is None
    assert pp.pick_wslconfig(paths[:2], "carol") == "/mnt/c/Users/Alice/.wslconfig"


def test_bounded_returns_none_for_a_stuck_reader():
    import threading

    release = threading.Event()
    try:
        assert pp._bounded(lambda: release.wait(30) and "late", 0.2) is None
        assert pp._bounded(lambda: "fast", 5) == "fast"
        assert pp._bounded(lambda: 1 / 0, 5) is None
    finally:
        release.set()


def test_probe_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    info, error = pp.probe()
    assert error is None
    assert info.system == "Linux" and info.python_executable
    assert info.kernel_release == open("/proc/sys/kernel/osrelease").read().strip()
    assert info.cwd == str(tmp_path) and info.cwd_filesystem
    assert info.cpu_count and info.cpu_count >= 1
    assert info.ram_total and info.ram_available and info.ram_total >= info.ram_available
    if os.path.exists("/dev/shm"):
        assert info.shm_total and info.shm_total >= info.shm_free >= 0
    assert info.is_wsl == ("microsoft" in info.kernel_release.lower())
