"""NCCL against the GPU architecture: an RTX 5090 pair with the NCCL 2.25.1 that failed there."""
from __future__ import annotations

from checks_helpers import ids, linux_gpu, one
from doctor.engine import run_checks
from doctor.probes.torch_probe import torch_info_from
from doctor.runner import CommandResult


def blackwell_pair(nccl: str):
    f = linux_gpu(name="NVIDIA GeForce RTX 5090", cap=(12, 0), count=2)
    f.torch.nccl_version = nccl
    f.torch.nccl_library = "/venv/lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2"
    return f


def test_old_nccl_on_sm_120_is_an_error_and_a_new_one_is_not():
    f = one(run_checks(blackwell_pair("2.25.1"), None, only=("nccl",)), "nccl.too-old-for-gpu")
    assert "2.26.2" in f.title and "sm 12.0" in f.title and f.evidence["torch.nccl_library"].endswith("libnccl.so.2")
    assert run_checks(blackwell_pair("2.27.3"), None, only=("nccl",)) == []


def test_one_gpu_or_an_older_architecture_is_silent():
    single = blackwell_pair("2.25.1")
    single.nvidia.gpus, single.torch.devices = single.nvidia.gpus[:1], single.torch.devices[:1]
    assert run_checks(single, None, only=("nccl",)) == []
    hopper = linux_gpu(name="NVIDIA H100 80GB HBM3", cap=(9, 0), count=2)
    hopper.torch.nccl_version = "2.21.5"
    assert ids(run_checks(hopper, None, only=("nccl",))) == []


def test_the_torch_child_report_carries_nccl():
    payload = {"stage": None, "errors": [], "version": "2.11.0+cu130", "cuda_available": True, "device_count": 2,
               "devices": [], "nccl_version": "2.28.3", "nccl_library": "/x/libnccl.so.2"}
    info, err = torch_info_from(payload, CommandResult(argv=["python"], returncode=0))
    assert (info.nccl_version, info.nccl_library) == ("2.28.3", "/x/libnccl.so.2")
