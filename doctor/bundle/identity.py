"""Who and where, for the redactor: the user, home and host recorded in the facts and those of
this machine, and the secret values of credential-named environment variables (this process's,
and the target process tree's when bundling a --pid)."""
from __future__ import annotations

import getpass
import os
import socket
from typing import Iterable, Mapping, Optional

from doctor.redact import Redactor
from doctor.facts import Facts


def _safe(fn) -> Optional[str]:
    try:
        return fn() or None
    except Exception:    # getpass.getuser() raises without a passwd entry (containers)
        return None


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of variables whose names say credential (doctor.probes.env's rule)."""
    from doctor.probes.env import SECRET_PLACEHOLDER, is_secret_name

    return [v for k, v in environ.items() if is_secret_name(k) and v and v != SECRET_PLACEHOLDER]


def process_environ(pid: int) -> dict[str, str]:
    """/proc/<pid>/environ of a process and its descendants; {} where unreadable."""
    from doctor.proctree import descendants

    out: dict[str, str] = {}
    for p in [pid] + [c.pid for c in descendants(pid)]:
        try:
            with open(f"/proc/{p}/environ", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        for item in raw.split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep:
                out.setdefault(key.decode(errors="replace"), value.decode(errors="replace"))
    return out


def redactor_for(facts: Facts, environs: Iterable[Mapping[str, str]] = (), enabled: bool = True,
                 extra_secrets: Iterable[str] = ()) -> Redactor:
    """The bundle's redactor: identity from the facts and from this machine, known secrets from
    os.environ, the given environments (a target process's), the facts' own env and extra_secrets
    (values of credential-named variables seen elsewhere, e.g. py-spy locals)."""
    p = facts.platform
    env_sources = [dict(os.environ), dict(facts.env)] + [dict(e) for e in environs]
    users = [p.username, _safe(getpass.getuser)] + [e.get(k) for e in env_sources for k in ("USER", "LOGNAME", "USERNAME")]
    hosts = [p.hostname, _safe(socket.gethostname), _safe(lambda: os.uname().nodename)]
    homes = [p.home, _safe(lambda: os.path.expanduser("~"))] + [e.get(k) for e in env_sources for k in ("HOME", "USERPROFILE")]
    secrets = [s for e in env_sources for s in secret_values(e)] + list(extra_secrets)
    return Redactor(usernames=tuple(u for u in users if u), hostnames=tuple(h for h in hosts if h),
                    homes=tuple(h for h in homes if h), known_secrets=tuple(secrets), enabled=enabled)
