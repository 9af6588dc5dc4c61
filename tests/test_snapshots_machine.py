"""The snapshots of issue 11 replayed through every check: each new failure class is named from the
facts alone (`doctor run --facts`), and the captured H200 smoke runs say what broke."""
from __future__ import annotations

import pytest

from checks_helpers import snapshot, snapshot_names
from doctor.engine import run_checks

MACHINE_CHECKS = ("toolchain", "bnb-binary", "libcuda", "host", "nccl", "smoke")

EXPECTED = {
    "container-toolchain-broken.json": {"toolchain.no-c-compiler", "toolchain.python-headers-missing",
                                        "toolchain.triton-cache-unwritable", "libcuda.no-unversioned-libcuda",
                                        "host.shm-full", "smoke.not-run"},
    "bnb-and-toolkit-shadow.json": {"bnb.binary-missing", "toolchain.cuda-libs-shadow-wheels", "smoke.not-run"},
    "ld-library-path-fake-libcuda.json": {"libcuda.ld-library-path-shadows-driver", "smoke.no-gpu"},
    "rtx5090-pair-old-nccl.json": {"nccl.too-old-for-gpu", "smoke.interconnect-failed"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_failure_class_replays_from_its_snapshot(name):
    assert {f.id for f in run_checks(snapshot(name), None, only=MACHINE_CHECKS)} == EXPECTED[name]


def test_the_documented_snapshots_exist():
    assert set(EXPECTED) <= set(snapshot_names())
