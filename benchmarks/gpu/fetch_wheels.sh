#!/usr/bin/env bash
# Fetch the wheel set that benchmarks/gpu/run_all.sh installs on the lent GPU machine (no internet
# there; Python 3.12, torch 2.11 + transformers 5.17 + peft already installed). Run here, in the
# repository root; .whl/ is git-ignored and travels with `carry: [".whl"]` (64 MiB limit, so the
# two large wheels are slimmed). Versions: docs/knowledge/unsloth-on-the-gpu-machine.md.
set -euo pipefail
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64
      --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" -d .whl \
  unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 bitsandbytes==0.50.2 \
  datasets==4.8.5 fsspec==2026.2.0 dill==0.4.1 multiprocess==0.70.19 \
  torchao==0.18.0 cut_cross_entropy==25.1.1 tyro docstring_parser typeguard shtab msgspec json5 \
  structlog nest_asyncio py-spy
# unsloth ships studio/ (a web app nothing under unsloth/ imports): drop it, 28 MB -> 2 MB.
# bitsandbytes ships a library per CUDA version: keep the ones torch 2.11+cu130 may load.
python3 - <<'PY'
import base64, hashlib, pathlib, re, zipfile
def repack(path, keep):
    src = zipfile.ZipFile(path); tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        record_name, rows = None, []
        for info in src.infolist():
            if info.filename.endswith(".dist-info/RECORD"):
                record_name = info.filename; continue
            if not keep(info.filename):
                continue
            data = src.read(info.filename)
            if info.filename.endswith("top_level.txt"):
                data = b"\n".join(l for l in data.splitlines() if l.strip() != b"studio") + b"\n"
            out.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append(f"{info.filename},sha256={digest},{len(data)}")
        rows.append(f"{record_name},,")
        out.writestr(record_name, "\n".join(rows) + "\n")
    tmp.replace(path)
d = pathlib.Path(".whl")
repack(next(d.glob("unsloth-2026*.whl")), lambda n: not n.startswith("studio/"))
repack(next(d.glob("bitsandbytes-*.whl")),
       lambda n: not re.search(r"libbitsandbytes_(cuda|rocm)", n) or re.search(r"cuda(128|130)", n))
PY
du -sh .whl; ls .whl
