"""Helpers for the probe tests: fake executables and modules, and `doctor run` in a real subprocess
that is tagged, so every process it leaves behind (grandchildren included) can be found and killed."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import psutil

from doctor.proctree import kill_tree

ROOT = Path(__file__).resolve().parent.parent
TAG_VAR = "DOCTOR_TEST_TAG"
HANG_LIMIT_S = 180  # far above any probe limit: only a doctor that really hangs reaches it

REALISTIC_SMI_CSV = (
    "0, NVIDIA GeForce RTX 2080 Ti, GPU-4f6d7a1e-1111-2222-3333-444455556666, 00000000:01:00.0, 560.94, "
    "11264, 1035, 10229, Enabled, [N/A], WDDM, [N/A], 7.5\n"
)
REALISTIC_SMI_BANNER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 560.35.02              Driver Version: 560.94         CUDA Version: 12.6     |
|-----------------------------------------+------------------------+----------------------+
"""
REALISTIC_SMI_APPS = "GPU-4f6d7a1e-1111-2222-3333-444455556666, 4242, [N/A]\n"


def write_exe(directory: Path, name: str, python_body: str) -> Path:
    """An executable Python script (so its command line carries its path)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(python_body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def write_module(directory: Path, dotted: str, code: str) -> Path:
    """A fake module (`pynvml`) or package (`torch`, written as torch/__init__.py) under directory."""
    parts = dotted.split(".")
    if len(parts) == 1 and dotted != "torch":
        path = directory / f"{dotted}.py"
    else:
        path = directory.joinpath(*parts) / "__init__.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def write_dist_info(site: Path, name: str, version: str, metadata: Optional[bytes] = None) -> Path:
    """A .dist-info folder; metadata=None writes a valid METADATA, bytes write it verbatim."""
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True, exist_ok=True)
    body = metadata if metadata is not None else (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Dist: numpy>=1.17\n".encode())
    (folder / "METADATA").write_bytes(body)
    return folder


FAKE_SMI_WORKING = f"""
import sys
args = " ".join(sys.argv[1:])
if "--query-gpu" in args:
    sys.stdout.write({REALISTIC_SMI_CSV!r})
elif "--query-compute-apps" in args:
    sys.stdout.write({REALISTIC_SMI_APPS!r})
else:
    sys.stdout.write({REALISTIC_SMI_BANNER!r})
"""
FAKE_SMI_HANGING = "import time\nwhile True:\n    time.sleep(60)\n"


def probe_env(path_dirs: Sequence[Path] = (), python_dirs: Sequence[Path] = (),
              scale: Optional[float] = None, **extra: str) -> dict[str, str]:
    """os.environ plus fake dirs first on PATH / PYTHONPATH, the timeout scale and a unique tag."""
    env = dict(os.environ)
    if path_dirs:
        env["PATH"] = os.pathsep.join([str(p) for p in path_dirs] + [env.get("PATH", "")])
    pythonpath = [str(p) for p in python_dirs] + [str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(pythonpath + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if scale is not None:
        env["DOCTOR_PROBE_TIMEOUT_SCALE"] = str(scale)
    env[TAG_VAR] = uuid.uuid4().hex
    env.update(extra)
    return env


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes whose environment carries tag: the doctor and everything it started."""
    out = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(TAG_VAR) == tag \
                    and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return out


@dataclass
class DoctorRun:
    returncode: int
    stdout: str
    stderr: str
    leftovers: list[str]      # command lines of processes still alive after the doctor exited

    def json(self) -> dict:
        return json.loads(self.stdout)

    def findings(self, id_prefix: str = "") -> list[dict]:
        return [f for f in self.json()["findings"] if f["id"].startswith(id_prefix)]

    def probe(self, name: str) -> dict:
        return next(p for p in self.json()["facts"]["probes"] if p["name"] == name)


def run_doctor(args: Sequence[str], env: Optional[dict] = None, cwd: Optional[Path] = None) -> DoctorRun:
    """`python -m doctor <args>` in a subprocess; afterwards kill (and report) anything it left."""
    env = env if env is not None else probe_env()
    env.setdefault(TAG_VAR, uuid.uuid4().hex)
    proc = subprocess.Popen([sys.executable, "-m", "doctor", *args], env=env, cwd=str(cwd or ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=HANG_LIMIT_S)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"doctor {' '.join(args)} hung for {HANG_LIMIT_S} s; stderr: {err[-2000:]}")
    finally:
        kill_tree(proc.pid)
    left = tagged_processes(env[TAG_VAR])
    described = []
    for p in left:
        try:
            described.append(" ".join(p.cmdline())[:200])
        except psutil.Error:
            described.append(str(p.pid))
        kill_tree(p.pid)
    return DoctorRun(proc.returncode, out, err, described)
