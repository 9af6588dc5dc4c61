"""`doctor vram [CONFIG] [config flags] [--gpu NAME] [--facts F] [--json]`: the peak-VRAM breakdown."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from doctor import exitcodes
from doctor.config.flags import ConfigOverrides
from doctor.exitcodes import DoctorError


def run_vram(config_path: Optional[Path], overrides: Optional[ConfigOverrides], gpu: Optional[str],
             facts_path: Optional[Path], json_out: bool) -> int:
    from doctor.config.loader import load_config
    from doctor.facts_source import obtain_facts

    if config_path is None and (overrides is None or overrides.model is None):
        raise DoctorError("give a training config (train.py, .yaml, .json) or at least --model", exitcodes.USAGE)
    cfg = load_config(config_path, overrides)
    if gpu:   # resolve the name before probing, so a typo fails fast
        from doctor.vram.gpus import find_gpu

        find_gpu(gpu)
    facts = obtain_facts(facts_path)
    if gpu:
        from doctor.vram.gpus import apply_gpu_whatif

        facts = apply_gpu_whatif(facts, gpu)
    from doctor.vram.estimator import estimate_for

    est = estimate_for(facts, cfg)
    if est is None:
        where = "; ".join(cfg.model_shape_tried) or "nowhere"
        raise DoctorError(f"unknown model shape for {cfg.model_name!r} (looked in: {where}); pass a local model "
                          "directory or a model the bundled table knows", exitcodes.CONFIG_INVALID)
    code = exitcodes.UNHEALTHY if est.verdict == "does-not-fit" else exitcodes.OK
    if json_out:   # the versioned envelope every command prints; the estimate is sections.vram
        from doctor.report.emit import emit
        from doctor.report_model import Report

        return emit(Report(command="vram", findings=[], facts=facts, sections={"vram": est.to_dict()},
                           exit_code=code), json_out=True, markdown=None)
    # the terminal keeps its bare estimate table: no findings to rank, no machine summary
    from doctor.report.terminal import make_console
    from doctor.vram.render import terminal_section

    terminal_section(make_console(), est)
    return code


def register(app, handles_errors, with_config_flags):
    @app.command("vram")
    @handles_errors
    @with_config_flags
    def vram(
        config: Annotated[Optional[Path], typer.Argument(help="Training script (train.py), SFTConfig/TrainingArguments JSON, or YAML.", show_default=False)] = None,
        gpu: Annotated[Optional[str], typer.Option("--gpu", help='What-if: this GPU instead of the local one, e.g. "RTX 2080 Ti".')] = None,
        facts: Annotated[Optional[Path], typer.Option("--facts", help="Use a saved facts JSON instead of probing this machine.")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the versioned JSON envelope (the estimate, in bytes, under sections.vram).")] = False,
        overrides: ConfigOverrides = None,
    ) -> int:
        """Estimated peak VRAM of a training config, by component, against this GPU (or --gpu)."""
        return run_vram(config, overrides, gpu, facts, json_out)
