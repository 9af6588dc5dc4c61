"""Requirements declared by the versions a user could move to (issue 10).

The GPU and the driver bound which torch can run here (the GPU's minimum CUDA, hence torch >= 2.7 on
Blackwell; the newest CUDA build the driver runs). An installed package that declares a torch range
with no runnable torch in it cannot be fixed by moving torch alone: "unsloth_zoo 2024.12.1 declares
torch<2.6; nothing up to it allows a torch that runs on sm_120; the first that does is 2025.3.1
(2025-03-04)". Declared ranges come from the installed metadata, else from the release table.
"""
from __future__ import annotations

from typing import Optional

from checks import check
from doctor.knowledge.releases import EVIDENCE_KEY, Release, declared_on, table
from checks._resolver import CUDA_BUILDS, installed_torch_runs, pin_lines, plan_install, runnable_torch
from doctor.knowledge.requires import applicable
from doctor.knowledge.versions import matches
from doctor.facts import Facts, canonical_name
from doctor.findings import Finding, Severity

BLOCKS = "releases.pin-blocks-runnable-torch"
# Binaries whose torch pin version_matrix's pair checks own (versions.xformers-/torchvision-torch-mismatch).
PAIR_OWNED = {"xformers", "torchvision"}


@check(id="release-moves", title="installed packages' torch ranges leave a torch this GPU and driver can run",
       finding_ids=(BLOCKS,), order=52)
def release_moves(facts: Facts, config=None) -> list[Finding]:
    if not facts.version("torch") and not any(facts.version(p) for p in ("unsloth", "unsloth-zoo")):
        return []
    t = table()
    runnable, bounds = runnable_torch(facts, t)
    if not bounds or not runnable:
        return []     # no GPU bound to speak of, or no torch at all fits (driver: driver_cuda's finding)
    out = []
    for name in sorted(facts.packages):
        info = facts.packages[name]
        if not info.version or name in CUDA_BUILDS or name == "triton" or not t.knows(name):
            continue
        spec, basis = declared_on(facts, name, "torch")
        if spec is None or not str(spec) or any(spec.contains(r.v) for r in runnable):
            continue
        if name in PAIR_OWNED and matches(facts.version("torch"), str(spec)) is False and installed_torch_runs(facts):
            continue      # built for another torch than the installed one, which runs here: the pair check
                          # (versions.xformers-/torchvision-torch-mismatch) says it, with the whole fix
        out.append(_blocks(facts, name, info.version, spec, basis, runnable, bounds))
    return out


def _admits(rel: Release, runnable: list[Release], facts: Facts) -> bool:
    """Could one move to rel here: it supports this Python and its torch range holds a runnable torch."""
    py = facts.platform.python_version
    if py and rel.requires_python and matches(py, rel.requires_python) is False:
        return False
    if rel.requires is None:
        return False
    specs = [req.specifier for req, _ in applicable(rel.requires, facts.platform, rel.package)
             if canonical_name(req.name) == "torch"]
    return all(any(s.contains(r.v) for r in runnable) for s in specs)


def _blocks(facts: Facts, name: str, have: str, spec, basis: str, runnable: list[Release], bounds: str) -> Finding:
    t = table()
    mine = t.get(name, have)
    newer = [r for r in t.releases(name) if r.final and mine is not None and r.v > mine.v]
    older = [r for r in reversed(t.releases(name)) if r.final and mine is not None and r.v < mine.v]
    first: Optional[Release] = next((r for r in newer if _admits(r, runnable, facts)), None)
    back: Optional[Release] = None if first else next((r for r in older if _admits(r, runnable, facts)), None)
    latest = newer[-1] if newer else mine
    when = f" ({mine.date})" if mine and mine.date else ""
    if first:
        move = f"the first {name} that allows one is {first.version} ({first.date})"
    elif back:
        move = (f"no {name} up to {latest.version if latest else have} allows one; the newest older release "
                f"that does is {back.version} ({back.date})")
    else:
        move = f"no {name} release in the table (snapshot {t.snapshot_day}) allows one"
    plan = plan_install(facts)
    torch_now = facts.version("torch")
    return Finding(
        id=BLOCKS, severity=Severity.ERROR,
        title=f"{name} {have} declares torch{spec}, and no such torch runs here; {move}",
        why=f"This machine runs only torch {runnable[-1].version} to {runnable[0].version} ({bounds}). "
            f"{name} {have}{when} declares torch{spec}, so moving torch alone breaks {name}, and keeping "
            f"{name} keeps a torch that cannot run here (installed: torch {torch_now}).",
        remediation=(f"The smallest move: {name} {(first or back).version} together with a torch that runs here"
                     if (first or back) else f"Replace {name}: no release of it fits this GPU and driver")
                    + (". Or, the command: one consistent set of the newest releases (each pin's reason "
                       "is in the evidence)." if plan.ok else f". (No consistent set of pins: {plan.failure}.)"),
        commands=[plan.command()] if plan.ok else [],
        evidence={f"packages.{name}.version": have, f"{name} {have} released": mine.date if mine else None,
                  basis: f"torch{spec}", "torch.version": torch_now, "runnable torch": bounds,
                  f"first {name} allowing it": f"{first.version} ({first.date})" if first else None,
                  EVIDENCE_KEY: t.snapshot_day, "install pins": pin_lines(plan)},
        links=["https://github.com/unslothai/unsloth-zoo/issues/166"] if name.startswith("unsloth") else [],
        failure_mode="FM-10", confidence=0.9, fix_cost=2)
