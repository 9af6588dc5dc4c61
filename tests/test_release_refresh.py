"""checks/data/refresh_releases.py: parsing recorded PEP 691 responses (tests/fixtures/pypi/), the
choice of the representative wheel, METADATA filtering, range reads of a wheel, and the stored form
read back by the loader. Offline: the HTTP getter is replaced by one that serves local bytes."""
from __future__ import annotations

import importlib.util
import io
import os
import json
import zipfile
from pathlib import Path

import pytest

from doctor.knowledge.releases import ReleaseTable, table

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pypi"

_spec = importlib.util.spec_from_file_location("refresh_releases", ROOT / "checks" / "data" / "refresh_releases.py")
refresh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refresh)


def page(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_index_page_gives_earliest_upload_day_and_requires_python_per_version():
    versions = refresh.parse_index(page("cut-cross-entropy.json"), "cut-cross-entropy")
    assert sorted(versions) == ["24.11.3", "24.11.4", "24.12.1", "24.12.2", "24.12.3", "25.1.1"]
    row = versions["24.12.3"]
    assert row["t"] == "2024-12-24" and row["yanked"] is False
    assert row["wheel"]["filename"] == "cut_cross_entropy-24.12.3-py3-none-any.whl"
    assert versions["25.1.1"]["py"] == page("cut-cross-entropy.json")["files"][-1]["requires-python"]


def test_representative_wheel_is_linux_x86_64_newest_cpython_not_free_threaded():
    versions = refresh.parse_index(page("torch-2.7.0.json"), "torch")
    assert list(versions) == ["2.7.0"]
    assert versions["2.7.0"]["wheel"]["filename"] == "torch-2.7.0-cp313-cp313-manylinux_2_28_x86_64.whl"
    assert versions["2.7.0"]["t"] == "2025-04-23"


def test_sdist_only_and_foreign_files():
    assert refresh.version_of("flash_attn-2.8.3.tar.gz", "flash-attn") == "2.8.3"
    assert refresh.version_of("other-1.0.tar.gz", "flash-attn") is None
    assert refresh.version_of("torch-2.7.0-cp312-cp312-win_amd64.whl", "torch") == "2.7.0"
    rows = refresh.parse_index({"files": [{"filename": "flash_attn-2.8.3.tar.gz", "upload-time": "2025-08-15T00:00:00Z",
                                           "url": "u", "size": 1, "yanked": "broken"}]}, "flash-attn")
    assert rows["2.8.3"]["wheel"] is None and rows["2.8.3"]["yanked"] is True


def test_metadata_keeps_only_stack_requirements_verbatim():
    text = (FIXTURES / "peft-0.9.0.METADATA").read_text()
    kept = refresh.parse_metadata(text, set(refresh.PACKAGES))
    assert kept == ["torch (>=1.13.0)", "transformers", "accelerate (>=0.21.0)", "datasets ; extra == 'test'"]


def _wheel_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pkg/big.bin", os.urandom(2_000_000), zipfile.ZIP_STORED)   # payload first
        z.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
                   "Requires-Dist: torch>=2.4\nRequires-Dist: numpy\n\nlong description\n")
    return buf.getvalue()


def test_metadata_read_from_the_wheel_by_range_requests_when_the_index_has_no_metadata_file():
    blob = _wheel_bytes()
    asked: list = []

    def get(url, headers=None):
        asked.append((url, (headers or {}).get("Range")))
        if url.endswith(".metadata"):
            raise refresh.NotFound(url)
        lo, hi = (int(x) for x in headers["Range"].split("=")[1].split("-"))
        return blob[lo:hi + 1]

    text = refresh.wheel_metadata({"url": "https://x/demo-1.0-py3-none-any.whl", "size": len(blob)}, get)
    assert "Requires-Dist: torch>=2.4" in text
    ranges = [r for _, r in asked if r]
    fetched = len(ranges) * refresh.RangeFile.BLOCK
    assert ranges and fetched < len(blob)       # the payload was skipped, not downloaded


def test_pep658_metadata_file_is_used_when_served():
    def get(url, headers=None):
        assert url.endswith(".metadata") and not headers
        return b"Requires-Dist: trl>=0.9\n"
    assert refresh.wheel_metadata({"url": "https://x/a.whl", "size": 10}, get).startswith("Requires-Dist")


def test_stored_form_round_trips_through_the_loader_with_shared_strings():
    versions = {"1.0": {"t": "2025-01-01", "py": ">=3.9", "yanked": False},
                "1.1": {"t": "2025-02-01", "py": None, "yanked": True},
                "2.0": {"t": "2025-03-01", "py": None, "yanked": False}}
    stored = refresh.compact(versions, {"1.0": ["torch>=2.4", "trl"], "1.1": ["torch>=2.4"]})
    assert stored["s"] == ["torch>=2.4", "trl"] and stored["v"]["1.1"]["r"] == [0]
    t = ReleaseTable({"snapshot": "2026-01-01T00:00:00Z", "packages": {"demo": stored}})
    rels = t.releases("demo")
    assert [r.version for r in rels] == ["1.0", "1.1", "2.0"]
    assert rels[0].requires == ("torch>=2.4", "trl") and rels[0].requires_python == ">=3.9"
    assert rels[1].yanked and not rels[1].final and rels[2].requires is None
    assert t.next_after("demo", "1.0").version == "2.0"       # yanked 1.1 skipped
    assert t.get("demo", "1.0+local").version == "1.0"
    assert t.newest_before("demo", "2025-02-15").version == "1.0"


def test_bundled_table_covers_the_stack_and_records_its_snapshot():
    t = table()
    assert t.snapshot_day >= "2026-12-03"
    assert set(refresh.PACKAGES) <= set(t.packages())
    assert t.get("torch", "2.7.0+cu128").date == "2025-04-23"
    assert t.get("torch", "2.7.0").requires_python
    assert (ROOT / "checks" / "data" / "releases.json.gz").stat().st_size < 1024 * 1024


@pytest.mark.network
def test_refresh_against_the_live_index(tmp_path):
    """Only with DOCTOR_NETWORK_TESTS=1: one real package page and one real wheel's metadata."""
    versions = refresh.parse_index(refresh.index_page("cut-cross-entropy"), "cut-cross-entropy")
    assert "25.1.1" in versions
    text = refresh.wheel_metadata(versions["25.1.1"]["wheel"])
    assert "Name: cut-cross-entropy" in text or "Name: cut_cross_entropy" in text
