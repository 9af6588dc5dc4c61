"""The smoke watchdog with real child processes: a step that hangs (CPU sleep) is killed at its own
limit and named, a step that segfaults is named, the steps after each still run in a fresh child, a
prelude that fails or hangs marks every step; then the findings each layer's failure becomes, and
`doctor smoke` on this CPU machine (exit 10)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from checks_helpers import ids, linux_gpu, one
from doctor import exitcodes
from doctor.engine import run_checks
from doctor.facts import Facts, ProbeStatus, SmokeInfo, SmokeStep
from doctor.smoke.runner import run_smoke, run_steps
from doctor.smoke.steps import StepSpec, plan

ROOT = Path(__file__).resolve().parent.parent
FAKE_CHILD = """
import os, signal, sys, time
from doctor.smoke.protocol import Skip, serve

def prelude():
    mode = os.environ.get("FAKE_PRELUDE", "")
    if mode == "fail":
        raise ImportError("libtorch_cuda.so: cannot open shared object file")
    if mode == "hang":
        time.sleep(1000)

def ok(device):
    return f"ok on {device}"

def hang(device):
    with open(os.environ["FAKE_PIDFILE"], "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(1000)

def crash(device):
    sys.stderr.write("Fatal Python error: Segmentation fault in a native kernel\\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSEGV)

def fail(device):
    raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")

def skip(device):
    raise Skip("not installed")

if __name__ == "__main__":
    serve(prelude, {f.__name__: f for f in (ok, hang, crash, fail, skip)})
"""


@pytest.fixture
def fake_child(tmp_path, monkeypatch):
    (tmp_path / "fake_smoke_child.py").write_text(textwrap.dedent(FAKE_CHILD))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + str(ROOT))
    monkeypatch.setenv("FAKE_PIDFILE", str(tmp_path / "hang.pid"))
    return "fake_smoke_child"


def spec(name, device="0", limit=60.0, layer="compiler"):
    return StepSpec(name, layer, limit, device)


def test_hang_and_crash_are_named_and_later_steps_still_run(fake_child, tmp_path):
    specs = [spec("ok"), spec("hang", limit=3.0), spec("ok", "1"), spec("crash", layer="library-binary"),
             spec("fail"), spec("skip", None)]
    results, prelude = run_steps(specs, module=fake_child, prelude_s=60)
    assert prelude.name == "import_torch" and prelude.status == "passed"
    assert [(r.name, r.device, r.status) for r in results] == [
        ("ok", "0", "passed"), ("hang", "0", "hung"), ("ok", "1", "passed"), ("crash", "0", "crashed"),
        ("fail", "0", "failed"), ("skip", None, "skipped")]
    hung, crashed, failed = results[1], results[3], results[4]
    assert "no result within 3 s" in hung.error and hung.seconds >= 3.0
    assert "SIGSEGV" in crashed.error and "Segmentation fault in a native kernel" in crashed.error
    assert failed.error.startswith("RuntimeError: Failed to find C compiler")
    assert results[5].detail == "not installed"
    pid = int((tmp_path / "hang.pid").read_text())
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the hung child was left running"
        time.sleep(0.1)


def test_a_failing_prelude_marks_every_step(fake_child, monkeypatch):
    monkeypatch.setenv("FAKE_PRELUDE", "fail")
    results, prelude = run_steps([spec("ok"), spec("fail")], module=fake_child, prelude_s=60)
    assert prelude.status == "failed" and "libtorch_cuda.so" in prelude.error
    assert [r.status for r in results] == ["failed", "failed"]
    assert all(r.error == "not run: import_torch failed" for r in results)


def test_a_hanging_prelude_is_killed(fake_child, monkeypatch):
    monkeypatch.setenv("FAKE_PRELUDE", "hang")
    results, prelude = run_steps([spec("ok")], module=fake_child, prelude_s=2.0)
    assert prelude.status == "hung" and "no answer within 2 s" in prelude.error
    assert results[0].error == "not run: import_torch hung"


def test_the_real_child_reports_a_cpu_torch_as_a_failed_step():
    """doctor.smoke.child on this CPU machine: torch imports, CUDA init fails with torch's own error."""
    results, prelude = run_steps([spec("cuda_init", layer="driver"), spec("unsloth_import", None)],
                                 prelude_s=120)
    assert prelude.status == "passed"
    assert results[0].status == "failed" and results[0].error
    assert results[1].status in ("skipped", "passed", "failed")


def gpu_facts(count=1, **packages):
    from checks_helpers import set_packages

    return set_packages(linux_gpu(count=count, torch="2.11.0+cu130", cuda="13.0"), **packages)


def test_plan_per_gpu_pairs_and_skips():
    steps, skipped = plan(gpu_facts(count=3, triton="3.6.0", bitsandbytes="0.50.2"))
    names = [(s.name, s.device) for s in steps]
    assert ("matmul_bf16", "2") in names and ("nccl_allreduce", "0-2") in names and ("nccl_allreduce", "1-2") in names
    assert {s.name for s in skipped} == {"unsloth_import"}
    steps, skipped = plan(gpu_facts(count=1), only=["triton_jit", "nccl_allreduce"])
    assert steps == [] and {(s.name, s.detail) for s in skipped} == {
        ("triton_jit", "triton is not installed"), ("nccl_allreduce", "one GPU: no pair to test")}


def test_cpu_only_machine_runs_nothing():
    f = linux_gpu(torch="2.5.1+cpu", cuda=None)
    f.torch.cuda_available, f.torch.device_count, f.torch.devices = False, 0, []
    info = run_smoke(f)
    assert info.cpu_only and not info.ran and info.steps == []
    assert ids(run_checks(Facts(torch=f.torch, smoke=info), None, only=("smoke",))) == ["smoke.no-gpu"]


def smoked(*steps: SmokeStep) -> Facts:
    f = gpu_facts()
    f.smoke = SmokeInfo(ran=True, steps=list(steps), seconds=12.5)
    return f


@pytest.mark.parametrize("step, fid, fix_word", [
    (SmokeStep("triton_jit", "0", "compiler", "failed", 0.4,
               "RuntimeError: Failed to find C compiler. Please specify via CC environment variable."),
     "smoke.compiler-failed", "build-essential"),
    (SmokeStep("triton_jit", "0", "compiler", "failed", 0.2,
               "NotADirectoryError: [Errno 20] Not a directory: '/tmp/blocker/cache'"),
     "smoke.compiler-failed", "TRITON_CACHE_DIR"),
    (SmokeStep("bnb_4bit", "0", "library-binary", "failed", 1.0,
               "RuntimeError: Configured CUDA binary not found at .../libbitsandbytes_cuda118.so"),
     "smoke.library-binary-failed", "BNB_CUDA_VERSION"),
    (SmokeStep("cuda_init", "0", "driver", "failed", 0.1,
               "RuntimeError: /tmp/fake/libcuda.so.1: invalid ELF header"), "smoke.driver-failed", "LD_LIBRARY_PATH"),
    (SmokeStep("nccl_allreduce", "0-1", "interconnect", "hung", 90.0, "no result within 90 s; the watchdog killed"
               " the process"), "smoke.interconnect-failed", "NCCL_DEBUG"),
    (SmokeStep("matmul_bf16", "0", "library-binary", "crashed", 0.3, "the process was killed by SIGSEGV"),
     "smoke.library-binary-failed", None),
])
def test_each_failure_names_its_layer_and_fix(step, fid, fix_word):
    ok = SmokeStep("cuda_init", "0", "driver", "passed", 0.2, None, "H200")
    found = run_checks(smoked(ok, step), None, only=("smoke",))
    f = one(found, fid)
    assert ids(found) == [fid]
    assert f.severity.is_failure and step.status in f.title
    assert (step.error or "")[:40] in f.why
    if fix_word:
        assert fix_word in f.remediation + " ".join(f.commands)


def test_inherited_failures_are_not_reported_twice():
    broken = SmokeStep("import_torch", None, "runtime", "crashed", 3.0, "the process was killed by SIGABRT")
    after = SmokeStep("matmul_bf16", "0", "library-binary", "failed", None, "not run: import_torch crashed")
    assert ids(run_checks(smoked(broken, after), None, only=("smoke",))) == ["smoke.runtime-failed"]


def test_passed_lists_timings_and_not_run_is_said():
    found = run_checks(smoked(SmokeStep("matmul_bf16", "0", "library-binary", "passed", 0.8),
                              SmokeStep("unsloth_import", None, "library-binary", "skipped", detail="not installed")),
                       None, only=("smoke",))
    f = one(found, "smoke.passed")
    assert "1 steps in 12.5 s (1 skipped)" in f.title and f.evidence["seconds per step"] == {"bf16 matmul (cuBLAS) on GPU 0": 0.8}
    fresh = gpu_facts()
    fresh.probes.append(ProbeStatus("toolchain"))
    assert ids(run_checks(fresh, None, only=("smoke",))) == ["smoke.not-run"]
    assert run_checks(gpu_facts(), None, only=("smoke",)) == []     # facts of a doctor without smoke


def test_doctor_smoke_on_this_cpu_machine_exits_10(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "doctor", "smoke", "--json", "--save-facts", str(tmp_path / "f.json")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == exitcodes.NO_GPU, res.stderr
    report = json.loads(res.stdout)
    assert "smoke.no-gpu" in [f["id"] for f in report["findings"]]
    assert report["exit_code"] == exitcodes.NO_GPU and report["command"] == "smoke"
    saved = Facts.from_dict(json.loads((tmp_path / "f.json").read_text()))
    assert saved.smoke.cpu_only and saved.probe("toolchain") is not None


def test_unknown_step_is_a_usage_error():
    from typer.testing import CliRunner

    from doctor.cli import app

    res = CliRunner().invoke(app, ["smoke", "--only", "warp_drive"])
    assert res.exit_code == exitcodes.USAGE and "unknown smoke step" in res.output


def test_run_with_smoke_on_this_cpu_machine_reports_it(tmp_path):
    from typer.testing import CliRunner

    from doctor.cli import app

    res = CliRunner().invoke(app, ["run", "--smoke", "--json", "--save-facts", str(tmp_path / "f.json")])
    report = json.loads(res.stdout)
    assert "smoke.no-gpu" in [f["id"] for f in report["findings"]]
    assert res.exit_code == report["exit_code"]          # run keeps its own exit codes
    assert Facts.from_dict(json.loads((tmp_path / "f.json").read_text())).smoke.cpu_only
