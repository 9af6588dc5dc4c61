"""The `doctor repro` pipeline behind the CLI: config -> ReproOptions -> run_repro -> renderers."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

from doctor.config.flags import ConfigOverrides
from doctor.exitcodes import Terminated
from doctor.repro.api import ReproOptions, run_repro
from doctor.repro.faults import parse_injections, parse_size


def load_repro_config(config: Optional[Path], overrides: Optional[ConfigOverrides]):
    """The user's config (+ flags), or the reference config with the flags applied on top."""
    from doctor.config.loader import apply_overrides, load_config

    if config is not None:
        return load_config(config, overrides, resolve_shape=False)
    from doctor.repro.spec import reference_config

    cfg = reference_config()
    return apply_overrides(cfg, overrides) if overrides is not None and overrides.any() else cfg


def preflight_check(cfg, model_size: str, device: str, backend: str, steps: int):
    """The stack imports, the model fits in RAM (on the CPU); the plan with its expected duration."""
    from doctor.repro import preflight
    from doctor.repro.host import host_memory
    from doctor.repro.shapes import model_shape

    tokens = ((cfg.effective_seq_len or 2048) * (cfg.per_device_train_batch_size or 8)
              * (cfg.gradient_accumulation_steps or 1))
    try:
        available = host_memory().get("available")
    except Exception:   # psutil failing must not stop the run: the check is skipped
        available = None
    return preflight.check(model_shape(model_size, cfg.model_name), model_size=model_size, device=device,
                           backend=backend, steps=steps, tokens_per_step=tokens, available_ram=available)


def announce(plan) -> None:
    from doctor.repro.preflight import BUSY_FACTOR, human_duration

    sys.stderr.write(f"repro: expect {human_duration(plan.seconds)} to {human_duration(plan.seconds * BUSY_FACTOR)} "
                     f"on the {plan.device.upper()} (start-up, then steps of ~{human_duration(plan.step_s)}; "
                     "a rough estimate from benchmarks/repro.md, the longer one on a busy machine). "
                     "Ctrl-C stops it cleanly.\n")
    sys.stderr.flush()


def write_interrupted_result(out: Path, signame: str) -> None:
    """An interrupted run still leaves a result.json saying so (never over one already written)."""
    import json

    from doctor.outputs import write_new_file

    if not out.is_dir() or (out / "result.json").exists():
        return
    events = out / "events.jsonl"
    steps = 0
    try:
        with events.open(encoding="utf-8", errors="replace") as fh:
            steps = sum(1 for line in fh if '"kind": "step"' in line or '"kind":"step"' in line)
    except OSError:
        pass
    data = {"interrupted": True, "signal": signame, "completed": False, "steps_done": steps,
            "out_dir": str(out), "note": f"stopped by {signame}; the training child tree was stopped"}
    try:
        write_new_file(out / "result.json", json.dumps(data, indent=1) + "\n")
    except OSError:
        pass


def run_repro_command(*, config: Optional[Path], overrides: Optional[ConfigOverrides], model_size: str,
                      steps: int, inject: list, stall_floor: float, stall_factor: float,
                      first_step_grace: float, startup_grace: float, timeout: Optional[float],
                      device: str, backend: str,
                      lengths: Optional[str], squeeze_limit: Optional[str], seed: Optional[int],
                      model_cache: Optional[Path], out: Optional[Path],
                      markdown: Optional[Path], progress: Optional[Callable[[dict], None]]):
    """The repro Report (its part: the ReproResult); the cli emits it."""
    from doctor.outputs import check_output_file
    from doctor.repro.api import default_out_dir

    parse_injections(inject)              # usage errors before anything starts
    if markdown is not None:
        check_output_file(markdown, "--markdown")
    cfg = load_repro_config(config, overrides)
    announce(preflight_check(cfg, model_size, device, backend, steps))
    out = out if out is not None else default_out_dir()   # known here, for an interrupted run's result
    opts = ReproOptions(config=cfg, model_size=model_size, steps=steps, inject=list(inject),
                        stall_floor_s=stall_floor, stall_factor=stall_factor,
                        first_step_grace_s=first_step_grace, startup_grace_s=startup_grace,
                        max_wall_s=timeout, device=device,
                        out_dir=out, backend=backend, seed=seed, length_profile=lengths,
                        squeeze_limit=parse_size(squeeze_limit) if squeeze_limit else None,
                        model_cache=model_cache)
    try:
        result = run_repro(opts, on_event=progress)
    except KeyboardInterrupt as exc:      # Ctrl-C or SIGTERM: the child tree is stopped by now
        write_interrupted_result(out, "SIGTERM" if isinstance(exc, Terminated) else "SIGINT")
        raise
    report = result.report()
    report.title = "finetune doctor repro"
    return report
