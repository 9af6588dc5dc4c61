"""One install command that works: a consistent set of pins for the stack installed here, chosen
from the release table (doctor/knowledge/releases.py), pure and offline.

Constraints, all at once: every Requires-Dist of every chosen release on every other chosen package
(markers evaluated for the facts' platform and Python), and where a binary declares nothing, the
release it was built for (checks/data/version_pairs.json, as checks/version_matrix.py uses it);
Requires-Python; the GPU's minimum CUDA (and so the oldest torch built for it: gpu_arch.json ->
torch_cuda_wheels.json); the driver's maximum CUDA (driver_cuda.json) and the torch releases that
flavour publishes; no combination matching a row of checks/data/known_bad.json ("when": name ->
specifier, all must match; a row's "facts" conditions are not evaluated, so the row is avoided on
every machine: the safe side). Among consistent sets it takes the newest, in PRIORITY order (the
patchers first: they pin the rest), by depth-first search with forward checking and a step limit.
Pre-releases and yanked releases are never picked. Each pin carries the reason it is not newer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from checks._cuda_compat import PYTORCH_INDEX, covers, fitting_flavours, flavour_for_cuda
from doctor.knowledge import data_path, load
from checks._machine import driver_column, gpus, min_cuda_for_gpus, sm
from doctor.knowledge.versions import cuda_tuple
from doctor.knowledge.releases import Release, ReleaseTable, table
from doctor.knowledge.requires import active_extras, applicable
from doctor.knowledge.versions import parse
from doctor.facts import Facts, PlatformInfo, canonical_name

# Who is chosen first: the packages that pin others (patchers) before what they pin.
PRIORITY = ("unsloth", "unsloth-zoo", "vllm", "trl", "peft", "transformers", "accelerate", "datasets",
            "tokenizers", "torch", "torchvision", "torchaudio", "triton", "xformers", "bitsandbytes",
            "torchao", "flash-attn", "deepspeed", "liger-kernel", "cut-cross-entropy")
# Built against torch's CUDA: their pins take the PyTorch index's local label (+cu128).
CUDA_BUILDS = ("torch", "torchvision", "torchaudio")
MAX_STEPS = 20000


@dataclass(frozen=True)
class Pin:
    package: str
    version: str          # what goes after ==, local label included ("2.7.1+cu128")
    date: Optional[str]
    reason: str


@dataclass
class InstallPlan:
    pins: list[Pin]
    index_url: Optional[str] = None       # the PyTorch wheel index of the CUDA flavour, if any
    snapshot: str = ""
    notes: list[str] = field(default_factory=list)
    failure: Optional[str] = None         # why no consistent set exists (then pins is empty)

    @property
    def ok(self) -> bool:
        return self.failure is None and bool(self.pins)

    def command(self) -> str:
        pins = " ".join(f'"{p.package}=={p.version}"' for p in self.pins)
        extra = f" --extra-index-url {self.index_url}" if self.index_url else ""
        return f"pip install {pins}{extra}"

    def pin(self, package: str) -> Optional[Pin]:
        return next((p for p in self.pins if p.package == canonical_name(package)), None)


@dataclass(frozen=True)
class _Torch:
    """Bounds on torch from the machine: the GPU's floor, the flavour the driver runs."""
    floor: Optional[str] = None          # "2.7"
    floor_why: str = ""
    flavours: tuple = ()                 # torch_cuda_wheels.json rows the driver runs, newest CUDA first
    flavour_why: str = ""

    def flavour_for(self, torch_version: str) -> Optional[dict]:
        """The newest CUDA flavour that publishes this torch and runs here."""
        return next((f for f in self.flavours if covers(f, torch_version)), None)


# Binaries built against one release of another, where their metadata says nothing (old xformers,
# torchvision, torch -> triton): the same rows checks/version_matrix.py judges installs by.
_PAIR_TABLES = {("xformers", "torch"): "xformers_torch", ("torchvision", "torch"): "torchvision_torch",
                ("torch", "triton"): "torch_triton"}


def _known_pair(x: Release, other: str) -> Optional[str]:
    """The specifier on other that version_pairs.json gives for release x (None: no row)."""
    name = _PAIR_TABLES.get((x.package, other))
    if name is None:
        return None
    for row in load("version_pairs")[name]:
        if SpecifierSet(row[x.package]).contains(x.v, prereleases=True):
            return row[other]
    return None


def _when(row: dict) -> dict[str, SpecifierSet]:
    """A known-bad row's "when" as specifiers; {} (never matches) when any of it is unreadable."""
    try:
        return {canonical_name(k): SpecifierSet(v) for k, v in (row.get("when") or {}).items()}
    except (InvalidSpecifier, TypeError, AttributeError):
        return {}


def known_bad_rows() -> list[dict]:
    """checks/data/known_bad.json rows (owned by the known-bad check); none while it is absent."""
    if not data_path("known_bad.json").exists():
        return []
    return list(load("known_bad").get("rows", []))


_PLANS: dict[tuple, InstallPlan] = {}     # several checks ask for the same machine's plan


def _fingerprint(facts: Facts) -> tuple:
    """Everything plan_install reads from the facts."""
    p, nv = facts.platform, facts.nvidia
    return (tuple(sorted(n for n, i in facts.packages.items() if i.version)),
            p.python_version, p.system, p.machine, p.is_wsl, p.is_windows_native,
            nv.driver_version, nv.cuda_driver_version,
            tuple((g.index, tuple(g.capability or ())) for g in nv.gpus),
            tuple((d.index, tuple(d.capability or ())) for d in facts.torch.devices))


def plan_install(facts: Facts, packages: Optional[list[str]] = None, rows: Optional[list[dict]] = None,
                 releases: Optional[ReleaseTable] = None, max_steps: int = MAX_STEPS) -> InstallPlan:
    """Pins for packages (default: the stack packages installed in facts that the table knows)."""
    if packages is None and rows is None and releases is None and max_steps == MAX_STEPS:
        key = _fingerprint(facts)
        if key not in _PLANS:
            if len(_PLANS) > 16:
                _PLANS.clear()
            _PLANS[key] = _plan(facts, None, None, None, max_steps)
        return _PLANS[key]
    return _plan(facts, packages, rows, releases, max_steps)


def _plan(facts: Facts, packages: Optional[list[str]], rows: Optional[list[dict]],
          releases: Optional[ReleaseTable], max_steps: int) -> InstallPlan:
    t = releases or table()
    rows = known_bad_rows() if rows is None else rows
    wanted = [canonical_name(p) for p in (packages if packages is not None else
                                           [n for n, i in facts.packages.items() if i.version])]
    names = [p for p in PRIORITY if p in wanted and t.releases(p)]
    torch = _torch_bounds(facts)
    if gpus(facts) and min_cuda_for_gpus(facts) and not torch.flavours and facts.nvidia.driver_version:
        return InstallPlan([], snapshot=t.snapshot_day, failure=torch.flavour_why)
    for _round in range(4):     # the stack packages the chosen releases require join the set
        solver = _Solver(t, facts.platform, torch, rows, names, max_steps)
        found = solver.solve()
        pulled = set() if found is None else {c for r in found.values() for c in solver._reqs(r)
                                              if c not in names and t.releases(c)}
        if not pulled:
            break
        names = [p for p in PRIORITY if p in set(names) | pulled]
    if found is None:
        why = ("no consistent set within the search limit" if solver.steps >= max_steps else
               "no set of releases satisfies every declared requirement together")
        return InstallPlan([], snapshot=t.snapshot_day, failure=why + solver.blocker())
    flavour = torch.flavour_for(found["torch"].version) if "torch" in found else None
    pins = [Pin(r.package, _pin_version(r, flavour), r.date, solver.reason(r, found))
            for r in (found[n] for n in names)]
    index = PYTORCH_INDEX + flavour["tag"] if flavour and any(n in CUDA_BUILDS for n in names) else None
    notes = ([f"{flavour['tag']} builds come from the PyTorch index ({index}); everything else "
              "from PyPI"] if index else [])
    return InstallPlan(pins, index, t.snapshot_day, notes)


def _pin_version(r: Release, flavour: Optional[dict]) -> str:
    return f"{r.version}+{flavour['tag']}" if flavour and r.package in CUDA_BUILDS else r.version


def _torch_bounds(facts: Facts) -> _Torch:
    min_cuda = min_cuda_for_gpus(facts)
    floor = floor_why = None
    if min_cuda:
        needed = flavour_for_cuda(min_cuda)
        if needed:
            caps = ", ".join(sorted({sm(g.capability) for g in gpus(facts) if g.capability}))
            floor = needed["torch_min"]
            floor_why = f"{caps} needs CUDA >= {min_cuda}: torch >= {floor} ({needed['tag']})"
    if not gpus(facts):
        return _Torch(floor, floor_why or "")
    nv = facts.nvidia
    flavours = sorted(fitting_flavours(nv.driver_version, driver_column(facts), nv.cuda_driver_version, min_cuda),
                      key=lambda f: cuda_tuple(f["cuda"]), reverse=True)
    drv = nv.driver_version
    if not flavours:
        why = (f"driver {drv} runs no CUDA build of torch that has kernels for this GPU (needs CUDA >= "
               f"{min_cuda}): update the driver first" if drv else "")
        return _Torch(floor, floor_why or "", (), why)
    tags = "/".join(f["tag"] for f in flavours)
    why = f"driver {drv} runs CUDA up to {nv.cuda_driver_version or flavours[0]['cuda']}: builds {tags}"
    return _Torch(floor, floor_why or "", tuple(flavours), why)


class _Solver:
    def __init__(self, t: ReleaseTable, platform: PlatformInfo, torch: _Torch, rows: list[dict],
                 names: list[str], max_steps: int):
        self.t, self.platform, self.torch, self.names = t, platform, torch, names
        # known-bad rows, parsed once: (id, {package: specifier}); unreadable rows dropped
        self.rows = [(row.get("id", "?"), w) for row in rows for w in [_when(row)] if w]
        self.rows_by_pkg: dict[str, list] = {}
        for rid, when in self.rows:
            for k in when:
                self.rows_by_pkg.setdefault(k, []).append((rid, when))
        self.max_steps, self.steps = max_steps, 0
        self.python = parse(platform.python_version)
        self.domains = {n: [r for r in reversed(t.releases(n)) if r.final and self._alone(r) is None]
                        for n in names}
        self._fail_at: Optional[str] = None
        self._req_cache: dict[Release, dict[str, SpecifierSet]] = {}

    # -- constraints ----------------------------------------------------------------------------

    def _alone(self, r: Release) -> Optional[str]:
        """Why r cannot be picked whatever else is chosen (None: it can)."""
        if self.python is not None and r.requires_python:
            try:
                if not SpecifierSet(r.requires_python).contains(self.python, prereleases=True):
                    return f"Requires-Python {r.requires_python} (this is Python {self.platform.python_version})"
            except Exception:
                pass
        for rid, when in self.rows:     # a known-bad row about this package alone
            if set(when) == {r.package} and when[r.package].contains(r.v, prereleases=True):
                return f"known-bad release {rid}"
        if r.package == "torch":
            if self.torch.floor and r.v.release[:2] < parse(self.torch.floor).release[:2]:
                return self.torch.floor_why
            if self.torch.flavours and self.torch.flavour_for(r.version) is None:
                return self.torch.flavour_why
        return None

    def _reqs(self, r: Release) -> dict[str, SpecifierSet]:
        """r's requirements on other stack packages that apply on this platform."""
        if r in self._req_cache:
            return self._req_cache[r]
        out: dict[str, SpecifierSet] = self._req_cache.setdefault(r, {})
        extras = active_extras(r.package)
        # unsloth lists ~300 lines behind extras nobody installs: skip them before parsing markers
        lines = [ln for ln in r.requires or () if "extra" not in ln
                 or any(f'"{e}"' in ln or f"'{e}'" in ln for e in extras)]
        for req, _line in applicable(lines, self.platform, r.package):
            child = canonical_name(req.name)
            if child != r.package:
                out[child] = out.get(child, SpecifierSet()) & req.specifier
        return out

    def _conflict(self, a: Release, b: Release) -> Optional[str]:
        for x, y in ((a, b), (b, a)):
            spec = self._reqs(x).get(y.package)
            if spec is not None and str(spec) and not spec.contains(y.v, prereleases=True):
                return f"{x.package} {x.version} declares {y.package}{spec}"
            if spec is None or not str(spec):
                pair = _known_pair(x, y.package)
                if pair is not None and not SpecifierSet(pair).contains(y.v, prereleases=True):
                    return f"{x.package} {x.version} is built for {y.package}{pair} (checks/data/version_pairs.json)"
        return None

    def _bad_with(self, r: Release, chosen: dict[str, Release]) -> Optional[str]:
        """_bad for chosen plus r, looking only at the rows that name r's package."""
        for rid, when in self.rows_by_pkg.get(r.package, ()):
            if all((k == r.package and spec.contains(r.v, prereleases=True)) or
                   (k in chosen and k != r.package and spec.contains(chosen[k].v, prereleases=True))
                   for k, spec in when.items()):
                return f"known-bad combination {rid}"
        return None

    def _fits(self, r: Release, chosen: dict[str, Release]) -> Optional[str]:
        self.steps += 1             # every evaluation counts against the step limit: never hang
        for other in chosen.values():
            why = self._conflict(r, other)
            if why:
                return why
        return self._bad_with(r, chosen)

    # -- search ---------------------------------------------------------------------------------

    def solve(self) -> Optional[dict[str, Release]]:
        empty = next((n for n in self.names if not self.domains[n]), None)
        if empty is not None:
            self._fail_at = empty
            return None
        return self._dfs(0, {})

    def _dfs(self, i: int, chosen: dict[str, Release]) -> Optional[dict[str, Release]]:
        if i == len(self.names):
            return dict(chosen)
        name = self.names[i]
        for r in self.domains[name]:
            if self.steps >= self.max_steps:
                return None
            if self._fits(r, chosen) is not None:
                continue
            chosen[name] = r
            if all(any(self._fits(c, chosen) is None for c in self.domains[m]) for m in self.names[i + 1:]):
                found = self._dfs(i + 1, chosen)
                if found is not None:
                    return found
            del chosen[name]
        if self._fail_at is None:
            self._fail_at = name
        return None

    def blocker(self) -> str:
        name = self._fail_at
        if name is None:
            return ""
        if not self.domains.get(name):
            whys = {self._alone(r) for r in self.t.releases(name) if r.final} - {None}
            return f": no {name} release fits this machine ({'; '.join(sorted(whys)[:2])})"
        return f": nothing fits together with {name}"

    def reason(self, r: Release, chosen: dict[str, Release]) -> str:
        """Why this pin and not a newer release: the first constraint the next newer one breaks."""
        newer = [x for x in self.t.releases(r.package) if x.final and x.v > r.v]
        date = f" ({r.date})" if r.date else ""
        if not newer:
            return f"newest release{date}"
        nxt = newer[0]
        others = {k: v for k, v in chosen.items() if k != r.package}
        why = self._alone(nxt) or self._fits(nxt, others) or "a newer one conflicts further down"
        return f"{r.version}{date}; {nxt.version} is excluded: {why}"


def runnable_torch(facts: Facts, releases: Optional[ReleaseTable] = None) -> tuple[list[Release], str]:
    """The final torch releases this machine can run (the GPU's floor, the driver's flavour, the
    Python), newest first, and the bounds in words. Without a GPU: every torch for this Python."""
    t = releases or table()
    solver = _Solver(t, facts.platform, _torch_bounds(facts), [], ["torch"], MAX_STEPS)
    bounds = "; ".join(w for w in (solver.torch.floor_why, solver.torch.flavour_why if solver.torch.flavours else "") if w)
    return solver.domains["torch"], bounds


def installed_torch_runs(facts: Facts) -> bool:
    """The installed torch (a nightly too) is at or above the GPU's floor and, when the driver bounds
    the CUDA flavour, is a build of a flavour the driver runs. False when no torch is installed."""
    v = parse(facts.version("torch"))
    if v is None:
        return False
    bounds = _torch_bounds(facts)
    if bounds.floor and v.release[:2] < parse(bounds.floor).release[:2]:
        return False
    tag = v.local or ""
    if bounds.flavours and tag.startswith("cu") and tag not in {f["tag"] for f in bounds.flavours}:
        return False
    return True


def pin_lines(plan: InstallPlan) -> list[str]:
    """'torch==2.7.1+cu128: 2.7.1 (2025-06-04); 2.8.0 is excluded: ...', one per pin, for evidence."""
    return [f"{p.package}=={p.version}: {p.reason}" for p in plan.pins] + plan.notes


def violations(facts: Facts, releases: Optional[ReleaseTable] = None, rows: Optional[list[dict]] = None) -> list[str]:
    """The resolver's constraints that the installed set itself breaks, in words ([]: the installed
    stack is one the resolver could have chosen, as far as the table knows)."""
    t = releases or table()
    rows = known_bad_rows() if rows is None else rows
    # The plan avoids every known-bad row anywhere; the installed set breaks only those whose machine
    # conditions (Python, GPU, WSL ...) hold here.
    from checks.known_bad import FACT_CONDITIONS
    rows = [r for r in rows if all(FACT_CONDITIONS.get(k, lambda f, v: False)(facts, v)
                                   for k, v in (r.get("facts") or {}).items())]
    installed = {}
    for name in PRIORITY:
        rel = t.get(name, facts.version(name))
        if rel is not None:
            installed[name] = rel
    bounds = _torch_bounds(facts)
    solver = _Solver(t, facts.platform, bounds, rows, [], MAX_STEPS)
    out, seen = [], {}
    tag = (parse(facts.version("torch")) or parse("0")).local
    if tag and tag.startswith("cu") and bounds.flavours and tag not in {f["tag"] for f in bounds.flavours}:
        tags = "/".join(f["tag"] for f in bounds.flavours)
        out.append(f"torch {facts.version('torch')} is a {tag} build, not one this GPU and driver run ({tags})")
    for name, rel in installed.items():
        why = solver._alone(rel)
        if why:
            out.append(f"{name} {facts.version(name)}: {why}")
        why = solver._fits(rel, seen)
        if why:
            out.append(why)
        seen[name] = rel
    return out
