"""The shared core: runner timeouts, facts round trip, engine isolation, ranking, envelope contract."""
from __future__ import annotations

import json
import sys
import time

from checks import CheckSpec
from doctor import exitcodes
from doctor.engine import run_checks
from doctor.facts import Facts, GPUInfo, PackageInfo, TorchInfo
from doctor.findings import ConfigChange, Finding, Severity, exit_code_for, rank
from doctor.report_model import SCHEMA_VERSION, Report
from doctor.runner import RESULT_MARKER, run_command, run_python


def test_runner_kills_a_hanging_child_and_its_grandchildren():
    # The child starts a grandchild that would outlive it; the whole group must die at the timeout.
    code = ("import subprocess,sys,time;"
            "p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
            "print(p.pid, flush=True); time.sleep(60)")
    t0 = time.monotonic()
    res = run_command([sys.executable, "-c", code], timeout=1.5)
    assert res.timed_out and not res.ok
    assert time.monotonic() - t0 < 10
    assert "timed out after" in res.describe_failure()
    import psutil
    grandchild = int(res.stdout.split()[0])
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


def test_runner_reports_missing_executable_and_signals():
    missing = run_command(["/nonexistent/nvidia-smi"], timeout=2)
    assert missing.error == "not found" and not missing.ok
    seg = run_command([sys.executable, "-c", "import os,signal; os.kill(os.getpid(), signal.SIGSEGV)"], timeout=10)
    assert seg.signal == 11
    assert "SIGSEGV" in seg.describe_failure()


def test_run_python_extracts_marked_payload_despite_noise():
    code = f"print('library banner'); import json; print('{RESULT_MARKER}' + json.dumps({{'a': 1}}))"
    res, payload = run_python(code, timeout=10)
    assert res.ok and payload == {"a": 1}


def test_facts_round_trip_keeps_nested_types():
    f = Facts(label="x")
    f.packages["torch"] = PackageInfo("torch", "2.2.0+cu121", requires=["triton==2.2.0"])
    f.torch = TorchInfo(importable=True, version="2.2.0+cu121", arch_list=["sm_75"])
    f.nvidia.gpus.append(GPUInfo(index=0, name="NVIDIA GeForce RTX 2080 Ti", capability=[7, 5],
                                 memory_total=11 * 2**30))
    back = Facts.from_dict(json.loads(json.dumps(f.to_dict())))
    assert back == f
    assert isinstance(back.nvidia.gpus[0], GPUInfo) and back.version("torch") == "2.2.0+cu121"


def test_facts_from_dict_ignores_unknown_keys_and_accepts_an_envelope():
    data = Facts(label="y").to_dict()
    data["from_the_future"] = 1
    data["platform"]["new_field"] = "z"
    assert Facts.from_dict(data).label == "y"
    assert Facts.from_dict({"schema_version": 1, "facts": data}).label == "y"


def _spec(fn, id="t"):
    return CheckSpec(id=id, title=id, fn=fn, finding_ids=())


def test_a_crashing_check_becomes_a_finding_and_others_still_run():
    def boom(facts, config):
        raise KeyError("gpus")

    def fine(facts, config):
        return [Finding(id="ok.one", severity=Severity.INFO, title="fine")]

    out = run_checks(Facts(), None, specs=[_spec(boom, "boom"), _spec(fine, "fine")])
    ids = [f.id for f in out]
    assert "doctor.check-crashed" in ids and "ok.one" in ids
    crashed = next(f for f in out if f.id == "doctor.check-crashed")
    assert crashed.evidence["check"] == "boom" and "KeyError" in crashed.title


def test_ranking_is_severity_then_confidence_then_cost():
    a = Finding(id="a", severity=Severity.WARNING, title="a", confidence=0.9, fix_cost=1)
    b = Finding(id="b", severity=Severity.ERROR, title="b", confidence=0.5, fix_cost=3)
    c = Finding(id="c", severity=Severity.ERROR, title="c", confidence=0.9, fix_cost=3)
    d = Finding(id="d", severity=Severity.ERROR, title="d", confidence=0.9, fix_cost=1)
    assert [f.id for f in rank([a, b, c, d])] == ["d", "c", "b", "a"]
    assert exit_code_for([a]) == exitcodes.OK
    assert exit_code_for([a, b]) == exitcodes.UNHEALTHY


def test_envelope_contract_is_pinned():
    """People script against --json: these keys and their types only ever grow."""
    f = Finding(id="bf16.unsupported", severity=Severity.ERROR, title="t", why="w", remediation="r",
                commands=["pip install x"], evidence={"torch.devices[0].capability": [7, 5]},
                config_changes=[ConfigChange("bf16", False, "sm_75 has no bf16")], links=["u"],
                failure_mode="FM-07")
    env = json.loads(json.dumps(Report(command="run", findings=[f], facts=Facts()).to_dict()))
    assert SCHEMA_VERSION == 1 and env["schema_version"] == 1
    assert {"schema_version", "tool", "doctor_version", "command", "generated_at", "exit_code",
            "summary", "findings", "facts", "sections"} <= set(env)
    assert env["exit_code"] == 1 and env["summary"]["worst"] == "error"
    assert env["summary"]["counts"] == {"critical": 0, "error": 1, "warning": 0, "info": 0}
    (fd,) = env["findings"]
    assert {"id", "severity", "title", "why", "evidence", "remediation", "commands",
            "config_changes", "links", "failure_mode", "confidence", "fix_cost", "check"} <= set(fd)
    assert fd["severity"] == "error" and fd["config_changes"][0] == {
        "setting": "bf16", "value": False, "reason": "sm_75 has no bf16"}
    assert Finding.from_dict(fd).severity is Severity.ERROR
    assert Facts.from_dict(env["facts"]) == Facts.from_dict(Facts().to_dict())
