"""The archive: reading a bundle back (zip, re-packed folders, tar.gz), `doctor run --facts
BUNDLE.zip`, bad archives as one-line errors with exit code 9, and the writer's guarantees."""
from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from doctor import exitcodes
from doctor.archive import BundleWriter, read_bundle_facts
from doctor.bundle.build import BundleOptions, make_bundle
from doctor.redact import Redactor
from doctor.cli import app
from doctor.exitcodes import DoctorError
from doctor.facts import Facts
from tests.bundle_helpers import WSL_FACTS, read_members

runner = CliRunner()


@pytest.fixture
def bundle(tmp_path) -> Path:
    return make_bundle(BundleOptions(out=tmp_path / "doctor-bundle-x.zip", facts_path=WSL_FACTS)).path


def test_facts_round_trip_through_a_bundle(bundle):
    original, back = Facts.load(WSL_FACTS), read_bundle_facts(bundle)
    assert back.platform.username in (None, "<user>") and back.platform.home in (None, "~")
    for part in ("torch", "nvidia", "libcuda"):
        assert getattr(back, part) == getattr(original, part), part
    assert {k: p.version for k, p in back.packages.items()} == {k: p.version for k, p in original.packages.items()}
    assert back.packages["torch"].location == "~/unsloth_env/lib/python3.10/site-packages"   # was /home/user/...
    assert back.env == {k: v for k, v in original.env.items()}                 # the snapshot is already clean
    assert back.platform.is_wsl and back.platform.kernel_release == original.platform.kernel_release


def test_doctor_run_reads_the_facts_inside_a_bundle(bundle):
    res = runner.invoke(app, ["run", "--facts", str(bundle)])
    assert res.exit_code in (0, 1), res.output
    assert "wsl.expandable-segments" in res.output and "RTX 2080 Ti" in res.output


def _repack(members: dict[str, bytes], dest: Path, top: str, kind: str) -> Path:
    if kind == "zip":
        with zipfile.ZipFile(dest, "w") as zf:
            for name, data in members.items():
                zf.writestr(top + name, data)
    else:
        with tarfile.open(dest, "w:gz") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(top + name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return dest


@pytest.mark.parametrize("kind,name", [("zip", "again.zip"), ("tar", "again.tar.gz"), ("tar", "again.tgz")])
def test_repacked_bundles_still_read(bundle, tmp_path, kind, name):
    repacked = _repack(read_members(bundle), tmp_path / name, "doctor-bundle-x/", kind)
    assert read_bundle_facts(repacked).nvidia.gpus[0].name == "NVIDIA GeForce RTX 2080 Ti"


def _bad_zip_without_facts(p: Path) -> Path:
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("notes.txt", "hello")
    return p


def _bad_zip_with_broken_facts(p: Path) -> Path:
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("facts.json", "{not json")
    return p


@pytest.mark.parametrize("make,words", [
    (lambda p: p.write_bytes(b"PK\x03\x04 this is not really a zip") and p, "not a doctor bundle"),
    (_bad_zip_without_facts, "has no facts.json"),
    (_bad_zip_with_broken_facts, "not valid JSON"),
    (lambda p: p, "not found"),
])
def test_bad_bundles_are_one_line_errors(tmp_path, make, words):
    path = make(tmp_path / "bad.zip") or tmp_path / "bad.zip"
    with pytest.raises(DoctorError) as err:
        read_bundle_facts(path)
    assert err.value.exit_code == exitcodes.FACTS_INVALID and words in err.value.message
    res = runner.invoke(app, ["analyze", str(path)])
    assert res.exit_code == exitcodes.FACTS_INVALID
    assert res.output.count("\n") == 1 and res.output.startswith("doctor: error:") and "Traceback" not in res.output


def test_an_interrupted_write_leaves_no_archive(tmp_path):
    target = tmp_path / "out.zip"
    with pytest.raises(RuntimeError):
        with BundleWriter(target, Redactor()) as w:
            w.add_text("a.txt", "hello", "test")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_binary_members_are_dropped_when_they_carry_identity(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16 + b"tEXtComment\x00/home/quinn88/run/chart\x00" + b"\x01\x02"
    clean = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    with BundleWriter(tmp_path / "b.zip", Redactor(usernames=("quinn88",), homes=("/home/quinn88",))) as w:
        assert w.add_bytes("repro/chart.png", png, "repro") is False
        assert w.add_bytes("repro/clean.png", clean, "repro") is True
        manifest = w.close("2024-01-01T00:00:00+00:00")
    members = read_members(tmp_path / "b.zip")
    assert "repro/chart.png" not in members and members["repro/clean.png"] == clean
    assert manifest["notes"] == ["repro/chart.png: not included, it contains home that cannot be removed "
                                 "from a binary file"]
    assert json.loads(members["manifest.json"])["files"][0]["path"] == "repro/clean.png"
