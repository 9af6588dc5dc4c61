"""Version arithmetic shared by the checks: PEP 440 versions, NVIDIA driver numbers, CUDA strings.

Every parser here returns None for garbage instead of raising, because facts can come from a
user's bundle with anything in them.
"""
from __future__ import annotations

import re
from typing import Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version


def parse(version: Optional[str]) -> Optional[Version]:
    """'2.2.0+cu121' -> Version; None or unparsable -> None."""
    if not version:
        return None
    try:
        return Version(str(version).strip())
    except InvalidVersion:
        return None


def public(version: Optional[str]) -> Optional[Version]:
    """The version without its local label: '2.2.0+cu121' -> 2.2.0."""
    v = parse(version)
    return Version(v.public) if v is not None else None


def matches(version: Optional[str], spec: str) -> Optional[bool]:
    """Does version satisfy the PEP 440 specifier string? None when either side is unreadable.
    Pre-releases count (a nightly torch is still torch 2.x)."""
    v = parse(version)
    if v is None:
        return None
    try:
        return SpecifierSet(spec).contains(v, prereleases=True)
    except InvalidSpecifier:
        return None


def below(version: Optional[str], bound: str) -> Optional[bool]:
    v, b = parse(version), parse(bound)
    if v is None or b is None:
        return None
    return v < b


def driver_tuple(driver: Optional[str]) -> Optional[tuple[int, ...]]:
    """NVIDIA driver '520.56.06' -> (520, 56, 6); '560.94' -> (560, 94); '580' -> (580,)."""
    if not driver:
        return None
    parts = re.findall(r"\d+", str(driver))
    return tuple(int(p) for p in parts) if parts else None


def driver_below(driver: Optional[str], floor: Optional[str]) -> Optional[bool]:
    d, f = driver_tuple(driver), driver_tuple(floor)
    if d is None or f is None:
        return None
    return d < f


def cuda_tuple(cuda: Optional[str]) -> Optional[tuple[int, int]]:
    """'12.1' / '12.1.105' / 12010 (cudaDriverGetVersion) -> (12, 1)."""
    if cuda is None:
        return None
    s = str(cuda).strip()
    if s.isdigit() and len(s) >= 4:          # 11080 -> (11, 8)
        n = int(s)
        return n // 1000, (n % 1000) // 10
    m = re.match(r"(\d+)(?:\.(\d+))?", s)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2) or 0)


def calendar_months(version: Optional[str]) -> Optional[int]:
    """Unsloth's calendar versions '2024.8' / '2026.10.9' -> months since year 0, for skew."""
    v = parse(version)
    if v is None or len(v.release) < 2 or v.release[0] < 2000:
        return None
    return v.release[0] * 12 + v.release[1]
