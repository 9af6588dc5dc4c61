"""Sample-length profiles for the synthetic dataset: the user's own (`--lengths FILE`) or a named one.

A file holds token counts: one integer per line, a JSON list, or JSON lines with "length" or
"input_ids". Lengths matter because peak memory and step time follow the longest batch
(hypothesis H5 of the step-11 hang: one long sample at a fixed step).
"""
from __future__ import annotations

import json
from pathlib import Path

from doctor import exitcodes
from doctor.exitcodes import DoctorError

# fractions of max_seq_length
PROFILES = {
    "full": None,                                             # every sample fills max_seq_length
    "uniform": [i / 20 for i in range(2, 21)],                # 10% .. 100%, evenly
    "chat": [0.05] * 6 + [0.1] * 6 + [0.2] * 4 + [0.35] * 2 + [0.6, 1.0],   # mostly short, a long tail
}


def load_lengths(profile: str, max_seq_length: int) -> list[int]:
    """A profile name or a file -> lengths in tokens ([] = all samples full length)."""
    if profile in PROFILES:
        fractions = PROFILES[profile]
        return [] if fractions is None else [max(2, int(f * max_seq_length)) for f in fractions]
    path = Path(profile)
    if not path.is_file():
        raise DoctorError(f"--lengths: {profile!r} is neither a profile ({', '.join(PROFILES)}) nor a file",
                          exitcodes.USAGE)
    try:
        values = parse_lengths(path.read_text(errors="replace"))
    except ValueError as exc:
        raise DoctorError(f"--lengths {path}: {exc}", exitcodes.USAGE)
    if not values:
        raise DoctorError(f"--lengths {path}: no lengths found", exitcodes.USAGE)
    return values


def parse_lengths(text: str) -> list[int]:
    stripped = text.strip()
    if stripped.startswith("["):
        return [_positive(v) for v in json.loads(stripped)]
    out = []
    for n, line in enumerate(stripped.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            row = json.loads(line)
            if "length" in row:
                out.append(_positive(row["length"]))
            elif isinstance(row.get("input_ids"), list):
                out.append(_positive(len(row["input_ids"])))
            else:
                raise ValueError(f"line {n}: no 'length' or 'input_ids'")
        else:
            try:
                out.append(_positive(int(line)))
            except ValueError:
                raise ValueError(f"line {n}: {line[:40]!r} is not a token count")
    return out


def _positive(v) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError(f"length {v!r} is not positive")
    return n
