"""Attaching to the shell that started the doctor must not diagnose the doctor itself."""
from __future__ import annotations

import subprocess
import sys


def test_attach_to_own_parent_shell_skips_the_doctor_process():
    # bash runs `doctor attach <bash's own pid>`: bash is not Python, and its only Python
    # descendant is the doctor, which is not the target -> "not a Python process" (exit 5)
    cmd = f'{sys.executable} -m doctor attach $$ --samples 1'
    res = subprocess.run(["bash", "-c", cmd + "; echo rc=$?"], capture_output=True, text=True, timeout=120)
    assert "rc=5" in res.stdout, res.stdout + res.stderr
    assert "is not running Python" in res.stderr
    assert "_Sampler" not in res.stdout          # the doctor's own stacks are not in a report
