"""NVML's peer-to-peer status per GPU pair: the child's codes become words in Facts.nvidia.p2p."""
from __future__ import annotations

from doctor.probes.nvidia import nvml_info_from, p2p_status
from doctor.runner import CommandResult


def test_codes_become_words_and_unknowns_are_dropped():
    assert p2p_status({"0-1": 0, "0-2": 1, "1-2": None, "2-3": 42}) == {
        "0-1": "ok", "0-2": "chipset not supported", "2-3": "42"}
    assert p2p_status(None) == {}


def test_the_nvml_report_carries_them_into_the_facts():
    payload = {"stage": None, "errors": [], "driver_version": "570.133.07", "cuda_driver_version": 12080,
               "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 4090"}, {"index": 1, "name": "NVIDIA GeForce RTX 4090"}],
               "p2p": {"0-1": 5}}
    info, problem, no_driver = nvml_info_from(payload, CommandResult(argv=["python"], returncode=0))
    assert problem is None and not no_driver
    assert info.p2p == {"0-1": "not supported"}
