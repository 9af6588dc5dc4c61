#!/usr/bin/env python3
"""Rebuild checks/data/releases.json.gz: every release of the training stack, with its upload date,
Requires-Python and the Requires-Dist lines that name another package of the stack.

    python checks/data/refresh_releases.py [--out PATH] [--workers 16]

Source: PyPI's JSON simple API (PEP 691, `Accept: application/vnd.pypi.simple.v1+json`), one page
per package: upload-time and requires-python per file. Requires-Dist comes from one representative
wheel per version (linux x86_64 or py3-none-any, newest CPython tag): its PEP 658 `.metadata` file
when the index serves one, else the wheel's own `*.dist-info/METADATA`, read with HTTP range
requests (the zip's central directory, then that one member), so a 900 MB torch wheel costs a few
hundred KiB. Versions with no wheel (sdist only: flash-attn, deepspeed) get requires = null.

Size budget: only the fields the checks use, dates to the day, requirements on other stack packages
only (the rest never enter a check), gzip. Standard library only, so it runs in any Python >= 3.9.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import gzip
import io
import json
import re
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Optional

INDEX = "https://pypi.org/simple/"
ACCEPT = "application/vnd.pypi.simple.v1+json"
OUT = Path(__file__).with_name("releases.json.gz")
TIMEOUT_S = 30
ATTEMPTS = 4

# The stack, PEP 503-normalized. Requirements on anything else are dropped from the table.
PACKAGES = ("torch", "torchvision", "torchaudio", "triton", "xformers", "bitsandbytes", "transformers",
            "trl", "peft", "accelerate", "datasets", "tokenizers", "unsloth", "unsloth-zoo", "torchao",
            "flash-attn", "deepspeed", "vllm", "liger-kernel", "cut-cross-entropy")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- HTTP: timeouts, retries with backoff ----------------------------------------------------------

class NotFound(Exception):
    pass


def fetch(url: str, headers: Optional[dict] = None) -> bytes:
    """GET with a timeout; retries 5xx, 429 and network errors with exponential backoff."""
    for attempt in range(ATTEMPTS):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "finetune-doctor-refresh", **(headers or {})})
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code in (404, 410):
                raise NotFound(url) from None
            if e.code not in (429, 500, 502, 503, 504) or attempt == ATTEMPTS - 1:
                raise
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            if attempt == ATTEMPTS - 1:
                raise
        time.sleep(0.5 * 2 ** attempt)
    raise RuntimeError("unreachable")


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP Range requests, in cached blocks:
    enough for zipfile to read the central directory and one member."""
    BLOCK = 256 * 1024

    def __init__(self, url: str, size: int, get: Callable[..., bytes] = fetch):
        self.url, self.size, self.pos, self.blocks, self.get = url, size, 0, {}, get

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def _block(self, i: int) -> bytes:
        if i not in self.blocks:
            lo = i * self.BLOCK
            hi = min(self.size, lo + self.BLOCK) - 1
            self.blocks[i] = self.get(self.url, {"Range": f"bytes={lo}-{hi}"})
        return self.blocks[i]

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        out = bytearray()
        while self.pos < end:
            i, off = divmod(self.pos, self.BLOCK)
            chunk = self._block(i)[off:off + end - self.pos]
            if not chunk:
                break
            out += chunk
            self.pos += len(chunk)
        return bytes(out)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def wheel_metadata(file: dict, get: Callable[..., bytes] = fetch) -> str:
    """The METADATA text of a wheel: PEP 658 file first, else range reads of the wheel itself."""
    try:
        return get(file["url"] + ".metadata").decode("utf-8", "replace")
    except NotFound:
        pass
    with zipfile.ZipFile(RangeFile(file["url"], int(file["size"]), get)) as z:
        name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        return z.read(name).decode("utf-8", "replace")


# -- parsing (pure; tested on recorded responses in tests/fixtures/pypi/) --------------------------

WHEEL = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


def version_of(filename: str, project: str) -> Optional[str]:
    """'torch-2.7.0-cp312-cp312-manylinux_2_28_x86_64.whl' -> '2.7.0'; sdists too."""
    m = WHEEL.match(filename)
    if m:
        return m.group("version")
    stem = re.sub(r"\.(tar\.gz|zip|tar\.bz2|tgz)$", "", filename)
    if stem == filename:
        return None                      # .exe, .egg, .rpm: not a distribution we read
    prefix = re.match(r"^(.+?)-(\d.*)$", stem)
    return prefix.group(2) if prefix and canonical(prefix.group(1)) == project else None


def wheel_rank(filename: str) -> tuple:
    """Higher is better: linux x86_64 or any-platform first, then the newest CPython tag, and a
    regular ABI over free-threaded (cp313t)."""
    m = WHEEL.match(filename)
    if not m:
        return (-1,)
    plat, py, abi = m.group("plat"), m.group("py"), m.group("abi")
    platform = 2 if (plat == "any" or ("linux" in plat and "x86_64" in plat)) else 1 if "linux" in plat else 0
    cps = [int(x) for x in re.findall(r"cp3(\d+)", py)]
    return (platform, max(cps, default=0), not abi.endswith("t"))


def parse_metadata(text: str, keep: set) -> list:
    """Requires-Dist lines naming a package in keep, verbatim (markers and extras kept)."""
    out = []
    for line in re.findall(r"^Requires-Dist:\s*(.+?)\s*$", text.split("\n\n", 1)[0], re.M):
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if m and canonical(m.group(0)) in keep:
            out.append(line)
    return out


def parse_index(page: dict, project: str) -> dict:
    """One PEP 691 page -> {version: {"t": earliest upload day, "py": Requires-Python,
    "y": yanked (only when every file is), "wheel": the representative wheel's file entry}}."""
    versions: dict = {}
    for f in page.get("files", []):
        v = version_of(f.get("filename", ""), project)
        if v is None:
            continue
        row = versions.setdefault(v, {"t": None, "py": None, "yanked": True, "wheel": None})
        day = (f.get("upload-time") or "")[:10] or None
        if day and (row["t"] is None or day < row["t"]):
            row["t"] = day
        row["py"] = row["py"] or f.get("requires-python") or None
        row["yanked"] = row["yanked"] and bool(f.get("yanked"))
        if f["filename"].endswith(".whl") and wheel_rank(f["filename"])[0] >= 0:
            if row["wheel"] is None or wheel_rank(f["filename"]) > wheel_rank(row["wheel"]["filename"]):
                row["wheel"] = f
    return versions


def compact(versions: dict, requires: dict) -> dict:
    """The stored form of one package: {"s": [requirement line, ...], "v": {version: {"t", "py"?,
    "r"?: [index into s], "y"?}}}. Lines repeat across versions (unsloth's extras: ~300 a release),
    so each is stored once; "r" absent = unknown (no wheel)."""
    lines: list = []
    index: dict = {}
    out = {}
    for v, row in versions.items():
        rec = {"t": row["t"]}
        if row["py"]:
            rec["py"] = row["py"]
        if requires.get(v) is not None:
            rec["r"] = [index.setdefault(line, len(index)) for line in requires[v]]
        if row["yanked"]:
            rec["y"] = 1
        out[v] = rec
    lines = sorted(index, key=index.get)
    return {"s": lines, "v": out}


# -- the run ---------------------------------------------------------------------------------------

def index_page(project: str) -> dict:
    return json.loads(fetch(INDEX + project + "/", {"Accept": ACCEPT}))


def build(workers: int = 16, log=print) -> dict:
    keep = set(PACKAGES)
    with cf.ThreadPoolExecutor(workers) as pool:
        pages = dict(zip(PACKAGES, pool.map(index_page, PACKAGES)))
        parsed = {p: parse_index(pages[p], p) for p in PACKAGES}
        jobs = {(p, v): pool.submit(wheel_metadata, row["wheel"])
                for p in PACKAGES for v, row in parsed[p].items() if row["wheel"] is not None}
        requires: dict = {p: {} for p in PACKAGES}
        failed = []
        for (p, v), job in jobs.items():
            try:
                requires[p][v] = parse_metadata(job.result(), keep)
            except Exception as e:          # one bad wheel must not sink the table: unknown requires
                failed.append(f"{p} {v}: {type(e).__name__}")
    if failed:
        log(f"metadata unreadable for {len(failed)} versions: " + "; ".join(failed[:10]))
    return {
        "snapshot": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": INDEX + " (PEP 691 JSON: upload-time, requires-python) and each version's wheel "
                          "METADATA (Requires-Dist, only lines naming a package of this table)",
        "packages": {p: compact(parsed[p], requires[p]) for p in PACKAGES},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    table = build(args.workers, log=lambda s: print(s, file=sys.stderr))
    blob = gzip.compress(json.dumps(table, separators=(",", ":"), sort_keys=True).encode(), 9, mtime=0)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_bytes(blob)
    tmp.replace(args.out)
    n = sum(len(v["v"]) for v in table["packages"].values())
    print(f"{args.out}: {n} versions of {len(table['packages'])} packages, {len(blob) / 1024:.0f} KiB, "
          f"{time.monotonic() - t0:.0f} s, snapshot {table['snapshot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
