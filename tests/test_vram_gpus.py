"""--gpu what-ifs: name matching, the desktop/WSL reserve, and usable memory."""
from __future__ import annotations

import pytest

from doctor import exitcodes
from doctor.exitcodes import DoctorError
from doctor.vram.gpus import DESKTOP_RESERVE, apply_gpu_whatif, find_gpu, usable_memory
from tests.vram_helpers import GIB, make_facts


@pytest.mark.parametrize("typed, name", [
    ("RTX 2080 Ti", "GeForce RTX 2080 Ti"), ("2080ti", "GeForce RTX 2080 Ti"),
    ("nvidia geforce rtx 4090", "GeForce RTX 4090"), ("3090", "GeForce RTX 3090"),
    ("3090 Ti", "GeForce RTX 3090 Ti"), ("t4", "Tesla T4"), ("H100", "NVIDIA H100 80GB"),
    ("a100 80gb", "NVIDIA A100 80GB"), ("A100-SXM4-40GB", "NVIDIA A100 40GB"), ("L40S", "NVIDIA L40S"),
    ("a10g", "NVIDIA A10G"), ("5090", "GeForce RTX 5090"), ("H200", "NVIDIA H200"),
])
def test_find_gpu(typed, name):
    assert find_gpu(typed)["name"] == name


@pytest.mark.parametrize("typed, listed", [("A100", ["NVIDIA A100 40GB", "NVIDIA A100 80GB"]),
                                           ("4060 Ti", ["GeForce RTX 4060 Ti 8GB", "GeForce RTX 4060 Ti 16GB"])])
def test_ambiguous_names_list_the_candidates(typed, listed):
    with pytest.raises(DoctorError) as err:
        find_gpu(typed)
    assert err.value.exit_code == exitcodes.USAGE and all(n in err.value.message for n in listed)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(DoctorError) as err:
        find_gpu("RTX 4909")
    assert err.value.exit_code == exitcodes.USAGE and "4090" in err.value.message


def test_table_rows_are_sourced():
    from doctor.knowledge import load

    rows = load("gpus")["gpus"]
    assert len(rows) >= 40 and all(r["source"] and r["memory_gib"] > 0 and len(r["capability"]) == 2 for r in rows)


def test_whatif_replaces_the_gpu_and_keeps_the_rest():
    facts = make_facts(gpu="NVIDIA H100 80GB HBM3", total_gib=80, capability=(9, 0))
    out = apply_gpu_whatif(facts, "RTX 2080 Ti")
    assert facts.nvidia.gpus[0].name == "NVIDIA H100 80GB HBM3"          # the input is not modified
    (gpu,) = out.nvidia.gpus
    assert gpu.name == "GeForce RTX 2080 Ti" and gpu.capability == [7, 5]
    assert gpu.memory_total == 11 * GIB and gpu.memory_free == 11 * GIB   # no desktop here
    assert out.whatif_gpu == "GeForce RTX 2080 Ti" and out.torch.bf16_native is False
    mem = usable_memory(out)
    assert mem.whatif and mem.free == 11 * GIB and mem.measured_free is None


def test_whatif_under_wsl_subtracts_the_desktop_once():
    out = apply_gpu_whatif(make_facts(wsl=True), "RTX 2080 Ti")
    expected = 11 * GIB - DESKTOP_RESERVE["wsl"]
    assert out.nvidia.gpus[0].memory_free == expected
    assert usable_memory(out).free == expected   # not subtracted a second time
    forced = apply_gpu_whatif(make_facts(), "RTX 4090", desktop_reserve=True)
    assert usable_memory(forced).free == 24 * GIB - DESKTOP_RESERVE["display"]
    assert usable_memory(apply_gpu_whatif(make_facts(wsl=True), "T4", desktop_reserve=False)).free == 16 * GIB


def test_usable_memory_on_a_real_display_gpu():
    # 23 GiB free of 24 with a display: the desktop may grow to its usual 0.5 GiB
    mem = usable_memory(make_facts(total_gib=24, free_gib=23.9, display=True))
    assert mem.free == 24 * GIB - DESKTOP_RESERVE["display"] and mem.reserve > 0
    # already using more than the reserve: what is free now is what counts
    assert usable_memory(make_facts(total_gib=24, free_gib=20, display=True)).free == 20 * GIB
    assert usable_memory(make_facts(total_gib=24, free_gib=20)).reserve == 0
    assert usable_memory(make_facts(gpu=None)) is None


def test_cuda_visible_devices_picks_the_gpu():
    from doctor.facts import GPUInfo

    facts = make_facts(total_gib=24)
    facts.nvidia.gpus.append(GPUInfo(index=1, name="NVIDIA A100 80GB", memory_total=80 * GIB, memory_free=80 * GIB))
    facts.env["CUDA_VISIBLE_DEVICES"] = "1"
    assert usable_memory(facts).name == "NVIDIA A100 80GB"
