"""Installed packages' own Requires-Dist, checked with `packaging` against the installed versions.

Markers are evaluated for the Python and platform in the facts (not the doctor's own), so a bundle
from a Windows box is judged as Windows. Requirements behind an extra count only for extras that
every install path pulls in (checks/data/version_pairs.json "active_extras"); URL requirements
(`xformers @ https://...whl`) carry no version to check and are skipped.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement

from doctor.knowledge import load
from doctor.knowledge.versions import parse
from doctor.facts import Facts, PlatformInfo, canonical_name

_SYS_PLATFORM = {"Linux": "linux", "Windows": "win32", "Darwin": "darwin"}


@dataclass(frozen=True)
class Unmet:
    parent: str            # canonical name of the package that declares the requirement
    parent_version: str
    child: str             # canonical name of the required package
    spec: str              # "<=5.5.0,>=4.51.3" ("" = any version)
    installed: Optional[str]   # None = not installed
    line: str              # the Requires-Dist line, verbatim

    @property
    def wanted(self) -> str:
        return f"{self.child}{self.spec}"


def marker_environment(platform: PlatformInfo) -> dict[str, str]:
    full = platform.python_version or ""
    short = ".".join(full.split(".")[:2])
    system = platform.system or ""
    return {
        "python_version": short, "python_full_version": full, "implementation_version": full,
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "sys_platform": _SYS_PLATFORM.get(system, system.lower()), "platform_system": system,
        "platform_machine": platform.machine or "", "platform_release": platform.kernel_release or "",
        "platform_version": "", "os_name": "nt" if system == "Windows" else "posix", "extra": "",
    }


def _applies(req: Requirement, env: dict[str, str], extras: list[str]) -> bool:
    if req.marker is None:
        return True
    try:
        return any(req.marker.evaluate(dict(env, extra=e)) for e in [""] + extras)
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return False


def active_extras(package: str) -> list[str]:
    return list(load("version_pairs").get("active_extras", {}).get(canonical_name(package), {}).get("extras", []))


def applicable_requirements(facts: Facts, package: str) -> list[tuple[Requirement, str]]:
    """(Requirement, line) for each Requires-Dist line of package that applies on this machine."""
    info = facts.packages.get(canonical_name(package))
    if info is None or not info.version:
        return []
    return applicable(info.requires, facts.platform, package)


def applicable(lines, platform: PlatformInfo, package: str) -> list[tuple[Requirement, str]]:
    """(Requirement, line) for the Requires-Dist lines of package (installed, or a release in
    checks/data/releases.json.gz) that apply on this platform."""
    env = marker_environment(platform)
    extras = active_extras(package)
    out = []
    for line in lines:
        req = _requirement(line)
        if req is None or req.url or not _applies(req, env, extras):
            continue
        out.append((req, line))
    return out


@functools.lru_cache(maxsize=8192)
def _requirement(line: str) -> Optional[Requirement]:
    """Parsed once per process: the release table repeats the same lines across releases."""
    try:
        return Requirement(line)
    except InvalidRequirement:
        return None


def requirement_on(facts: Facts, package: str, child: str) -> Optional[Requirement]:
    """package's applicable requirement on child (None when it declares none)."""
    want = canonical_name(child)
    for req, _line in applicable_requirements(facts, package):
        if canonical_name(req.name) == want:
            return req
    return None


def unmet_requirements(facts: Facts, package: str) -> list[Unmet]:
    """The requirements of package that the installed set does not satisfy. A required package the
    facts do not list is unknown, not missing (the probe reads only the training stack)."""
    info = facts.packages.get(canonical_name(package))
    out = []
    for req, line in applicable_requirements(facts, package):
        child = canonical_name(req.name)
        if child == info.name or child not in facts.packages:
            continue
        have = facts.packages[child].version
        if facts.packages[child].error:
            continue            # corrupt metadata: probe_health reports it
        if have is None:
            out.append(Unmet(info.name, info.version, child, str(req.specifier), None, line))
            continue
        v = parse(have)
        if v is not None and str(req.specifier) and not req.specifier.contains(v, prereleases=True):
            out.append(Unmet(info.name, info.version, child, str(req.specifier), have, line))
    return out
