"""The knowledge loader (core): the one place that knows where the sourced tables live
(checks/data/: JSON, each row with its public source). The modules of this package are the
knowledge APIs that every layer reads: versions, requires, releases, logmatch, explain."""
from __future__ import annotations

import functools
import json
from pathlib import Path

# The tables stay beside the checks that cite them most (less churn for open branches); nothing
# else builds a path into this folder.
DATA_DIR = Path(__file__).resolve().parents[2] / "checks" / "data"


@functools.lru_cache(maxsize=None)
def load(name: str):
    """load("driver_cuda") reads checks/data/driver_cuda.json."""
    return json.loads((DATA_DIR / f"{name}.json").read_text())


def data_path(filename: str) -> Path:
    """The path of a non-JSON table (releases.json.gz) or a table's file, for existence checks."""
    return DATA_DIR / filename
