"""`doctor repro`: argument parsing only; the work is doctor.repro.command."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from doctor.repro.faults import FAULTS

PANEL = "Repro"
FAULT_KINDS = ", ".join(FAULTS)


def _progress(event: dict) -> None:
    """One stderr line per phase, step, fault and stall, so a long run shows it is alive."""
    kind = event.get("kind")
    if kind == "phase":
        text = f"{event.get('phase')}" + (f": {event['detail']}" if event.get("detail") else "")
    elif kind == "step":
        d = event.get("duration_s")
        text = f"step {event.get('step')} done" + (f" in {d:.2f} s" if d is not None else "")
    elif kind == "inject":
        text = f"fault {event.get('fault')} planted at step {event.get('step')}"
    elif kind == "stall":
        text = (f"STALL at step {event.get('step')}: no progress for {event.get('waited_s', 0):.1f} s; "
                "sampling the process tree")
    elif kind == "crash":
        text = f"CRASH: {event.get('type')}: {str(event.get('message', ''))[:200]}"
    else:
        return
    sys.stderr.write(f"repro: {text}\n")
    sys.stderr.flush()


def register(app, handles_errors, with_config_flags) -> None:
    @app.command("repro")
    @handles_errors
    @with_config_flags
    def repro(
        config: Annotated[Optional[Path], typer.Argument(help="Training script, YAML or JSON to mirror (default: the reference config of unslothai/unsloth#1010).", show_default=False)] = None,
        model_size: Annotated[str, typer.Option("--model-size", help="tiny (CPU-friendly), 1b, 8b (the real Llama 3.1 8B shape: GPU), or config (the config's model shape).", rich_help_panel=PANEL)] = "tiny",
        steps: Annotated[int, typer.Option("--steps", help="Optimizer steps to run (past step 11 by default).", rich_help_panel=PANEL)] = 20,
        inject: Annotated[Optional[List[str]], typer.Option("--inject", help=f"Plant a fault: KIND or KIND@STEP (step 11 by default); repeatable. KIND: {FAULT_KINDS}.", rich_help_panel=PANEL)] = None,
        stall_floor: Annotated[float, typer.Option("--stall-floor", help="A step may take at least this long (s) before it counts as stalled.", rich_help_panel=PANEL)] = 60.0,
        stall_factor: Annotated[float, typer.Option("--stall-factor", help="... or this many times the median step time, whichever is longer.", rich_help_panel=PANEL)] = 10.0,
        first_step_grace: Annotated[float, typer.Option("--first-step-grace", help="Seconds the first step may take (compile, warm-up; Unsloth ~50 s on an H100).", rich_help_panel=PANEL)] = 300.0,
        startup_grace: Annotated[float, typer.Option("--startup-grace", help="Seconds each start-up phase (import, model load) may take.", rich_help_panel=PANEL)] = 600.0,
        timeout: Annotated[Optional[float], typer.Option("--timeout", help="Stop (and diagnose) the run if it is still going after this many seconds.", rich_help_panel=PANEL)] = None,
        device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.", rich_help_panel=PANEL)] = "auto",
        backend: Annotated[str, typer.Option("--backend", help="auto (Unsloth when it imports on a GPU, else transformers), unsloth, transformers, or torch (a plain loop).", rich_help_panel=PANEL)] = "auto",
        lengths: Annotated[Optional[str], typer.Option("--lengths", help="Sample lengths: full, uniform, chat, or a FILE of token counts from your data.", rich_help_panel=PANEL)] = None,
        squeeze_limit: Annotated[Optional[str], typer.Option("--squeeze-limit", help="host-memory fault: hold at most this much RAM, e.g. 2G (it never takes more than 70% of MemAvailable).", rich_help_panel=PANEL)] = None,
        seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for data and weights (default: the config's).", rich_help_panel=PANEL)] = None,
        model_cache: Annotated[Optional[Path], typer.Option("--model-cache", help="Keep the saved random checkpoint here and reuse it (Unsloth and 4-bit load from disk).", rich_help_panel=PANEL)] = None,
        out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: reports/repro-<timestamp>/).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the versioned JSON envelope instead of the report.")] = False,
        markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the report as Markdown.")] = None,
        overrides=None,
    ) -> int:
        """Reproduce the training in a watched child: catch a stall (or crash), diagnose it, stop it."""
        from doctor.report.emit import emit
        from doctor.repro.command import run_repro_command

        return emit(run_repro_command(config=config, overrides=overrides, model_size=model_size, steps=steps,
                                 inject=inject or [], stall_floor=stall_floor, stall_factor=stall_factor,
                                 first_step_grace=first_step_grace, startup_grace=startup_grace,
                                 timeout=timeout, device=device, backend=backend, lengths=lengths, squeeze_limit=squeeze_limit,
                                 seed=seed, model_cache=model_cache, out=out,
                                 markdown=markdown, progress=_progress), json_out, markdown)
