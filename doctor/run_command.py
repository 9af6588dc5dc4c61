"""`doctor run` and `doctor checks`: facts -> checks -> findings -> renderers (+ patched config)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from doctor import exitcodes
from doctor.config.flags import ConfigOverrides
from doctor.exitcodes import DoctorError
from doctor.facts import Facts
from doctor.findings import Finding, Severity, rank
from doctor.facts_source import obtain_facts, save_new_facts
from doctor.report_model import Report


def build_report(facts: Facts, config=None, gpu: Optional[str] = None, only=None,
                 command: str = "run", out_dir: Optional[Path] = None, write_patch: bool = True):
    """The whole `run` pipeline minus printing: (report, terminal sections, markdown sections)."""
    from doctor.engine import run_checks

    if gpu:
        from doctor.vram.gpus import apply_gpu_whatif

        facts = apply_gpu_whatif(facts, gpu)
    findings = run_checks(facts, config, only=only)
    term_sections, md_sections, sections = [], [], {}
    if config is not None:
        from doctor.vram import render as vram_render
        from doctor.vram.estimator import estimate_for

        est = estimate_for(facts, config)
        if est is not None:
            sections["vram"] = est.to_dict()
            term_sections.append(lambda console, est=est: vram_render.terminal_section(console, est))
            md_sections.append(vram_render.markdown_section(est))
        sections["config"] = config.to_dict()
        if write_patch:
            from doctor.config.patcher import write_patched

            patch = write_patched(config, findings, out_dir)
            if patch is not None and patch.write_error:
                findings = rank(findings + [patch_not_written(patch)])
            if patch is not None and est is not None:
                patch.vram_after = vram_after_patch(facts, config, patch)
            if patch is not None:
                sections["patch"] = patch.to_dict()
                term_sections.append(lambda console, p=patch: p.render_terminal(console))
                md_sections.append(patch.render_markdown())
    return Report(command=command, findings=findings, facts=facts, sections=sections), term_sections, md_sections


def patch_not_written(patch) -> Finding:
    """The patched copy could not be written: a finding, so the report (and its diff) still prints."""
    return Finding(
        id="doctor.patch-not-written",
        severity=Severity.ERROR if patch.internal else Severity.WARNING,
        title="the patched config was not written",
        why=patch.write_error,
        remediation=("Please report this with `doctor bundle`; the findings above still apply." if patch.internal
                     else "Apply the diff in this report by hand, or run again with --out DIR "
                          "(an existing, writable folder; add --mkdir to create it)."),
        evidence={"source": patch.source},
        confidence=1.0,
    )


def vram_after_patch(facts: Facts, config, patch) -> Optional[str]:
    """The estimate with the patch's changes applied: fixes from different findings interact (the
    WSL fix turns Unsloth's offloaded checkpointing into standard checkpointing, which keeps every
    layer's checkpoint on the GPU), so say whether the patched config still fits."""
    import dataclasses

    from doctor.units import gib
    from doctor.vram.estimator import estimate_for

    names = {f.name for f in dataclasses.fields(config)}
    changed = {c.setting: c.new for c in patch.changes if c.setting in names}
    if not changed:
        return None
    after = estimate_for(facts, dataclasses.replace(config, **changed))
    if after is None:
        return None
    line = (f"With these changes: estimated peak {gib(after.mid.total)} "
            f"({gib(after.low.total)}-{gib(after.high.total)})")
    if after.gpu_free is not None:
        line += f" vs {gib(after.gpu_free)} usable: {after.verdict}"
    return line


def emit(report: Report, term_sections, md_sections, json_out: bool, markdown: Optional[Path],
         title: Optional[str] = None) -> int:
    from doctor.report.markdown import render_markdown
    from doctor.report.terminal import make_console, render_report

    from doctor.outputs import check_output_file, write_new_file

    text = render_markdown(report, md_sections, title=title or "") if markdown is not None else None
    # the report first: a Markdown file that cannot be written must not take it down with it
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    else:
        render_report(report, make_console(), term_sections, title=title)
    if markdown is not None:
        try:
            check_output_file(markdown, "--markdown")
            written = write_new_file(markdown, text)
        except (DoctorError, OSError) as exc:
            why = exc.message if isinstance(exc, DoctorError) else f"cannot write {markdown}: {exc.strerror or exc}"
            sys.stderr.write(f"doctor: error: {why} (the report above is complete)\n")
            return report.code or exitcodes.USAGE
        if written != markdown:
            sys.stderr.write(f"doctor: {markdown} exists and was left alone: Markdown report written to {written}\n")
    return report.code


def run_doctor(config: Optional[Path], facts_path: Optional[Path], save_facts: Optional[Path],
               json_out: bool, markdown: Optional[Path], out_dir: Optional[Path], gpu: Optional[str],
               only, overrides: Optional[ConfigOverrides], logs=None, mkdir: bool = False,
               smoke: bool = False) -> int:
    from doctor.outputs import check_output_dir, check_output_file

    # output paths first, before any work: one line and exit 2, not a lost report at the end
    if markdown is not None:
        check_output_file(markdown, "--markdown", mkdir, offer_mkdir=True)
    if save_facts is not None:
        check_output_file(save_facts, "--save-facts", mkdir, offer_mkdir=True)
    if out_dir is not None:
        check_output_dir(out_dir, "--out", mkdir, offer_mkdir=True)
    if only:
        from checks import all_checks

        known = {c.id for c in all_checks()}
        unknown = [c for c in only if c not in known]
        if unknown:
            raise DoctorError(f"unknown check id(s): {', '.join(unknown)} (see `doctor checks`)", exitcodes.USAGE)
    from doctor.logs import apply_logs, check_log_paths

    check_log_paths(logs)
    cfg = None
    if config is not None or (overrides is not None and overrides.any()):
        from doctor.config.loader import load_config

        cfg = load_config(config, overrides)
    facts = obtain_facts(facts_path)
    apply_logs(facts, logs)
    if smoke and facts_path is None:
        from doctor.smoke.runner import run_smoke

        facts.smoke = run_smoke(facts)
    if save_facts is not None:
        save_new_facts(facts, save_facts)
    report, term, md = build_report(facts, cfg, gpu=gpu, only=only, out_dir=out_dir)
    return emit(report, term, md, json_out, markdown)


def list_checks(json_out: bool) -> int:
    from checks import all_checks

    specs = all_checks()
    if json_out:
        print(json.dumps([{"id": c.id, "title": c.title, "finding_ids": list(c.finding_ids),
                           "needs_config": c.needs_config} for c in specs], indent=2))
        return exitcodes.OK
    from rich.table import Table

    from doctor.report.terminal import make_console

    # ids are what people copy into --check and issue reports: never cut or folded; the prose
    # column takes what is left
    t = Table(show_header=True, header_style="bold", box=None)
    t.add_column("check", no_wrap=True, min_width=max(len(c.id) for c in specs))
    t.add_column("what it looks at", ratio=1, min_width=12, overflow="fold")
    t.add_column("findings", style="dim", no_wrap=True,
                 min_width=max((len(i) for c in specs for i in c.finding_ids), default=8))
    for c in specs:
        t.add_row(c.id, c.title + (" (needs a config)" if c.needs_config else ""), "\n".join(c.finding_ids))
    console = make_console()
    console.print(t)
    from doctor.knowledge.releases import table

    console.print(f"release table: PyPI snapshot {table().snapshot_day or 'missing'} "
                  "(refresh: python checks/data/refresh_releases.py)")
    return exitcodes.OK
