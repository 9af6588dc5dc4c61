"""`doctor checks`: the registry of checks (and the finding ids each declares) as a table or JSON."""
from __future__ import annotations

import json

from doctor import exitcodes


def list_checks(json_out: bool) -> int:
    from checks import all_checks, finding_producers

    specs = all_checks()
    producers = finding_producers()
    if json_out:   # "kind" tells the runnable checks from the declared producers (not --check ids)
        print(json.dumps([{"id": c.id, "title": c.title, "finding_ids": list(c.finding_ids),
                           "needs_config": c.needs_config, "kind": "check"} for c in specs]
                         + [{"id": p.id, "title": p.title, "finding_ids": list(p.finding_ids),
                             "needs_config": False, "kind": "producer", "source": p.source} for p in producers],
                         indent=2))
        return exitcodes.OK
    from rich.table import Table

    from doctor.report.terminal import make_console

    # ids are what people copy into --check and issue reports: never cut or folded; the prose
    # column takes what is left
    t = Table(show_header=True, header_style="bold", box=None)
    t.add_column("check", no_wrap=True, min_width=max(len(c.id) for c in specs))
    t.add_column("what it looks at", ratio=1, min_width=12, overflow="fold")
    t.add_column("findings", style="dim", no_wrap=True,
                 min_width=max((len(i) for c in [*specs, *producers] for i in c.finding_ids), default=8))
    for c in specs:
        t.add_row(c.id, c.title + (" (needs a config)" if c.needs_config else ""), "\n".join(c.finding_ids))
    for p in producers:
        t.add_row(p.id, f"{p.title} (not a check; --json names its module)", "\n".join(p.finding_ids))
    console = make_console()
    console.print(t)
    from doctor.knowledge.releases import table

    console.print(f"release table: PyPI snapshot {table().snapshot_day or 'missing'} "
                  "(refresh: python checks/data/refresh_releases.py)")
    return exitcodes.OK
