"""Calibrate the high-entropy rule of doctor/redact.py: how many random secrets it masks
against how many ordinary tokens (this repository's text, the venv's file paths, pip freeze) it
would destroy, per threshold. Run: PYTHONPATH=. python benchmarks/bench_redaction_entropy.py"""
from __future__ import annotations

import math
import random
import string
import subprocess
import sys
from pathlib import Path

from doctor import redact as R

ROOT = Path(__file__).resolve().parents[1]


def corpus() -> list[str]:
    texts = []
    for sub in ("doctor", "checks", "examples", "benchmarks", "tests/fixtures", "README.md"):
        for p in ([ROOT / sub] if (ROOT / sub).is_file() else (ROOT / sub).rglob("*")):
            if "fixtures/redaction" in str(p):      # planted secrets, by design
                continue
            if p.is_file() and p.suffix in (".py", ".json", ".md", ".txt", ".yaml", ".yml", ".csv", "") \
                    and p.stat().st_size < 5_000_000:
                texts.append(p.read_text(errors="replace"))
    site = Path(sys.prefix) / "lib"
    texts.append("\n".join(str(p) for p in site.rglob("*")))          # what stacks and tracebacks show
    texts.append(subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True).stdout)
    return texts


def candidates(texts: list[str]) -> list[str]:
    found = set()
    for t in texts:
        found.update(m.group(0) for m in R._ENTROPY_CANDIDATE.finditer(t))
    return sorted(found)


def secrets(n: int, rng: random.Random) -> list[str]:
    alnum = string.ascii_letters + string.digits
    out = []
    for _ in range(n):
        k = rng.choice([20, 24, 32, 40, 48, 64])
        alphabet = rng.choice([alnum, alnum + "+/", alnum + "_-"])
        out.append("".join(rng.choice(alphabet) for _ in range(k)))
    return out


def rate(sec, cands):
    caught = sum(R.is_high_entropy(s) for s in sec)
    fps = [c for c in cands if R.is_high_entropy(c)]
    return caught / len(sec), fps


def main() -> None:
    rng = random.Random(15)
    cands = candidates(corpus())
    sec = secrets(5000, rng)
    print(f"{len(cands)} distinct candidate tokens (20+ token characters) in the corpus; {len(sec)} random secrets")
    print("entropy ratio  max piece len  secrets masked  corpus tokens masked (first few)")
    saved = R.ENTROPY_BITS, R.MAX_PIECE_LEN
    for ratio, piece in ((0.0, 99.0), (0.80, 99.0), (0.85, 99.0), (0.0, 2.5), (0.75, 2.5), (0.80, 2.5), (0.80, 2.6)):
        R.ENTROPY_BITS, R.MAX_PIECE_LEN = ratio, piece
        caught, fps = rate(sec, cands)
        print(f"{ratio:.2f}           {piece:4.1f}           {caught:6.1%}          {len(fps)}  {fps[:3]}")
    R.ENTROPY_BITS, R.MAX_PIECE_LEN = saved


if __name__ == "__main__":
    main()
