"""Byte units: the one GIB constant and gib() formatter every layer uses (core, imports nothing)."""
from __future__ import annotations

from typing import Optional

GIB = 1 << 30


def gib(n: Optional[float], digits: int = 1) -> str:
    """Bytes as 'x.y GiB' ('?' when unknown); repro's step tables use digits=2."""
    return "?" if n is None else f"{n / GIB:.{digits}f} GiB"
