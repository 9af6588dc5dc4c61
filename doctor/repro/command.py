"""The `doctor repro` pipeline behind the CLI: config -> ReproOptions -> run_repro -> renderers."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from doctor.config.flags import ConfigOverrides
from doctor.repro.api import ReproOptions, run_repro
from doctor.repro.faults import parse_injections, parse_size
from doctor.repro.render import markdown_section, terminal_section


def load_repro_config(config: Optional[Path], overrides: Optional[ConfigOverrides]):
    """The user's config (+ flags), or the reference config with the flags applied on top."""
    from doctor.config.loader import apply_overrides, load_config

    if config is not None:
        return load_config(config, overrides, resolve_shape=False)
    from doctor.repro.spec import reference_config

    cfg = reference_config()
    return apply_overrides(cfg, overrides) if overrides is not None and overrides.any() else cfg


def run_repro_command(*, config: Optional[Path], overrides: Optional[ConfigOverrides], model_size: str,
                      steps: int, inject: list, stall_floor: float, stall_factor: float,
                      first_step_grace: float, startup_grace: float, timeout: Optional[float],
                      device: str, backend: str,
                      lengths: Optional[str], squeeze_limit: Optional[str], seed: Optional[int],
                      model_cache: Optional[Path], out: Optional[Path], json_out: bool,
                      markdown: Optional[Path], progress: Optional[Callable[[dict], None]]) -> int:
    from doctor.run_command import emit

    parse_injections(inject)              # usage errors before anything starts
    cfg = load_repro_config(config, overrides)
    opts = ReproOptions(config=cfg, model_size=model_size, steps=steps, inject=list(inject),
                        stall_floor_s=stall_floor, stall_factor=stall_factor,
                        first_step_grace_s=first_step_grace, startup_grace_s=startup_grace,
                        max_wall_s=timeout, device=device,
                        out_dir=out, backend=backend, seed=seed, length_profile=lengths,
                        squeeze_limit=parse_size(squeeze_limit) if squeeze_limit else None,
                        model_cache=model_cache)
    result = run_repro(opts, on_event=progress)
    return emit(result.report(), [terminal_section(result)], [markdown_section(result)], json_out, markdown,
                title="finetune doctor repro")
