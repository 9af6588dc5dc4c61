"""`doctor bundle` on the terminal: make the bundle, then print where it is, what was left out,
the issue body to paste, and the pre-filled new-issue URL."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from doctor import exitcodes
from doctor.bundle.build import BundleOptions, make_bundle

NO_REDACT_WARNING = ("doctor: warning: --no-redact: the bundle and the issue body keep tokens, passwords, "
                     "your user name, home directory and host name. Do not post them publicly.")


def run_bundle(opts: BundleOptions) -> int:
    if not opts.redact:
        typer.echo(NO_REDACT_WARNING, err=True)
    opts.command_line = "doctor " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "doctor bundle"
    opts.progress = lambda msg: typer.echo(f"doctor bundle: {msg} ...", err=True)
    result = make_bundle(opts)
    m = result.manifest
    totals = m.get("redaction_totals") or {}
    red = ", ".join(f"{n} {k}" for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) for n in [v])
    typer.echo(f"Wrote {result.path} ({len(m.get('files', [])) + 1} files"
               + (f"; redacted: {red}" if red and m.get("redacted") else "") + ")", err=True)
    for note in m.get("notes", []):
        typer.echo(f"  note: {note}", err=True)
    if result.issue.truncated:
        typer.echo(f"  issue body shortened: {', '.join(result.issue.truncated)}", err=True)
    typer.echo("---- issue body (also issue.md in the bundle): paste it into a new issue ----", err=True)
    sys.stdout.write(result.issue.text)
    sys.stdout.flush()
    typer.echo("---- end of issue body ----", err=True)
    if result.url:
        short = " (short body: attach the bundle to the issue)" if result.url and \
            result.issue.text not in _unquote_body(result.url) else ""
        typer.echo(f"New issue for {opts.repo}{short}:", err=True)
        typer.echo(result.url)
    return exitcodes.OK


def _unquote_body(url: str) -> str:
    import urllib.parse

    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("body", [""])[0]


def options_from_cli(out: Optional[Path], config: Optional[Path], pid: Optional[int], repro: bool,
                     repro_steps: Optional[int], repo: Optional[str], no_redact: bool, include_locals: bool,
                     facts: Optional[Path], logs, overrides) -> BundleOptions:
    return BundleOptions(out=out, config=config, overrides=overrides, pid=pid, repro=repro,
                         repro_steps=repro_steps, repo=repo, redact=not no_redact,
                         include_locals=include_locals, facts_path=facts, logs=list(logs or []))
