"""The `doctor watch` pipeline behind the CLI: options -> run_watch -> the report on stderr and in --out.

stdout belongs to the watched command, so the report goes to stderr, report.md and result.json; the
exit code is the command's own (a stall the doctor ended with --kill-on-stall: UNHEALTHY)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Optional

from doctor import exitcodes
from doctor.watch.api import WatchOptions, run_watch
from doctor.watch.render import markdown_section, terminal_section

TITLE = "finetune doctor watch"


def run_watch_command(*, argv: list, stall_floor: float, stall_factor: float, first_step_grace: float,
                      startup_grace: float, kill_on_stall: bool, out: Optional[Path], json_path: Optional[Path],
                      markdown: Optional[Path], progress: Optional[Callable[[dict], None]],
                      bundle: bool = True) -> int:
    from doctor.report.markdown import render_markdown
    from doctor.report.terminal import make_console, render_report

    opts = WatchOptions(argv=argv, out_dir=out, stall_floor_s=stall_floor, stall_factor=stall_factor,
                        first_step_grace_s=first_step_grace, startup_grace_s=startup_grace,
                        kill_on_stall=kill_on_stall)
    result = run_watch(opts, on_event=progress)
    report = result.report()
    md = render_markdown(report, [markdown_section(result)], title=TITLE)
    (Path(result.out_dir) / "report.md").write_text(md)
    for path, text in ((markdown, md), (json_path, json.dumps(report.to_dict(), indent=2, default=str) + "\n")):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    quiet = not result.findings or all(f.severity.value == "info" for f in result.findings)
    if not quiet or result.exit_code:
        render_report(report, make_console(file=sys.stderr), [terminal_section(result)], title=TITLE)
    else:
        sys.stderr.write(f"doctor watch: {len(result.steps)} step(s), no stall, exit code {result.exit_code}; "
                         f"report in {result.out_dir}/report.md\n")
    if bundle and (result.stalls or result.crash):
        write_bundle(result, argv)
    if result.killed_on_stall:
        return exitcodes.UNHEALTHY
    return result.exit_code if result.exit_code is not None else exitcodes.INTERNAL


def write_bundle(result, argv: list) -> Optional[Path]:
    """A `doctor bundle` of this machine beside the report, with the stderr log and the watch report
    in it (redacted like every bundle); the training script as its config when it parses as one."""
    from doctor.bundle.build import BundleOptions, make_bundle
    from doctor.exitcodes import DoctorError

    out = Path(result.out_dir)
    path = out / "bundle.zip"
    if path.exists() or path.is_symlink():
        return None                          # never over an existing file
    script = next((Path(a) for a in argv if str(a).endswith(".py") and Path(a).is_file()), None)
    logs = [p for p in (out / "stderr.log", out / "report.md") if p.is_file()]
    sys.stderr.write(f"doctor watch: writing a bundle for an issue report to {path} (probes this machine) ...\n")
    for config in ([script, None] if script else [None]):
        try:
            opts = BundleOptions(out=path, config=config, logs=logs,
                                 command_line="doctor watch -- " + " ".join(map(str, argv))[:300])
            make_bundle(opts)
            sys.stderr.write(f"doctor watch: bundle written: {path}\n")
            return path
        except DoctorError as exc:
            if config is None:
                sys.stderr.write(f"doctor watch: bundle not written: {exc.message}\n")
        except Exception as exc:  # the bundle is a convenience: never lose the run's exit code over it
            sys.stderr.write(f"doctor watch: bundle not written: {type(exc).__name__}: {exc}\n")
            return None
    return None
