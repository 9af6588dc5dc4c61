"""`doctor analyze BUNDLE`: today's checks over a bundle's facts (and config), offline.

The bundled training script is parsed again with this doctor's parser (with the command-line
overrides recorded in the bundle), so a newer doctor reads more from an old bundle; the parsed
config stored in the bundle is the fallback, and supplies the model shape when the model was a
local folder that does not exist here.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

from doctor import archive as A
from doctor.exitcodes import DoctorError


def bundle_config(contents: A.BundleContents):
    """The TrainingConfig of a bundle, or None when it was made without one."""
    from doctor.config.model import TrainingConfig

    stored = contents.json(A.CONFIG_JSON)
    stored_cfg = None
    if isinstance(stored, dict):
        try:
            stored_cfg = TrainingConfig.from_dict(stored)
        except (TypeError, ValueError, KeyError):
            stored_cfg = None
    src = contents.config_source()
    if src is None:
        return stored_cfg
    name, text = src
    from doctor.config.flags import ConfigOverrides
    from doctor.config.loader import load_config

    ov_data = contents.json(A.CONFIG_OVERRIDES)
    overrides = None
    if isinstance(ov_data, dict):
        known = set(ConfigOverrides.__dataclass_fields__)
        overrides = ConfigOverrides(**{k: v for k, v in ov_data.items() if k in known})
    with tempfile.TemporaryDirectory(prefix="doctor-analyze-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_text(text, encoding="utf-8")
        try:
            cfg = load_config(path, overrides)
        except DoctorError:
            return stored_cfg
    cfg.source_path = name
    if getattr(cfg, "model_shape", None) is None and stored_cfg is not None:
        cfg.model_shape = getattr(stored_cfg, "model_shape", None)
    return cfg


def bundle_logs(contents: A.BundleContents) -> list[tuple[str, str]]:
    """(file name, text) of the logs a bundle carries (`doctor bundle --log`), already redacted."""
    return [(name[len("logs/"):], contents.text(name) or "") for name in sorted(contents.members)
            if name.startswith("logs/")]


def analyze_bundle(path: Path, json_out: bool = False, markdown: Optional[Path] = None, logs=None) -> int:
    """Today's checks over the bundle; its logs, and any --log given here, matched again with
    today's signatures (a newer doctor knows more messages)."""
    from doctor.logs import apply_logs, check_log_paths
    from doctor.report.emit import emit
    from doctor.run_command import build_report

    check_log_paths(logs)
    contents = A.open_bundle(path)
    facts = contents.facts()
    apply_logs(facts, logs, bundled=bundle_logs(contents))
    cfg = bundle_config(contents)
    report = build_report(facts, cfg, command="analyze", write_patch=False)
    manifest = contents.manifest
    report.sections["bundle"] = {
        "file": Path(path).name,
        "created_at": manifest.get("created_at"),
        "made_by_doctor": manifest.get("doctor_version"),
        "redacted": manifest.get("redacted"),
    }
    title = f"finetune doctor analyze {Path(path).name}"
    if manifest.get("created_at"):
        title += f" (bundled {manifest['created_at']} by doctor {manifest.get('doctor_version', '?')})"
    return emit(report, json_out, markdown, title=title)
