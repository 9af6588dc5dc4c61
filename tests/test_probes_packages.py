"""Packages probe: importlib.metadata only, corrupt metadata as data, shadowed copies, nothing imported."""
from __future__ import annotations

import subprocess
import sys

from doctor.probes import packages
from probe_helpers import write_dist_info


def test_reads_version_requires_and_location(tmp_path):
    write_dist_info(tmp_path, "bitsandbytes", "0.43.3")
    info = packages.read_package("bitsandbytes", [str(tmp_path)])
    assert (info.name, info.version, info.error) == ("bitsandbytes", "0.43.3", None)
    assert info.requires == ["numpy>=1.17"] and info.location == str(tmp_path) and info.shadows == []


def test_not_installed_is_a_version_of_none(tmp_path):
    info = packages.read_package("flash-attn", [str(tmp_path)])
    assert (info.name, info.version, info.error) == ("flash-attn", None, None)


def test_corrupt_metadata_becomes_an_error_not_an_exception(tmp_path):
    write_dist_info(tmp_path / "a", "xformers", "0.0.27", metadata=b"\xff\xfe\x00\x81 not text")
    write_dist_info(tmp_path / "b", "xformers", "0.0.27", metadata=b"Metadata-Version: 2.1\nName: xformers\n")
    write_dist_info(tmp_path / "c", "xformers", "0.0.27",
                    metadata=b"Metadata-Version: 2.1\nName: xformers\nVersion: banana split\n")
    (tmp_path / "d" / "xformers-0.0.27.dist-info").mkdir(parents=True)   # no METADATA at all
    unreadable = packages.read_package("xformers", [str(tmp_path / "a")])
    assert unreadable.version is None
    assert unreadable.error.startswith("unreadable metadata in xformers-0.0.27.dist-info: UnicodeDecodeError")
    assert packages.read_package("xformers", [str(tmp_path / "b")]).error == \
        "corrupt metadata in xformers-0.0.27.dist-info: no Version field"
    assert packages.read_package("xformers", [str(tmp_path / "c")]).error == \
        "corrupt metadata in xformers-0.0.27.dist-info: invalid Version 'banana split'"
    empty = packages.read_package("xformers", [str(tmp_path / "d")])
    assert empty.version is None and empty.error


def test_shadowed_copies_first_on_the_path_wins(tmp_path):
    write_dist_info(tmp_path / "user", "torch", "2.2.0")
    write_dist_info(tmp_path / "venv", "torch", "2.4.1")
    info = packages.read_package("torch", [str(tmp_path / "user"), str(tmp_path / "venv"), str(tmp_path / "user")])
    assert info.version == "2.2.0" and info.location == str(tmp_path / "user")
    assert info.shadows == [f"2.4.1 at {tmp_path / 'venv'}"]   # the repeated path entry is not a copy


def test_names_are_canonical_and_lookup_tolerates_underscores(tmp_path):
    write_dist_info(tmp_path, "unsloth_zoo", "2024.8.1")
    write_dist_info(tmp_path, "huggingface_hub", "0.24.5")
    found = packages.read_packages(["unsloth_zoo", "huggingface-hub", "peft"], [str(tmp_path)])
    assert set(found) == {"unsloth-zoo", "huggingface-hub", "peft"}
    assert found["unsloth-zoo"].version == "2024.8.1" and found["huggingface-hub"].version == "0.24.5"
    assert found["peft"].version is None


def test_probe_covers_the_stack_without_importing_it():
    code = ("import sys; from doctor.probes import packages; r = packages.probe(); "
            "print(sorted(set(sys.modules) & {'torch', 'transformers', 'peft', 'trl', 'numpy'})); "
            "print(r['torch'].version, r['nvidia-ml-py'].version is not None, len(r))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    imported, summary = out.strip().splitlines()
    assert imported == "[]"
    version, has_nvml, count = summary.split()
    from importlib.metadata import version as installed

    assert version == installed("torch") and has_nvml == "True"
    assert int(count) == len(packages.PACKAGES)
