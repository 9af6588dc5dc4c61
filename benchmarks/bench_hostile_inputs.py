"""Time `doctor vram FILE --facts SNAPSHOT` on hostile inputs, as a real process (one run each).

    PYTHONPATH=<tree> python benchmarks/bench_hostile_inputs.py OUT_DIR [--limit-s 300]

Run it against two trees (before/after) to compare; results go in benchmarks/hostile-inputs.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "examples" / "facts" / "wsl2-2080ti-unsloth-2024.8.json"
MODEL = "unsloth/Meta-Llama-3.1-8B-bnb-4bit"
HEAD = (f'from unsloth import FastLanguageModel\nfrom trl import SFTConfig\n'
        f'model, tok = FastLanguageModel.from_pretrained(model_name="{MODEL}", max_seq_length=2048)\n')


def inputs() -> dict[str, str]:
    call = "args = SFTConfig(per_device_train_batch_size = 2, output_dir = 'o', max_steps = 5)\n"
    long_call = ("args = SFTConfig(per_device_train_batch_size = 2, max_steps = 5, x = '"
                 + "o" * 99_800 + "')\n")
    return {
        "script, one 300k-character line": HEAD + call[:-2] + ", x='" + "a" * 300_000 + "')\n",
        "script, 10 lines of 100k characters (1 MB)": HEAD + ("#" + "c" * 99_990 + "\n") * 9 + long_call,
        "script, 10 MB of comments": HEAD + ("# " + "x" * 78 + "\n") * 130_000 + call,
        "script, 0.9 MB of comments": HEAD + ("# " + "x" * 78 + "\n") * 11_500 + call,
        "script, 100k keyword arguments": HEAD + "args = SFTConfig(" + ",\n".join(f"k{i}=1" for i in range(100_000)) + ")\n",
        "script, 1,000 keyword arguments": HEAD + "args = SFTConfig(" + ",".join(f"k{i}=1" for i in range(1000)) + ")\n",
        "YAML, 0.9 MB of settings": f"base_model: {MODEL}\nmicro_batch_size: 2\n"
                                    + "".join(f"key_{i}: value number {i}\n" for i in range(30_000)),
        "YAML, billion laughs": f"base_model: {MODEL}\na: &a [x,x,x,x,x,x,x,x,x]\n"
                                + "".join(f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n"
                                          for p, c in zip("abcdefgh", "bcdefghi")),
        "JSON, 0.9 MB of settings, one per line": json.dumps(
            {"model_name_or_path": MODEL, "per_device_train_batch_size": 2,
             **{f"key_{i}": "v" * 10 for i in range(35_000)}}, indent=0),
    }


def main() -> None:
    out = Path(sys.argv[1]).resolve()
    limit = float(sys.argv[sys.argv.index("--limit-s") + 1]) if "--limit-s" in sys.argv else 300.0
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DOCTOR_OFFLINE="1")
    for name, text in inputs().items():
        suffix = ".yaml" if name.startswith("YAML") else ".json" if name.startswith("JSON") else ".py"
        path = out / (name.split(",")[0].lower() + "-" + str(abs(hash(name)) % 10_000) + suffix)
        path.write_text(text)
        t0 = time.monotonic()
        try:
            p = subprocess.run([sys.executable, "-m", "doctor", "vram", str(path), "--facts", str(FACTS)],
                               capture_output=True, text=True, timeout=limit, env=env, cwd=out)
            rc, err = p.returncode, (p.stderr.strip().splitlines() or [""])[-1][:110]
        except subprocess.TimeoutExpired:
            rc, err = "timeout", f"killed after {limit:.0f} s"
        print(f"| {name} | {len(text) / 1e6:.2f} MB | {time.monotonic() - t0:.2f} s | {rc} | {err} |", flush=True)


if __name__ == "__main__":
    main()
