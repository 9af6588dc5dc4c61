"""`doctor watch [options] -- COMMAND [ARGS...]`: argument parsing only; the work is doctor.watch.command."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

PANEL = "Watchdog"


def _progress(event: dict) -> None:
    """One stderr line per stall and its diagnosis: the user's own output stays as it is."""
    kind = event.get("kind")
    if kind == "stall":
        at = f"step {event['step']}" if event.get("step") else f"phase '{event.get('phase')}'"
        text = f"STALL {event.get('n')} at {at}: no progress for {event.get('waited_s', 0):.1f} s; sampling the process tree"
    elif kind == "stall-diagnosed":
        text = f"stall {event.get('n')}: {event.get('cause') or 'stacks not readable'}"
        if event.get("first_stopped_rank") is not None:
            text += f"; rank {event['first_stopped_rank']} stopped first"
        text += " (details in the report at the end)"
    else:
        return
    sys.stderr.write(f"\ndoctor watch: {text}\n")
    sys.stderr.flush()


def register(app, handles_errors, with_config_flags) -> None:
    @app.command("watch", context_settings={"allow_interspersed_args": False})
    @handles_errors
    def watch(
        command: Annotated[List[str], typer.Argument(help="The command to run, after `--`: python train.py, accelerate launch ..., torchrun ...", show_default=False)],
        stall_floor: Annotated[float, typer.Option("--stall-floor", help="A step may take at least this long (s) before it counts as stalled.", rich_help_panel=PANEL)] = 60.0,
        stall_factor: Annotated[float, typer.Option("--stall-factor", help="... or this many times the median step time, whichever is longer.", rich_help_panel=PANEL)] = 10.0,
        first_step_grace: Annotated[float, typer.Option("--first-step-grace", help="Seconds the first step may take (compile, warm-up; Unsloth ~50 s on an H100).", rich_help_panel=PANEL)] = 300.0,
        startup_grace: Annotated[float, typer.Option("--startup-grace", help="Seconds without output or CPU use before training starts (or in a script without a Trainer) that count as a stall.", rich_help_panel=PANEL)] = 600.0,
        kill_on_stall: Annotated[bool, typer.Option("--kill-on-stall", help="After diagnosing a stall, stop the whole process tree (default: report and keep it running).", rich_help_panel=PANEL)] = False,
        out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: reports/watch-<timestamp>/).")] = None,
        json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the versioned JSON envelope to this file (stdout belongs to the command).")] = None,
        markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the report as Markdown (report.md in --out always).")] = None,
        no_bundle: Annotated[bool, typer.Option("--no-bundle", help="After a stall or crash, do not write bundle.zip (a redacted `doctor bundle` for an issue) into --out.")] = False,
    ) -> int:
        """Run your training under the doctor: catch a stall or crash as it happens; returns the command's exit code."""
        from doctor.watch.command import run_watch_command

        return run_watch_command(argv=list(command), stall_floor=stall_floor, stall_factor=stall_factor,
                                 first_step_grace=first_step_grace, startup_grace=startup_grace,
                                 kill_on_stall=kill_on_stall, out=out, json_path=json_out, markdown=markdown,
                                 progress=_progress, bundle=not no_bundle)
