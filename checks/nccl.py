"""The NCCL library torch really loads, against the GPUs it must drive: new architectures need recent
NCCL releases (checks/data/nccl_arch.json). Only matters with more than one GPU; the version and the
file come from the torch child (torch.cuda.nccl.version(), /proc/self/maps)."""
from __future__ import annotations

from typing import Optional

from checks import check
from doctor.knowledge import load
from checks._machine import cap_str, gpus
from doctor.knowledge.versions import parse
from doctor.facts import Facts
from doctor.findings import Finding, Severity

TOO_OLD = "nccl.too-old-for-gpu"


@check(id="nccl", title="torch's NCCL is recent enough for these GPUs' architecture (multi-GPU)",
       finding_ids=(TOO_OLD,), order=82)
def nccl(facts: Facts, config=None) -> list[Finding]:
    devs = gpus(facts)
    version = facts.torch.nccl_version
    if len(devs) < 2 or not version or parse(version) is None:
        return []
    caps = [g.capability for g in devs if g.capability]
    for row in load("nccl_arch")["min_nccl"]:
        hit: Optional[tuple[int, int]] = next((c for c in caps if c >= tuple(row["capability_min"])), None)
        if hit is None or parse(version) >= parse(row["nccl_min"]):
            continue
        return [Finding(
            id=TOO_OLD, severity=Severity.ERROR,
            title=f"NCCL {version} is older than {row['nccl_min']}, the first that works on sm {cap_str(hit)} GPUs",
            why=f"Multi-GPU training talks through NCCL, and NCCL learns each new GPU architecture in a release of "
                f"its own. Seen with older releases: {row['symptom']}.",
            remediation="Upgrade the NCCL torch loads: a newer torch (its nvidia-nccl wheel comes with it) or "
                        "the nvidia-nccl wheel alone; make sure no older system libnccl comes first on "
                        "LD_LIBRARY_PATH.",
            commands=["pip install --upgrade nvidia-nccl-cu12   # or the torch that pins a newer one",
                      "python -c 'import torch; print(torch.cuda.nccl.version())'"],
            evidence={"torch.nccl_version": version, "torch.nccl_library": facts.torch.nccl_library,
                      "gpus": [f"{g.name} (sm {cap_str(g.capability)})" for g in devs]},
            links=[row["source"]], failure_mode="FM-20", confidence=0.75, fix_cost=2)]
    return []
