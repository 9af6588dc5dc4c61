"""The one way out for every command: terminal, --json (the versioned envelope) or --markdown.
Commands return a Report; the objects it carries in `parts` (a VRAM estimate, a config patch, an
attach or repro result) are turned into terminal and Markdown sections here, so the application
layer never imports a renderer."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from doctor import exitcodes
from doctor.exitcodes import DoctorError
from doctor.report_model import Report


def part_sections(part) -> tuple:
    """(terminal section, Markdown section) for one of a Report's parts."""
    from doctor.attach.model import AttachReport
    from doctor.config.patcher import PatchResult
    from doctor.repro.result import ReproResult
    from doctor.vram.estimator import VramEstimate

    if isinstance(part, VramEstimate):
        from doctor.vram import render as vram_render

        return (lambda console, est=part: vram_render.terminal_section(console, est)), vram_render.markdown_section(part)
    if isinstance(part, PatchResult):
        return part.render_terminal, part.render_markdown()
    if isinstance(part, AttachReport):
        from doctor.attach import render as attach_render

        return attach_render.terminal_section(part), attach_render.markdown_section(part)
    if isinstance(part, ReproResult):
        from doctor.repro import render as repro_render

        return repro_render.terminal_section(part), repro_render.markdown_section(part)
    raise TypeError(f"no renderer for a report part of type {type(part).__name__}")


def sections(report: Report) -> tuple[list, list]:
    """The terminal and Markdown sections of a report's parts, in order."""
    term, md = [], []
    for part in report.parts:
        t, m = part_sections(part)
        term.append(t)
        md.append(m)
    return term, md


def emit(report: Report, json_out: bool, markdown: Optional[Path], title: Optional[str] = None,
         term_sections: Sequence = (), md_sections: Sequence = ()) -> int:
    """Print the report (terminal or --json) and write --markdown; returns the exit code.
    term_sections/md_sections come after the parts' own (bundle ranks' table)."""
    from doctor.outputs import check_output_file, write_new_file
    from doctor.report.markdown import render_markdown
    from doctor.report.terminal import make_console, render_report

    title = title or report.title
    term, md = sections(report)
    term += list(term_sections)
    md += list(md_sections)
    text = render_markdown(report, md, title=title or "") if markdown is not None else None
    # the report first: a Markdown file that cannot be written must not take it down with it
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    else:
        render_report(report, make_console(), term, title=title)
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
