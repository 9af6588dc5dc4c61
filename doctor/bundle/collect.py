"""The bundle's external evidence: pip list / pip freeze, nvidia-smi, kernel messages.

Every command goes through doctor.runner with a timeout; one that is missing, denied, slow or
failing yields a note ("nvidia-smi: not found") instead of text, never an exception.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Optional

from doctor.runner import CommandResult, run_command

PIP_TIMEOUT_S = 60.0
NVIDIA_SMI_TIMEOUT_S = 20.0
DMESG_TIMEOUT_S = 10.0
KERNEL_LINES_KEPT = 300

# Kernel lines that matter for fine-tuning hangs and kills: the WSL2 GPU paravirtualisation driver
# (dxg/dxgkrnl, FM-04), NVIDIA's kernel module and Xid errors, the OOM killer (FM-18), hung tasks.
KERNEL_LINE = re.compile(r"dxg|nvrm|nvidia|\bxid\b|out of memory|oom[-_ ]?kill|killed process|"
                         r"blocked for more than|hung_task|soft lockup|segfault|hv_balloon", re.I)


@dataclass
class Collected:
    name: str                     # member path in the archive
    source: str                   # the command that produced it, for the manifest
    text: Optional[str] = None    # None: nothing to store (see note)
    note: Optional[str] = None    # why it is missing or partial


def _describe(argv: list[str]) -> str:
    return "command: " + " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv))


def _from_result(name: str, res: CommandResult, label: str) -> Collected:
    source = _describe(res.argv)
    if res.ok:
        return Collected(name, source, res.stdout)
    note = f"{label}: {res.describe_failure()}"
    # A partial answer (timed out half-way, exited 1 after printing) is still worth keeping.
    return Collected(name, source, res.stdout or None, note)


def pip_outputs(python: Optional[str] = None) -> list[Collected]:
    """`python -m pip list` and `pip freeze` of the interpreter that trains (default: this one)."""
    exe = python or sys.executable
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONIOENCODING="utf-8")
    env.pop("PIP_REQUIRE_VIRTUALENV", None)
    out = []
    for name, args in (("env/pip-list.txt", ["list"]), ("env/pip-freeze.txt", ["freeze"])):
        res = run_command([exe, "-m", "pip", *args, "--disable-pip-version-check"],
                          timeout=PIP_TIMEOUT_S, env=env)
        out.append(_from_result(name, res, f"pip {args[0]}"))
    return out


def nvidia_smi() -> list[Collected]:
    """`nvidia-smi` (the table maintainers ask for) and `nvidia-smi -q` (everything), once each:
    polling it leaks driver memory under WSL (microsoft/WSL#12756), so never in a loop."""
    from doctor.probes.nvidia import find_nvidia_smi

    exe = find_nvidia_smi()
    if exe is None:
        note = "nvidia-smi: not found (no NVIDIA driver on this machine, or not on PATH)"
        return [Collected("gpu/nvidia-smi.txt", "command: nvidia-smi", None, note)]
    table = run_command([exe], timeout=NVIDIA_SMI_TIMEOUT_S)
    out = [_from_result("gpu/nvidia-smi.txt", table, "nvidia-smi")]
    if table.timed_out:   # a wedged driver: do not wait on it twice
        out.append(Collected("gpu/nvidia-smi-q.txt", "command: nvidia-smi -q", None,
                             "nvidia-smi -q: skipped, plain nvidia-smi already timed out"))
    else:
        out.append(_from_result("gpu/nvidia-smi-q.txt", run_command([exe, "-q"], timeout=NVIDIA_SMI_TIMEOUT_S),
                                "nvidia-smi -q"))
    return out


def filter_kernel_lines(text: str, keep: int = KERNEL_LINES_KEPT) -> tuple[list[str], int]:
    """(the matching lines, last `keep` of them; total number of lines read)."""
    lines = text.splitlines()
    return [ln for ln in lines if KERNEL_LINE.search(ln)][-keep:], len(lines)


def kernel_messages() -> Collected:
    """dmesg lines about dxg, NVRM/Xid, the OOM killer and hung tasks. Reading the kernel ring
    buffer needs privileges on many systems (kernel.dmesg_restrict): a refusal is a note."""
    name, source = "system/kernel-messages.txt", "command: dmesg (filtered: dxg, NVRM, Xid, OOM, hung tasks)"
    res = run_command(["dmesg"], timeout=DMESG_TIMEOUT_S)
    if not res.ok and not res.stdout:
        why = res.describe_failure()
        if "not permitted" in (res.stderr or "").lower() or "permission" in (res.stderr or "").lower():
            why = "dmesg: permission denied (kernel.dmesg_restrict); run `sudo dmesg | grep -i -E 'dxg|nvrm|oom'`"
        return Collected(name, source, None, why)
    kept, total = filter_kernel_lines(res.stdout)
    header = f"# {len(kept)} of {total} kernel messages match dxg|NVRM|Xid|OOM|hung task\n"
    note = None if res.ok else f"dmesg: {res.describe_failure()} (partial output kept)"
    return Collected(name, source, header + "\n".join(kept) + ("\n" if kept else ""), note)
