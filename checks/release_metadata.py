"""Declared requirements and Requires-Python from the release table, for installed packages whose own
metadata the facts lack (a snapshot from a pasted `pip list`, an old bundle, a corpus record): the
live check (checks/version_matrix.py) reads installed metadata and says nothing without it. This
fills the gap with the table's copy of that version's metadata and reuses the same requirement
logic (doctor/knowledge/requires.py); packages whose metadata was read are left to the live check.
"""
from __future__ import annotations

import dataclasses

from checks import check
from doctor.knowledge.releases import EVIDENCE_KEY, table
from doctor.knowledge.requires import unmet_requirements
from doctor.knowledge.versions import matches
from checks.version_matrix import CORE, PYTHON_CRITICAL
from doctor.facts import Facts
from doctor.findings import Finding, Severity

UNMET = "releases.unmet-requirement"
PYTHON = "releases.python-unsupported"
# Pairs the known-pair checks of version_matrix judge from versions alone: said once, there.
COVERED = {("xformers", "torch"), ("torchvision", "torch"), ("torch", "triton"), ("unsloth", "unsloth-zoo")}


@check(id="release-metadata", title="declared requirements and Python range, from the release table where the facts lack metadata",
       finding_ids=(UNMET, PYTHON), order=51)
def release_metadata(facts: Facts, config=None) -> list[Finding]:
    t = table() if _missing(facts) else None
    if t is None:
        return []
    filled, names = {}, []
    for name, info in facts.packages.items():
        rel = t.get(name, info.version) if name in _missing(facts) else None
        if rel is not None and rel.requires is not None:
            filled[name] = dataclasses.replace(info, requires=list(rel.requires),
                                               requires_python=rel.requires_python)
            names.append(name)
        else:
            filled[name] = info
    if not names:
        return []
    view = dataclasses.replace(facts, packages=filled)
    basis = f"{EVIDENCE_KEY} {t.snapshot_day}"
    out = []
    for name in sorted(names):
        rel = t.get(name, facts.version(name))
        unmet = [u for u in unmet_requirements(view, name) if u.installed and (u.parent, u.child) not in COVERED]
        if unmet:
            severe = any(u.child in CORE for u in unmet)
            out.append(Finding(
                id=UNMET, severity=Severity.ERROR if severe else Severity.WARNING,
                title=f"{name} {rel.version} ({rel.date}) declares " + ", ".join(u.wanted for u in unmet)
                      + "; installed: " + ", ".join(f"{u.child} {u.installed}" for u in unmet),
                why=f"The release table's copy of {name} {rel.version}'s metadata declares these requirements "
                    "and the installed versions fall outside them (the facts carry no metadata of their own "
                    "for it, so this comes from the table).",
                remediation="Install versions inside the declared ranges, or the release that matches what you have.",
                commands=["pip install " + " ".join(f'"{u.wanted}"' for u in unmet)],
                evidence={basis: [u.line for u in unmet], **{f"packages.{u.child}.version": u.installed for u in unmet},
                          f"packages.{name}.version": f"{rel.version} ({rel.date})"},
                failure_mode="FM-22" if name.startswith("unsloth") else "FM-10", confidence=0.85, fix_cost=2))
        py = facts.platform.python_version
        if rel.requires_python and py and matches(py, rel.requires_python) is False:
            out.append(Finding(
                id=PYTHON, severity=Severity.ERROR if name in PYTHON_CRITICAL else Severity.WARNING,
                title=f"{name} {rel.version} ({rel.date}) supports Python {rel.requires_python}, this is Python {py}",
                why=f"{name} {rel.version} declares Requires-Python {rel.requires_python} (release table); pip "
                    "would not install it on this Python unless forced, and its compiled dependencies often "
                    "have no wheels for it.",
                remediation="Use a supported Python (e.g. `uv venv -p 3.11`), or the newest release of "
                            f"{name} that supports Python {py}.",
                commands=["python --version"],
                evidence={"platform.python_version": py, basis: rel.requires_python,
                          f"packages.{name}.version": f"{rel.version} ({rel.date})"},
                failure_mode="FM-10", confidence=0.85, fix_cost=3))
    return out


def _missing(facts: Facts) -> set[str]:
    """Installed packages the table may know whose facts carry neither Requires-Dist nor
    Requires-Python (a package with no requirements at all reads the same: the table then agrees)."""
    return {n for n, i in facts.packages.items() if i.version and not i.requires and not i.requires_python
            and not i.error}
