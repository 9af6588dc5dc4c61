"""`doctor attach PID`: registers the command; the work is in doctor/attach/command.py."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated


def register(app, handles_errors, with_config_flags):
    @app.command("attach")
    @handles_errors
    def attach(
        pid: Annotated[Optional[int], typer.Argument(help="PID of the training process (or of its torchrun/accelerate launcher).", show_default=False)] = None,
        samples: Annotated[int, typer.Option("--samples", min=1, max=50, help="py-spy dumps per process.")] = 3,
        interval: Annotated[float, typer.Option("--interval", min=0.0, max=10.0, help="Seconds between samples.")] = 0.25,
        native: Annotated[Optional[bool], typer.Option("--native/--no-native", show_default=False, help="Also unwind C/C++ frames (CUDA, NCCL, locks). Default: only when a stuck thread sits in a C call.")] = None,
        children: Annotated[bool, typer.Option("--children/--no-children", help="Sample child processes too (DataLoader workers, ranks).")] = True,
        json_out: Annotated[bool, typer.Option("--json", help="Print the versioned JSON envelope (raw py-spy dumps included).")] = False,
        markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the report as Markdown.")] = None,
        save_dumps: Annotated[Optional[Path], typer.Option("--save-dumps", help="Write snapshot.json and the raw py-spy JSON samples to this folder.")] = None,
        timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Upper bound on the whole sampling, seconds.")] = 20.0,
        nvml: Annotated[bool, typer.Option("--nvml/--no-nvml", help="Read GPU state through NVML.")] = True,
        include_locals: Annotated[bool, typer.Option("--include-locals", help="Keep each frame's local variables in --json and --save-dumps (they can hold tokens and data).")] = False,
        # the old spellings (issue 14: one name per meaning across commands), hidden
        gpu: Annotated[Optional[bool], typer.Option("--gpu/--no-gpu", hidden=True)] = None,
        locals_: Annotated[bool, typer.Option("--locals", hidden=True)] = False,
        replay: Annotated[Optional[Path], typer.Option("--replay", help="Classify a saved snapshot.json or attach --json output instead of a live PID.")] = None,
    ) -> int:
        """Where a training process is stuck, and why: stacks of every thread and worker, GPU state, cause."""
        from doctor.attach.command import attach_command
        from doctor.report.emit import emit

        return emit(attach_command(pid, samples, interval, native, children, save_dumps, timeout,
                                   nvml if gpu is None else gpu, replay, include_locals or locals_),
                    json_out, markdown)
