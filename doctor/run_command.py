"""`doctor run`: facts -> checks -> findings -> a Report (+ the patched config); doctor.report.emit prints it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from doctor import exitcodes
from doctor.config.flags import ConfigOverrides
from doctor.exitcodes import DoctorError
from doctor.facts import Facts
from doctor.findings import Finding, Severity, rank
from doctor.facts_source import obtain_facts, save_new_facts
from doctor.report_model import Report


def build_report(facts: Facts, config=None, gpu: Optional[str] = None, only=None,
                 command: str = "run", out_dir: Optional[Path] = None, write_patch: bool = True) -> Report:
    """The whole `run` pipeline minus printing. The VRAM estimate and the patch ride in
    report.parts for the renderers (doctor.report.emit)."""
    from doctor.engine import run_checks

    if gpu:
        from doctor.vram.gpus import apply_gpu_whatif

        facts = apply_gpu_whatif(facts, gpu)
    findings = run_checks(facts, config, only=only)
    if config is not None:   # the memory verdict on the config as the other fixes leave it
        from checks.vram_headroom import settle_with_other_fixes

        findings = settle_with_other_fixes(facts, config, findings)
    parts, sections = [], {}
    if config is not None:
        from doctor.vram.estimator import estimate_for

        est = estimate_for(facts, config)
        if est is not None:
            sections["vram"] = est.to_dict()
            parts.append(est)
        sections["config"] = config.to_dict()
        if write_patch:
            from doctor.config.patcher import write_patched

            patch = write_patched(config, findings, out_dir)
            if patch is not None and patch.write_error:
                findings = rank(findings + [patch_not_written(patch)])
            if patch is not None and est is not None:
                patch.vram_after = vram_after_patch(facts, config, patch)
            if patch is not None:
                sections["patch"] = patch.to_dict()
                parts.append(patch)
    return Report(command=command, findings=findings, facts=facts, sections=sections, parts=parts)


def patch_not_written(patch) -> Finding:
    """The patched copy could not be written: a finding, so the report (and its diff) still prints."""
    return Finding(
        id="doctor.patch-not-written",
        severity=Severity.ERROR if patch.internal else Severity.WARNING,
        title="the patched config was not written",
        why=patch.write_error,
        remediation=("Please report this with `doctor bundle`; the findings above still apply." if patch.internal
                     else "Apply the diff in this report by hand, or run again with --out DIR "
                          "(an existing, writable folder; add --mkdir to create it)."),
        evidence={"source": patch.source},
        confidence=1.0,
    )


def vram_after_patch(facts: Facts, config, patch) -> Optional[str]:
    """The estimate with the patch's changes applied: fixes from different findings interact (the
    WSL fix turns Unsloth's offloaded checkpointing into standard checkpointing, which keeps every
    layer's checkpoint on the GPU), so say whether the patched config still fits."""
    import dataclasses

    from doctor.units import gib
    from doctor.vram.estimator import estimate_for

    names = {f.name for f in dataclasses.fields(config)}
    changed = {c.setting: c.new for c in patch.changes if c.setting in names}
    if not changed:
        return None
    after = estimate_for(facts, dataclasses.replace(config, **changed))
    if after is None:
        return None
    line = (f"With these changes: estimated peak {gib(after.mid.total)} "
            f"({gib(after.low.total)}-{gib(after.high.total)})")
    if after.gpu_free is not None:
        line += f" vs {gib(after.gpu_free)} usable: {after.verdict}"
    return line


def run_doctor(config: Optional[Path], facts_path: Optional[Path], save_facts: Optional[Path],
               markdown: Optional[Path], out_dir: Optional[Path], gpu: Optional[str],
               only, overrides: Optional[ConfigOverrides], logs=None, mkdir: bool = False,
               smoke: bool = False) -> Report:
    from doctor.outputs import check_output_dir, check_output_file

    # output paths first, before any work: one line and exit 2, not a lost report at the end
    if markdown is not None:
        check_output_file(markdown, "--markdown", mkdir, offer_mkdir=True)
    if save_facts is not None:
        check_output_file(save_facts, "--save-facts", mkdir, offer_mkdir=True)
    if out_dir is not None:
        check_output_dir(out_dir, "--out", mkdir, offer_mkdir=True)
    if only:
        from checks import all_checks

        known = {c.id for c in all_checks()}
        unknown = [c for c in only if c not in known]
        if unknown:
            raise DoctorError(f"unknown check id(s): {', '.join(unknown)} (see `doctor checks`)", exitcodes.USAGE)
    from doctor.logs import apply_logs, check_log_paths

    check_log_paths(logs)
    cfg = None
    if config is not None or (overrides is not None and overrides.any()):
        from doctor.config.loader import load_config

        cfg = load_config(config, overrides)
    facts = obtain_facts(facts_path)
    apply_logs(facts, logs)
    if smoke and facts_path is None:
        from doctor.smoke.runner import run_smoke

        facts.smoke = run_smoke(facts)
    if save_facts is not None:
        save_new_facts(facts, save_facts)
    return build_report(facts, cfg, gpu=gpu, only=only, out_dir=out_dir)
