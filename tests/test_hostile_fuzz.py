"""Seeded fuzz over what users hand the doctor: training scripts, YAML and JSON configs, fact
snapshots and bundles, each mutated from real examples (hostile numbers, strings, nesting,
aliases, truncation, stray bytes). Every case must end with an exit code from README's table,
never 70, never a traceback, within a generous time limit (a hang is the failure signal, this is
not a benchmark), and write nothing outside its --out folder.

In-process through CliRunner for speed (a few hundred cases), plus a handful of real subprocesses.
A failing case prints its seed and keeps its input under pytest's tmp_path to replay by hand.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from doctor import exitcodes
from doctor.cli import app
from tests.conftest import EXAMPLES, FACT_SNAPSHOTS, ROOT

SEED = int(os.environ.get("DOCTOR_FUZZ_SEED", "20261203"))   # another seed: a new corpus, same checks
CASE_LIMIT_S = 30        # generous on 2 shared cores; the slowest input here takes ~1 s unloaded
CORPUS = ROOT / "tests" / "corpus"
WSL = FACT_SNAPSHOTS / "wsl2-2080ti-unsloth-2024.8.json"
PY_SEEDS = [EXAMPLES / "train_unsloth_llama31_8b.py", *sorted(CORPUS.glob("*.py"))]
YAML_SEEDS = sorted(CORPUS.glob("*.yaml"))
JSON_SEEDS = sorted(CORPUS.glob("*.json"))
FACT_SEEDS = sorted(FACT_SNAPSHOTS.glob("*.json"))


def documented_exit_codes() -> dict[int, str]:
    """README's exit-code table: code -> meaning."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| (.+) \|$", table, re.M)}


def test_readme_documents_exactly_the_exit_codes_the_doctor_has():
    assert set(documented_exit_codes()) == set(exitcodes.MEANINGS)


# -- mutators -------------------------------------------------------------------------------------

HOSTILE_NUMBERS = ["-2**63", "(2**63)**63", "9" * 4400, "0", "-1", "1e400", "float('nan')", "10**10**10",
                   "2**64", "1.5", "True", "None", "[]", "{}", "'²'", "'x' * 10**9", "-0", "0x7fffffffffffffff",
                   "int('9' * 5000)", "(" * 150 + "1" + ")" * 150, "1 << 10000", "7 // 0", "__import__('os')"]
HOSTILE_STRINGS = ["", "a" * 5000, "../../../../etc/passwd", "<module>", "`|*_[x](y)", "\\x00", "é" * 300,
                   "unsloth", "/", "C:\\\\Windows", "~", "x" * 300 + "/" + "y" * 300, "\\u2028", "${HOME}"]
YAML_VALUES = ["'²'", "-1", "1e999", ".nan", ".inf", "!!binary Zm9v", "!!python/object:os.system x", "*nope",
               "&a [*a]", "2024-02-30", "[" * 200 + "]" * 200, "9" * 5000, "{a: {b: {c: 1}}}", "|\n  multi",
               "~", "!!set {a, b}", "? complex\n: key", "0o777", "yes", "'a' 'b'", "@bad"]
JSON_VALUES = [-2 ** 63, 10 ** 30, -1, 0, 1.5, 1e308, None, [], {}, "²", "x" * 5000, True, [[[[[]]]]],
               {"a": [1, {"b": None}]}, "nan", "-1", "1" * 100]
NOISE = ["\x00", "\f", "\r", "\t", "\u2028", "\ufeff", "\\", "'''", '"""', "#", "(", ")", "[", "{", ":", "*", "&",
         "!", "\udcff"[:0] + "\x7f", "é", "🙂", "\n" * 3]


def _mutate_text(rng: random.Random, text: str) -> str:
    op = rng.randrange(7)
    n = len(text)
    if n == 0:
        return rng.choice(NOISE)
    i, j = sorted((rng.randrange(n), rng.randrange(n)))
    if op == 0:      # delete a span
        return text[:i] + text[min(j, i + 200):]
    if op == 1:      # insert noise
        return text[:i] + rng.choice(NOISE) * rng.randint(1, 5) + text[i:]
    if op == 2:      # truncate
        return text[:i]
    if op == 3:      # duplicate a line
        lines = text.split("\n")
        k = rng.randrange(len(lines))
        return "\n".join(lines[:k] + [lines[k]] * rng.randint(2, 50) + lines[k:])
    if op == 4:      # swap two lines
        lines = text.split("\n")
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[a], lines[b] = lines[b], lines[a]
        return "\n".join(lines)
    if op == 5:      # a very long line
        return text[:i] + "#" + "z" * rng.choice([1000, 50_000, 99_990, 150_000]) + "\n" + text[i:]
    return text[:i] + text[i:j][::-1] + text[j:]   # reverse a span


def mutate_python(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        if op <= 1:
            nums = list(re.finditer(r"(?<![\w.])\d+(?![\w.])", text))
            if nums:
                m = rng.choice(nums)
                text = text[:m.start()] + rng.choice(HOSTILE_NUMBERS) + text[m.end():]
                continue
        if op == 2:
            strs = list(re.finditer(r'"[^"\n]*"', text))
            if strs:
                m = rng.choice(strs)
                text = text[:m.start()] + json.dumps(rng.choice(HOSTILE_STRINGS)) + text[m.end():]
                continue
        if op == 3:
            k = rng.choice([10, 500, 1500])
            text += "\nargs = SFTConfig(" + ", ".join(f"k{i} = {i}" for i in range(k)) + ")\n"
            continue
        if op == 4:
            text += f"\nbs = {rng.choice(HOSTILE_NUMBERS)}\nargs = SFTConfig(per_device_train_batch_size = bs)\n"
            continue
        text = _mutate_text(rng, text)
    return text


def mutate_yaml(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        lines = text.split("\n")
        keyed = [k for k, ln in enumerate(lines) if re.match(r"^\w[\w.]*:\s*\S", ln)]
        if op <= 1 and keyed:
            k = rng.choice(keyed)
            key = lines[k].split(":", 1)[0]
            lines[k] = f"{key}: {rng.choice(YAML_VALUES)}"
            text = "\n".join(lines)
        elif op == 2:
            depth = rng.choice([3, 9])
            text += "\nl0: &l0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
                f"l{d}: &l{d} [{', '.join(['*l' + str(d - 1)] * 9)}]\n" for d in range(1, depth))
        else:
            text = _mutate_text(rng, text)
    return text


def same_kind(rng: random.Random, old):
    """A hostile value of the old value's type: passes the schema, then reaches the checks."""
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return rng.choice([-1, 0, 1, 2 ** 40, 10 ** 18, -(2 ** 63), old * 1000])
    if isinstance(old, float):
        return rng.choice([-1.0, 0.0, 1e300, -1e-300, old * 1e6])
    if isinstance(old, str):
        return rng.choice(["", "x" * 3000, "99999.99999.9", "0.0.0+cu999", "<module>", "é", old[::-1], old * 3])
    if isinstance(old, list):
        return rng.choice([[], old * 3, old[:1]])
    if isinstance(old, dict):
        return rng.choice([{}, {k: old[k] for k in list(old)[: len(old) // 2]}])
    return rng.choice(JSON_VALUES)


def _walk_set(rng: random.Random, obj, value):
    """Set a random leaf (or member) of a JSON object to value (a callable: made from the old
    value); returns obj."""
    node = obj
    for _ in range(rng.randint(1, 4)):
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            if rng.random() < 0.4 or not isinstance(node[key], (dict, list)) or not node[key]:
                node[key] = value(node[key])
                return obj
            node = node[key]
        elif isinstance(node, list) and node:
            idx = rng.randrange(len(node))
            if rng.random() < 0.4 or not isinstance(node[idx], (dict, list)) or not node[idx]:
                node[idx] = value(node[idx])
                return obj
            node = node[idx]
        else:
            break
    if isinstance(obj, dict):
        key = rng.choice(["schema_version", "env", "platform", "torch", "nvidia", "packages", "extra"])
        obj[key] = value(obj.get(key))
    return obj


def mutate_json(rng: random.Random, text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return _mutate_text(rng, text)
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.2:
            if isinstance(data, dict) and data:
                data.pop(rng.choice(list(data)))
            continue
        if rng.random() < 0.6:
            data = _walk_set(rng, data, lambda old: same_kind(rng, old))
        else:
            data = _walk_set(rng, data, lambda old: rng.choice(JSON_VALUES))
    out = json.dumps(data, indent=rng.choice([None, 1, 2]))
    if rng.random() < 0.1:
        out = _mutate_text(rng, out)
    if rng.random() < 0.1:
        out = "[" * rng.choice([50, 150, 3000]) + out + "]" * rng.choice([50, 150, 3000])
    return out


def make_bundle(rng: random.Random, path: Path) -> Path:
    facts = mutate_json(rng, rng.choice(FACT_SEEDS).read_text()) if rng.random() < 0.7 \
        else rng.choice(FACT_SEEDS).read_text()
    members = {"facts.json": facts.encode("utf-8", "surrogatepass")}
    if rng.random() < 0.5:
        members["config/train.py"] = mutate_python(rng, PY_SEEDS[0].read_text()).encode("utf-8", "surrogatepass")
    if rng.random() < 0.2:
        members["manifest.json"] = rng.choice([b"[]", b"{}", b"{\"files\": 3}", b"\xff"])
    if rng.random() < 0.1:
        members["logs/zeros.log"] = b"\0" * rng.choice([10, 5 * 2 ** 20])
    kind = rng.randrange(10)
    if kind < 7:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(rng.choice(["", "", "bundle/"]) + name, data)
    elif kind < 9:
        with tarfile.open(path, "w:gz") as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    else:
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.choice([0, 10, 4000]))))
    if rng.random() < 0.15:        # truncated archive
        data = path.read_bytes()
        path.write_bytes(data[: rng.randrange(max(1, len(data)))])
    return path


# -- running a case -------------------------------------------------------------------------------

class CaseTimeout(BaseException):
    """Not an Exception: the command wrapper must not turn it into an exit code."""


def _alarm(signum, frame):
    raise CaseTimeout


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def run_case(label: str, args: list, case_dir: Path, out_dir: Path) -> int:
    before = files_under(case_dir)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_LIMIT_S)
    t0 = time.monotonic()
    try:
        r = CliRunner().invoke(app, [str(a) for a in args])
    except CaseTimeout:
        pytest.fail(f"{label}: ran over {CASE_LIMIT_S} s: {args}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.monotonic() - t0
    if isinstance(r.exception, CaseTimeout):
        pytest.fail(f"{label}: ran over {CASE_LIMIT_S} s: {args}")
    where = f"{label} ({elapsed:.1f} s): {' '.join(map(str, args))}\n{r.output[-3000:]}"
    assert r.exit_code in documented_exit_codes(), where
    assert r.exit_code != exitcodes.INTERNAL, where
    assert r.exception is None or isinstance(r.exception, SystemExit), (where, repr(r.exception))
    assert "Traceback" not in r.output, where
    if r.exit_code not in (exitcodes.OK, exitcodes.UNHEALTHY):
        assert r.stderr.strip().count("\n") == 0, where          # a refusal is one line
    new = {p for p in files_under(case_dir) - before if out_dir not in p.parents and p != out_dir}
    assert not new, (where, sorted(map(str, new)))
    return r.exit_code


def _case_dirs(tmp_path: Path, label: str) -> tuple[Path, Path]:
    case_dir = tmp_path / label
    out = case_dir / "out"
    out.mkdir(parents=True)
    return case_dir, out


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


CONFIG_CASES = 240
FACT_CASES = 120
BUNDLE_CASES = 60


def test_fuzz_configs(tmp_path):
    seen = {}
    for i in range(CONFIG_CASES):
        rng = random.Random(SEED * 1000 + i)
        kind = ("py", "yaml", "json")[i % 3]
        label = f"config-{i}-{kind}"
        case_dir, out = _case_dirs(tmp_path, label)
        if kind == "py":
            text = mutate_python(rng, rng.choice(PY_SEEDS).read_text())
        elif kind == "yaml":
            text = mutate_yaml(rng, rng.choice(YAML_SEEDS).read_text())
        else:
            text = mutate_json(rng, rng.choice(JSON_SEEDS).read_text())
        path = case_dir / f"train.{kind}"
        path.write_bytes(_encode(text))
        command = rng.choice([["run"], ["run"], ["vram"]])
        extra = rng.choice([[], ["--json"], ["--markdown", out / "r.md"]])
        if command == ["vram"]:
            extra = [e for e in extra if e != "--markdown" and not str(e).endswith("r.md")]
            args = ["vram", path, "--facts", WSL, *extra]
        else:
            args = ["run", path, "--facts", WSL, "--out", out, *extra]
        code = run_case(label, args, case_dir, out)
        seen[code] = seen.get(code, 0) + 1
    print("config exit codes", seen)
    # the fuzz reaches both the parsers' refusals and full reports
    assert seen.get(exitcodes.CONFIG_INVALID) and (seen.get(exitcodes.OK) or seen.get(exitcodes.UNHEALTHY)), seen


def test_fuzz_facts(tmp_path):
    seen = {}
    for i in range(FACT_CASES):
        rng = random.Random(SEED * 2000 + i)
        label = f"facts-{i}"
        case_dir, out = _case_dirs(tmp_path, label)
        facts = case_dir / "facts.json"
        facts.write_bytes(_encode(mutate_json(rng, rng.choice(FACT_SEEDS).read_text())))
        args = ["run", "--facts", facts, *rng.choice([[], ["--json"]])]
        if rng.random() < 0.4:
            args += [PY_SEEDS[0], "--out", out]
        code = run_case(label, args, case_dir, out)
        seen[code] = seen.get(code, 0) + 1
    print("facts exit codes", seen)
    assert seen.get(exitcodes.FACTS_INVALID) and (seen.get(exitcodes.OK) or seen.get(exitcodes.UNHEALTHY)), seen


def test_fuzz_bundles(tmp_path):
    seen = {}
    for i in range(BUNDLE_CASES):
        rng = random.Random(SEED * 3000 + i)
        label = f"bundle-{i}"
        case_dir, out = _case_dirs(tmp_path, label)
        bundle = make_bundle(rng, case_dir / rng.choice(["b.zip", "b.zip", "b.tar.gz"]))
        args = rng.choice([["analyze", bundle], ["analyze", bundle, "--json"], ["run", "--facts", bundle]])
        code = run_case(label, args, case_dir, out)
        seen[code] = seen.get(code, 0) + 1
    print("bundle exit codes", seen)
    assert seen.get(exitcodes.FACTS_INVALID), seen


@pytest.mark.parametrize("i", range(5))
def test_fuzz_real_processes(tmp_path, i):
    """A few cases as real processes: the entry point, the exit code and stderr as a shell sees them."""
    rng = random.Random(SEED * 4000 + i)
    case_dir, out = _case_dirs(tmp_path, f"proc-{i}")
    path = case_dir / "train.py"
    path.write_bytes(_encode(mutate_python(rng, PY_SEEDS[0].read_text())))
    facts = case_dir / "facts.json"
    facts.write_bytes(_encode(mutate_json(rng, WSL.read_text())) if i % 2 else WSL.read_bytes())
    env = dict(os.environ, PYTHONPATH=str(ROOT), DOCTOR_OFFLINE="1", OMP_NUM_THREADS="1")
    before = files_under(case_dir)
    p = subprocess.run([sys.executable, "-m", "doctor", "run", str(path), "--facts", str(facts), "--out", str(out)],
                       capture_output=True, env=env, timeout=120, cwd=case_dir)
    where = p.stderr.decode(errors="replace")[-2000:]
    assert p.returncode in documented_exit_codes() and p.returncode != exitcodes.INTERNAL, where
    assert b"Traceback" not in p.stderr + p.stdout, where
    assert {q for q in files_under(case_dir) - before if out not in q.parents} == set()
