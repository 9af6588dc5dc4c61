"""Library defaults and renames (checks/data/library_defaults.json), version-aware."""
from __future__ import annotations

from typing import Any, Optional

from packaging.version import InvalidVersion, Version


def _row(id: str) -> dict:
    from doctor.knowledge import load

    for row in load("library_defaults")["defaults"]:
        if row["id"] == id:
            return row
    raise KeyError(id)


def value(id: str) -> Any:
    return _row(id)["value"]


def source(id: str) -> str:
    return _row(id)["source"]


def since(id: str) -> Optional[str]:
    return _row(id)["since"]


def holds(id: str, installed: Optional[str]) -> Optional[bool]:
    """Does the row hold for this installed version? None when the version is unknown."""
    first = since(id)
    if first is None:
        return True
    if not installed:
        return None
    try:
        return Version(installed.split("+")[0]) >= Version(first)
    except InvalidVersion:
        return None
