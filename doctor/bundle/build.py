"""`doctor bundle`: gather everything a maintainer asks for into one redacted archive, plus an
issue body. Nothing here may crash the bundle: a failing step becomes a note in the manifest.
"""
from __future__ import annotations

import copy
import datetime as _dt
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from doctor import exitcodes
from doctor import archive as A
from doctor.bundle.collect import Collected, kernel_messages, nvidia_smi, pip_outputs
from doctor.bundle.identity import process_environ, redactor_for
from doctor.bundle.issue import IssueBody, IssueInputs, build_issue, extract_traceback
from doctor.redact import HOME, HOST, USER, Redactor
from doctor.bundle.stacks import attach_summary, mask_secret_locals, secret_local_values, stacks_text, strip_locals
from doctor.config.flags import ConfigOverrides
from doctor.exitcodes import DoctorError
from doctor.facts import Facts
from doctor.findings import Finding, rank

_REPO = re.compile(r"^[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+$")


@dataclass
class BundleOptions:
    out: Optional[Path] = None
    config: Optional[Path] = None
    overrides: Optional[ConfigOverrides] = None
    pid: Optional[int] = None
    repro: bool = False
    repro_steps: Optional[int] = None
    repo: Optional[str] = None
    redact: bool = True
    include_locals: bool = False
    facts_path: Optional[Path] = None
    logs: list[Path] = field(default_factory=list)
    command_line: str = "doctor bundle"
    progress: Optional[Callable[[str], None]] = None    # one line per slow step, for the terminal


@dataclass
class BundleResult:
    path: Path
    manifest: dict
    issue: IssueBody
    findings: list[Finding]
    url: Optional[str] = None


@dataclass
class Gathered:
    """What the steps produced, before anything is written (tests can build one directly)."""
    facts: Facts
    config: Any = None                       # TrainingConfig
    report: Any = None                       # Report of the checks
    md_sections: list[str] = field(default_factory=list)
    patch: Any = None                        # PatchResult
    attach: Any = None                       # AttachReport
    repro: Any = None                        # ReproResult
    external: list[Collected] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)   # (file name, text)
    notes: list[str] = field(default_factory=list)
    target_environ: dict[str, str] = field(default_factory=dict)


def default_out(now: _dt.datetime) -> Path:
    return Path("reports") / f"doctor-bundle-{now.strftime('%Y%m%d-%H%M%S')}.zip"


def validate(opts: BundleOptions) -> None:
    if opts.repo is not None and not _REPO.match(opts.repo):
        raise DoctorError(f"--repo must be OWNER/NAME (e.g. unslothai/unsloth), got {opts.repo!r}", exitcodes.USAGE)
    if opts.out is not None and opts.out.suffix.lower() != ".zip":
        raise DoctorError(f"--archive must name a .zip file, got {opts.out}", exitcodes.USAGE)
    for log in opts.logs:
        if not Path(log).is_file():
            raise DoctorError(f"--log: no such file: {log}", exitcodes.USAGE)


# ---------------------------------------------------------------- gathering

def gather(opts: BundleOptions, work_dir: Path) -> Gathered:
    from doctor.facts_source import obtain_facts
    from doctor.run_command import build_report

    say = opts.progress or (lambda _msg: None)
    if opts.pid is not None:   # a mistyped pid is an error now, not a note after a minute of probing
        from doctor.proctree import alive

        if not alive(opts.pid):
            raise DoctorError(f"no process with pid {opts.pid}", exitcodes.NO_SUCH_PROCESS)
    say("reading facts" if opts.facts_path else "probing this machine (up to a minute)")
    facts = obtain_facts(opts.facts_path)
    cfg = None
    if opts.config is not None or (opts.overrides is not None and opts.overrides.any()):
        from doctor.config.loader import load_config

        cfg = load_config(opts.config, opts.overrides)
    g = Gathered(facts=facts, config=cfg)
    for log in opts.logs:       # before the checks: the log's known messages become findings
        g.logs.append((Path(log).name, _read_tail(Path(log), g.notes)))
    from doctor.logs import attach_log_matches

    attach_log_matches(facts, g.logs)
    from doctor.report.emit import sections

    report = build_report(facts, cfg, command="bundle", out_dir=work_dir / "patch", write_patch=cfg is not None)
    g.report, g.md_sections = report, sections(report)[1]
    g.patch = _patch_of(report)
    if opts.pid is not None:
        say(f"sampling pid {opts.pid} with py-spy")
        g.target_environ = process_environ(opts.pid)
        g.attach = _attach(opts, g.notes)
    if opts.repro:
        say("running doctor repro (a few minutes on CPU)")
        g.repro = _repro(opts, cfg, work_dir / "repro", g.notes)
    if opts.facts_path is None:
        say("collecting pip freeze, nvidia-smi and kernel messages")
        g.external = pip_outputs(_target_python(opts.pid, g.target_environ)) + nvidia_smi() + [kernel_messages()]
    else:   # pip, nvidia-smi and dmesg would describe this machine, not the one the facts describe
        g.notes.append("pip list/freeze, nvidia-smi and kernel messages not collected: --facts was given, "
                       "and they would describe this machine rather than the one in the facts")
    return g


def _patch_of(report) -> Optional[dict]:
    """The patch build_report wrote (its dict is in the report's sections): {"path", "diff"}."""
    data = report.sections.get("patch") if report is not None else None
    if not data:
        return None
    path = data.get("path")
    return {"path": Path(path) if path else None, "diff": data.get("diff") or ""}


def _attach(opts: BundleOptions, notes: list[str]):
    try:   # a broken attach module (or a bug in it) must not lose the rest of the bundle
        from doctor.attach.api import diagnose_pid

        return diagnose_pid(opts.pid, locals=opts.include_locals)
    except DoctorError as exc:
        notes.append(f"attach to pid {opts.pid} failed: {exc.message}")
    except Exception as exc:
        notes.append(f"attach to pid {opts.pid} crashed: {type(exc).__name__}: {exc}")
    return None


def _repro(opts: BundleOptions, cfg, out_dir: Path, notes: list[str]):
    try:
        from doctor.repro.api import ReproOptions, run_repro

        kwargs: dict[str, Any] = {"config": cfg, "out_dir": out_dir}
        if opts.repro_steps is not None:
            kwargs["steps"] = opts.repro_steps
        return run_repro(ReproOptions(**kwargs))
    except DoctorError as exc:
        notes.append(f"repro failed: {exc.message}")
    except Exception as exc:
        notes.append(f"repro crashed: {type(exc).__name__}: {exc}")
    return None


def _target_python(pid: Optional[int], environ: dict[str, str]) -> Optional[str]:
    """The stuck process's interpreter, as it was invoked (argv[0], so a venv's python stays the
    venv's: /proc/<pid>/exe would resolve it to the base interpreter). Its packages are the ones
    that matter, not the doctor's."""
    if pid is None:
        return None
    try:
        import psutil

        proc = psutil.Process(pid)
        argv0, cwd = proc.cmdline()[0], proc.cwd()
    except Exception:
        return None
    if not re.match(r"python[0-9.]*(\.exe)?$", Path(argv0).name):
        return None
    if "/" not in argv0:
        return shutil.which(argv0, path=environ.get("PATH"))
    path = Path(cwd) / argv0
    return str(path) if path.is_file() else None


def _read_tail(path: Path, notes: list[str]) -> str:
    from doctor.logs import read_tail

    return read_tail(path, notes)


# ---------------------------------------------------------------- writing

def sanitized_facts(facts: Facts, redactor: Redactor, counts: Counter) -> Facts:
    """The facts as stored: env by allowlist, identity fields as placeholders (strings are
    redacted again by the writer)."""
    out = copy.deepcopy(facts)
    if not redactor.enabled:
        return out
    out.env = redactor.redact_env(facts.env, counts)
    p = out.platform
    for attr, value in (("username", USER), ("hostname", HOST), ("home", HOME)):
        if getattr(p, attr):
            setattr(p, attr, value)
            counts[attr] += 1
    return out


def write_bundle(g: Gathered, opts: BundleOptions, path: Path, now: _dt.datetime) -> BundleResult:
    from doctor.report_model import Report
    from doctor.report.markdown import render_markdown

    # a credential-named local's value is a secret everywhere (the same token is often in argv too)
    local_secrets = secret_local_values(g.attach.raw_dumps) if opts.include_locals and g.attach else []
    redactor = redactor_for(g.facts, [g.target_environ], enabled=opts.redact, extra_secrets=local_secrets)
    created = now.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")
    findings = rank(list(g.report.findings if g.report else [])
                    + list(getattr(g.attach, "findings", None) or [])
                    + list(getattr(g.repro, "findings", None) or []))
    with A.BundleWriter(path, redactor, command=opts.command_line) as w:
        fcounts: Counter = Counter()
        facts_out = sanitized_facts(g.facts, redactor, fcounts)
        w.add_json(A.FACTS, facts_out.to_dict(), "probes (doctor run --save-facts schema)"
                   if opts.facts_path is None else "--facts file", counts=fcounts)
        sections = dict(g.report.sections) if g.report else {}
        if g.attach is not None:
            sections["attach"] = {"cause": g.attach.cause, "situation": g.attach.situation}
        envelope = Report(command="bundle", findings=findings, facts=facts_out, sections=sections)
        w.add_json("findings.json", envelope.to_dict(), "checks (+ attach/repro findings)")
        w.add_text("findings.md", render_markdown(envelope, g.md_sections, title="finetune doctor bundle"),
                   "checks, rendered")
        config_name, config_text = _write_config(w, g, opts)
        _write_attach(w, g, opts)
        _write_repro(w, g)
        for c in g.external:
            if c.text is not None:
                w.add_text(c.name, c.text, c.source)
            if c.note:
                w.note(c.note)
        for name, text in g.logs:
            w.add_text(f"logs/{name}", text, f"--log {name}")
        for n in g.notes:
            w.note(n)
        inputs = _issue_inputs(g, findings, path.name, config_name, config_text)
        issue = build_issue(inputs, redactor=redactor, repo_for_url=opts.repo or "OWNER/NAME")
        w.add_text("issue.md", issue.text, "doctor bundle (issue body)", counts=issue.redactions)
        manifest = w.close(created)
    url = issue.url(opts.repo) if opts.repo else None
    return BundleResult(path=path, manifest=manifest, issue=issue, findings=findings, url=url)


def _write_config(w: A.BundleWriter, g: Gathered, opts: BundleOptions) -> tuple[Optional[str], Optional[str]]:
    if g.config is None:
        return None, None
    name, text = None, None
    if opts.config is not None:
        name = Path(opts.config).name
        try:
            text = Path(opts.config).read_text(encoding="utf-8", errors="replace")
            text = w.add_text(A.CONFIG_DIR + name, text, f"--config {name}")
        except OSError as exc:
            w.note(f"config {name}: cannot read: {exc.strerror or exc}")
    w.add_json(A.CONFIG_JSON, g.config.to_dict(), "parsed training config (TrainingConfig)")
    if opts.overrides is not None and opts.overrides.any():
        from doctor.serde import to_jsonable

        w.add_json(A.CONFIG_OVERRIDES, to_jsonable(opts.overrides), "command-line config flags")
    if g.patch and g.patch.get("path") is not None and Path(g.patch["path"]).is_file():
        patched = Path(g.patch["path"])
        w.add_text(A.CONFIG_DIR + patched.name, patched.read_text(encoding="utf-8", errors="replace"),
                   "config patcher (patched copy)")
    if g.patch and g.patch.get("diff"):
        w.add_text(A.CONFIG_DIR + (name or "config") + ".diff", g.patch["diff"], "config patcher (diff)")
    return name, text


def _write_attach(w: A.BundleWriter, g: Gathered, opts: BundleOptions) -> None:
    if g.attach is None:
        return

    def keep(obj):
        """(what to store, redactions made here): locals dropped, or kept with credentials blanked."""
        if not opts.include_locals:
            return strip_locals(obj), None
        counts = Counter()
        return mask_secret_locals(obj, counts), counts

    stored, counts = keep(g.attach.to_dict())
    w.add_json("attach/diagnosis.json", stored, f"doctor attach {opts.pid}", counts)
    from doctor.attach.render import markdown_section
    from doctor.report.markdown import render_markdown

    w.add_text("attach/diagnosis.md", render_markdown(g.attach.report(), [markdown_section(g.attach)],
                                                      title=f"doctor attach {opts.pid}"), "doctor attach, rendered")
    flag = " --locals" if opts.include_locals else ""
    for pid, samples in g.attach.raw_dumps.items():
        stored, counts = keep(samples)
        w.add_json(f"attach/pyspy-{pid}.json", stored, f"py-spy dump --json{flag} --pid {pid}", counts)


def _write_repro(w: A.BundleWriter, g: Gathered) -> None:
    r = g.repro
    if r is None:
        return
    from doctor.report.markdown import render_markdown
    from doctor.repro.render import markdown_section

    w.add_json("repro/result.json", r.to_dict(), "doctor repro")
    w.add_text("repro/report.md", render_markdown(r.report(), [markdown_section(r)], title="doctor repro"),
               "doctor repro, rendered")
    for attr in ("step_log_path", "log_path", "chart_path"):
        p = getattr(r, attr, None)
        if not p or not Path(p).is_file():
            continue
        p = Path(p)
        if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".pdf"):
            w.add_bytes(f"repro/{p.name}", p.read_bytes(), f"doctor repro ({attr})")
        else:
            w.add_text(f"repro/{p.name}", _read_tail(p, []), f"doctor repro ({attr})")


def _issue_inputs(g: Gathered, findings: list[Finding], bundle_name: str, config_name: Optional[str],
                  config_text: Optional[str]) -> IssueInputs:
    ext = {c.name: c.text for c in g.external if c.text}
    tb, tb_source = None, None
    for name, text in reversed(g.logs):
        tb = extract_traceback(text)
        if tb:
            tb_source = name
            break
    crash = getattr(g.repro, "crash", None)
    if tb is None and crash is not None and crash.traceback:
        tb, tb_source = crash.traceback, "doctor repro"
    stacks = stacks_text(g.attach) if g.attach is not None else None
    if stacks is None and getattr(g.repro, "stack_dump", ""):
        stacks = g.repro.stack_dump                 # faulthandler's dump of the stalled repro child
    return IssueInputs(
        facts=g.facts, findings=findings, bundle_name=bundle_name,
        config_name=config_name, config_text=config_text,
        patch_diff=(g.patch or {}).get("diff") or None,
        traceback=tb, traceback_source=tb_source,
        attach_summary=attach_summary(g.attach) if g.attach is not None else None,
        stacks=stacks,
        repro_summary=_repro_summary(g.repro),
        nvidia_smi=ext.get("gpu/nvidia-smi.txt"), nvidia_smi_q=ext.get("gpu/nvidia-smi-q.txt"),
        pip_freeze=ext.get("env/pip-freeze.txt"), kernel=ext.get("system/kernel-messages.txt"),
    )


def _repro_summary(r) -> Optional[str]:
    if r is None:
        return None
    from doctor.repro.render import summary_rows

    return "; ".join(f"{k}: {v}" for k, v in summary_rows(r))


def make_bundle(opts: BundleOptions, gathered: Optional[Gathered] = None,
                now: Optional[_dt.datetime] = None) -> BundleResult:
    """Gather (unless given) and write the bundle; returns where it is and the issue body."""
    validate(opts)
    now = now or _dt.datetime.now()
    path = Path(opts.out) if opts.out is not None else default_out(now)
    with tempfile.TemporaryDirectory(prefix="doctor-bundle-") as tmp:
        g = gathered if gathered is not None else gather(opts, Path(tmp))
        try:
            return write_bundle(g, opts, path, now)
        except OSError as exc:    # unwritable folder, disk full: the writer has removed its partial file
            raise DoctorError(f"cannot write {path}: {exc.strerror or exc}", exitcodes.USAGE)
