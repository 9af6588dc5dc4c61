"""The bundle archive: writing (the redaction choke point) and reading it back.

Every member goes through BundleWriter, which redacts it before a byte reaches the zip: text and
JSON through the Redactor, binary files (the repro chart) scanned and dropped if they carry
anything the Redactor would remove. The manifest lists each member with where it came from, its
sha256 and what was redacted in it. The zip is written beside its final name and renamed when
complete, so an interrupted bundle never leaves a half archive behind.
"""
from __future__ import annotations

import hashlib
import json
import lzma
import os
import tarfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from doctor import __version__, exitcodes, limits
from doctor.redact import Redactor, portable_name
from doctor.exitcodes import DoctorError
from doctor.facts import Facts
from doctor.limits import MAX_MEMBER_BYTES   # what a reader accepts per member

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
FACTS = "facts.json"
CONFIG_DIR = "config/"
CONFIG_JSON = "config/config.json"          # the parsed TrainingConfig
CONFIG_OVERRIDES = "config/overrides.json"  # command-line overrides it was parsed with


@dataclass
class MemberRecord:
    path: str
    source: str
    sha256: str
    bytes: int
    redactions: dict[str, int] = field(default_factory=dict)


class BundleWriter:
    """Writes one zip; every member passes the redactor. Use as a context manager."""

    def __init__(self, path: Path, redactor: Redactor, command: str = ""):
        self.path = Path(path)
        self.redactor = redactor
        self.command = command
        self.records: list[MemberRecord] = []
        self.notes: list[str] = []
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_DEFLATED)

    # -- members ------------------------------------------------------------------------------
    def add_text(self, name: str, text: str, source: str, counts: Optional[Counter] = None) -> str:
        """Redact and store text; returns what was stored."""
        red, c = self.redactor.redact_file(name, text)     # a script is redacted so it still parses
        if counts:
            c = c + Counter(counts)
        self._store(name, red.encode("utf-8"), source, c)
        return red

    def add_json(self, name: str, obj: Any, source: str, counts: Optional[Counter] = None) -> Any:
        """Redact every string of obj (keys included), then store it as JSON; returns the stored object.
        counts: redactions already made to obj before it got here (the env allowlist)."""
        counts = Counter(counts or {})
        red = self.redactor.redact_obj(obj, counts)
        data = json.dumps(red, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
        self._store(name, data.encode("utf-8"), source, counts)
        return red

    def add_bytes(self, name: str, data: bytes, source: str) -> bool:
        """Store a binary file unless it carries text the redactor would remove (then a note)."""
        if self.redactor.enabled:
            _, found = Redactor(**_same_rules(self.redactor)).redact_counted(data.decode("latin-1"))
            if found:
                self.note(f"{name}: not included, it contains {', '.join(sorted(found))} "
                          "that cannot be removed from a binary file")
                return False
        self._store(name, data, source, Counter())
        return True

    def note(self, text: str) -> None:
        text = self.redactor.redact(text)
        if text not in self.notes:
            self.notes.append(text)

    def _store(self, name: str, data: bytes, source: str, counts: Counter) -> None:
        name = portable_name(self.redactor.redact(name))
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, data)
        self.records.append(MemberRecord(name, self.redactor.redact(source), hashlib.sha256(data).hexdigest(),
                                         len(data), dict(sorted(counts.items()))))

    # -- finishing ----------------------------------------------------------------------------
    def manifest(self, created_at: str) -> dict:
        totals: Counter = Counter()
        for r in self.records:
            totals.update(r.redactions)
        return {
            "bundle_format": BUNDLE_FORMAT,
            "tool": "finetune-doctor",
            "doctor_version": __version__,
            "created_at": created_at,
            "command": self.command,
            "redacted": self.redactor.enabled,
            "redaction_totals": dict(sorted(totals.items())),
            "files": [vars(r) for r in self.records],
            "notes": list(self.notes),
        }

    def close(self, created_at: str) -> dict:
        manifest = self.manifest(created_at)
        self.add_json(MANIFEST, manifest, "doctor bundle")
        self._zip.close()
        os.replace(self._tmp, self.path)
        return manifest

    def abort(self) -> None:
        try:
            self._zip.close()
        finally:
            try:
                self._tmp.unlink()
            except OSError:
                pass

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _same_rules(r: Redactor) -> dict:
    # A scratch copy for scanning, so a dropped binary does not add to the bundle's counts.
    return dict(usernames=r.usernames, hostnames=r.hostnames, homes=r.homes, known_secrets=r.known_secrets)


# ---------------------------------------------------------------- reading

@dataclass
class BundleContents:
    path: Path
    members: dict[str, bytes]               # path inside the archive -> bytes (text-ish members only)

    def text(self, name: str) -> Optional[str]:
        data = self.members.get(name)
        return None if data is None else data.decode("utf-8", errors="replace")

    def json(self, name: str) -> Any:
        text = self.text(name)
        if text is None:
            return None
        from doctor.config.structured import load_json_value

        return load_json_value(text, f"bundle {self.path.name}: {name}", exitcodes.FACTS_INVALID)

    @property
    def manifest(self) -> dict:
        return self.json(MANIFEST) or {}

    def facts(self) -> Facts:
        data = self.json(FACTS)
        if data is None:
            raise DoctorError(f"bundle {self.path.name} has no {FACTS}: is it a doctor bundle?",
                              exitcodes.FACTS_INVALID)
        try:
            return Facts.from_dict_checked(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise DoctorError(f"bundle {self.path.name}: cannot read {FACTS}: {exc}", exitcodes.FACTS_INVALID)

    def config_source(self) -> Optional[tuple[str, str]]:
        """(file name, text) of the bundled training config, if any."""
        for name in sorted(self.members):
            if (name.startswith(CONFIG_DIR) and name not in (CONFIG_JSON, CONFIG_OVERRIDES)
                    and ".patched" not in name and not name.endswith(".diff")):
                return name[len(CONFIG_DIR):], self.text(name) or ""
        return None


def _normalise(names: list[str]) -> dict[str, str]:
    """Archive path -> bundle path, dropping one top folder if the user re-packed the bundle."""
    if FACTS in names:
        return {n: n for n in names}
    tops = [n for n in names if n.endswith("/" + FACTS) and n.count("/") == 1]
    if len(tops) == 1:
        prefix = tops[0][: -len(FACTS)]
        return {n: n[len(prefix):] for n in names if n.startswith(prefix)}
    return {n: n for n in names}


def open_bundle(path: Path) -> BundleContents:
    """Read a bundle (.zip, or .tar.gz/.tgz if someone re-packed it); DoctorError when unreadable
    or past the stated limits (doctor/limits.py), checked from the archive's directory before a
    byte is decompressed, and again while reading (a directory can lie about sizes)."""
    path = Path(path)
    if not path.exists():
        raise DoctorError(f"bundle not found: {path}", exitcodes.FACTS_INVALID)
    if path.is_dir():
        raise DoctorError(f"{path}: is a directory (expected a bundle .zip)", exitcodes.FACTS_INVALID)
    try:
        size = path.stat().st_size
        if size > limits.MAX_BUNDLE_BYTES:
            raise DoctorError(f"{path}: {size:,} bytes, over the {limits.MAX_BUNDLE_BYTES:,}-byte limit "
                              "for a bundle", exitcodes.FACTS_INVALID)
        if zipfile.is_zipfile(path):
            return BundleContents(path, _read_zip(path))
        if tarfile.is_tarfile(path):
            return BundleContents(path, _read_tar(path))
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, RuntimeError, ValueError,
            NotImplementedError, zlib.error, lzma.LZMAError) as exc:
        raise DoctorError(f"cannot read bundle {path}: {exc}", exitcodes.FACTS_INVALID)
    raise DoctorError(f"{path} is not a doctor bundle (expected a .zip from `doctor bundle`)",
                      exitcodes.FACTS_INVALID)


class _Budget:
    """Uncompressed bytes left for the whole archive."""

    def __init__(self, path: Path):
        self.path, self.left = path, limits.MAX_BUNDLE_TOTAL_BYTES

    def refuse(self, why: str) -> DoctorError:
        return DoctorError(f"bundle {self.path.name}: {why} (refused: a zip bomb?)", exitcodes.FACTS_INVALID)

    def members(self, n: int) -> None:
        if n > limits.MAX_BUNDLE_MEMBERS:
            raise self.refuse(f"{n:,} entries, over the limit of {limits.MAX_BUNDLE_MEMBERS:,}")

    def take(self, name: str, declared: int, compressed: Optional[int] = None) -> None:
        if declared > self.left:
            raise self.refuse(f"more than {limits.MAX_BUNDLE_TOTAL_BYTES:,} bytes uncompressed")
        if compressed is not None and declared > 1024 * 1024 and declared > limits.MAX_COMPRESSION_RATIO * max(compressed, 1):
            raise self.refuse(f"{name} expands {declared // max(compressed, 1):,} times "
                              f"(limit {limits.MAX_COMPRESSION_RATIO})")
        self.left -= declared


def _read_capped(fh, name: str, declared: int, budget: _Budget) -> bytes:
    """Read at most what the directory declared: a member that inflates past it is refused."""
    data = fh.read(declared + 1)
    if len(data) > declared:
        raise budget.refuse(f"{name} is larger than its declared size")
    return data


def _read_zip(path: Path) -> dict[str, bytes]:
    budget = _Budget(path)
    with zipfile.ZipFile(path) as zf:
        entries = zf.infolist()
        budget.members(len(entries))
        infos = {i.filename: i for i in entries if not i.is_dir()}
        out = {}
        for arc, name in _normalise(list(infos)).items():
            info = infos[arc]
            if info.file_size > MAX_MEMBER_BYTES:
                continue   # too big to be ours (the repro chart is KBs): skipped, not read
            budget.take(arc, info.file_size, info.compress_size)
            with zf.open(info) as fh:
                out[name] = _read_capped(fh, arc, info.file_size, budget)
        return out


class _CappedStream:
    """A decompressed stream that stops (refused) past the archive budget: listing a compressed
    tar decompresses all of it, so the cap must sit under tarfile, not beside it."""

    def __init__(self, raw, budget: _Budget):
        self.raw, self.budget, self.read_bytes = raw, budget, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n is not None and n >= 0 else 1024 * 1024)
        self.read_bytes += len(data)
        if self.read_bytes > limits.MAX_BUNDLE_TOTAL_BYTES + 1024 * 1024:
            raise self.budget.refuse(f"more than {limits.MAX_BUNDLE_TOTAL_BYTES:,} bytes uncompressed")
        return data


def _open_decompressed(path: Path):
    import bz2
    import gzip

    with path.open("rb") as fh:
        magic = fh.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb")
    return path.open("rb")


def _read_tar(path: Path) -> dict[str, bytes]:
    budget = _Budget(path)
    raw: dict[str, bytes] = {}
    count = 0
    with _open_decompressed(path) as stream, \
            tarfile.open(fileobj=_CappedStream(stream, budget), mode="r|") as tf:
        for m in tf:   # stream mode: each member's data is read as the iteration reaches it
            count += 1
            budget.members(count)
            if not m.isfile() or m.size > MAX_MEMBER_BYTES:
                continue
            budget.take(m.name, m.size)
            fh = tf.extractfile(m)
            if fh is not None:
                raw[m.name.lstrip("./")] = _read_capped(fh, m.name, m.size, budget)
    return {name: raw[arc] for arc, name in _normalise(list(raw)).items()}


def read_bundle_facts(path: Path) -> Facts:
    """The facts inside a bundle: what `doctor run --facts BUNDLE.zip` replays."""
    return open_bundle(path).facts()

