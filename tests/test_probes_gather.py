"""gather_facts with fake probes (stuck, crashing, partial, fine), and the timeout scale."""
from __future__ import annotations

import threading

import pytest

from doctor.facts import PlatformInfo
from doctor.probes import ProbeSpec, _registry, gather_facts
from doctor.probes.timeouts import SCALE_ENV, Budget, scale


def test_stuck_crashing_and_partial_probes_become_statuses():
    release = threading.Event()

    def stuck():
        release.wait(30)
        return PlatformInfo(system="never seen")

    def crashing():
        raise RuntimeError("boom")

    specs = [ProbeSpec("platform", "platform", stuck, 0.3),
             ProbeSpec("env", "env", crashing, 5),
             ProbeSpec("torch", "env", lambda: ({"A": "1"}, "`x` hung: y timed out after 1 s"), 5),
             ProbeSpec("packages", "packages", lambda: {}, 5)]
    try:
        facts = gather_facts(specs)
    finally:
        release.set()
    status = {p.name: p for p in facts.probes}
    assert [p.name for p in facts.probes] == ["platform", "env", "torch", "packages"]
    assert status["platform"].timed_out and status["platform"].error == "probe platform did not finish within 0.3 s"
    assert facts.platform.system == ""                       # the stuck probe's value never lands
    assert not status["env"].ok and status["env"].error == "RuntimeError: boom"
    assert status["torch"].timed_out and facts.env == {"A": "1"}  # partial: value kept, failure recorded
    assert status["packages"].ok and status["packages"].error is None


@pytest.mark.parametrize("raw, expected", [("0.1", 0.1), ("3", 3.0), ("", 1.0), ("zero", 1.0), ("-2", 1.0)])
def test_scale_parsing(raw, expected):
    assert scale({SCALE_ENV: raw}) == expected


def test_scale_applies_to_thread_deadlines(monkeypatch):
    base = {s.name: s.deadline_s for s in _registry()}
    monkeypatch.setenv(SCALE_ENV, "0.5")
    halved = {s.name: s.deadline_s for s in _registry()}
    assert halved == {name: d * 0.5 for name, d in base.items()}
    # each probe's own subprocess limits must fit inside its thread deadline
    assert base["torch"] > 45 and base["nvidia"] > 16


def test_budget_cuts_steps_to_what_is_left():
    budget = Budget(2.0)
    assert budget.timeout(5.0) <= 2.0 and budget.timeout(0.5) == 0.5
    assert Budget(0).timeout(5.0) == 0.0
