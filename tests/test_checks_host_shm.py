"""/dev/shm free space, not only its size: a full /dev/shm emulated by a fake statvfs at the probe's
seam, read by the real platform probe code, against the config's DataLoader workers and dataset_num_proc."""
from __future__ import annotations

import os

from checks_helpers import ids, linux_gpu, one
from doctor.config.model import TrainingConfig
from doctor.engine import run_checks
from doctor.facts import PlatformInfo
from doctor.probes import platform_probe

MIB, GIB = 2**20, 2**30


class FakeStatvfs:
    def __init__(self, total, free):
        self.f_frsize, self.f_blocks, self.f_bavail, self.f_flag = 4096, total // 4096, free // 4096, 0


def probed_shm(monkeypatch, total, free) -> PlatformInfo:
    real = os.statvfs
    monkeypatch.setattr(platform_probe.os, "statvfs",
                        lambda p: FakeStatvfs(total, free) if str(p) == "/dev/shm" else real(p))
    info = PlatformInfo()
    platform_probe._shm(info)
    return info


def facts_with_shm(monkeypatch, total, free):
    f = linux_gpu()
    p = probed_shm(monkeypatch, total, free)
    f.platform.shm_total, f.platform.shm_free = p.shm_total, p.shm_free
    return f


def test_large_but_full_shm_with_workers_is_an_error(monkeypatch):
    f = facts_with_shm(monkeypatch, 32 * GIB, 100 * MIB)
    assert (f.platform.shm_total, f.platform.shm_free) == (32 * GIB, 100 * MIB)
    cfg = TrainingConfig(dataloader_num_workers=4, dataset_num_proc=8)
    finding = one(run_checks(f, cfg, only=("host",)), "host.shm-full")
    assert finding.severity.is_failure and "dataloader_num_workers=4" in finding.title
    assert {c.setting: c.value for c in finding.config_changes} == {"dataloader_num_workers": 0}


def test_nearly_full_shm_without_a_config_is_a_warning(monkeypatch):
    f = facts_with_shm(monkeypatch, 8 * GIB, 10 * MIB)
    assert ids(run_checks(f, None, only=("host",))) == ["host.shm-full"]
    assert one(run_checks(f, None, only=("host",)), "host.shm-full").severity.value == "warning"


def test_enough_free_shm_is_silent(monkeypatch):
    f = facts_with_shm(monkeypatch, 32 * GIB, 30 * GIB)
    assert run_checks(f, TrainingConfig(dataloader_num_workers=8), only=("host",)) == []


def test_small_docker_shm_stays_the_size_finding(monkeypatch):
    f = facts_with_shm(monkeypatch, 64 * MIB, 60 * MIB)
    f.platform.container = "docker"
    assert ids(run_checks(f, TrainingConfig(dataloader_num_workers=2), only=("host",))) == ["host.shm-small"]


def test_accelerate_rule_for_rtx_40_pairs_on_an_old_driver():
    from checks_helpers import linux_gpu

    old = linux_gpu(count=2, driver="535.183.01")
    old.nvidia.p2p = {"0-1": "chipset not supported"}
    f = one(run_checks(old, None, only=("host",)), "host.nccl-p2p-consumer-gpus")
    assert f.severity.value == "warning" and "export NCCL_IB_DISABLE=1" in f.commands
    assert f.evidence["nvidia.p2p (not ok)"] == {"0-1": "chipset not supported"}
    new = one(run_checks(linux_gpu(count=2, driver="570.133.07"), None, only=("host",)), "host.nccl-p2p-consumer-gpus")
    assert new.severity.value == "info"
    l40s = linux_gpu(name="NVIDIA L40S", cap=(8, 9), count=4)
    assert one(run_checks(l40s, None, only=("host",)), "host.nccl-p2p-consumer-gpus").severity.value == "warning"
    assert run_checks(linux_gpu(name="NVIDIA L40S", cap=(8, 9), count=8), None, only=("host",)) == []


def test_iommu_state_from_sysfs_units_and_the_kernel_command_line():
    assert platform_probe.iommu_state([], "BOOT_IMAGE=/vmlinuz intel_iommu=on") == "off"
    assert platform_probe.iommu_state(["dmar0"], "BOOT_IMAGE=/vmlinuz intel_iommu=on") == "on"
    assert platform_probe.iommu_state(["dmar0", "dmar1"], "intel_iommu=on iommu=pt quiet") == "passthrough"


def test_iommu_on_with_several_gpus_is_said():
    from checks_helpers import linux_gpu

    two = linux_gpu(name="NVIDIA H100 80GB HBM3", cap=(9, 0), count=2)
    two.platform.iommu = "on"
    assert ids(run_checks(two, None, only=("host",))) == ["host.iommu-p2p"]
    two.platform.iommu = "passthrough"
    assert run_checks(two, None, only=("host",)) == []
