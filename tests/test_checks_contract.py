"""Contract of the environment checks over many machines and configs: every emitted id is declared
(and every declared id is reachable), findings are complete, config changes are real changes, and
every row of the knowledge tables names its source."""
from __future__ import annotations

import copy
import dataclasses
import json
import re

import pytest
from packaging.specifiers import SpecifierSet

from pathlib import Path

from checks import all_checks, finding_producers
from doctor.knowledge import DATA_DIR, load
from checks_helpers import (ARCH_CU124, as_wsl2, linux_gpu, reference_config, requires, set_packages,
                            snapshot, snapshot_names)
from doctor.config.model import TrainingConfig
from doctor.engine import run_checks
from doctor.facts import LibcudaInfo

ENV_CHECKS = ("gpu-presence", "driver-cuda", "gpu-arch", "bf16", "version-matrix", "wsl", "windows", "libcuda",
              "host")
# every knowledge table, enumerated (issue 14: no hand list)
DATA_FILES = sorted(p.stem for p in DATA_DIR.glob("*.json"))
SOURCE_KEYS = ("source", "sources", "links")
ID_RE = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+(-[a-z0-9]+)*)+$")


def machines():
    """Hand-written facts that between them reach every finding of the environment checks."""
    no_torch = set_packages(linux_gpu(), torch=None)
    no_torch.torch.importable = False
    yield "torch missing", no_torch
    cpu_build = linux_gpu(torch="2.5.1+cpu", cuda=None, arch=[])
    yield "cpu build", cpu_build
    hidden = linux_gpu()
    hidden.env["CUDA_VISIBLE_DEVICES"] = "-1"
    yield "hidden", hidden
    yield "below ga on wsl", as_wsl2(linux_gpu(torch="2.2.0+cu121", cuda="12.1"), driver="531.00", cuda_driver=None)
    yield "max cuda", linux_gpu(driver="580.65.06", cuda_driver="13.0", torch="2.12.0+cu131", cuda="13.1")
    yield "pascal + unsloth", linux_gpu(name="NVIDIA GeForce GTX 1080", cap=(6, 1), torch="2.5.1+cu124", cuda="12.4",
                                        arch=ARCH_CU124, unsloth="2024.8", bitsandbytes="0.42.0")
    unmet = linux_gpu(transformers="5.24.0", unsloth="2026.8.1", unsloth_zoo="2026.8.13",
                      xformers="0.0.24", torchvision="0.17.0", triton="3.0.0")
    requires(unmet, "unsloth", "transformers<=5.5.0", "unsloth_zoo>=2026.8.13", python=">=3.9,<3.11")
    yield "unmet + pairs + python", unmet
    zoo_old = linux_gpu(unsloth="2026.10.9", unsloth_zoo="2025.12.1")
    zoo_old.env["WORLD_SIZE"] = "2"
    yield "calendar skew", zoo_old
    wsl1 = as_wsl2(linux_gpu())
    wsl1.platform.wsl_version = 1
    yield "wsl1", wsl1
    mounted = as_wsl2(linux_gpu(torch="2.10.0+cu128"))
    mounted.platform.cwd, mounted.platform.ram_total = "/mnt/c/Users/me/ft", 8 * 2**30
    mounted.env.update(PYTORCH_ALLOC_CONF="expandable_segments:True", HF_HOME="/mnt/d/hf")
    mounted.libcuda = LibcudaInfo(resolved="/usr/lib/x86_64-linux-gnu/libcuda.so.1", wsl_lib_present=True)
    yield "wsl mounts + shadowed libcuda", mounted
    no_lib = as_wsl2(linux_gpu())
    no_lib.libcuda = LibcudaInfo()
    yield "wsl without libcuda", no_lib
    windows = linux_gpu(driver="560.94")
    windows.platform.system, windows.platform.is_windows_native = "Windows", True
    yield "windows native", windows
    boxed = set_packages(linux_gpu(count=2), unsloth="2024.8")
    boxed.platform.container, boxed.platform.shm_total = "docker", 64 * 2**20
    boxed.platform.ram_total, boxed.platform.swap_total, boxed.platform.ram_available = 16 * 2**30, 0, 2**30
    boxed.env["WORLD_SIZE"] = "2"
    yield "container, two GeForce, torchrun", boxed
    shadowed = linux_gpu(triton="3.1.0")
    shadowed.libcuda = LibcudaInfo(ld_library_path_hits=["/opt/old/libcuda.so.1"], load_error=(
        "/opt/old/libcuda.so.1: invalid ELF header"), ldconfig_paths=["/usr/lib/x86_64-linux-gnu/libcuda.so.1"],
        so1_dirs=["/usr/lib/x86_64-linux-gnu"], dangling=["/usr/lib/x86_64-linux-gnu/libcuda.so"])
    shadowed.toolchain.triton_libraries = ["cuda"]
    shadowed.platform.shm_free = 10 * 2**20
    iommu = linux_gpu(name="NVIDIA H100 80GB HBM3", cap=(9, 0), count=2)
    iommu.platform.iommu = "on"
    yield "two H100 behind an IOMMU", iommu
    yield "libcuda shadowed, no libcuda.so, full /dev/shm", shadowed
    for name in snapshot_names():
        yield name, snapshot(name)


CONFIGS = [
    None,
    reference_config(),
    TrainingConfig(bf16=True, attn_implementation="flash_attention_2", dataset_num_proc=4,
                   dataloader_num_workers=4, output_dir="/mnt/c/out", model_name="meta-llama/Llama-3.1-8B"),
    TrainingConfig(bf16=True, fp16=True, dtype="bfloat16", dataloader_pin_memory=False,
                   use_gradient_checkpointing="unsloth", dataset_num_proc=2),
]


def all_findings():
    for label, facts in machines():
        for config in CONFIGS:
            for f in run_checks(copy.deepcopy(facts), config, only=ENV_CHECKS):
                yield label, config, f


@pytest.fixture(scope="module")
def produced():
    return list(all_findings())


def test_no_check_crashes_and_every_emitted_id_is_declared(produced):
    specs = {c.id: c for c in all_checks()}
    for label, _cfg, f in produced:
        assert f.id != "doctor.check-crashed", (label, f.title)
        assert f.id in specs[f.check].finding_ids, (label, f.check, f.id)


def test_every_declared_id_is_reachable(produced):
    declared = {fid for c in all_checks() if c.id in ENV_CHECKS for fid in c.finding_ids}
    seen = {f.id for _l, _c, f in produced}
    assert declared - seen == set()


def _declared_ids() -> list[str]:
    """Every finding id the registry declares: the checks' and the other producers'."""
    return ([fid for c in all_checks() for fid in c.finding_ids]
            + [fid for p in finding_producers() for fid in p.finding_ids])


def test_declared_ids_are_stable_dotted_lowercase_and_unique():
    declared = _declared_ids()
    assert len(declared) == len(set(declared)), sorted(f for f in declared if declared.count(f) > 1)
    assert all(ID_RE.match(fid) for fid in declared), declared
    ids = [c.id for c in all_checks()] + [p.id for p in finding_producers()]
    assert len(ids) == len(set(ids))


FINDING_ID_LITERAL = re.compile(r"\bFinding\(\s*id=\"([^\"]+)\"|\n\s*id=\"([a-z0-9]+\.[^\"]+)\", severity=")


def test_every_finding_id_written_in_code_is_declared():
    """A finding made anywhere (a check, repro's diagnosis, the engine, the run) has its id declared
    by a @check or a row of checks/data/finding_producers.json, so `doctor checks` lists it."""
    root = Path(__file__).resolve().parents[1]
    declared = set(_declared_ids())
    written = {}
    for path in [*(root / "doctor").rglob("*.py"), *(root / "checks").glob("*.py")]:
        for m in FINDING_ID_LITERAL.finditer(path.read_text()):
            written.setdefault(m.group(1) or m.group(2), path.relative_to(root).as_posix())
    assert {"repro.stall.cuda-stall", "doctor.check-crashed", "doctor.patch-not-written"} <= set(written)
    assert {fid: where for fid, where in written.items() if fid not in declared} == {}


def test_watch_declares_exactly_what_it_can_make():
    diagnose = pytest.importorskip("doctor.watch.diagnose")   # doctor watch (issue 13) arrives by merge
    row = next(p for p in finding_producers() if p.id == "watch")
    assert set(row.finding_ids) == set(diagnose.FINDING_IDS)


def test_repro_declares_exactly_what_it_can_make():
    from doctor.repro.diagnose import FINDING_IDS

    root = Path(__file__).resolve().parents[1]
    made = {m.group(1) or m.group(2) for m in FINDING_ID_LITERAL.finditer((root / "doctor/repro/diagnose.py").read_text())}
    assert made == set(FINDING_IDS)


def test_findings_are_complete_and_serialisable(produced):
    for label, _cfg, f in produced:
        where = (label, f.id)
        assert f.title and "\n" not in f.title and f.why and f.remediation and f.evidence, where
        if f.id != "wsl.wsl1-no-gpu":        # WSL1 has no failure mode of its own: it is no GPU at all
            assert re.fullmatch(r"FM-\d\d", f.failure_mode or ""), where
        assert 0 < f.confidence <= 1 and f.fix_cost in (1, 2, 3), where
        assert all(link.startswith("https://") for link in f.links), where
        assert all(c and "\n" not in c for c in f.commands), where
        json.dumps(f.to_dict())


def test_config_changes_name_real_settings_and_never_repeat_the_config(produced):
    fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    for label, cfg, f in produced:
        for change in f.config_changes:
            assert cfg is not None, (label, f.id)
            assert change.setting in fields, (label, f.id, change.setting)
            assert getattr(cfg, change.setting) != change.value, (label, f.id, change.setting)
            assert change.reason


def _leaf_dicts(node, top=True):
    if isinstance(node, dict):
        children = [v for v in node.values() if isinstance(v, (dict, list))]
        if not top and not any(isinstance(v, dict) or (isinstance(v, list) and any(isinstance(i, dict) for i in v))
                               for v in children):
            yield node
        for v in node.values():
            yield from _leaf_dicts(v, top=False)
    elif isinstance(node, list):
        for item in node:
            yield from _leaf_dicts(item, top=False)


def _unsourced_rows(node, covered=False, in_list=False):
    """Table rows (dicts inside a list) with no source of their own nor on an enclosing row."""
    if isinstance(node, dict):
        covered = covered or any(node.get(k) for k in SOURCE_KEYS)
        if in_list and not covered:
            yield node
        for v in node.values():
            yield from _unsourced_rows(v, covered)
    elif isinstance(node, list):
        for item in node:
            yield from _unsourced_rows(item, covered, in_list=True)


@pytest.mark.parametrize("name", DATA_FILES)
def test_every_knowledge_row_names_its_source(name):
    data = json.loads((DATA_DIR / f"{name}.json").read_text())
    assert list(_leaf_dicts(data)) or isinstance(data, dict), name
    assert list(_unsourced_rows(data)) == [], name


def test_the_row_rule_can_fail():
    assert list(_unsourced_rows({"rows": [{"id": "a", "source": "https://x"}, {"id": "b"}]})) == [{"id": "b"}]
    assert list(_unsourced_rows({"rows": [{"id": "a", "links": ["https://x"], "patterns": [{"code": "x"}]}]})) == []


def test_knowledge_tables_parse():
    from doctor.knowledge.versions import driver_tuple, parse

    for row in load("driver_cuda")["toolkits"] + load("driver_cuda")["minor_version_floors"]:
        for col in ("linux", "windows"):
            assert row[col] is None or driver_tuple(row[col])
    pairs = load("version_pairs")
    for table, keys in (("torch_triton", ("torch", "triton")), ("xformers_torch", ("xformers", "torch")),
                        ("torchvision_torch", ("torchvision", "torch")),
                        ("unsloth_requires_python", ("unsloth", "requires_python"))):
        for row in pairs[table]:
            for k in keys:
                SpecifierSet(row[k])
    for row in load("torch_cuda_wheels")["flavours"]:
        assert parse(row["torch_min"]) and (row["torch_max"] is None or parse(row["torch_max"]))
