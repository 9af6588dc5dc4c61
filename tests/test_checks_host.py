"""host: /dev/shm in containers, host RAM, single-GPU Unsloth under torchrun, NCCL P2P, tokenizers."""
from __future__ import annotations

from checks.host import MULTI_GPU, P2P, RAM, SHM, TOKENIZERS, host
from checks_helpers import GIB, changes, ids, linux_gpu, one, reference_config, set_packages, snapshot
from doctor.config.model import TrainingConfig
from doctor.findings import Severity


def container(shm=64 * 2**20):
    facts = linux_gpu()
    facts.platform.container, facts.platform.shm_total = "docker", shm
    return facts


def test_small_shm_with_dataloader_workers_is_an_error_with_a_config_change():
    f = one(host(container(), TrainingConfig(dataloader_num_workers=4)), SHM)
    assert f.severity is Severity.ERROR and f.failure_mode == "FM-14"
    assert changes(f) == {"dataloader_num_workers": 0}


def test_small_shm_without_workers():
    assert SHM not in ids(host(container(), TrainingConfig(dataloader_num_workers=0)))
    assert SHM not in ids(host(container(), TrainingConfig()))          # HF default: 0 workers
    f = one(host(container(), None), SHM)
    assert f.severity is Severity.INFO and not f.config_changes
    assert SHM not in ids(host(container(shm=8 * GIB), TrainingConfig(dataloader_num_workers=4)))
    assert SHM not in ids(host(linux_gpu(), None))                      # not in a container


def test_low_ram_for_the_models_checkpoint():
    facts = linux_gpu()
    facts.platform.ram_total, facts.platform.swap_total = 16 * GIB, 0
    f = one(host(facts, reference_config(model_name="meta-llama/Llama-3.1-8B")), RAM)
    assert f.severity is Severity.WARNING and f.failure_mode == "FM-18"
    assert RAM not in ids(host(facts, reference_config()))              # the 4-bit upload fits
    assert RAM not in ids(host(facts, None))                           # no model known, 16 GiB: fine
    facts.platform.ram_total = 8 * GIB
    assert one(host(facts, None), RAM).severity is Severity.INFO       # no model known, < 16 GiB
    facts.platform.ram_total = 64 * GIB
    assert RAM not in ids(host(facts, reference_config(model_name="meta-llama/Llama-3.1-8B")))


def test_little_available_ram_now():
    facts = linux_gpu()
    facts.platform.ram_available = GIB
    assert one(host(facts, None), RAM).severity is Severity.WARNING


def test_wsl_ram_is_left_to_the_wsl_check():
    assert RAM not in ids(host(snapshot("wsl2-2080ti-unsloth-2024.8.json"), reference_config(model_name="meta-llama/Llama-3.1-8B")))


def test_torchrun_with_a_single_gpu_unsloth():
    facts = set_packages(linux_gpu(count=2), unsloth="2024.8")
    facts.env["WORLD_SIZE"] = "2"
    f = one(host(facts, None), MULTI_GPU)
    assert f.severity is Severity.ERROR and f.failure_mode == "FM-20"
    set_packages(facts, unsloth="2026.10.9")
    assert MULTI_GPU not in ids(host(facts, None))
    facts = set_packages(linux_gpu(), unsloth="2024.8")
    facts.env["WORLD_SIZE"] = "1"
    assert MULTI_GPU not in ids(host(facts, None))


def test_nccl_p2p_note_for_several_geforce_cards():
    facts = linux_gpu(count=2)
    f = one(host(facts, None), P2P)
    assert f.severity is Severity.INFO and "export NCCL_P2P_DISABLE=1" in f.commands
    facts.env["NCCL_P2P_DISABLE"] = "1"
    assert P2P not in ids(host(facts, None))
    assert P2P not in ids(host(linux_gpu(name="NVIDIA H100 80GB HBM3", cap=(9, 0), count=2), None))
    assert P2P not in ids(host(linux_gpu(count=1), None))


def test_tokenizers_parallelism_with_dataset_workers():
    f = one(host(linux_gpu(), TrainingConfig(dataset_num_proc=4)), TOKENIZERS)
    assert f.severity is Severity.WARNING and f.commands == ["export TOKENIZERS_PARALLELISM=false"]
    facts = linux_gpu()
    facts.env["TOKENIZERS_PARALLELISM"] = "false"
    assert TOKENIZERS not in ids(host(facts, TrainingConfig(dataset_num_proc=4)))
    assert TOKENIZERS not in ids(host(linux_gpu(), TrainingConfig(dataset_num_proc=1)))
    windows = linux_gpu()
    windows.platform.system = "Windows"
    assert one(host(windows, TrainingConfig(dataset_num_proc=4)), TOKENIZERS).severity is Severity.INFO


def test_healthy_host_is_silent():
    assert host(snapshot("h100-healthy.json"), reference_config(model_name="meta-llama/Llama-3.1-8B")) == []
