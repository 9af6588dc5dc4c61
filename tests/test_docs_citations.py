"""Every research note the code and data cite resolves inside the repository (docs/knowledge/), and
so does every section the citation names (`§2.4`, `section 2.5`, `Part 1`, `C6`, `FM-13`).

The old forms (`shared/knowledge/X.md`, `../shared/knowledge/X.md`, a bare `X.md`) are read through
the mapping table of docs/knowledge/README.md, so the strings can be rewritten later by
search-and-replace without touching this test."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCANNED = [ROOT / "doctor", ROOT / "checks"]
SUFFIXES = {".py", ".json", ".md", ".txt", ".yaml", ".yml", ".toml"}

# `[../]shared/knowledge/X.md`, `knowledge/X.md`, `docs/knowledge/X.md`: a path to a research note
PATH_REF = re.compile(r"(?:\.\./)?(?:shared/|docs/)?knowledge/([A-Za-z0-9_.-]+\.md)")
SECTION_REF = re.compile(r"§\s?(\d+(?:\.\d+)*)|section (\d+(?:\.\d+)*)|Part (\d+)|\b(C\d)\b|\b(FM-\d+)\b"
                         r"|^\s+(\d+\.\d+)\b")


def mapping() -> dict[str, Path]:
    """docs/knowledge/README.md's table: old reference -> file in the repository."""
    table = {}
    for line in (DOCS / "knowledge" / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*`([^`]+\.md)`\s*\|\s*`(docs/[^`]+\.md)`\s*\|", line)
        if m:
            table[m.group(1)] = ROOT / m.group(2)
    return table


def scanned_lines():
    for base in SCANNED:
        for path in sorted(base.rglob("*")):
            if path.suffix in SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
                for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    yield path.relative_to(ROOT), n, line


def citations():
    """(where, note file, the text after the note name up to the next note name)."""
    table = mapping()
    bare = sorted((k for k in table if "/" not in k), key=len, reverse=True)
    note = re.compile(PATH_REF.pattern + "|(?<![/\\w-])(" + "|".join(map(re.escape, bare)) + ")")
    for where, n, line in scanned_lines():
        hits = list(note.finditer(line))
        for i, m in enumerate(hits):
            ref = m.group(0)
            target = table.get(ref) or (DOCS / "knowledge" / m.group(1) if m.group(1) else None)
            tail = line[m.end(): hits[i + 1].start() if i + 1 < len(hits) else len(line)]
            yield f"{where}:{n}", ref, target, tail[:120]


def headings(path: Path) -> list[str]:
    return [h.lstrip("#").strip() for h in path.read_text().splitlines() if h.startswith("#")]


def section_exists(heads: list[str], kind: int, label: str) -> bool:
    if kind == 2:   # Part N
        return any(h.upper().startswith(f"PART {label}") for h in heads)
    first = label.split("-")[0] if label[0].isdigit() else label   # "1.2-1.6": the range's first section
    return any(re.match(re.escape(first) + r"(?![\d.]*\d)[.\s]", h + " ") for h in heads)


ALL = list(citations())


def test_the_code_cites_research_notes():
    assert len(ALL) > 100          # about 150 today; the scan must not silently find nothing
    assert {c[2].name for c in ALL} >= {"unsloth-failure-modes.md", "vram-and-hang.md"}


def test_every_mapped_note_exists():
    missing = {ref: str(p.relative_to(ROOT)) for ref, p in mapping().items() if not p.is_file()}
    assert not missing


def test_every_cited_note_resolves_under_docs():
    unresolved = [f"{where}: {ref}" for where, ref, target, _ in ALL
                  if target is None or not target.is_file() or DOCS not in target.parents]
    assert not unresolved, "\n".join(unresolved)


def test_every_cited_section_is_a_heading_of_the_note():
    missing, checked = [], 0
    for where, ref, target, tail in ALL:
        if target is None or not target.is_file():
            continue
        heads = headings(target)
        for m in SECTION_REF.finditer(tail):
            kind, label = next((k, g) for k, g in enumerate(m.groups()) if g)
            kind = 2 if kind == 2 else 0
            checked += 1
            if not section_exists(heads, kind, label):
                missing.append(f"{where}: {ref} {m.group(0).strip()}")
    assert not missing, "\n".join(missing)
    assert checked > 80        # about 150 section citations today


def test_every_failure_mode_id_in_the_code_is_catalogued():
    catalogue = (DOCS / "knowledge" / "unsloth-failure-modes.md").read_text()
    known = set(re.findall(r"^### (FM-\d+)", catalogue, re.M))
    cited = {(m, f"{w}:{n}") for w, n, line in scanned_lines() for m in re.findall(r"\bFM-\d+\b", line)}
    assert len(known) == 25
    assert not sorted(c for c in cited if c[0] not in known)


@pytest.mark.parametrize("old, new", [("shared/knowledge/vram-and-hang.md", "vram-and-hang.md"),
                                      ("../shared/knowledge/unsloth-failure-modes.md", "unsloth-failure-modes.md")])
def test_old_shared_form_maps_to_docs_knowledge(old, new):
    assert mapping()[old] == DOCS / "knowledge" / new
