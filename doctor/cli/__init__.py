"""Command-line entry point. Thin: parse arguments, call one function per command.

Each command module (doctor/cli/<command>.py) owns its options through a `register(app)`
function, so the modules stay independent. The console script is doctor.entry:main. Expected failures (DoctorError) become one line on stderr and a distinct exit code.
"""
from __future__ import annotations

import functools
import os
import traceback
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from doctor import __version__, exitcodes
from doctor.config.flags import ConfigOverrides, with_config_flags
from doctor.exitcodes import DoctorError

app = typer.Typer(
    name="doctor",
    help="finetune doctor: finds why LLM fine-tuning (Unsloth, transformers, PEFT, TRL) fails, "
         "hangs or runs out of memory on this machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,   # plain help: rich panels cut ids, paths and defaults with "…" at 80 columns
    add_completion=False,
)


def _sigterm_as_interrupt(signum, frame):
    raise exitcodes.Terminated   # SIGTERM like Ctrl-C: the command stops its children, keeps its outputs


def _command_signals():
    """While a command runs: SIGINT and SIGTERM raise KeyboardInterrupt (handled below). Returns
    the handlers to restore, or None off the main thread, where signals cannot be set."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    if hasattr(signal, "SIGTERM"):
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    return previous


def handles_errors(fn):
    """DoctorError -> one line + its exit code; Ctrl-C or SIGTERM -> 130; a closed output pipe ->
    141, quietly; anything else -> one line + 70."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import signal

        previous = _command_signals()
        try:
            code = fn(*args, **kwargs)
        except BrokenPipeError:
            from doctor.stdio import silence_broken_pipe

            silence_broken_pipe()
            raise typer.Exit(exitcodes.BROKEN_PIPE)
        except DoctorError as exc:
            typer.echo(f"doctor: error: {exc.message}", err=True)
            raise typer.Exit(exc.exit_code)
        except KeyboardInterrupt:
            typer.echo("doctor: interrupted", err=True)
            raise typer.Exit(exitcodes.INTERRUPTED)
        except typer.Exit:
            raise
        except Exception as exc:  # never a traceback for users; DOCTOR_DEBUG=1 shows it
            if os.environ.get("DOCTOR_DEBUG"):
                traceback.print_exc()
            typer.echo(f"doctor: internal error: {type(exc).__name__}: {exc} "
                       "(set DOCTOR_DEBUG=1 for the traceback, and please report it)", err=True)
            raise typer.Exit(exitcodes.INTERNAL)
        finally:
            for signum, handler in (previous or {}).items():
                signal.signal(signum, handler)
        raise typer.Exit(code or 0)
    return wrapper


def _version(value: bool):
    if value:
        typer.echo(f"finetune-doctor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                          help="Print the version and exit.")] = False):
    pass


@app.command("run")
@handles_errors
@with_config_flags
def run(
    config: Annotated[Optional[Path], typer.Argument(help="Training script (train.py), SFTConfig/TrainingArguments JSON, or YAML.", show_default=False)] = None,
    facts: Annotated[Optional[Path], typer.Option("--facts", help="Replay a saved facts JSON (or a report/bundle's facts) instead of probing this machine.")] = None,
    save_facts: Annotated[Optional[Path], typer.Option("--save-facts", help="Write the probed facts as JSON.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the versioned JSON envelope instead of the report.")] = False,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the report as Markdown.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the patched config (default: beside the config).")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help='What-if: estimate for this GPU instead of the local one, e.g. "RTX 2080 Ti".')] = None,
    only: Annotated[Optional[List[str]], typer.Option("--check", help="Run only this check id (repeatable). See `doctor checks`.")] = None,
    mkdir: Annotated[bool, typer.Option("--mkdir", help="Create the --out / --markdown / --save-facts folders when missing.")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="Also run the kernel smoke test (see `doctor smoke`).")] = False,
    overrides: ConfigOverrides = None,
    log: Annotated[Optional[List[Path]], typer.Option("--log", help="A training log or pasted traceback to match against known messages (repeatable; last 2 MiB read).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Probe torch afresh instead of reading the torch facts cache (also DOCTOR_NO_CACHE=1).")] = False,
) -> int:
    """Check this machine (and a training config, if given): a ranked remediation report."""
    from doctor.probes import torch_cache  # torch facts cache (issue 14)
    from doctor.report.emit import emit
    from doctor.run_command import run_doctor

    torch_cache.set_enabled(not no_cache)  # torch facts cache (issue 14)

    report = run_doctor(config=config, facts_path=facts, save_facts=save_facts,
                        markdown=markdown, out_dir=out, gpu=gpu, only=only, overrides=overrides, logs=log,
                        mkdir=mkdir, smoke=smoke)
    return emit(report, json_out, markdown)


@app.command("checks")
@handles_errors
def list_checks(json_out: Annotated[bool, typer.Option("--json", help="As JSON.")] = False) -> int:
    """List every check, with the finding ids it can report."""
    from doctor.report.checks_table import list_checks as _list

    return _list(json_out=json_out)


def _register_commands() -> None:
    from doctor.cli import attach as attach_cli
    from doctor.cli import bundle as bundle_cli
    from doctor.cli import repro as repro_cli
    from doctor.cli import smoke as smoke_cli
    from doctor.cli import vram as vram_cli
    from doctor.cli import watch as watch_cli

    for module in (vram_cli, attach_cli, repro_cli, bundle_cli, smoke_cli, watch_cli):
        module.register(app, handles_errors, with_config_flags)


_register_commands()
