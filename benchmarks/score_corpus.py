"""Scores the diagnosis on the corpus of real reports (tests/reports_corpus/records.jsonl).

For every record whose facts suffice: build its facts (+ config, + log excerpt) the way
tests/corpus_helpers.py does, run every check, and ask whether the confirmed cause is the top
finding (top-1) or among the first three (top-3). Prints the score; with --write, rewrites
benchmarks/diagnosis-corpus.md (numbers, date, the misses and what ranked above them).

    PYTHONPATH=. python benchmarks/score_corpus.py [--write] [--facts-dir DIR]

--facts-dir writes each record's snapshot as DIR/<id>.json (and its log excerpt as DIR/<id>.log),
so a record replays through the CLI: `doctor run --facts DIR/<id>.json --log DIR/<id>.log`.
"""
from __future__ import annotations

import datetime as _dt
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from corpus_helpers import load_records, record_config, record_facts, sufficient  # noqa: E402
from doctor.engine import run_checks  # noqa: E402


# Why each known miss misses (kept here so the written score explains itself; a new miss shows
# with an empty cell until someone looks at it).
MISS_WHY: dict[str, str] = {}     # none today; the history says how the last five were fixed


# Blind checks: records added from threads no table cited, scored before anything was changed.
HISTORY = [
    "2026-12-03, first scoring (38 records): top-1 33/38, top-3 34/38.",
    "2026-12-03, 5 records added from uncited threads and scored before any change: 3/5 top-1 "
    "(miss-alignment-107, pytorch-180101, bitsandbytes-879 hit; unsloth-1772 and sglang-18644 missed: "
    "no signature for Triton's missing C compiler / Python.h). The signature was added afterwards "
    "(sig.triton-no-compiler, a top user problem in docs/knowledge/field-2026.md), so those two no "
    "longer count as blind. One builder default was fixed at the same time (a CUDA 12.9 torch gets a "
    "575 driver, not 570).",
    "2026-12-03, release table and known pairs made to work together (branch corpus2): pair checks read a "
    "wheel's own torch pin from the release table when the facts carry no metadata (unsloth-741/879/1026), "
    "a torch nightly is no longer judged by the release's triton pin (unsloth-1856-5090), unsloth/unsloth_zoo "
    "pairs are judged by release dates too (unsloth-2713), the install command ranks with its causes (info, "
    "explained by them), release-moves leaves a pair-owned pin to the pair check, and the resolver counts a "
    "known-bad row as broken only where its machine conditions hold. Top-1 38/43 -> 43/43 on the records of "
    "the time.",
    "2026-12-03, 8 records added from uncited threads (comfyui-manager-926, fooocus-2517, pia-30, yuan2-65, "
    "deepprep-233, fastai-docker-21, protenix-2, vllm-946), committed (45a5129) before they were scored. "
    "Blind score before the corpus2 changes: 7/8 top-1 (fooocus-2517 missed: xformers 0.0.20 is in no pairs "
    "row, so only the log finding fired); after: 8/8, fooocus-2517 by the mechanism already written for "
    "unsloth-741/879/1026 (the wheel's own torch pin from the release table), nothing specific to it. All "
    "held-out records: 13/18 before, 18/18 after; of the 10 earlier held-out records 6/10 before, 10/10 after, "
    "but their four misses were fixed knowingly, so the blind measure is the 7/8 at the time of adding. "
    "Afterwards a log signature for 'Bfloat16 is only supported on GPUs with compute capability of at least "
    "8.0' was added, citing another thread (vllm-project/vllm#1157), so vllm-946 still counts as held out; "
    "its rank did not change (bf16.unsupported-gpu was first before and after).",
    "2026-12-03, cost of the corpus2 changes: `doctor run --facts examples/facts/h200-real.json --json`, six "
    "alternating runs each on the 2-core development VM (load 1-3): main 361-386 ms (two outliers ~680 ms), "
    "corpus2 355-364 ms (one ~610 ms): no measurable difference (the table was already loaded by the release "
    "checks; a snapshot with live metadata does not need it for the pair checks).",
    "2026-12-03, a second blind batch after the corpus2 changes: 6 records from uncited threads (unsloth-2403, "
    "coreweave-ml-containers-64, sdnext-3531, torchtitan-3022, unsloth-962, leggedlab-26), committed (5ea08f8) "
    "before scoring: 6/6 top-1. The same records on main before the changes: 4/6 (torchtitan-3022, a torch "
    "nightly with torchvision 0.26.0, and unsloth-962, xformers 0.0.26.post1 under torch 2.4: both in no "
    "pairs row, both caught now by the wheel's own pin from the release table). Afterwards a signature for "
    "\"cannot import name 'triton_key'\" was added (sig.triton-key, citing pytorch/pytorch#127271), because "
    "coreweave-ml-containers-64's excerpt matched none; that record stays held out and its rank did not change.",
]


def score(records=None) -> dict:
    records = load_records() if records is None else records
    rows = []
    for rec in sufficient(records):
        findings = run_checks(record_facts(rec), record_config(rec))
        ids = [f.id for f in findings]
        rank = ids.index(rec["expect"]) + 1 if rec["expect"] in ids else None
        rows.append({"id": rec["id"], "link": rec["link"], "expect": rec["expect"], "rank": rank,
                     "top3": ids[:3]})
    cited = _cited_links()
    for r in rows:
        r["held_out"] = r["link"] not in cited
    held = [r for r in rows if r["held_out"]]
    n = len(rows)
    top1 = sum(1 for r in rows if r["rank"] == 1)
    top3 = sum(1 for r in rows if r["rank"] is not None and r["rank"] <= 3)
    return {"records": len(records), "sufficient": n, "top1": top1, "top3": top3,
            "top1_rate": top1 / n if n else 0.0, "top3_rate": top3 / n if n else 0.0, "rows": rows,
            "held_out": len(held), "held_out_top1": sum(1 for r in held if r["rank"] == 1),
            "insufficient": [(r["id"], r["insufficient"]) for r in records if r.get("insufficient")]}


def _cited_links() -> set[str]:
    """Threads the knowledge tables cite: a record from one of them is not a blind test."""
    from doctor.knowledge import load

    links = {l for r in load("known_bad")["rows"] for l in r["links"]}
    return links | {l for r in load("log_signatures")["rows"] for l in r["links"]}


def render(s: dict) -> str:
    today = _dt.date.today().isoformat()
    lines = [
        "# Diagnosis on the corpus of real reports",
        "",
        f"Measured {today} on {platform.node() or 'this machine'} ({platform.machine()}, Python "
        f"{platform.python_version()}) with `PYTHONPATH=. python benchmarks/score_corpus.py --write`.",
        "",
        f"- records: {s['records']} ({s['sufficient']} with sufficient facts, "
        f"{len(s['insufficient'])} marked insufficient and not scored)",
        f"- **top-1: {s['top1']}/{s['sufficient']} = {s['top1_rate']:.0%}** (target 70%)",
        f"- **top-3: {s['top3']}/{s['sufficient']} = {s['top3_rate']:.0%}** (target 85%)",
        "",
        f"- held out (the record's thread is cited by no known-bad row or log signature): top-1 "
        f"{s['held_out_top1']}/{s['held_out']}. The other records come from threads the tables were",
        "  mined from, so their score is optimistic: it shows the rows fire on the environments",
        "  reported, not that they generalise.",
        "",
        "Top-1: the confirmed cause is the first finding of `doctor run --facts` on the record's",
        "snapshot (plus its config and log excerpt, as `--log`). The corpus was written from the",
        "threads before the known-bad rows and log signatures existed.",
        "",
        "Read the totals with the history below: misses are fixed knowing which records they are, so",
        "only a record scored before anyone looked (the blind batches in the history) measures how the",
        "doctor generalises. Blind so far: 3/5, 7/8 and 6/6 top-1 at the time each batch was added.",
        "",
        "## Misses (not top-1)",
        "",
        "| record | expected | rank | first three findings | why |",
        "|---|---|---|---|---|",
    ]
    if all(r["rank"] == 1 for r in s["rows"]):
        lines.append("| (none) | | | | |")
    for r in s["rows"]:
        if r["rank"] != 1:
            lines.append(f"| [{r['id']}]({r['link']}) | `{r['expect']}` | {r['rank'] or 'absent'} | "
                         + ", ".join(f"`{i}`" for i in r["top3"]) + f" | {MISS_WHY.get(r['id'], '')} |")
    lines += ["", "## History", ""] + [f"- {h}" for h in HISTORY]
    lines += ["", "## Insufficient records (kept, not scored)", ""]
    lines += [f"- {rid}: {why}" for rid, why in s["insufficient"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    s = score()
    print(f"top-1 {s['top1']}/{s['sufficient']} ({s['top1_rate']:.0%}), "
          f"top-3 {s['top3']}/{s['sufficient']} ({s['top3_rate']:.0%})")
    for r in s["rows"]:
        if r["rank"] != 1:
            print(f"  miss {r['id']}: expected {r['expect']} at {r['rank']}; top3 {r['top3']}")
    if "--facts-dir" in argv:
        out_dir = Path(argv[argv.index("--facts-dir") + 1])
        out_dir.mkdir(parents=True, exist_ok=True)
        for rec in load_records():
            facts = record_facts(rec)
            facts.log_matches = []          # the CLI matches the .log itself
            facts.save(out_dir / f"{rec['id']}.json")
            if rec.get("log"):
                (out_dir / f"{rec['id']}.log").write_text(rec["log"] + "\n")
        print(f"wrote {len(load_records())} snapshots to {out_dir}")
    if "--write" in argv:
        out = ROOT / "benchmarks" / "diagnosis-corpus.md"
        out.write_text(render(s))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
