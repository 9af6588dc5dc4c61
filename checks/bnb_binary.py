"""bitsandbytes loads one native library chosen by torch's CUDA version: libbitsandbytes_cuda{XY}.so
for torch.version.cuda X.Y, or the one BNB_CUDA_VERSION names (bitsandbytes/cextension.py,
get_cuda_bnb_library_path). When that file is not in the package, bitsandbytes falls back to a stub
and 4-bit loading or 8-bit optimizers fail ("compiled without GPU support", "CUDA Setup failed").
The probe lists the package's libbitsandbytes_* files without importing it.
"""
from __future__ import annotations

import re
from typing import Optional

from checks import check
from doctor.facts import Facts
from doctor.findings import Finding, Severity

MISSING = "bnb.binary-missing"
OVERRIDE = "bnb.cuda-version-override"

LINKS = ["https://github.com/bitsandbytes-foundation/bitsandbytes/blob/main/bitsandbytes/cextension.py"]


def expected_library(torch_cuda: str, override: Optional[str]) -> str:
    """bitsandbytes' own naming: 12.8 -> libbitsandbytes_cuda128.so; BNB_CUDA_VERSION replaces the digits."""
    major, minor = (torch_cuda.split(".") + ["0"])[:2]
    name = f"libbitsandbytes_cuda{major}{minor}.so"
    return re.sub(r"cuda\d+", f"cuda{override}", name, count=1) if override else name


@check(id="bnb-binary", title="bitsandbytes ships the native library for this torch's CUDA (or BNB_CUDA_VERSION)",
       finding_ids=(MISSING, OVERRIDE), order=74)
def bnb_binary(facts: Facts, config=None) -> list[Finding]:
    t = facts.toolchain
    torch_cuda = facts.torch.cuda_version
    if not facts.version("bitsandbytes") or t.bnb_libraries is None or not torch_cuda:
        return []
    override = t.bnb_cuda_version_env or facts.env.get("BNB_CUDA_VERSION") or None
    want = expected_library(torch_cuda, override)
    cuda_libs = [n for n in t.bnb_libraries if n.startswith("libbitsandbytes_cuda")]
    evidence = {"packages.bitsandbytes.version": facts.version("bitsandbytes"), "torch.cuda_version": torch_cuda,
                "env.BNB_CUDA_VERSION": override, "expected library": want,
                "toolchain.bnb_libraries": t.bnb_libraries, "toolchain.bnb_dir": t.bnb_dir,
                "toolchain.cudart_on_path": t.cudart_on_path}   # what an override's runtime would come from
    if want in t.bnb_libraries:
        natural = expected_library(torch_cuda, None)
        if override and natural != want:
            return [Finding(
                id=OVERRIDE, severity=Severity.WARNING,
                title=f"BNB_CUDA_VERSION={override} makes bitsandbytes load {want}, not {natural} for torch's CUDA {torch_cuda}",
                why="The override loads a bitsandbytes built for another CUDA runtime; unless that runtime's "
                    "libcudart is on LD_LIBRARY_PATH, loading fails or kernels misbehave.",
                remediation="Unset BNB_CUDA_VERSION unless you installed that CUDA runtime on purpose.",
                commands=["unset BNB_CUDA_VERSION"], evidence=evidence, links=LINKS, failure_mode="FM-11", confidence=0.7, fix_cost=1)]
        return []
    cause = (f"BNB_CUDA_VERSION={override} asks for it" if override else
             f"torch is built for CUDA {torch_cuda} and this bitsandbytes ships no build for it")
    return [Finding(
        id=MISSING, severity=Severity.ERROR,
        title=f"bitsandbytes {facts.version('bitsandbytes')} has no {want} ({cause})",
        why="bitsandbytes picks its native library by torch's CUDA version (or BNB_CUDA_VERSION). Without that "
            "file it loads a stub: 4-bit loading and 8-bit optimizers fail with 'bitsandbytes was compiled "
            "without GPU support' or 'CUDA Setup failed despite GPU being available'. It ships: "
            + (", ".join(cuda_libs) or "no CUDA build at all") + ".",
        remediation=("Unset BNB_CUDA_VERSION." if override else
                     "Install a bitsandbytes release that ships a build for this CUDA (newer releases add new "
                     "CUDA versions), or a torch built for a CUDA it has."),
        commands=(["unset BNB_CUDA_VERSION"] if override else []) +
                 ["pip install --upgrade bitsandbytes", "python -m bitsandbytes   # its own diagnostic"],
        evidence=evidence, links=LINKS, failure_mode="FM-11", confidence=0.85, fix_cost=1 if override else 2)]
