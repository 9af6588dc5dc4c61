"""Speed of the known-bad check and the log matcher (numbers in benchmarks/known-bad-speed.md).

    PYTHONPATH=. python benchmarks/bench_known_bad.py
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from doctor.knowledge.logmatch import MAX_TEXT, match_text  # noqa: E402
from checks.known_bad import known_bad  # noqa: E402
from doctor.engine import run_checks  # noqa: E402
from doctor.facts import Facts  # noqa: E402


def _ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    facts = Facts.from_dict(json.loads((ROOT / "examples/facts/h100-real.json").read_text()))
    run_checks(facts)                               # warm the data caches
    print(f"known-bad check, h100-real facts: {_ms(lambda: known_bad(facts), 50):.2f} ms (median of 50)")
    print(f"all checks, h100-real facts:      {_ms(lambda: run_checks(facts), 20):.1f} ms (median of 20)")
    line = "step 123 | loss 1.2345 | lr 2e-4 | grad_norm 0.87 | tokens/s 5120\n"
    log = line * (MAX_TEXT // len(line)) + "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
    print(f"log matching, {len(log) / 2**20:.1f} MiB log:      {_ms(lambda: match_text(log), 5):.0f} ms (median of 5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
