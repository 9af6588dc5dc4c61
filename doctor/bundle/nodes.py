"""`doctor analyze FOLDER` (or several files): a multi-node job, seen from what the doctor saved on each
node: `doctor run --save-facts` (the node's stack) and `doctor attach --save-dumps` (its ranks' stacks),
launched on every node by the job's own launcher (srun, torchrun --nnodes). It says which nodes differ
(driver, torch, NCCL, GPU count and model, the NCCL environment), and lines up every rank of every node.

A node is the first folder below the given one (`doctor-JOB/<node>/facts.json`,
`doctor-JOB/<node>/attach/snapshot.json`), or, for files given one by one, the first folder below
their common folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from doctor import exitcodes
from doctor.exitcodes import DoctorError

MAX_FILES = 512              # a folder of one job: a few files per node
MAX_FILE_BYTES = 64 * 2**20
MAX_DEPTH = 4
# what must agree across the nodes of one job (label -> how to read it from Facts)
_COMPARED = (
    ("driver", lambda f: f.nvidia.driver_version),
    ("CUDA (driver)", lambda f: f.nvidia.cuda_driver_version),
    ("torch", lambda f: f.torch.version),
    ("NCCL", lambda f: ", ".join(f"{k} {p.version}" for k, p in sorted(f.packages.items())
                                 if k.startswith("nvidia-nccl") and p.version) or None),
    ("GPUs", lambda f: f"{len(f.nvidia.gpus)} x " + "/".join(sorted({g.name for g in f.nvidia.gpus}))
     if f.nvidia.gpus else "0"),
    ("python", lambda f: f.platform.python_version),
    ("transformers", lambda f: _pkg(f, "transformers")),
    ("accelerate", lambda f: _pkg(f, "accelerate")),
    ("deepspeed", lambda f: _pkg(f, "deepspeed")),
    ("NCCL env", lambda f: " ".join(f"{k}={v}" for k, v in sorted(f.env.items()) if k.startswith("NCCL_")) or "-"),
)


def _pkg(facts, name: str) -> Optional[str]:
    p = facts.packages.get(name)
    return p.version if p else None


def _files(paths: list[Path]) -> list[tuple[str, Path]]:
    """(node label, file) for every .json/.zip under the given folders and files."""
    out: list[tuple[str, Path]] = []
    for root in paths:
        if not root.exists():
            raise DoctorError(f"not found: {root}", exitcodes.FACTS_INVALID)
    files = [p.resolve() for p in paths if p.is_file()]
    if files:
        # files one by one: the node is the first folder below their common folder (the file's own
        # name when they all lie in one folder)
        common = Path(os.path.commonpath([str(f.parent) for f in files]))
        out += [(f.relative_to(common).parts[0] if f.parent != common else f.stem, f) for f in files]
    for root in paths:
        if root.is_file():
            continue
        for f in sorted(root.rglob("*")):
            rel = f.relative_to(root)
            if len(rel.parts) > MAX_DEPTH or f.is_symlink() or not f.is_file() or f.suffix not in (".json", ".zip"):
                continue
            out.append((rel.parts[0] if len(rel.parts) > 1 else root.resolve().name, f))
            if len(out) > MAX_FILES:
                raise DoctorError(f"over {MAX_FILES} files under {root}: give the folder of one job",
                                  exitcodes.FACTS_INVALID)
    return out


def load_nodes(paths: list[Path]):
    """{node: {"facts": Facts | None, "snapshots": [Snapshot]}} and the files that were not understood."""
    from doctor.attach.model import snapshot_from_report_dict
    from doctor.attach.snapshot import Snapshot
    from doctor.facts import Facts

    nodes: dict[str, dict] = {}
    skipped: list[str] = []
    for node, f in _files(paths):
        slot = nodes.setdefault(node, {"facts": None, "snapshots": []})
        try:
            if f.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"over {MAX_FILE_BYTES // 2**20} MiB")
            if f.suffix == ".zip":
                from doctor.archive import open_bundle
                slot["facts"] = open_bundle(f).facts()
                continue
            data = json.loads(f.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if "target_pid" in data:
                slot["snapshots"].append(Snapshot.from_dict(data))
            elif "sections" in data and "attach" in (data.get("sections") or {}) or "raw_dumps" in data:
                slot["snapshots"].append(snapshot_from_report_dict(data))
            elif "platform" in data and "schema_version" in data:
                slot["facts"] = Facts.from_dict(data)
            elif isinstance(data.get("facts"), dict):          # a `doctor run --json` envelope
                slot["facts"] = Facts.from_dict(data["facts"])
            else:
                skipped.append(f"{f}: neither facts nor an attach snapshot")
        except (OSError, ValueError, KeyError, TypeError, DoctorError) as exc:
            skipped.append(f"{f}: {exc}")
    return {k: v for k, v in nodes.items() if v["facts"] is not None or v["snapshots"]}, skipped


def differences(nodes: dict[str, dict]) -> tuple[list[str], list[dict]]:
    """(the fields that differ, one row per node with every compared field)."""
    rows = []
    for node, slot in sorted(nodes.items()):
        f = slot["facts"]
        row = {"node": node}
        for label, read in _COMPARED:
            try:
                row[label] = read(f) if f is not None else None
            except (AttributeError, TypeError):
                row[label] = None
        rows.append(row)
    with_facts = [r for r, (_n, s) in zip(rows, sorted(nodes.items())) if s["facts"] is not None]
    differ = [label for label, _ in _COMPARED if len({str(r[label]) for r in with_facts}) > 1]
    return differ, rows


def analyze_nodes(paths: list[Path], json_out: bool = False, markdown: Optional[Path] = None) -> int:
    from doctor.attach import ranks
    from doctor.attach.api import diagnose_snapshot
    from doctor.attach.attach_findings import make_finding
    from doctor.report_model import Report
    from doctor.report.emit import emit

    nodes, skipped = load_nodes(paths)
    if not nodes:
        raise DoctorError("no facts or attach snapshots found in " + ", ".join(map(str, paths))
                          + (f" ({skipped[0]})" if skipped else ""), exitcodes.FACTS_INVALID)
    differ, rows = differences(nodes)
    findings = []
    table = ranks.verdict_rows()
    if differ:
        detail = "; ".join(f"{d}: " + ", ".join(f"{r['node']} {r[d]}" for r in rows if r[d] is not None)
                           for d in differ)
        findings.append(make_finding("ranks.nodes-differ", table["nodes-differ"], {"detail": detail},
                                     {d: {r["node"]: r[d] for r in rows} for d in differ}, 0.9))
    parts = []
    for node, slot in sorted(nodes.items()):
        for snap in slot["snapshots"]:
            parts.append((diagnose_snapshot(snap), snap, node))
    lu = ranks.build(parts) if parts else None
    if lu is not None:
        findings += ranks.findings(lu)
    sections = {"nodes": {"compared": [label for label, _ in _COMPARED], "differ": differ, "rows": rows,
                          "skipped": skipped},
                "ranks": lu.to_dict() if lu is not None else None}
    report = Report(command="analyze", findings=findings, facts=None, sections=sections)
    title = f"finetune doctor analyze: {len(nodes)} node{'s' if len(nodes) != 1 else ''}"
    return emit(report, json_out, markdown, title=title,
                term_sections=[_terminal(rows, differ, sections["ranks"], skipped)],
                md_sections=[_markdown(rows, differ, sections["ranks"], skipped)])


def _terminal(rows, differ, lu, skipped):
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from doctor.attach.render import print_rank_table

    def section(console) -> None:
        t = Table(box=None, show_header=True, header_style="dim", padding=(0, 1))
        # the terminal is narrow: what differs, else the four that matter most (--json has them all)
        cols = ["node"] + (differ or ["driver", "torch", "NCCL", "GPUs"])
        for c in cols:
            t.add_column(c, style="bold yellow" if c in differ else None)
        for r in rows:
            t.add_row(*(escape(str(r[c]) if r[c] is not None else "?") for c in cols))
        console.print(Text("Nodes" + (f" (differ in: {', '.join(differ)})" if differ else " (no difference)"),
                           style="bold"))
        console.print(t)
        if lu:
            print_rank_table(console, lu)
        for s in skipped:
            console.print(Text(f"note: skipped {s}", style="yellow"))
    return section


def _markdown(rows, differ, lu, skipped) -> str:
    from doctor.attach.render import rank_table_markdown
    from doctor.text import md_escape_cell

    cols = ["node"] + [label for label, _ in _COMPARED]
    lines = ["### Nodes", "", "Differ in: " + (", ".join(differ) or "nothing compared"), "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(md_escape_cell(str(r[c]) if r[c] is not None else "?") for c in cols) + " |"
              for r in rows] + [""]
    if lu:
        lines += rank_table_markdown(lu)
    lines += [f"- skipped {md_escape_cell(s)}" for s in skipped]
    return "\n".join(lines) + "\n"
