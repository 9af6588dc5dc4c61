"""`doctor bundle` and `doctor analyze`: argument parsing only."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from doctor import exitcodes
from doctor.exitcodes import DoctorError


def register(app, handles_errors, with_config_flags):
    @app.command("bundle")
    @handles_errors
    @with_config_flags
    def bundle(
        archive: Annotated[Optional[Path], typer.Option("--archive", help="The archive to write (default: reports/doctor-bundle-<timestamp>.zip).")] = None,
        config: Annotated[Optional[Path], typer.Option("--config", help="Training script/YAML/JSON: included (secrets removed) with its patched copy and diff.")] = None,
        pid: Annotated[Optional[int], typer.Option("--pid", help="A stuck training process: include its py-spy dumps and the attach diagnosis.")] = None,
        repro: Annotated[bool, typer.Option("--repro", help="Run `doctor repro` (with --config, else the reference config) and include its step log and chart.")] = False,
        steps: Annotated[Optional[int], typer.Option("--steps", help="Steps for --repro.")] = None,
        repo: Annotated[Optional[str], typer.Option("--repo", help="Print a pre-filled new-issue URL for OWNER/NAME, e.g. unslothai/unsloth.")] = None,
        no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep secrets, user name, home and host name (warns). For your own use only.")] = False,
        include_locals: Annotated[bool, typer.Option("--include-locals", help="Keep py-spy local variables (they can hold tokens and data).")] = False,
        facts: Annotated[Optional[Path], typer.Option("--facts", help="Use saved facts (JSON or a bundle) instead of probing this machine.")] = None,
        log: Annotated[Optional[List[Path]], typer.Option("--log", help="A training log to include; its last traceback goes into the issue (repeatable).")] = None,
        # the old spellings (issue 14: --out is a folder elsewhere, --steps is repro's), hidden
        out: Annotated[Optional[Path], typer.Option("--out", hidden=True)] = None,
        repro_steps: Annotated[Optional[int], typer.Option("--repro-steps", hidden=True)] = None,
        overrides=None,
    ) -> int:
        """Write one redacted archive for a bug report, and print an issue body to paste."""
        from doctor.bundle.command import options_from_cli, run_bundle

        return run_bundle(options_from_cli(archive or out, config, pid, repro, steps if steps is not None else repro_steps,
                                           repo, no_redact,
                                           include_locals, facts, log, overrides))

    @app.command("analyze")
    @handles_errors
    def analyze(
        bundle: Annotated[List[Path], typer.Argument(help="A doctor-bundle-*.zip; or, for a multi-node job, a folder (or several files) of each node's `doctor run --save-facts` and `doctor attach --save-dumps` output.", show_default=False)],
        json_out: Annotated[bool, typer.Option("--json", help="Print the versioned JSON envelope.")] = False,
        markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the report as Markdown.")] = None,
        log: Annotated[Optional[List[Path]], typer.Option("--log", help="A training log or pasted traceback to match as well (repeatable).")] = None,
    ) -> int:
        """Re-run today's checks on a bundle's facts and config, offline; or compare the nodes of a job."""
        from doctor.bundle.analyze import analyze_bundle

        if len(bundle) == 1 and not bundle[0].is_dir() and bundle[0].suffix != ".json":
            return analyze_bundle(bundle[0], json_out=json_out, markdown=markdown, logs=log)
        if log:
            raise DoctorError("--log applies to one bundle, not to a set of nodes", exitcodes.USAGE)
        from doctor.bundle.nodes import analyze_nodes

        return analyze_nodes(list(bundle), json_out=json_out, markdown=markdown)
