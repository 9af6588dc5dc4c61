"""The release table (checks/data/releases.json.gz, built by checks/data/refresh_releases.py): every
release of the training stack with its upload date, Requires-Python and the Requires-Dist lines that
name another stack package. Loaded lazily, once per process, only when a check asks for it.

Dates are upload days (the earliest file of the release), ISO strings, so they compare as strings.
"""
from __future__ import annotations

import functools
import gzip
import json
import re
from dataclasses import dataclass, field
from typing import Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from doctor.knowledge import data_path
from doctor.knowledge.versions import parse
from doctor.facts import canonical_name

TABLE_FILE = "releases.json.gz"
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)?")
EVIDENCE_KEY = "checks/data/releases.json.gz snapshot"


@dataclass(frozen=True)
class Release:
    package: str                      # PEP 503 name
    version: str                      # as published: "2.7.0", "2025.3.1"
    date: Optional[str]               # "2025-04-23"
    requires_python: Optional[str]
    requires: Optional[tuple[str, ...]]   # Requires-Dist lines on stack packages; None = unknown (no wheel)
    yanked: bool = False
    v: Version = field(default=None, compare=False, repr=False)   # parsed once (sorting, comparing)

    def __post_init__(self):
        if self.v is None:
            object.__setattr__(self, "v", Version(self.version))

    @property
    def final(self) -> bool:
        """A release a resolver may pick: not a pre/dev release, not yanked."""
        return not (self.v.is_prerelease or self.yanked)

    def requirements(self) -> list[Requirement]:
        return _parsed(self.requires or ())


@functools.lru_cache(maxsize=None)
def _parsed(lines: tuple[str, ...]) -> list[Requirement]:
    out = []
    for line in lines:
        try:
            out.append(Requirement(line))
        except InvalidRequirement:
            continue
    return out


class ReleaseTable:
    def __init__(self, data: dict):
        self.snapshot: str = data.get("snapshot", "")
        self.source: str = data.get("source", "")
        self._raw: dict = data.get("packages", {})
        self._by_pkg: dict[str, list[Release]] = {}

    def _build(self, pkg: str) -> list[Release]:
        """Release objects for one package, built on first use (most runs touch a few packages)."""
        raw = self._raw.get(pkg, {})
        lines = raw.get("s", [])
        rows = []
        for ver, r in raw.get("v", {}).items():
            v = parse(ver)
            if v is None:
                continue            # legacy non-PEP 440 versions: nothing can pin them
            rows.append(Release(pkg, ver, r.get("t"), r.get("py"),
                                tuple(lines[i] for i in r["r"]) if "r" in r else None, bool(r.get("y")), v))
        return sorted(rows, key=lambda x: x.v)

    @property
    def snapshot_day(self) -> str:
        return self.snapshot[:10]

    def packages(self) -> list[str]:
        return list(self._raw)

    def knows(self, package: str) -> bool:
        return canonical_name(package) in self._raw

    def releases(self, package: str) -> list[Release]:
        """Oldest first."""
        name = canonical_name(package)
        if name not in self._by_pkg:
            self._by_pkg[name] = self._build(name)
        return self._by_pkg[name]

    def get(self, package: str, version: Optional[str]) -> Optional[Release]:
        """The release of an installed version; local labels ignored ('2.7.0+cu128' -> 2.7.0)."""
        v = parse(version)
        if v is None:
            return None
        name, want = canonical_name(package), Version(v.public)
        r = self._raw.get(name, {}).get("v", {}).get(v.public)
        if r is not None and name not in self._by_pkg:    # fast path: no need to build the list
            lines = self._raw[name].get("s", [])
            return Release(name, v.public, r.get("t"), r.get("py"),
                           tuple(lines[i] for i in r["r"]) if "r" in r else None, bool(r.get("y")), want)
        return next((r for r in self.releases(package) if r.v == want), None)

    def next_after(self, package: str, version: Optional[str]) -> Optional[Release]:
        """The first final release newer than version."""
        v = parse(version)
        if v is None:
            return None
        return next((r for r in self.releases(package) if r.final and r.v > Version(v.public)), None)

    def next_by_date(self, package: str, version: Optional[str]) -> Optional[Release]:
        """The first final release uploaded on a later day than this one: what its maintainers
        published next. Reads the raw rows, so a healthy run builds no release list."""
        mine = self.get(package, version)
        name = canonical_name(package)
        if mine is None or not mine.date:
            return None
        later = sorted((r["t"], ver) for ver, r in self._raw.get(name, {}).get("v", {}).items()
                       if r.get("t") and r["t"] > mine.date)
        for _day, ver in later:
            rel = self.get(name, ver)
            if rel is not None and rel.final:
                return rel
        return None

    def first_on_or_after(self, package: str, day: str) -> Optional[Release]:
        """The earliest final release uploaded on or after day."""
        dated = [r for r in self.releases(package) if r.final and r.date and r.date >= day]
        return min(dated, key=lambda r: (r.date, r.v), default=None)

    def newest_before(self, package: str, day: str) -> Optional[Release]:
        """The newest final release uploaded on or before day."""
        dated = [r for r in self.releases(package) if r.final and r.date and r.date <= day]
        return max(dated, key=lambda r: r.v, default=None)


@functools.lru_cache(maxsize=1)
def table() -> ReleaseTable:
    """The bundled table; an empty one when the file is missing or unreadable (a check then finds
    nothing rather than crashing the run)."""
    try:
        with gzip.open(data_path(TABLE_FILE), "rt", encoding="utf-8") as f:
            return ReleaseTable(json.load(f))
    except (OSError, ValueError):
        return ReleaseTable({})


def loaded_snapshot() -> Optional[str]:
    """The snapshot date if this process loaded the table (for the report envelope), else None:
    asking must not load it."""
    if table.cache_info().currsize == 0:
        return None
    return table().snapshot or None


def declared_requirements(facts, package: str, only: Optional[str] = None) -> tuple[list[tuple[object, str]], str]:
    """The installed package's applicable Requires-Dist as (Requirement, line) pairs and where they
    came from: the live metadata in the facts when it was read, else the table's copy for that
    version (a snapshot from a pasted environment or an old bundle lists versions only)."""
    from doctor.knowledge.requires import applicable

    def named(lines):       # only= skips parsing the other lines (unsloth declares ~300)
        return [ln for ln in lines if only is None or canonical_name(_NAME.match(ln).group(1) or "") == only]

    info = facts.packages.get(canonical_name(package))
    if info is None or not info.version:
        return [], ""
    if info.requires:
        return applicable(named(info.requires), facts.platform, package), f"packages.{info.name}.requires"
    rel = table().get(package, info.version)
    if rel is None or rel.requires is None:
        return [], ""
    return applicable(named(rel.requires), facts.platform, package), f"{EVIDENCE_KEY} {table().snapshot_day}"


def declared_on(facts, package: str, child: str):
    """(SpecifierSet or None, basis): what the installed package declares about child."""
    from packaging.specifiers import SpecifierSet

    want = canonical_name(child)
    reqs, basis = declared_requirements(facts, package, only=want)
    spec = None
    for req, _line in reqs:
        if canonical_name(req.name) == want:
            spec = (spec or SpecifierSet()) & req.specifier
    return spec, basis
