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
    "rtx5090-pair-old-nccl.json": {"nccl.too-old-for-gpu", "smoke.interconnect-failed"},
    # captured on the H200 (benchmarks/smoke.md): each injected breakage named by a static check and by smoke
    "h200-smoke.json": {"smoke.passed"},
    "injected-h200-no-c-compiler.json": {"toolchain.no-c-compiler", "smoke.compiler-failed"},
    "injected-h200-triton-cache-unwritable.json": {"toolchain.triton-cache-unwritable", "smoke.compiler-failed"},
    "injected-h200-bnb-cuda118.json": {"bnb.binary-missing", "smoke.library-binary-failed"},
    "injected-h200-fake-libcuda.json": {"libcuda.ld-library-path-shadows-driver", "smoke.no-gpu"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_failure_class_replays_from_its_snapshot(name):
    assert {f.id for f in run_checks(snapshot(name), None, only=MACHINE_CHECKS)} == EXPECTED[name]


def test_the_documented_snapshots_exist():
    assert set(EXPECTED) <= set(snapshot_names())


def test_the_h200_smoke_capture_has_every_step_with_its_time():
    s = snapshot("h200-smoke.json").smoke
    assert s.ran and not s.cpu_only
    passed = {st.name for st in s.steps if st.status == "passed"}
    assert passed == {"import_torch", "cuda_init", "matmul_bf16", "sdpa_flash", "sdpa_mem_efficient", "triton_jit",
                      "torch_compile", "bnb_4bit", "bnb_adam8bit"}
    assert all(st.seconds is not None for st in s.steps if st.status == "passed")


@pytest.mark.parametrize("name, step, text", [
    ("injected-h200-no-c-compiler.json", "triton_jit", "Failed to find C compiler"),
    ("injected-h200-triton-cache-unwritable.json", "triton_jit", "Not a directory"),
    ("injected-h200-bnb-cuda118.json", "bnb_4bit", "bitsandbytes"),
])
def test_the_injected_failures_carry_the_real_error_text(name, step, text):
    (st,) = [st for st in snapshot(name).smoke.steps if st.name == step]
    assert st.status == "failed" and text in st.error
