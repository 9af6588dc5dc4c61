"""Do the installed versions of the training stack fit together? (FM-10, FM-22)

1. Each installed package's own Requires-Dist, read live from the facts and checked with
   `packaging` (doctor/knowledge/requires.py): unsloth's transformers/trl ceilings, peft's torch floor ...
   so the doctor stays right for releases newer than itself.
2. Known pairs from checks/data/version_pairs.json, for what metadata does not say or facts lack:
   torch <-> triton, xformers <-> torch, torchvision <-> torch (binaries built against one torch),
   unsloth <-> unsloth_zoo skew, bitsandbytes too old for Unsloth. Each has its own finding id and
   fix, and its pair is left out of the generic unmet-requirement finding so it is said once.
3. Python outside a package's Requires-Python (unsloth's, with a dated fallback table).
"""
from __future__ import annotations

from typing import Optional

from checks import check
from checks._cuda_compat import PYTORCH_INDEX, torch_cuda_tag
from doctor.knowledge import load
from checks._machine import UNSLOTH_UPGRADE
from doctor.knowledge.releases import declared_on, table
from doctor.knowledge.requires import Unmet, unmet_requirements
from doctor.knowledge.versions import below, calendar_months, matches, parse, public
from doctor.facts import Facts
from doctor.findings import Finding, Severity

UNMET = "versions.unmet-requirement"
XFORMERS = "versions.xformers-torch-mismatch"
TORCHVISION = "versions.torchvision-torch-mismatch"
TRITON = "versions.torch-triton-mismatch"
ZOO = "versions.unsloth-zoo-skew"
BNB = "versions.bitsandbytes-too-old"
PYTHON = "versions.python-unsupported"
OPTIONAL = "versions.optional-requirement-missing"

# Required packages whose mismatch breaks training (error); others are a warning.
CORE = {"torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "xformers", "triton",
        "datasets", "unsloth", "unsloth-zoo", "tokenizers", "safetensors", "huggingface-hub",
        "torchao", "torchvision"}
# Packages whose Requires-Python mismatch stops training (the rest: warning).
PYTHON_CRITICAL = {"unsloth", "unsloth-zoo", "torch"}

LINK_XFORMERS = "https://github.com/unslothai/unsloth/issues/8580"
LINK_ZOO = "https://github.com/unslothai/unsloth/issues/2435"
LINK_AUTO_INSTALL = "https://github.com/unslothai/unsloth/blob/main/unsloth/_auto_install.py"
LINK_BNB = "https://github.com/unslothai/unsloth/issues/679"


@check(id="version-matrix", title="the training stack's versions fit together (declared requirements, known pairs, Python)",
       finding_ids=(UNMET, OPTIONAL, XFORMERS, TORCHVISION, TRITON, ZOO, BNB, PYTHON), order=50)
def version_matrix(facts: Facts, config=None) -> list[Finding]:
    out: list[Finding] = []
    covered: set[tuple[str, str]] = {("xformers", "torch"), ("torchvision", "torch"),
                                     ("torch", "triton"), ("unsloth", "unsloth-zoo"),
                                     ("vllm", "torch")}   # checks/workloads_vllm.py: vllm-torch-mismatch
    for fn in (_xformers, _torchvision, _triton, _zoo_skew):
        f = fn(facts)
        if f is not None:
            out.append(f)
    bnb = _bnb_too_old(facts)
    if bnb is not None:
        out.append(bnb)
        covered |= {(p, "bitsandbytes") for p in facts.packages}
    for name in sorted(facts.packages):
        unmet = [u for u in unmet_requirements(facts, name)
                 if (u.parent, u.child) not in covered and not (u.child == "torch" and u.installed is None)]
        optional = [u for u in unmet if u.installed is None and _optional_note(u) is not None]
        unmet = [u for u in unmet if u not in optional]
        if unmet:
            out.append(_unmet(unmet))
        if optional:
            out.append(_optional_missing(optional))
    out.extend(_python(facts))
    return out


# -- 1. declared requirements ----------------------------------------------------------------------

def _unmet(unmet: list[Unmet]) -> Finding:
    first = unmet[0]
    def describe(u: Unmet) -> str:
        return f"{u.wanted} ({u.installed} installed)" if u.installed else f"{u.wanted} (not installed)"
    severe = any(u.child in CORE for u in unmet)
    more = f", and {len(unmet) - 1} more" if len(unmet) > 1 else ""
    return Finding(
        id=UNMET, severity=Severity.ERROR if severe else Severity.WARNING,
        title=f"{first.parent} {first.parent_version} requires {describe(first)}{more}",
        why=f"{first.parent} declares these requirements in its own metadata and they are not met: "
            + "; ".join(describe(u) for u in unmet)
            + ". It was installed without them (--no-deps, or a later install changed them); code "
              "paths that rely on them fail at import or, worse, mid-training.",
        remediation=f"Install versions inside the declared ranges (pip will name any other package "
                    f"that conflicts), or install the {first.parent} release that matches what you have.",
        commands=["pip install " + " ".join(f'"{u.wanted}"' for u in unmet)],
        evidence={f"packages.{first.parent}.requires": [u.line for u in unmet],
                  **{f"packages.{u.child}.version": u.installed for u in unmet}},
        failure_mode="FM-22" if first.parent.startswith("unsloth") else "FM-10",
        confidence=0.9, fix_cost=2)


def _optional_note(u: Unmet) -> Optional[str]:
    """Declared but, as measured, not needed to train: the package's note, else None."""
    for row in load("version_pairs")["optional_in_practice"]:
        if row["parent"] == u.parent and row["child"] == u.child:
            return row["note"]
    return None


def _optional_missing(missing: list[Unmet]) -> Finding:
    first = missing[0]
    return Finding(
        id=OPTIONAL, severity=Severity.INFO,
        title=f"{first.parent} declares {', '.join(u.child for u in missing)}, not installed; "
              "training works without " + ("it" if len(missing) == 1 else "them"),
        why="; ".join(f"{u.child}: {_optional_note(u)}" for u in missing) + ".",
        remediation="Nothing to do unless you need what it adds; `pip install` it to silence "
                    "pip's dependency warnings.",
        commands=["pip install " + " ".join(f'"{u.wanted}"' for u in missing)],
        evidence={f"packages.{first.parent}.requires": [u.line for u in missing]},
        failure_mode="FM-10", confidence=0.9, fix_cost=1)


# -- 2. known pairs --------------------------------------------------------------------------------

def _built_for(facts: Facts, binary: str, table: str) -> tuple[Optional[str], str]:
    """The torch specifier a binary package was built for: its own pin (installed metadata, else the
    release table's copy of that version's Requires-Dist), else the pairs table's row."""
    spec, basis = declared_on(facts, binary, "torch")
    if spec is not None and str(spec):
        return str(spec), basis
    for row in load("version_pairs")[table]:
        if matches(facts.version(binary), row[binary]):
            return row["torch"], f"checks/data/version_pairs.json {table}"
    return None, ""


def _matching(facts: Facts, binary: str, table: str) -> Optional[str]:
    """The newest binary release built for the installed torch, from the table: '0.0.24'."""
    torch = facts.version("torch")
    fits = [row[binary].lstrip("=") for row in load("version_pairs")[table] if matches(torch, row["torch"])]
    return max(fits, key=lambda v: parse(v.rstrip(".*")) or parse("0"), default=None)


def _pair_mismatch(facts: Facts, binary: str, table: str, fid: str, links: list[str],
                   what_breaks: str) -> Optional[Finding]:
    have, torch = facts.version(binary), facts.version("torch")
    if not have or not torch:
        return None
    spec, basis = _built_for(facts, binary, table)
    if spec is None or matches(torch, spec) is not False:
        return None
    match = _matching(facts, binary, table)
    tag = torch_cuda_tag(torch)
    index = f" --index-url {PYTORCH_INDEX}{tag}" if tag else ""
    target = f'"{binary}=={match}"' if match else binary
    return Finding(
        id=fid, severity=Severity.ERROR,
        title=f"{binary} {have} was built for torch{spec}, but torch {torch} is installed",
        why=f"{binary} ships compiled extensions for one torch release; with another one "
            f"{what_breaks}",
        remediation=(f"Install the {binary} built for torch {public(torch)}" + (f" ({match})" if match else "")
                     + ", without letting pip replace torch; or reinstall the torch it was built for."),
        commands=[f"pip install --force-reinstall --no-deps {target}{index}"],
        evidence={f"packages.{binary}.version": have, "torch.version": torch, basis: f"torch{spec}"},
        links=links, failure_mode="FM-10", confidence=0.9, fix_cost=2)


def _xformers(facts: Facts) -> Optional[Finding]:
    return _pair_mismatch(
        facts, "xformers", "xformers_torch", XFORMERS, [LINK_XFORMERS, LINK_AUTO_INSTALL],
        "it prints \"xFormers can't load C++/CUDA extensions\" and Unsloth either stops ('You have "
        "torch = X but xformers = Y') or loses its memory-efficient attention.")


def _torchvision(facts: Facts) -> Optional[Finding]:
    return _pair_mismatch(
        facts, "torchvision", "torchvision_torch", TORCHVISION, [],
        "`import torchvision` fails (operator torchvision::nms does not exist), and transformers "
        "imports it for vision and multimodal models.")


def _triton(facts: Facts) -> Optional[Finding]:
    p = facts.platform
    torch = facts.version("torch")
    if p.system != "Linux" or p.machine not in ("x86_64", "") or not torch or "triton" not in facts.packages:
        return None
    if "+cpu" in torch or (facts.torch.importable and facts.torch.cuda_version is None):
        return None         # CPU builds pin no triton
    declared, basis = declared_on(facts, "torch", "triton")
    if declared is not None:
        spec = str(declared)
    elif basis:
        return None         # torch's metadata (installed or the table's) pins no triton here
    elif (parse(torch) is not None and parse(torch).is_prerelease):
        return None         # a nightly pins its own pytorch-triton build; the pairs table is for releases
    else:
        row = next((r for r in load("version_pairs")["torch_triton"] if matches(torch, r["torch"])), None)
        if row is None:
            return None
        spec, basis = row["triton"], "checks/data/version_pairs.json torch_triton"
    have = facts.version("triton")
    if have and (not spec or matches(have, spec) is not False):
        return None
    return Finding(
        id=TRITON, severity=Severity.ERROR,
        title=(f"triton {have} does not match torch {torch} (which needs triton{spec})" if have else
               f"triton is not installed, but torch {torch} needs triton{spec}"),
        why="torch.compile/Inductor and every Triton kernel (all of Unsloth's) are generated for the "
            "triton release torch was built with; another release fails to compile or import "
            "('No module named triton', missing attributes in triton.backends).",
        remediation="Install the triton release torch pins.",
        commands=[f'pip install "triton{spec}"'],
        evidence={"packages.triton.version": have, "torch.version": torch, basis: f"triton{spec}"},
        failure_mode="FM-10", confidence=0.9, fix_cost=1)


def _zoo_skew(facts: Facts) -> Optional[Finding]:
    """The owner of the unsloth <-> unsloth_zoo pairing (release_metadata and release_drift leave it
    here): the zoo range unsloth declares (installed metadata, else the release table's), then the
    release dates (a pair neither side was released with), then calendar months."""
    unsloth = facts.version("unsloth")
    if not unsloth or "unsloth-zoo" not in facts.packages or facts.packages["unsloth-zoo"].error:
        return None
    zoo = facts.version("unsloth-zoo")
    spec, basis = declared_on(facts, "unsloth", "unsloth_zoo")
    declared = spec is not None
    evidence = {"packages.unsloth.version": unsloth, "packages.unsloth-zoo.version": zoo,
                basis or "unsloth declares": f"unsloth_zoo{spec}" if declared else None}
    common = dict(id=ZOO, remediation="Upgrade both together with the maintainers' command, then delete "
                                      "any stale unsloth_compiled_cache/ folder next to your script.",
                  commands=[UNSLOTH_UPGRADE, "rm -rf unsloth_compiled_cache"], evidence=evidence,
                  links=[LINK_ZOO], failure_mode="FM-22", fix_cost=1)
    if declared and zoo is None:
        return Finding(severity=Severity.CRITICAL, confidence=0.95,
                       title=f"unsloth {unsloth} needs unsloth_zoo, which is not installed",
                       why="`import unsloth` raises 'Please install unsloth_zoo via `pip install unsloth_zoo`'.",
                       **common)
    if declared and str(spec) and matches(zoo, str(spec)) is False:
        older = any(s.operator in (">=", ">", "~=") and below(zoo, s.version) for s in spec)
        return Finding(severity=Severity.ERROR, confidence=0.95,
                       title=f"unsloth_zoo {zoo} is {'older than' if older else 'outside'} what unsloth "
                             f"{unsloth} declares (unsloth_zoo{spec})",
                       why="unsloth and unsloth_zoo move together: unsloth imports patches and trainer "
                           "code from the zoo, so a skewed pair fails with missing names, prints "
                           "'Please update Unsloth and Unsloth-Zoo to the latest version!', or hangs "
                           "while patching (hiyouga/LlamaFactory#7170).",
                       **common)
    dated = _zoo_dates(unsloth, zoo, ahead_only=bool(declared and str(spec)))
    if dated is not None:
        newer, older_next = dated
        evidence["checks/data/releases.json.gz"] = f"{newer}; {older_next}"
        return Finding(severity=Severity.WARNING, confidence=0.7,
                       title=f"{newer} came out after {older_next}: an untested unsloth/unsloth_zoo pairing",
                       why="unsloth and unsloth_zoo are released together and each unsloth release is tested "
                           "with the zoo of its day; a release from after the other side's next release is a "
                           "pairing nobody tested, and renamed helpers fail at import or while patching "
                           "(unslothai/unsloth#2713: unsloth 2025.6.2 with zoo 2025.7.1, fixed by moving "
                           "the zoo back).",
                       **common)
    a, b = calendar_months(unsloth), calendar_months(zoo)
    limit = load("version_pairs")["unsloth_zoo_skew"]["max_months"]
    if a is not None and b is not None and abs(a - b) > limit:
        return Finding(severity=Severity.WARNING, confidence=0.6,
                       title=f"unsloth {unsloth} and unsloth_zoo {zoo} are {abs(a - b)} months apart",
                       why="They are released together with matching calendar versions; a pair this far "
                           "apart is untested and a classic source of import errors and patching hangs.",
                       **common)
    return None


def _zoo_dates(unsloth: str, zoo: str, ahead_only: bool) -> Optional[tuple[str, str]]:
    """From the release table: ('unsloth_zoo 2025.7.1 (2025-07-09)', "unsloth 2025.6.2's next release
    2025.6.3 (2025-06-20)") when one side was uploaded after the other side's next release, else None.
    Releases of the two on the same day count as paired. ahead_only: unsloth declares a zoo range, so
    an older zoo inside it is vouched for by its maintainers; only a zoo from its future is untested
    (unsloth declares no ceiling)."""
    t = table()
    u, z = t.get("unsloth", unsloth), t.get("unsloth-zoo", zoo)
    if u is None or z is None or not u.date or not z.date:
        return None
    for new, old in ((z, u),) if ahead_only else ((z, u), (u, z)):
        nxt = t.next_by_date(old.package, old.version)
        if nxt is not None and nxt.date and new.date > nxt.date:
            name = {"unsloth": "unsloth", "unsloth-zoo": "unsloth_zoo"}
            return (f"{name[new.package]} {new.version} ({new.date})",
                    f"{name[old.package]} {old.version}'s next release {nxt.version} ({nxt.date})")
    return None


def _bnb_too_old(facts: Facts) -> Optional[Finding]:
    row = next(r for r in load("version_pairs")["minimums_with_unsloth"] if r["package"] == "bitsandbytes")
    have = facts.version("bitsandbytes")
    if not facts.version("unsloth") or not have or not below(have, row["min"]):
        return None
    return Finding(
        id=BNB, severity=Severity.ERROR,
        title=f"bitsandbytes {have} is older than Unsloth's floor {row['min']}",
        why="Older bitsandbytes fails its CUDA setup ('CUDA Setup failed despite GPU being available', "
            "libcudart not found), most often on WSL2, and lacks kernels Unsloth's 4-bit path calls.",
        remediation=f"Upgrade bitsandbytes to {row['min']} or newer.",
        commands=[f'pip install --upgrade "bitsandbytes>={row["min"]}"', "python -m bitsandbytes"],
        evidence={"packages.bitsandbytes.version": have, "packages.unsloth.version": facts.version("unsloth")},
        links=[LINK_BNB], failure_mode=row["failure_mode"], confidence=0.85, fix_cost=1)


# -- 3. Python -------------------------------------------------------------------------------------

def _python(facts: Facts) -> list[Finding]:
    py = facts.platform.python_version
    if not py or parse(py) is None:
        return []
    out = []
    for name in sorted(facts.packages):
        info = facts.packages[name]
        if not info.version:
            continue
        spec, basis, approximate = info.requires_python, f"packages.{name}.requires_python", False
        if not spec and name == "unsloth":
            row = next((r for r in load("version_pairs")["unsloth_requires_python"]
                        if matches(info.version, r["unsloth"])), None)
            if row is not None:
                spec, basis, approximate = row["requires_python"], "checks/data/version_pairs.json unsloth_requires_python", True
        if not spec or matches(py, spec) is not False:
            continue
        severe = name in PYTHON_CRITICAL and not approximate
        out.append(Finding(
            id=PYTHON, severity=Severity.ERROR if severe else Severity.WARNING,
            title=f"{name} {info.version} supports Python {spec}, this is Python {py}",
            why=f"{name} declares Requires-Python {spec}; pip would not have installed it on Python {py} "
                "unless forced, and its compiled dependencies (xformers, bitsandbytes, triton wheels) "
                "often do not exist for this Python.",
            remediation="Create an environment with a supported Python (e.g. `uv venv -p 3.11` or "
                        "`conda create -n ft python=3.11`) and install the stack there.",
            commands=["python --version"],
            evidence={"platform.python_version": py, basis: spec, f"packages.{name}.version": info.version},
            links=[LINK_AUTO_INSTALL] if name == "unsloth" else [],
            failure_mode="FM-10", confidence=0.6 if approximate else 0.9, fix_cost=3))
    return out
