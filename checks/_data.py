"""Loads the sourced knowledge tables under checks/data/ (JSON, each row with its source)."""
from __future__ import annotations

import functools
import json
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"


@functools.lru_cache(maxsize=None)
def load(name: str):
    """load("driver_cuda") reads checks/data/driver_cuda.json."""
    return json.loads((DATA_DIR / f"{name}.json").read_text())
