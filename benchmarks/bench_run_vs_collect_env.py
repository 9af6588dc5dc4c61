#!/usr/bin/env python3
"""Benchmark (not a test): wall time of `doctor run --json` against `python -m torch.utils.collect_env`
in the same environment, median of N interleaved runs after one untimed warm-up of each.

`doctor run` is measured twice: cold (an empty torch facts cache, a new folder each run: the first
run on a machine, which imports torch and writes the cache) and warm (the cache written by the
warm-up run: a second run, which does not import torch). Both caches live in a temporary
XDG_CACHE_HOME, so the user's ~/.cache is neither read nor written.

    python benchmarks/bench_run_vs_collect_env.py                  # 5 runs, writes benchmarks/run-vs-collect-env.md
    python benchmarks/bench_run_vs_collect_env.py --runs 9 --out /tmp/bench/h100.md

Writes the Markdown report to --out and the raw numbers beside it (same name, .json), and prints the
table. Every command runs through doctor.runner with a timeout, so a stuck one is recorded, not waited on.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from doctor.runner import run_command  # noqa: E402


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(doctor_facts: Optional[dict]) -> dict:
    facts = doctor_facts or {}
    nvidia = facts.get("nvidia") or {}
    gpus = [g.get("name") for g in nvidia.get("gpus") or []]
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": (facts.get("platform") or {}).get("os_name") or platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "doctor": _version("finetune-doctor") if _version("finetune-doctor") != "not installed" else "source tree",
        "gpus": ", ".join(gpus) or "none",
        "driver": nvidia.get("driver_version") or "none",
    }


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


COLD, WARM, COLLECT = "doctor run --json (cold)", "doctor run --json (warm)", "python -m torch.utils.collect_env"


def measure(python: str, runs: int, timeout: float) -> dict:
    commands = {
        COLD: [python, "-m", "doctor", "run", "--json"],
        WARM: [python, "-m", "doctor", "run", "--json"],
        COLLECT: [python, "-m", "torch.utils.collect_env"],
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    exits: dict[str, list] = {name: [] for name in commands}
    output_lines: dict[str, int] = {}
    probe_times: dict[str, dict[str, list[float]]] = {COLD: {}, WARM: {}}
    from_cache: dict[str, list] = {COLD: [], WARM: []}
    last_report = None
    base_env = _env()
    with tempfile.TemporaryDirectory(prefix="bench-doctor-cache-") as tmp:
        warm_env = dict(base_env, XDG_CACHE_HOME=str(Path(tmp) / "warm"))
        for i in range(runs + 1):                 # run 0 warms the page cache (and the warm cache): not counted
            for name, argv in commands.items():   # interleaved, so drift hits all alike
                env = base_env
                if name == COLD:
                    env = dict(base_env, XDG_CACHE_HOME=str(Path(tmp) / f"cold-{i}"))   # empty every time
                elif name == WARM:
                    env = warm_env
                res = run_command(argv, timeout=timeout, env=env, cwd=str(ROOT))
                if i == 0:
                    continue
                samples[name].append(res.duration_s)
                exits[name].append("timeout" if res.timed_out else res.returncode)
                output_lines[name] = len(res.stdout.splitlines())
                if name in probe_times and res.stdout.strip().startswith("{"):
                    last_report = json.loads(res.stdout)
                    from_cache[name].append(bool(last_report["facts"]["torch"].get("from_cache")))
                    for p in last_report["facts"]["probes"]:
                        probe_times[name].setdefault(p["name"], []).append(p["duration_s"])
    result = {"runs": runs, "commands": {}}
    for name in commands:
        xs = samples[name]
        result["commands"][name] = {"median_s": statistics.median(xs), "min_s": min(xs), "max_s": max(xs),
                                    "samples_s": xs, "exit_codes": exits[name], "output_lines": output_lines[name]}
    result["probe_median_s"] = {name: {k: statistics.median(v) for k, v in times.items()}
                                for name, times in probe_times.items()}
    result["torch_from_cache"] = from_cache
    facts = (last_report or {}).get("facts")
    result["doctor_findings"] = [f["id"] for f in (last_report or {}).get("findings", [])]
    result["doctor_probes"] = len((facts or {}).get("probes", []))
    from checks import all_checks

    result["doctor_checks"] = len(all_checks())
    result["machine"] = machine_description(facts)
    return result


def render(result: dict, date: str) -> str:
    m = result["machine"]
    cold, warm = result["commands"][COLD], result["commands"][WARM]
    collect = result["commands"][COLLECT]
    lines = [
        "# `doctor run` vs `python -m torch.utils.collect_env`",
        "",
        f"Measured {date} with `benchmarks/bench_run_vs_collect_env.py --runs {result['runs']}`: wall time of "
        "each command as a fresh process, median of the runs, interleaved, after one untimed warm-up of each. "
        "Cold: an empty torch facts cache (first run: imports torch, writes the cache); warm: the cache "
        "written by the warm-up run (no `import torch`).",
        "",
        "| machine | |", "|---|---|",
        f"| CPU | {m['cpu']} ({m['cores']} cores) |",
        f"| OS | {m['os']} |",
        f"| GPU | {m['gpus']} (driver {m['driver']}) |",
        f"| Python / torch / doctor | {m['python']} / {m['torch']} / {m['doctor']} |",
        "",
        "| command | median s | min s | max s | vs collect_env | exit codes | output lines |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in result["commands"].items():
        ratio = c["median_s"] / collect["median_s"] if collect["median_s"] else float("nan")
        lines.append(f"| `{name}` | {c['median_s']:.2f} | {c['min_s']:.2f} | {c['max_s']:.2f} | {ratio:.2f}x | "
                     f"{', '.join(map(str, c['exit_codes']))} | {c['output_lines']} |")
    hits = result["torch_from_cache"]
    lines += [
        "",
        f"Cold `doctor run` took **{cold['median_s'] / collect['median_s']:.2f}x** collect_env's time, warm "
        f"**{warm['median_s'] / collect['median_s']:.2f}x**. torch facts read from the cache: cold "
        f"{sum(hits[COLD])}/{len(hits[COLD])} runs, warm {sum(hits[WARM])}/{len(hits[WARM])}. collect_env exited "
        f"{', '.join(map(str, sorted(set(collect['exit_codes']), key=str)))}; it prints versions. The doctor "
        f"ran {result['doctor_probes']} probes concurrently (each under a timeout, torch imported only in a child) "
        f"and {result['doctor_checks']} checks, and reported: {', '.join(result['doctor_findings']) or 'no findings'}.",
        "",
        "Median time of each probe inside `doctor run` (they run concurrently; the slowest bounds the run):",
        "",
        "| probe | cold s | warm s |", "|---|---|---|",
    ]
    pc, pw = result["probe_median_s"][COLD], result["probe_median_s"][WARM]
    for name in sorted(pc, key=lambda k: -pc[k]):
        lines.append(f"| {name} | {pc[name]:.2f} | {pw.get(name, float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each command (default 5)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "run-vs-collect-env.md",
                    help="Markdown output; the raw numbers go beside it as .json")
    ap.add_argument("--python", default=sys.executable, help="interpreter whose environment is measured")
    ap.add_argument("--timeout", type=float, default=300.0, help="per-command limit in seconds")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    result = measure(args.python, args.runs, args.timeout)
    result["date"] = date
    text = render(result, date)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
