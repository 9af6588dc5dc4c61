"""Where a command's facts come from: this machine (the probes), a --facts file (a facts JSON or a
report envelope) or a bundle archive; and --save-facts. The one place every command obtains facts
(application layer, below run/bundle/vram/smoke, which all call it)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from doctor import exitcodes
from doctor.exitcodes import DoctorError
from doctor.facts import Facts


def load_facts(path: Path) -> Facts:
    """Facts from a saved facts JSON, a report envelope, or a bundle archive."""
    if not path.exists():
        raise DoctorError(f"facts file not found: {path}", exitcodes.FACTS_INVALID)
    if path.is_dir():
        raise DoctorError(f"--facts {path}: is a directory (expected a facts .json or a bundle .zip)",
                          exitcodes.FACTS_INVALID)
    if path.suffix in (".zip", ".gz", ".tgz") or path.name.endswith(".tar.gz"):
        from doctor.archive import read_bundle_facts

        return read_bundle_facts(path)
    from doctor import limits
    from doctor.config.loader import read_limited_text
    from doctor.config.structured import load_json_value

    text = read_limited_text(path, limits.MAX_FACTS_BYTES, "facts", exitcodes.FACTS_INVALID, max_line=None)
    data = load_json_value(text, str(path), exitcodes.FACTS_INVALID)
    try:
        return Facts.from_dict_checked(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise DoctorError(f"{path}: {exc}", exitcodes.FACTS_INVALID)


def obtain_facts(facts_path: Optional[Path]) -> Facts:
    if facts_path is not None:
        return load_facts(facts_path)
    from doctor.probes import gather_facts

    return gather_facts()


def save_new_facts(facts: Facts, path: Path) -> Path:
    """--save-facts: a new file (an existing name is left alone and the next free one used)."""
    from doctor.outputs import write_new_file

    try:
        written = write_new_file(path, json.dumps(facts.to_dict(), indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise DoctorError(f"--save-facts: cannot write {path}: {exc.strerror or exc}", exitcodes.USAGE)
    if written != path:
        sys.stderr.write(f"doctor: {path} exists and was left alone: facts written to {written}\n")
    return written
