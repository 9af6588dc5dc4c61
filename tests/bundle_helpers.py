"""Helpers for the bundle tests: facts with planted identity and secrets, and reading every byte
of a bundle back."""
from __future__ import annotations

import ast
import re
import zipfile
from pathlib import Path

from doctor.facts import Facts, PackageInfo
from tests.conftest import FACT_SNAPSHOTS

WSL_FACTS = FACT_SNAPSHOTS / "wsl2-2080ti-unsloth-2024.8.json"

# Values from the WSL snapshot (and planted below) that a maintainer needs, so must survive.
MUST_SURVIVE = {
    "facts.json": ["2.2.0+cu121", "NVIDIA GeForce RTX 2080 Ti", "/usr/lib/wsl/lib", "2.5.0a0+git1234abc",
                   "/usr/local/cuda-12.1/lib64",
                   "5.15.153.1-microsoft-standard-WSL2", "560.94"],
    "env/pip-freeze.txt": ["torch==2.2.0+cu121", "unsloth==2024.8"],
}


def token_present(name: str, text: str) -> bool:
    """name as a whole token (what the redactor promises to remove), case-insensitive."""
    return re.search(r"(?<![A-Za-z0-9_\-.])" + re.escape(name) + r"(?![A-Za-z0-9_\-])(?!\.[A-Za-z0-9])",
                     text, re.I) is not None


def planted_facts(user: str, host: str, home: str, env: dict[str, str]) -> Facts:
    """The WSL2 2080 Ti snapshot as if taken by `user` on `host`, with `env` and home paths planted."""
    f = Facts.load(WSL_FACTS)
    p = f.platform
    p.username, p.hostname, p.home = user, host, home
    p.cwd = f"{home}/proj"
    p.python_executable = f"{home}/proj/.venv/bin/python"
    f.env = dict(env)
    f.packages["torchvision"] = PackageInfo("torchvision", "2.5.0a0+git1234abc",
                                            location=f"{home}/proj/.venv/lib/python3.10/site-packages")
    f.libcuda.ld_library_path_hits = ["/usr/lib/wsl/lib/libcuda.so.1", f"{home}/cuda/lib64/libcuda.so"]
    f.probes[0].error = f"could not read {home}/.wslconfig on {host}"
    return f


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def leaks(path: Path, secrets: list[str], tokens: list[str]) -> list[tuple[str, str]]:
    """(member, what) for every secret found as a substring and every name found as a whole token,
    in any member's bytes (member names included)."""
    found = []
    for name, data in read_members(path).items():
        text = name + "\n" + data.decode("utf-8", errors="replace")
        found += [(name, s) for s in secrets if s and s in text]
        found += [(name, t) for t in tokens if t and token_present(t, text)]
    return found


# ---------------------------------------------------------------- a bundle with text planted in every place

def plant_bundle(tmp: Path, *, user: str, host: str, config_name: str, config_text: str,
                 argv: list[str], log: str, stack_source: str, locals_: list[dict], env: dict[str, str],
                 redact: bool = True):
    """Build a real bundle (the production builder, facts from the WSL snapshot, no GPU) whose
    config file, argv, log, py-spy stack (source line and locals, kept with --include-locals), env
    and target-process env carry the given text. Returns (BundleResult, Gathered)."""
    from doctor.attach.model import AttachReport, ProcessView
    from doctor.attach.snapshot import ProcessSample, Snapshot
    from doctor.bundle.build import BundleOptions, Gathered, make_bundle
    from doctor.config.loader import load_config
    from doctor.report.emit import sections
    from doctor.run_command import build_report

    home = str(tmp / "home" / user)
    proj = Path(home) / "proj"
    proj.mkdir(parents=True, exist_ok=True)
    cfg_path = proj / config_name
    cfg_path.write_text(config_text)
    facts = planted_facts(user, host, home, env)
    cfg = load_config(cfg_path)
    report = build_report(facts, cfg, command="bundle", out_dir=tmp / "patch", write_patch=True)
    md = sections(report)[1]
    patch = report.sections.get("patch") or None
    pid = 4242
    frame = {"name": "train", "filename": str(cfg_path), "short_filename": config_name, "line": 9,
             "module": None, "locals": locals_}
    dump = [{"pid": pid, "thread_id": 1, "os_thread_id": pid, "thread_name": "MainThread", "active": False,
             "owns_gil": False, "frames": [frame]}]
    sample = ProcessSample(pid=pid, exe=f"{home}/proj/.venv/bin/python", cmdline=list(argv),
                           source={f"{cfg_path}:9": stack_source})
    attach = AttachReport(pid=pid, cause="cuda-sync-wait", situation="GPU idle, host waiting",
                          processes=[ProcessView(pid=pid, cmdline=" ".join(argv), role="main")],
                          raw_dumps={str(pid): [dump]}, errors=[], snapshot=Snapshot(target_pid=pid, processes=[sample]))
    g = Gathered(facts=facts, config=cfg, report=report, md_sections=md, attach=attach,
                 logs=[("train.log", log)], target_environ=dict(env),
                 patch={"path": Path(patch["path"]) if patch and patch.get("path") else None,
                        "diff": (patch or {}).get("diff") or ""} if patch else None)
    opts = BundleOptions(out=tmp / "out" / "doctor-bundle-test.zip", config=cfg_path, pid=pid, include_locals=True,
                         redact=redact)
    return make_bundle(opts, gathered=g), g


def texts_of(path: Path) -> dict[str, str]:
    """Every member of a bundle as text (member names included as keys)."""
    return {name: data.decode("utf-8", errors="replace") for name, data in read_members(path).items()}


def fenced_python(issue_text: str) -> list[str]:
    """The ```python blocks of an issue body."""
    return [m[1] for m in re.findall(r"^(`{3,})python\n(.*?)^\1[ \t]*$", issue_text, re.S | re.M)]


def _doctor_text() -> str:
    """Text the doctor writes on its own: every string literal in doctor/ and checks/, the data tables
    and the fact snapshots. Hypothesis also draws text from the string constants of the modules loaded
    (which depends on what ran before), so a generated "password" can be, say, `load_in_8bit`: the
    doctor writes that word itself, as a key, and finding it in a bundle is no leak."""
    root = Path(__file__).resolve().parent.parent
    parts = []
    for path in list((root / "doctor").rglob("*.py")) + list((root / "checks").rglob("*.py")):
        parts += [n.value for n in ast.walk(ast.parse(path.read_text()))
                  if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    for path in list((root / "checks" / "data").glob("*.json")) + list((root / "examples" / "facts").glob("*.json")):
        parts.append(path.read_text())
    return "\n".join(parts)


DOCTOR_TEXT = _doctor_text()


def doctor_writes(value: str) -> bool:
    """value occurs in text the doctor writes by itself (see _doctor_text)."""
    return value in DOCTOR_TEXT
