"""checks/_resolver.py: one install command over the release table. Hand-checkable cases (an RTX 5090
needs torch >= 2.7 from a cu128 build; an old driver caps CUDA; unsloth's declared ceilings pin the
rest; Python excludes releases; known-bad rows are avoided), every plan re-checked against the
table's declared requirements independently of the resolver, and one test (network) that asks pip's
own resolver to accept a command."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from doctor.knowledge.releases import table
from doctor.knowledge.requires import marker_environment
from checks._resolver import InstallPlan, plan_install, violations
from checks_helpers import linux_gpu, snapshot
from doctor.facts import NvidiaInfo, TorchInfo, canonical_name


def version(plan: InstallPlan, package: str) -> Version:
    return Version(plan.pin(package).version)


def assert_consistent(plan: InstallPlan, facts) -> None:
    """Every pinned release's declared requirements (as the table has them, markers evaluated for
    the facts' platform, no extras) hold for every other pin; Requires-Python holds."""
    pins = {p.package: Version(p.version).public for p in plan.pins}
    env = marker_environment(facts.platform)
    for name, ver in pins.items():
        rel = table().get(name, ver)
        assert rel is not None and rel.final, (name, ver)
        if rel.requires_python and facts.platform.python_version:
            assert Version(facts.platform.python_version) in Requirement(f"x{rel.requires_python}").specifier
        for line in rel.requires or ():
            req = Requirement(line)
            child = canonical_name(req.name)
            if child in pins and child != name and (req.marker is None or req.marker.evaluate(env)):
                assert req.specifier.contains(pins[child], prereleases=True), (name, ver, line, pins[child])


def test_rtx5090_gets_torch_27_or_newer_from_a_cu128_build():
    facts = snapshot("rtx5090-old-torch.json")      # driver 570, CUDA 12.8 max, torch 2.5.1+cu124
    plan = plan_install(facts)
    assert plan.ok, plan.failure
    torch = plan.pin("torch")
    assert version(plan, "torch") >= Version("2.7") and torch.version.endswith("+cu128")
    assert plan.index_url == "https://download.pytorch.org/whl/cu128"     # cu130 needs a newer driver
    assert version(plan, "xformers") >= Version("0.0.30")               # 0.0.28.post3 pins torch 2.5.1
    assert plan.command().startswith('pip install "unsloth==') and "--extra-index-url" in plan.command()
    assert_consistent(plan, facts)


def test_old_driver_caps_cuda_and_so_torch():
    facts = snapshot("driver-too-old.json")         # driver 520: CUDA 11.8 at most
    plan = plan_install(facts)
    assert plan.ok, plan.failure
    assert plan.pin("torch").version.endswith("+cu118") and version(plan, "torch") < Version("2.9")
    assert "driver 520.56.06" in plan.pin("torch").reason        # why not the next torch
    assert_consistent(plan, facts)


def test_driver_too_old_for_the_gpu_gives_no_command_but_the_reason():
    facts = linux_gpu("NVIDIA GeForce RTX 5090", (12, 0), driver="535.183.01", cuda_driver="12.2",
                      torch="2.5.1+cu124", transformers="4.46.3")
    plan = plan_install(facts)
    assert not plan.ok and "update the driver" in plan.failure


def test_unsloth_ceilings_pin_the_libraries_it_patches():
    facts = snapshot("h200-real.json")
    plan = plan_install(facts)
    assert plan.ok, plan.failure
    unsloth = table().get("unsloth", plan.pin("unsloth").version)
    ceiling = next(Requirement(l) for l in unsloth.requires if l.startswith("transformers") and "extra" not in l)
    assert version(plan, "transformers") in ceiling.specifier
    newer = [r for r in table().releases("transformers") if r.final and r.v > version(plan, "transformers")]
    if newer:       # the pin is the newest the ceiling allows, and the reason says so
        assert newer[0].v not in ceiling.specifier and "unsloth" in plan.pin("transformers").reason
    assert_consistent(plan, facts)


def test_python_excludes_releases_that_dropped_it():
    facts = snapshot("wsl2-2080ti-unsloth-2024.8.json")     # Python 3.10
    plan = plan_install(facts)
    assert plan.ok, plan.failure
    for p in plan.pins:
        rel = table().get(p.package, p.version)
        assert rel.requires_python is None or Version("3.10.12") in Requirement(f"x{rel.requires_python}").specifier
    assert_consistent(plan, facts)


def test_known_bad_rows_are_avoided():
    facts = snapshot("h200-real.json")
    free = plan_install(facts, rows=[])
    row = {"id": "kb.test-row", "when": {"transformers": f"=={free.pin('transformers').version}",
                                         "unsloth_zoo": f"=={free.pin('unsloth-zoo').version}"}}
    plan = plan_install(facts, rows=[row])
    assert plan.ok
    assert (plan.pin("transformers").version, plan.pin("unsloth-zoo").version) != \
           (free.pin("transformers").version, free.pin("unsloth-zoo").version)
    assert_consistent(plan, facts)


def test_cpu_machine_gets_no_cuda_index():
    facts = snapshot("h200-real.json")
    facts.nvidia, facts.torch = NvidiaInfo(), TorchInfo()
    plan = plan_install(facts)
    assert plan.ok and plan.index_url is None and "+" not in plan.pin("torch").version


def test_every_pin_has_a_reason_with_its_date():
    plan = plan_install(snapshot("rtx5090-old-torch.json"))
    for p in plan.pins:
        assert p.reason and (p.date is None or p.date in p.reason)


@pytest.mark.network
def test_pip_resolver_accepts_the_command(tmp_path):
    """pip install --dry-run --report: pip's own resolver, against PyPI, for this interpreter. The
    machine's pip configuration (caps, local indexes) is ignored. CUDA builds come from the PyTorch
    index, which a CI without it cannot reach: the stack is resolved as on a CPU-only Linux box."""
    facts = snapshot("h200-real.json")
    facts.nvidia, facts.torch = NvidiaInfo(), TorchInfo()
    facts.platform.python_version = "%d.%d.%d" % sys.version_info[:3]
    plan = plan_install(facts)
    argv = shlex.split(plan.command())
    assert argv[:2] == ["pip", "install"]
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), *argv[2:]],
                          env={**os.environ, "PIP_CONFIG_FILE": os.devnull}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = {canonical_name(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    for p in plan.pins:
        assert got[p.package] == p.version


@pytest.mark.parametrize("name", ["rtx5090-old-torch.json", "driver-too-old.json", "unsloth-zoo-skew.json",
                                  "wsl2-2080ti-unsloth-2024.8.json"])
def test_after_the_command_the_version_checks_are_satisfied(name):
    """Install the plan into the facts (versions and the table's metadata) and re-run the checks that
    judge versions: none may object to what the command installs."""
    from checks.release_drift import release_drift
    from checks.release_metadata import release_metadata
    from checks.release_moves import release_moves
    from checks.version_matrix import version_matrix
    from doctor.facts import PackageInfo

    facts = snapshot(name)
    plan = plan_install(facts)
    assert plan.ok, plan.failure
    for p in plan.pins:
        rel = table().get(p.package, p.version)
        facts.packages[p.package] = PackageInfo(p.package, p.version, requires=list(rel.requires or ()),
                                                requires_python=rel.requires_python)
    facts.torch.version = plan.pin("torch").version
    found = [f for check in (version_matrix, release_moves, release_drift, release_metadata)
             for f in check(facts, None)]
    assert [f.id for f in found if f.severity.is_failure or f.id == "releases.untested-pairing"] == []
    assert violations(facts) == []          # and the installed set is now one the resolver accepts


def test_impossible_constraints_end_in_a_reason_within_the_step_limit():
    facts = snapshot("h200-real.json")
    rows = [{"id": "kb.no-torch", "when": {"torch": ">=0"}}, {"id": "kb.unreadable", "when": {"trl": "not a spec"}}]
    plan = plan_install(facts, rows=rows, max_steps=3000)
    assert not plan.ok and plan.failure and plan.command() == "pip install "
    assert "torch" in plan.failure


def test_step_limit_stops_the_search():
    plan = plan_install(snapshot("h200-real.json"), rows=[], max_steps=5)
    assert not plan.ok and "search limit" in plan.failure
