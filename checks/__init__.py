"""Checks: pure functions of (Facts, TrainingConfig | None) -> list[Finding].

One module per concern. A check registers itself with @check; `doctor checks` lists the registry.
Checks do no I/O and print nothing; knowledge that changes with releases lives in checks/data/.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Optional

CheckFn = Callable[..., list]


@dataclass(frozen=True)
class CheckSpec:
    id: str                       # e.g. "bf16"
    title: str                    # one line for `doctor checks`
    fn: CheckFn
    finding_ids: tuple[str, ...]  # the finding ids it may emit, for `doctor checks` and the docs
    needs_config: bool = False    # only runs when a training config was given
    order: int = 100              # stable display order


_REGISTRY: dict[str, CheckSpec] = {}


def check(id: str, title: str, finding_ids: tuple[str, ...] = (), needs_config: bool = False,
          order: int = 100):
    def deco(fn: CheckFn) -> CheckFn:
        _REGISTRY[id] = CheckSpec(id, title, fn, tuple(finding_ids), needs_config, order)
        return fn
    return deco


def all_checks() -> list[CheckSpec]:
    """Every registered check, importing each module under checks/ once."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return sorted(_REGISTRY.values(), key=lambda c: (c.order, c.id))


def get_check(id: str) -> Optional[CheckSpec]:
    return {c.id: c for c in all_checks()}.get(id)


@dataclass(frozen=True)
class ProducerSpec:
    """Findings made outside the checks (doctor repro's diagnosis, the doctor about itself),
    declared in checks/data/finding_producers.json: listed by `doctor checks`, not runnable by --check."""
    id: str
    title: str
    finding_ids: tuple[str, ...]
    source: str                   # the module that makes them


def finding_producers() -> list[ProducerSpec]:
    from doctor.knowledge import load

    return [ProducerSpec(p["id"], p["title"], tuple(p["finding_ids"]), p["source"])
            for p in load("finding_producers")["producers"]]
