"""Probe time limits, in one place, and the one knob that scales them.

DOCTOR_PROBE_TIMEOUT_SCALE multiplies every probe limit (subprocess timeouts and the thread
deadlines in doctor.probes): 0.1 makes the 45 s torch-import limit 4.5 s, which is how the hang
tests run fast; 3 gives a cold, slow disk more room. Unset, empty or invalid means 1.
"""
from __future__ import annotations

import os
import time
from typing import Mapping, Optional

SCALE_ENV = "DOCTOR_PROBE_TIMEOUT_SCALE"

# Base limits in seconds (before scaling). `import torch` on a cold disk can take 10+ s.
TORCH_IMPORT_S = 45.0
NVML_S = 8.0
NVIDIA_SMI_S = 5.0
NVIDIA_TOTAL_S = 16.0      # NVML + nvidia-smi fallback together, under the 20 s thread deadline
LDCONFIG_S = 5.0
LIBCUDA_LOAD_S = 10.0
WSLCONFIG_READ_S = 2.0     # reading /mnt/c over 9p can stall


def scale(environ: Optional[Mapping[str, str]] = None) -> float:
    raw = (environ if environ is not None else os.environ).get(SCALE_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return 1.0
    return value if value > 0 else 1.0


def scaled(seconds: float) -> float:
    return seconds * scale()


class Budget:
    """A total time allowance shared by several sequential steps of one probe."""

    def __init__(self, total_s: float):
        self.total_s = total_s
        self._end = time.monotonic() + total_s

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def timeout(self, step_s: float) -> float:
        """The limit for the next step: its own limit, cut to what is left of the budget."""
        return min(step_s, self.remaining())
