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
from doctor.report.envelope import Report


def load_facts(path: Path) -> Facts:
    """Facts from a saved facts JSON, a report envelope, or a bundle archive."""
    if not path.exists():
        raise DoctorError(f"facts file not found: {path}", exitcodes.FACTS_INVALID)
    if path.suffix in (".zip", ".gz", ".tgz") or path.name.endswith(".tar.gz"):
        from doctor.bundle.archive import read_bundle_facts

        return read_bundle_facts(path)
    try:
        return Facts.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise DoctorError(f"cannot read facts from {path}: {exc}", exitcodes.FACTS_INVALID)


def obtain_facts(facts_path: Optional[Path]) -> Facts:
    if facts_path is not None:
        return load_facts(facts_path)
    from doctor.probes import gather_facts

    return gather_facts()


def build_report(facts: Facts, config=None, gpu: Optional[str] = None, only=None,
                 command: str = "run", out_dir: Optional[Path] = None, write_patch: bool = True):
    """The whole `run` pipeline minus printing: (report, terminal sections, markdown sections)."""
    from doctor.engine import run_checks

    if gpu:
        from doctor.vram.gpus import apply_gpu_whatif

        facts = apply_gpu_whatif(facts, gpu)
    findings = run_checks(facts, config, only=only)
    if config is not None:   # the memory verdict on the config as the other fixes leave it
        from checks.vram_headroom import settle_with_other_fixes

        findings = settle_with_other_fixes(facts, config, findings)
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
            if patch is not None and est is not None:
                patch.vram_after = vram_after_patch(facts, config, patch)
            if patch is not None:
                sections["patch"] = patch.to_dict()
                term_sections.append(lambda console, p=patch: p.render_terminal(console))
                md_sections.append(patch.render_markdown())
    return Report(command=command, findings=findings, facts=facts, sections=sections), term_sections, md_sections


def vram_after_patch(facts: Facts, config, patch) -> Optional[str]:
    """The estimate with the patch's changes applied: fixes from different findings interact (the
    WSL fix turns Unsloth's offloaded checkpointing into standard checkpointing, which keeps every
    layer's checkpoint on the GPU), so say whether the patched config still fits."""
    import dataclasses

    from doctor.report.summary import gib
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

    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(render_markdown(report, md_sections, title=title or ""))
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    else:
        render_report(report, make_console(), term_sections, title=title)
    return report.code


def run_doctor(config: Optional[Path], facts_path: Optional[Path], save_facts: Optional[Path],
               json_out: bool, markdown: Optional[Path], out_dir: Optional[Path], gpu: Optional[str],
               only, overrides: Optional[ConfigOverrides]) -> int:
    if only:
        from checks import all_checks

        known = {c.id for c in all_checks()}
        unknown = [c for c in only if c not in known]
        if unknown:
            raise DoctorError(f"unknown check id(s): {', '.join(unknown)} (see `doctor checks`)", exitcodes.USAGE)
    cfg = None
    if config is not None or (overrides is not None and overrides.any()):
        from doctor.config.loader import load_config

        cfg = load_config(config, overrides)
    facts = obtain_facts(facts_path)
    if save_facts is not None:
        save_facts.parent.mkdir(parents=True, exist_ok=True)
        facts.save(save_facts)
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

    t = Table(show_header=True, header_style="bold", box=None)
    t.add_column("check")
    t.add_column("what it looks at")
    t.add_column("findings", style="dim")
    for c in specs:
        t.add_row(c.id, c.title + (" (needs a config)" if c.needs_config else ""), "\n".join(c.finding_ids))
    make_console().print(t)
    return exitcodes.OK
