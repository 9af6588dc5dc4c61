"""What the probes could not see: a probe that hung, crashed or failed, and package metadata that
is corrupt or shadowed. A hang in `import torch` or `nvidia-smi` is itself a diagnosis: training
would hang the same way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from checks import check
from doctor.facts import Facts, ProbeStatus
from doctor.findings import Finding, Severity

E, W = Severity.ERROR, Severity.WARNING


@dataclass(frozen=True)
class ProbeHelp:
    commands: tuple[str, ...]        # what to run by hand to see the problem
    hung: str                        # why a hang matters
    crashed: str                     # why a crash matters
    failed: str                      # why a failure (an error, not a hang or crash) matters
    remediation: str                 # what to do
    severity: dict                   # kind -> Severity when the probe delivered nothing
    delivered: Callable[[Facts], bool] = lambda facts: False   # still got its main fact?
    failure_mode: Optional[str] = None
    links: tuple[str, ...] = ()


_DOCTOR_BUG = ("This probe does no risky I/O, so this is likely a doctor bug; the other probes still ran. "
               "Please report it with `doctor bundle`.")

PROBES: dict[str, ProbeHelp] = {
    "torch": ProbeHelp(
        commands=("python -c \"import torch; print(torch.__version__, torch.cuda.is_available())\"",),
        hung="Your training imports torch and initialises CUDA the same way, so it will hang there too: "
             "usually a wedged GPU driver (on WSL2 a dxgkrnl hang, FM-04), a stale lock on a network or "
             "/mnt/c filesystem, or a package that torch loads at start-up and that deadlocks.",
        crashed="torch or a library it loads crashed the interpreter: typically a binary mismatch between "
                "torch and a CUDA / cuDNN / NCCL library found on LD_LIBRARY_PATH, or a broken wheel (FM-10).",
        failed="torch is installed but importing it or querying CUDA raises, so training cannot start; the "
               "error names the cause (a CUDA/cuDNN library not found, a numpy ABI mismatch, a half-done "
               "upgrade).",
        remediation="Run the command below in the same environment. If it hangs too, `py-spy dump --pid "
                    "<its pid>` shows where; if it crashes or raises, reinstall torch from the index that "
                    "matches your CUDA and look for stray CUDA libraries on LD_LIBRARY_PATH.",
        severity={"timed-out": E, "crashed": E, "failed": E},
        delivered=lambda f: f.torch.importable and f.torch.cuda_available is not None,
        failure_mode="FM-10",
    ),
    "nvidia": ProbeHelp(
        commands=("nvidia-smi",),
        hung="NVML or nvidia-smi hangs when the driver is wedged: a GPU that fell off the bus (dmesg "
             "`NVRM: Xid 79`) or, on WSL2, a dxgkrnl hang (FM-04). CUDA work on this GPU will hang too; "
             "a reboot (on WSL2: `wsl --shutdown`) is usually needed.",
        crashed="NVML crashed the process asking it; some WSL driver builds segfault inside "
                "libnvidia-ml.so.1 (microsoft/WSL#11277).",
        failed="A driver is installed but NVML / nvidia-smi cannot talk to it: a driver upgraded without a "
               "reboot ('Driver/library version mismatch'), a kernel module that is not loaded, or on WSL2 "
               "'GPU access blocked by the operating system'. CUDA fails the same way until it is fixed.",
        remediation="Run `nvidia-smi`. If it hangs too, the driver is wedged: look for `NVRM: Xid` in "
                    "`sudo dmesg` and reboot (on WSL2: `wsl --shutdown` from Windows). 'Driver/library "
                    "version mismatch' means reboot after a driver upgrade. If only NVML is missing, "
                    "`pip install nvidia-ml-py`.",
        severity={"timed-out": E, "crashed": E, "failed": E},
        delivered=lambda f: f.nvidia.source is not None,
        failure_mode="FM-04",
        links=("https://github.com/microsoft/WSL/issues/11277", "https://github.com/microsoft/WSL/issues/8518"),
    ),
    "libcuda": ProbeHelp(
        commands=("ldconfig -p | grep libcuda", "ls -la /usr/lib/wsl/lib/libcuda*"),
        hung="Loading the CUDA driver library hung, so anything using CUDA will hang at start-up.",
        crashed="Loading libcuda.so.1 crashed the process: the library found first is broken or belongs "
                "to another driver (FM-11).",
        failed="The doctor could not tell which libcuda this machine loads, so the WSL shadowing check "
               "(FM-11) saw 'unknown'.",
        remediation="See which libcuda the loader finds first. On WSL2 it must be "
                    "/usr/lib/wsl/lib/libcuda.so.1: `export LD_LIBRARY_PATH=/usr/lib/wsl/lib:$LD_LIBRARY_PATH` "
                    "or remove the Linux driver's libcuda.",
        severity={"timed-out": E, "crashed": W, "failed": W},
        delivered=lambda f: bool(f.libcuda.ldconfig_paths or f.libcuda.resolved or f.libcuda.load_error),
        failure_mode="FM-11",
    ),
}
_GENERIC = ProbeHelp(commands=(), hung=_DOCTOR_BUG, crashed=_DOCTOR_BUG, failed=_DOCTOR_BUG,
                     remediation="Re-run `doctor run`; if it repeats, report it with `doctor bundle`.",
                     severity={})


def failure_kind(status: ProbeStatus) -> str:
    """timed-out | crashed (a child killed by a signal) | failed."""
    if status.timed_out:
        return "timed-out"
    if re.search(r"killed by SIG[A-Z0-9]+|killed by signal", status.error or ""):
        return "crashed"
    return "failed"


def _severity(help_: ProbeHelp, kind: str, facts: Facts) -> Severity:
    severity = help_.severity.get(kind, W)
    # A probe that crashed or failed but still got its main fact (nvidia-smi after NVML) is degraded.
    if kind != "timed-out" and severity == E and help_.delivered(facts):
        return W
    return severity


def probe_finding(status: ProbeStatus, facts: Facts) -> Finding:
    help_ = PROBES.get(status.name, _GENERIC)
    kind = failure_kind(status)
    error = status.error or "no detail recorded"
    why = {"timed-out": help_.hung, "crashed": help_.crashed, "failed": help_.failed}[kind]
    return Finding(
        id=f"probe.{kind}",
        severity=_severity(help_, kind, facts),
        title=error if error.startswith(f"probe {status.name}") else f"probe {status.name}: {error}",
        why=why,
        remediation=help_.remediation,
        commands=list(help_.commands),
        evidence={f"probes.{status.name}.error": status.error,
                  f"probes.{status.name}.duration_s": status.duration_s,
                  f"probes.{status.name}.timed_out": status.timed_out},
        failure_mode=help_.failure_mode,
        links=list(help_.links),
        confidence=0.9,
        fix_cost=2,
    )


def _corrupt_metadata(facts: Facts) -> list[Finding]:
    bad = {name: info for name, info in sorted(facts.packages.items()) if info.error}
    if not bad:
        return []
    return [Finding(
        id="packages.corrupt-metadata",
        severity=W,
        title=f"corrupt package metadata: {', '.join(bad)}",
        why="pip, importlib.metadata and every version check (Unsloth's own included) read this metadata; "
            "with it broken they see no version, so version requirements cannot be checked and "
            "`pip install` may fail or leave two copies behind.",
        remediation="Reinstall each package listed (or delete the broken .dist-info folder named in the "
                    "evidence if it is a leftover of an interrupted install).",
        commands=[f"python -m pip install --force-reinstall --no-deps {name}" for name in bad],
        evidence={f"packages.{name}.error": info.error for name, info in bad.items()}
        | {f"packages.{name}.location": info.location for name, info in bad.items()},
        confidence=1.0,
        fix_cost=2,
    )]


def _shadowed(facts: Facts) -> list[Finding]:
    out = []
    for name, info in sorted(facts.packages.items()):
        if not info.shadows:
            continue
        out.append(Finding(
            id="packages.shadowed",
            severity=W,
            title=f"{name} is installed more than once: {info.version or 'unknown'} at {info.location} "
                  f"wins over {'; '.join(info.shadows)}",
            why="Python imports the copy found first on sys.path; a pip install or upgrade that lands in "
                "the other location changes nothing, and version checks may read the wrong copy "
                "(typical with ~/.local user installs beside a venv or conda env).",
            remediation="Uninstall the copy you do not want (run the uninstall until pip reports it is "
                        "gone, then reinstall once), or stop mixing user-site and environment installs.",
            commands=[f"python -m pip uninstall -y {name}", f"python -m pip install {name}"],
            evidence={f"packages.{name}.location": info.location, f"packages.{name}.version": info.version,
                      f"packages.{name}.shadows": list(info.shadows)},
            failure_mode="FM-10",
            confidence=0.9,
            fix_cost=2,
        ))
    return out


@check(id="probes", title="every probe finished: nothing hung, crashed, or read corrupt package metadata",
       finding_ids=("probe.timed-out", "probe.crashed", "probe.failed", "packages.corrupt-metadata",
                    "packages.shadowed"),
       order=5)
def probe_health(facts: Facts, config=None) -> list[Finding]:
    findings = [probe_finding(p, facts) for p in facts.probes if not p.ok or p.timed_out]
    return findings + _corrupt_metadata(facts) + _shadowed(facts)
