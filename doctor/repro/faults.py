"""The faults `doctor repro --inject KIND[@STEP]` can plant, and the parsing of that flag.

Each fault mirrors one hypothesis for the step-11 hang (docs/knowledge/unsloth-failure-modes.md
§0.3) and must come out of the watchdog with its own diagnosis; that is how the detector is proven.
The child implements them (doctor/repro/child_faults.py); this module only names and parses them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from doctor import exitcodes
from doctor.exitcodes import DoctorError

DEFAULT_STEP = 11     # the step of the reference report (unslothai/unsloth#1010)

# kind -> (what the child does, the failure mode it stands for)
FAULTS: dict[str, tuple[str, str]] = {
    "dataloader-hang": ("a DataLoader worker blocks forever while collating the first batch of the step",
                        "FM-14"),
    "long-sample": ("one sample of the step is several times longer than max_seq_length and reaches "
                    "the model untruncated", "FM-15"),
    "cuda-stall": ("a kernel that never finishes, so the host blocks in its next GPU sync "
                   "(on CPU: emulated by a native call that never returns, behind a sync-shaped function)", "FM-04"),
    "host-memory": ("host RAM is allocated and held until MemAvailable is low (bounded by "
                    "--squeeze-limit and 70% of what is available), then the step waits", "FM-18"),
    "vram-squeeze": ("VRAM is allocated until free memory is below what the next step needs "
                     "(not applicable on CPU)", "FM-01"),
}

_SPEC = re.compile(r"^\s*([a-z][a-z-]*)\s*(?:@\s*(\d+))?\s*$")


@dataclass
class Injection:
    kind: str
    step: int = DEFAULT_STEP

    def label(self) -> str:
        return f"{self.kind}@{self.step}"


def parse_injection(text: str) -> Injection:
    """'dataloader-hang@11' -> Injection; a bad kind or step is a usage error."""
    m = _SPEC.match(text or "")
    if not m or m.group(1) not in FAULTS:
        raise DoctorError(f"unknown fault {text!r}: expected KIND[@STEP] with KIND one of "
                          f"{', '.join(FAULTS)}", exitcodes.USAGE)
    step = int(m.group(2)) if m.group(2) else DEFAULT_STEP
    if step < 1:
        raise DoctorError(f"fault step must be >= 1, got {step}", exitcodes.USAGE)
    return Injection(m.group(1), step)


def parse_injections(items: Optional[list]) -> list[Injection]:
    out = [i if isinstance(i, Injection) else parse_injection(str(i)) for i in (items or [])]
    kinds = [i.kind for i in out]
    dup = sorted({k for k in kinds if kinds.count(k) > 1})
    if dup:
        raise DoctorError(f"fault injected twice: {', '.join(dup)}", exitcodes.USAGE)
    return out


def failure_mode(kind: str) -> Optional[str]:
    return FAULTS.get(kind, ("", None))[1]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.I)


def parse_size(text: str) -> int:
    """'512M', '2G', '1.5GiB', '1000000' -> bytes (binary units)."""
    m = _SIZE.match(str(text))
    if not m:
        raise DoctorError(f"cannot read size {text!r} (e.g. 512M, 2G)", exitcodes.USAGE)
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)
