"""`doctor smoke [--only STEP] [--json] [--save-facts F] [--facts F]`: probe, run the kernels, report."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from doctor import exitcodes
from doctor.exitcodes import DoctorError


def run_smoke_command(only: Optional[list[str]], facts_path: Optional[Path], save_facts: Optional[Path],
                      json_out: bool, markdown: Optional[Path]) -> int:
    from doctor.outputs import check_output_file
    from doctor.facts_source import obtain_facts, save_new_facts
    from doctor.report.emit import emit
    from doctor.run_command import build_report
    from doctor.smoke.steps import STEPS

    unknown = [s for s in (only or []) if s not in STEPS]
    if unknown:
        raise DoctorError(f"unknown smoke step(s): {', '.join(unknown)} (steps: {', '.join(STEPS)})", exitcodes.USAGE)
    # output paths first, as `doctor run` does: a bad one is exit 2 before a minute of kernels
    for path, flag in ((markdown, "--markdown"), (save_facts, "--save-facts")):
        if path is not None:
            check_output_file(path, flag, False)
    facts = obtain_facts(facts_path)
    if facts_path is None:          # a replay shows the smoke results it carries
        from doctor.smoke.runner import run_smoke

        facts.smoke = run_smoke(facts, only)
    if save_facts is not None:
        save_new_facts(facts, save_facts)
    report = build_report(facts, None, command="smoke", write_patch=False)
    if facts.smoke.cpu_only:
        report.exit_code = exitcodes.NO_GPU      # the summary line and the JSON say 10 too
    code = emit(report, json_out, markdown)
    if facts.smoke.cpu_only:
        typer.echo(f"doctor: smoke: no CUDA GPU is usable, nothing was run (exit {exitcodes.NO_GPU})", err=True)
    return code


def register(app, handles_errors, with_config_flags):
    @app.command("smoke")
    @handles_errors
    def smoke(
        only: Annotated[Optional[List[str]], typer.Option("--only", help="Run only this step (repeatable): cuda_init, matmul_bf16, sdpa_flash, sdpa_mem_efficient, triton_jit, torch_compile, bnb_4bit, bnb_adam8bit, unsloth_import, nccl_allreduce.")] = None,
        facts: Annotated[Optional[Path], typer.Option("--facts", help="Replay saved facts (with their smoke results) instead of running.")] = None,
        save_facts: Annotated[Optional[Path], typer.Option("--save-facts", help="Write the facts, smoke results included, as JSON.")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the versioned JSON envelope instead of the report.")] = False,
        markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the report as Markdown.")] = None,
    ) -> int:
        """Run each kernel family training needs on each GPU (watchdog per step); name the layer that breaks."""
        return run_smoke_command(only, facts, save_facts, json_out, markdown)
