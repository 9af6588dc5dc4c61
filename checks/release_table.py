"""Is the bundled release table (checks/data/releases.json.gz) new enough for what is installed? A
version it does not know (released after its snapshot, or from another index) leaves the other
release checks silent about that package; say so, with the snapshot date and how to refresh."""
from __future__ import annotations

from packaging.version import Version

from checks import check
from doctor.knowledge.releases import EVIDENCE_KEY, table
from doctor.knowledge.versions import parse
from doctor.facts import Facts
from doctor.findings import Finding, Severity

OUTDATED = "releases.table-outdated"
REFRESH = "python checks/data/refresh_releases.py"


@check(id="release-table", title="the bundled release table knows the installed versions of the stack",
       finding_ids=(OUTDATED,), order=56)
def release_table(facts: Facts, config=None) -> list[Finding]:
    t = table()
    unknown = []
    for name in sorted(facts.packages):
        info = facts.packages[name]
        v = parse(info.version)
        if v is None or not t.knows(name) or t.get(name, info.version) is not None:
            continue
        newest = max((r for r in t.releases(name)), key=lambda r: r.v, default=None)
        if newest is not None and Version(v.public) > newest.v:
            unknown.append((name, info.version, newest))
    if not unknown:
        return []
    return [Finding(
        id=OUTDATED, severity=Severity.INFO,
        title=f"the release table (snapshot {t.snapshot_day}) predates "
              + ", ".join(f"{n} {have}" for n, have, _ in unknown),
        why="Drift, upgrade paths and the one install command are computed from the bundled table; "
            f"for {', '.join(n for n, _, _ in unknown)} it knows releases up to "
            + ", ".join(f"{n} {newest.version} ({newest.date})" for n, _, newest in unknown)
            + ", so those checks say nothing about the installed ones.",
        remediation="Refresh the table from PyPI in a checkout of the doctor (about 3 minutes), or update the doctor.",
        commands=[REFRESH],
        evidence={EVIDENCE_KEY: t.snapshot_day,
                  **{f"packages.{n}.version": have for n, have, _ in unknown}},
        confidence=0.9, fix_cost=1)]
