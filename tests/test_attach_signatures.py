"""checks/data/stack_signatures.json is well-formed: every row sourced, regexes compile, ids stable,
texts use only the placeholders the classifier fills."""
from __future__ import annotations

import re
import string

import pytest

from doctor.knowledge import load
from doctor.attach import signatures as sig
from doctor.findings import Severity

DATA = load("stack_signatures")
TEXT_ROWS = DATA["causes"] + DATA["process_states"] + DATA["fallbacks"] + DATA["side_findings"]
# the cause ids issue 4 names; repro and bundle branch on them
REQUIRED = {"cuda-sync-wait", "dataloader-worker-hang", "lock-wait", "busy-python", "sleeping", "nccl-collective",
            "compile", "checkpoint-io", "model-load", "unsloth-offload-copy", "datasets-map", "tokenizer-fork",
            "pin-memory-thread", "thread-join", "running-normally"}


def test_every_row_has_a_source():
    rows = TEXT_ROWS + DATA["wrapper_frames"] + DATA["progress_frames"] + DATA["kernel_waits"] + [DATA["gpu_states"]]
    missing = [r.get("id") or r.get("file") or r.get("kind") for r in rows if not str(r.get("source", "")).strip()]
    assert not missing


def test_required_causes_and_unique_ids():
    ids = [r["id"] for r in TEXT_ROWS]
    assert len(ids) == len(set(ids))
    assert REQUIRED <= set(ids)
    for i in ids:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i), i


def test_the_table_compiles_and_refines_point_at_real_causes():
    table = sig.table()
    known = {c.id for c in table.causes}
    for c in table.causes:
        assert c.patterns, c.id
        assert set(c.refines) <= known | {"datasets-map"}, c.id
        assert c.tier in (1, 2, 3) and c.when in ("stuck", "any") and c.thread in ("main", "any")


@pytest.mark.parametrize("row", TEXT_ROWS, ids=lambda r: r["id"])
def test_texts_severity_and_failure_mode(row):
    Severity(row["severity"])
    fm = row.get("failure_mode")
    assert fm is None or (re.fullmatch(r"FM-\d\d", fm) and 1 <= int(fm[3:]) <= 25)
    variants = [row] + list((row.get("gpu") or {}).values()) + ([row["stuck"]] if row.get("stuck") else [])
    for v in variants:
        for key in ("title", "why", "remediation"):
            fields = {f for _, f, _, _ in string.Formatter().parse(v.get(key) or "") if f}
            assert fields <= {"where", "pid", "detail"}, (row["id"], key, fields)
        for fm2 in [v.get("failure_mode")]:
            assert fm2 is None or re.fullmatch(r"FM-\d\d", fm2)
    for link in row.get("links") or []:
        assert link.startswith("https://"), link


def test_gpu_variants_are_known_states():
    for row in DATA["causes"]:
        assert set(row.get("gpu") or {}) <= {"busy", "spinning", "idle", "partial", "unknown"}, row["id"]
