"""version_matrix: live Requires-Dist, known pairs (xformers/torchvision/triton/zoo/bnb), Python."""
from __future__ import annotations

from checks._machine import UNSLOTH_UPGRADE
from checks.version_matrix import BNB, PYTHON, TORCHVISION, TRITON, UNMET, XFORMERS, ZOO, version_matrix
from checks_helpers import ids, linux_gpu, one, requires, set_packages, snapshot
from doctor.findings import Severity

HEAD_TRANSFORMERS = "transformers!=5.0.0,!=5.1.0,<=5.5.0,>=4.51.3"


def test_zoo_far_below_unsloths_declared_floor():
    findings = version_matrix(snapshot("unsloth-zoo-skew.json"), None)
    assert ids(findings) == [ZOO]
    f = findings[0]
    assert f.severity is Severity.ERROR and f.failure_mode == "FM-22"
    assert "older than" in f.title and "unsloth_zoo>=2026.8.13" in f.title
    assert f.commands[0] == UNSLOTH_UPGRADE


def test_zoo_missing_when_unsloth_requires_it_is_critical():
    facts = snapshot("unsloth-zoo-skew.json")
    set_packages(facts, unsloth_zoo=None)
    f = one(version_matrix(facts, None), ZOO)
    assert f.severity is Severity.CRITICAL and "not installed" in f.title


def test_calendar_skew_without_a_declared_floor():
    # releases newer than the release table: neither metadata nor dates, only the calendar versions
    facts = linux_gpu(unsloth="2027.10.9", unsloth_zoo="2027.1.1")
    f = one(version_matrix(facts, None), ZOO)
    assert f.severity is Severity.WARNING and "9 months apart" in f.title
    assert version_matrix(linux_gpu(unsloth="2027.10.9", unsloth_zoo="2027.9.3"), None) == []


def test_zoo_floor_comes_from_the_release_table_when_the_facts_carry_no_metadata():
    facts = linux_gpu(unsloth="2026.10.9", unsloth_zoo="2026.1.1")       # versions only, as in a pasted pip list
    f = one(version_matrix(facts, None), ZOO)
    assert f.severity is Severity.ERROR and "older than" in f.title
    assert any(k.startswith("checks/data/releases.json.gz snapshot") for k in f.evidence)


def test_zoo_released_after_unsloths_next_release_is_an_untested_pairing():
    # unslothai/unsloth#2713: unsloth 2025.6.2 (2025-06-10) with unsloth_zoo 2025.7.1 (2025-07-09); the
    # declared floor (unsloth_zoo>=2025.6.1) admits it, but unsloth 2025.6.3 came out on 2025-06-20.
    f = one(version_matrix(linux_gpu(unsloth="2025.6.2", unsloth_zoo="2025.7.1"), None), ZOO)
    assert f.severity is Severity.WARNING
    assert f.title.startswith("unsloth_zoo 2025.7.1 (2025-07-09) came out after unsloth 2025.6.2's next release 2025.6.3")
    # the zoo of the same day as unsloth's next release: paired, nothing to say
    assert version_matrix(linux_gpu(unsloth="2025.6.2", unsloth_zoo="2025.6.2"), None) == []
    # an older zoo inside the range unsloth declares (a zoo from before unsloth's day) is vouched for
    # by its maintainers: the floor judges that direction, not the dates
    assert version_matrix(linux_gpu(unsloth="2025.1.8", unsloth_zoo="2025.1.4"), None) == []


def test_without_the_release_table_the_pairs_table_still_judges(monkeypatch):
    from doctor.knowledge import releases as _releases

    monkeypatch.setattr(_releases, "table", lambda: _releases.ReleaseTable({}))   # the file unreadable
    f = one(version_matrix(linux_gpu(torch="2.5.1+cu124", cuda="12.4", xformers="0.0.27"), None), XFORMERS)
    assert f.evidence["checks/data/version_pairs.json xformers_torch"] == "torch==2.3.*"
    tri = linux_gpu(torch="2.4.1+cu121", cuda="12.1", triton="2.3.1")
    assert one(version_matrix(tri, None), TRITON).commands == ['pip install "triton==3.0.*"']


def test_declared_ceiling_is_read_live_from_the_installed_metadata():
    facts = linux_gpu(transformers="5.24.0", unsloth="2026.8.1")
    requires(facts, "unsloth", HEAD_TRANSFORMERS)
    f = one(version_matrix(facts, None), UNMET)
    assert f.severity is Severity.ERROR
    assert f.title == "unsloth 2026.8.1 requires transformers!=5.0.0,!=5.1.0,<=5.5.0,>=4.51.3 (5.24.0 installed)"
    assert f.commands == [f'pip install "{HEAD_TRANSFORMERS}"']
    # A newer unsloth that raised the ceiling: the same installed transformers is fine.
    requires(facts, "unsloth", "transformers<=6.0,>=4.51.3")
    assert version_matrix(facts, None) == []


def test_several_unmet_requirements_make_one_finding_per_package():
    facts = linux_gpu(transformers="5.24.0", trl="1.16.0", unsloth="2026.8.1")
    requires(facts, "unsloth", HEAD_TRANSFORMERS, "trl<=1.15.0")
    f = one(version_matrix(facts, None), UNMET)
    assert f.title.endswith("and 1 more")
    assert f.commands == [f'pip install "{HEAD_TRANSFORMERS}" "trl<=1.15.0"']


def test_markers_and_extras_are_evaluated_for_the_facts_platform():
    facts = linux_gpu(unsloth="2024.8", transformers="4.40.0", bitsandbytes="0.45.0", peft="0.11.0")
    requires(facts, "unsloth",
             'transformers>=4.43.2 ; extra == "huggingface"',          # active extra: counts
             'bitsandbytes>=0.46 ; extra == "cu121-torch220"',          # other extra: ignored
             'peft!=0.11.0 ; python_version < "3.8"',                   # marker false here: ignored
             "xformers @ https://download.pytorch.org/whl/cu121/xformers-0.0.24-cp310-cp310-manylinux2014_x86_64.whl")
    f = one(version_matrix(facts, None), UNMET)
    assert f.evidence["packages.unsloth.requires"] == ['transformers>=4.43.2 ; extra == "huggingface"']


def test_non_core_requirement_is_a_warning_and_unknown_packages_are_skipped():
    facts = linux_gpu(peft="0.12.0", numpy="2.1.0")
    requires(facts, "peft", "numpy<2", "psutil>=99")       # psutil is not probed: unknown, not missing
    f = one(version_matrix(facts, None), UNMET)
    assert f.severity is Severity.WARNING and "numpy<2" in f.title


def test_xformers_built_for_another_torch_points_at_the_matching_release():
    facts = linux_gpu(torch="2.3.0+cu121", cuda="12.1", xformers="0.0.24")
    requires(facts, "xformers", "numpy", "torch==2.2.0")
    findings = version_matrix(facts, None)
    assert ids(findings) == [XFORMERS]          # not repeated as a generic unmet requirement
    f = findings[0]
    assert f.severity is Severity.ERROR and "torch==2.2.0" in f.title
    assert f.commands == ['pip install --force-reinstall --no-deps "xformers==0.0.27" '
                          "--index-url https://download.pytorch.org/whl/cu121"]


def test_xformers_without_metadata_falls_back_to_the_table():
    facts = linux_gpu(torch="2.5.1+cu124", cuda="12.4", xformers="0.0.27")
    f = one(version_matrix(facts, None), XFORMERS)
    assert "built for torch==2.3.1" in f.title      # the wheel's own pin, from the release table
    assert '"xformers==0.0.29.post1"' in f.commands[0]
    assert version_matrix(linux_gpu(torch="2.2.0+cu121", cuda="12.1", xformers="0.0.24"), None) == []   # its pin: torch==2.2.0


def test_xformers_pin_comes_from_the_release_table_before_the_pairs_table():
    # unslothai/unsloth#1026: xformers 0.0.26.post1 is in no pairs row; its wheel declares torch==2.3.0
    f = one(version_matrix(linux_gpu(torch="2.4.0+cu121", cuda="12.1", xformers="0.0.26.post1"), None), XFORMERS)
    assert "built for torch==2.3.0" in f.title
    assert any(k.startswith("checks/data/releases.json.gz snapshot") for k in f.evidence)
    # unslothai/unsloth#741: the pairs row says torch 2.3.*, the wheel says exactly 2.3.1
    assert "torch==2.3.1" in one(version_matrix(linux_gpu(torch="2.3.0+cu121", cuda="12.1", xformers="0.0.27"),
                                                None), XFORMERS).title
    assert version_matrix(linux_gpu(torch="2.4.0+cu121", cuda="12.1", xformers="0.0.27.post2"), None) == []


def test_a_torch_nightly_is_not_judged_by_the_release_pairs():
    # unslothai/unsloth#1856: a 2.8 nightly ships its own pytorch-triton (3.3 then); the 2.8 release pins 3.4
    nightly = linux_gpu(torch="2.8.0.dev20250331+cu128", cuda="12.8", triton="3.3.0")
    assert TRITON not in ids(version_matrix(nightly, None))
    release = linux_gpu(torch="2.8.0+cu128", cuda="12.8", triton="3.3.0")      # the table's Requires-Dist
    assert one(version_matrix(release, None), TRITON).commands == ['pip install "triton==3.4.0"']


def test_torchvision_for_another_torch():
    f = one(version_matrix(linux_gpu(torch="2.3.1+cu121", cuda="12.1", torchvision="0.17.2"), None), TORCHVISION)
    assert '"torchvision==0.18.*"' in f.commands[0]


def test_triton_must_match_torchs_pin_on_linux_only():
    facts = linux_gpu(torch="2.2.0+cu121", cuda="12.1", triton="2.3.0")
    requires(facts, "torch", 'triton==2.2.0 ; platform_system == "Linux" and platform_machine == "x86_64"')
    f = one(version_matrix(facts, None), TRITON)
    assert f.commands == ['pip install "triton==2.2.0"']
    facts.platform.system = "Windows"
    assert version_matrix(facts, None) == []
    table = linux_gpu(torch="2.4.1+cu121", cuda="12.1", triton="2.3.1")        # no torch metadata
    assert one(version_matrix(table, None), TRITON).commands == ['pip install "triton==3.0.0"']   # the table's pin
    missing = linux_gpu(torch="2.4.1+cu121", cuda="12.1", triton=None)
    assert "not installed" in one(version_matrix(missing, None), TRITON).title
    cpu = linux_gpu(torch="2.4.1+cpu", cuda=None, triton=None)
    assert version_matrix(cpu, None) == []


def test_bitsandbytes_too_old_for_unsloth():
    facts = linux_gpu(unsloth="2024.8", bitsandbytes="0.42.0")
    requires(facts, "unsloth", 'bitsandbytes>=0.43.3 ; extra == "huggingface"')
    findings = version_matrix(facts, None)
    assert ids(findings) == [BNB]            # the unsloth -> bitsandbytes pair is said once
    assert findings[0].failure_mode == "FM-11"
    assert version_matrix(linux_gpu(bitsandbytes="0.42.0"), None) == []


def test_python_outside_requires_python_live_and_fallback():
    facts = linux_gpu(unsloth="2025.5.1")
    facts.platform.python_version = "3.13.1"
    requires(facts, "unsloth", python=">=3.9,<3.13")
    f = one(version_matrix(facts, None), PYTHON)
    assert f.severity is Severity.ERROR and f.confidence == 0.9
    requires(facts, "unsloth", python=None)         # facts without Requires-Python: dated table
    f = one(version_matrix(facts, None), PYTHON)
    assert f.severity is Severity.WARNING and f.confidence == 0.6
    facts.platform.python_version = "3.12.8"
    assert version_matrix(facts, None) == []


def test_consistent_stacks_have_no_version_findings():
    for name in ("wsl2-2080ti-unsloth-2024.8.json", "h100-healthy.json", "turing-bf16.json",
                 "rtx5090-old-torch.json", "driver-too-old.json", "cpu-only-laptop.json"):
        assert version_matrix(snapshot(name), None) == [], name


def test_declared_but_optional_requirement_is_info_not_error_on_the_real_h100():
    """unsloth 2026.10.9 declares xformers, yet trained without it on the H100 (2026-11-28):
    the real capture must say so as info, and not as an unmet requirement."""
    from pathlib import Path

    from checks.version_matrix import version_matrix
    from doctor.facts import Facts

    facts = Facts.load(Path(__file__).parent.parent / "examples" / "facts" / "h100-real.json")
    assert facts.version("xformers") is None and facts.version("unsloth") == "2026.10.9"
    found = {f.id: f for f in version_matrix(facts)}
    assert "versions.unmet-requirement" not in found
    opt = found["versions.optional-requirement-missing"]
    assert opt.severity.value == "info" and "xformers" in opt.title
    # a genuinely missing hard requirement is still an error
    facts.packages.pop("bitsandbytes", None)
    from doctor.facts import PackageInfo
    facts.packages["bitsandbytes"] = PackageInfo("bitsandbytes", None)
    errs = [f for f in version_matrix(facts) if f.id == "versions.unmet-requirement"]
    assert errs and errs[0].severity.value == "error" and "bitsandbytes" in errs[0].title
