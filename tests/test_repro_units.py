"""doctor repro without processes: fault parsing, the watchdog's deadlines, the config mirror, the
event log, and the classification of recorded runs (stall, crash, step log)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from doctor import exitcodes
from doctor.exitcodes import DoctorError
from doctor.findings import Severity
from doctor.repro import chart, lengths, wsl
from doctor.repro.api import collect
from doctor.repro.diagnose import diagnose
from doctor.repro.events import EventReader, EventWriter
from doctor.repro.faults import Injection, parse_injection, parse_injections, parse_size
from doctor.repro.render import main_thread_frames, markdown_section
from doctor.repro.result import CrashInfo, FaultRecord, ReproResult, StallInfo, StepRecord
from doctor.repro.spec import build_spec, reference_config
from doctor.repro.watchdog import StallPolicy, Watch

GIB = 1 << 30
MIB = 1 << 20


# ---------------------------------------------------------------- faults and sizes

def test_inject_defaults_to_step_11_and_rejects_bad_input():
    assert parse_injection("dataloader-hang") == Injection("dataloader-hang", 11)
    assert parse_injection(" cuda-stall@3 ") == Injection("cuda-stall", 3)
    for bad in ("oom", "cuda-stall@0", "cuda-stall@x", ""):
        with pytest.raises(DoctorError) as exc:
            parse_injection(bad)
        assert exc.value.exit_code == exitcodes.USAGE
    with pytest.raises(DoctorError, match="twice"):
        parse_injections(["long-sample@3", "long-sample@5"])


def test_sizes():
    assert parse_size("512M") == 512 * MIB
    assert parse_size("1.5GiB") == int(1.5 * GIB)
    assert parse_size("4096") == 4096
    with pytest.raises(DoctorError):
        parse_size("lots")


# ---------------------------------------------------------------- watchdog

def _ev(kind, t, **kw):
    return {"kind": kind, "t": t, **kw}


def test_watchdog_grace_then_floor_then_factor():
    w = Watch(StallPolicy(floor_s=3, factor=5, first_step_grace_s=50, startup_grace_s=100), started=0.0)
    assert w.deadline().seconds == 100 and not w.overdue(99)
    w.feed(_ev("phase", 10.0, phase="importing"))          # every start-up phase resets the clock
    assert not w.overdue(105) and w.overdue(111)
    w.feed(_ev("phase", 20.0, phase="training"))
    assert w.deadline().seconds == 50 and "first-step" in w.deadline().reason
    w.feed(_ev("step", 60.0, step=1, duration_s=40.0))     # a slow first step (compile) ...
    w.feed(_ev("step", 60.2, step=2, duration_s=0.2))
    w.feed(_ev("step", 60.4, step=3, duration_s=0.2))
    assert w.median_step_s() == pytest.approx(0.2)          # ... does not count in the median
    assert w.deadline().seconds == 3 and w.deadline().reason == "floor 3 s"
    assert not w.overdue(63.3) and w.overdue(63.5)
    for step in range(4, 8):
        w.feed(_ev("step", 60 + step, step=step, duration_s=1.0))
    assert w.deadline().seconds == pytest.approx(5.0) and "median" in w.deadline().reason


def test_a_forced_deadline_overrides_the_policy():
    w = Watch(StallPolicy(floor_s=3, factor=5), started=0.0)
    w.feed(_ev("phase", 1.0, phase="training"))
    w.force_deadline(30.0, 0.0, "the run's wall-clock limit (--timeout)")
    assert not w.overdue(29.0) and w.overdue(31.0) and "timeout" in w.deadline().reason


def test_new_shape_gets_compile_grace_only_on_compiling_backends():
    for backend, expected in (("unsloth", 50.0), ("transformers", 5.0)):
        w = Watch(StallPolicy(floor_s=3, factor=5, first_step_grace_s=50), started=0.0)
        w.feed(_ev("info", 0.5, backend=backend))
        w.feed(_ev("phase", 1.0, phase="training"))
        w.feed(_ev("step", 2.0, step=1, duration_s=1.0))
        w.feed(_ev("shape", 2.1, step=2, shape=[2, 4096]))
        assert w.deadline().seconds == expected
        w.feed(_ev("step", 3.0, step=2, duration_s=1.0))    # the step finished: grace is over
        assert w.deadline().seconds == 5.0


# ---------------------------------------------------------------- events

def test_event_reader_returns_only_complete_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    EventWriter(str(path)).emit("phase", phase="importing")
    with open(path, "a") as fh:
        fh.write('{"kind": "step", "step": 1')                # a writer mid-line
    reader = EventReader(path)
    first = reader.read_new()
    assert [e["kind"] for e in first] == ["phase"] and first[0]["pid"] == os.getpid()
    with open(path, "a") as fh:
        fh.write(', "t": 1.0}\nnot json\n')
    assert [e.get("step") for e in reader.read_new()] == [1]
    assert reader.read_new() == []


# ---------------------------------------------------------------- config mirror

def test_reference_config_is_mirrored_with_its_defaults(tmp_path):
    cfg = reference_config()
    spec = build_spec(cfg, events_path=tmp_path / "e", work_dir=tmp_path, model_size="8b", steps=20,
                      injections=[], backend="auto", device="auto", seed=None, lengths=[],
                      squeeze_limit=None, model_cache=None)
    assert (spec.batch_size, spec.grad_accum, spec.max_seq_length) == (2, 4, 2048)
    assert spec.optim == "adamw_8bit" and spec.load_in_4bit and spec.gradient_checkpointing == "unsloth"
    assert spec.precision == "auto-native" and spec.lora_r == 16 and len(spec.target_modules) == 7
    assert spec.seed == 3407 and spec.backend == "auto"
    assert spec.model["hidden_size"] == 4096 and spec.model["num_hidden_layers"] == 32
    assert spec.model["vocab_size"] == 128256


def test_unresolved_and_missing_settings_become_notes(tmp_path):
    from doctor.config.model import TrainingConfig

    cfg = TrainingConfig(framework="transformers", max_seq_length=128, bf16=True, packing=True,
                         unresolved={"per_device_train_batch_size": "args.bs"})
    spec = build_spec(cfg, events_path=tmp_path / "e", work_dir=tmp_path, model_size="tiny", steps=5,
                      injections=[], backend="auto", device="auto", seed=7, lengths=[],
                      squeeze_limit=None, model_cache=None)
    assert spec.batch_size == 8 and spec.precision == "bf16" and spec.backend == "transformers"
    assert spec.seed == 7 and spec.gradient_checkpointing is False
    assert any("args.bs" in n for n in spec.notes)
    assert any("packing" in n for n in spec.notes)


def test_length_profiles_and_files(tmp_path):
    assert lengths.load_lengths("full", 100) == []
    assert max(lengths.load_lengths("chat", 100)) == 100
    f = tmp_path / "lens.jsonl"
    f.write_text('{"length": 5}\n{"input_ids": [1, 2, 3]}\n')
    assert lengths.load_lengths(str(f), 100) == [5, 3]
    f.write_text("[4, 9]")
    assert lengths.load_lengths(str(f), 100) == [4, 9]
    f.write_text("12\nabc\n")
    with pytest.raises(DoctorError):
        lengths.load_lengths(str(f), 100)


# ---------------------------------------------------------------- chart

def test_sparkline_scales_and_marks_the_stall():
    assert chart.sparkline([0.0, 4.0, None, 8.0]) == "▁▅ █"
    assert chart.sparkline([1.0, 1.0], stalled=True).endswith(chart.STALL_MARK)


# ---------------------------------------------------------------- classification of recorded runs

def _steps(n, tokens=64, rss=500 * MIB, dur=0.2):
    return [StepRecord(step=i, t_end=100.0 + i, duration_s=dur, tokens=tokens, max_len=tokens,
                       host_rss=rss, loss=6.0) for i in range(1, n + 1)]


def _stalled(step, **kw) -> ReproResult:
    r = ReproResult(out_dir="/tmp/x", model_size="tiny", steps_planned=20, config={"max_seq_length": 64},
                    policy={"floor_s": 8.0}, steps=_steps(step - 1))
    r.stalled = True
    r.stall = StallInfo(step=step, phase="training", waited_s=8.2, deadline_s=8.0, reason="floor 8 s",
                        detected_at=200.0)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def _attach(cause, main_frames, pid=42):
    return {"pid": pid, "cause": cause, "situation": "GPU idle, host waiting",
            "findings": [{"title": f"attach says {cause}", "why": "because", "failure_mode": None}],
            "processes": [{"pid": pid, "threads": [{"main": True, "key_frames": main_frames}]}]}


def test_stall_classified_from_the_attach_cause():
    r = _stalled(11, diagnosis=_attach("dataloader-worker-hang", ["_try_get_data (torch/utils/data/dataloader.py:1291)"]))
    cause, findings = diagnose(r)
    assert cause == "dataloader-hang"
    main = findings[0]
    assert main.id == "repro.stall.dataloader-hang" and main.severity == Severity.ERROR
    assert main.evidence["stalled_step"] == 11 and main.evidence["attach_cause"] == "dataloader-worker-hang"
    assert main.config_changes[0].setting == "dataloader_num_workers"

    r = _stalled(11, diagnosis=_attach("cuda-sync-wait", ["_inner_training_loop (transformers/trainer.py:1917)"]))
    assert diagnose(r)[0] == "cuda-stall"
    r = _stalled(4, diagnosis=_attach("lock-wait", ["wait (threading.py:331)"]))
    cause, findings = diagnose(r)
    assert cause == "stall:lock-wait" and findings[0].id == "repro.stall.other"
    r = _stalled(4, diagnosis=None, diagnosis_error="py-spy is not installed")
    cause, findings = diagnose(r)
    assert cause == "stall-unknown" and "py-spy" in findings[0].why


def test_emulated_sync_frame_is_labelled_but_classified_by_the_signatures_alone():
    """The cause is the stack signatures' verdict (issue 14: no override for the CPU stand-in);
    the stand-in is only named, in the evidence and the title."""
    frames = ["synchronize (doctor/repro/emulated_cuda.py:18)", "FaultPlan._cuda_stall (doctor/repro/child_faults.py:83)"]
    cause, findings = diagnose(_stalled(3, diagnosis=_attach("unknown-wait", frames)))
    assert cause == "stall:unknown-wait" and findings[0].id == "repro.stall.other"
    assert "CPU stand-in" in findings[0].title and "emulated_cuda" in findings[0].evidence["emulated"]
    cause, findings = diagnose(_stalled(3, diagnosis=_attach("cuda-sync-wait", frames)))
    assert cause == "cuda-stall" and "emulated on CPU" in findings[0].title


def test_host_memory_evidence_beats_the_stack():
    host = {"root_pid": 42, "memory": {"total": 16 * GIB, "available": 8 * GIB},
            "tree": {"processes": [{"pid": 42, "rss": 900 * MIB}]}}
    cause, findings = diagnose(_stalled(3, host=host, diagnosis=_attach("sleeping", ["wait (x.py:1)"])))
    assert cause == "host-memory" and findings[0].evidence["growth"] == 400 * MIB
    # little growth but MemAvailable under 10%: still host memory
    host["tree"]["processes"][0]["rss"] = 510 * MIB
    host["memory"]["available"] = 1 * GIB
    assert diagnose(_stalled(3, host=host))[0] == "host-memory"
    # neither: the stack decides
    host["memory"]["available"] = 8 * GIB
    assert diagnose(_stalled(3, host=host, diagnosis=_attach("sleeping", ["x (y.py:1)"])))[0] == "stall:sleeping"


def test_long_sample_and_token_jump_from_the_step_log():
    r = ReproResult(out_dir="/x", model_size="tiny", steps_planned=6, config={"max_seq_length": 64},
                    policy={"floor_s": 8.0}, steps=_steps(6), completed=True)
    assert diagnose(r) == ("none", [])
    r.steps[2].max_len, r.steps[2].tokens, r.steps[2].duration_s = 256, 256, 0.9
    cause, findings = diagnose(r)
    assert cause == "long-sample"
    f = findings[0]
    assert f.id == "repro.long-sample" and f.evidence["step"] == 3 and f.evidence["longest_sample"] == 256
    assert "4.0x" in f.why
    r.steps[2].max_len = 64                      # as many tokens, but within max_seq_length
    cause, findings = diagnose(r)
    assert cause == "none" and findings[0].id == "repro.tokens-jump"


def test_slow_step_needs_to_be_a_near_stall():
    r = ReproResult(out_dir="/x", model_size="tiny", steps_planned=6, config={"max_seq_length": 64},
                    policy={"floor_s": 8.0}, steps=_steps(6, dur=0.02), completed=True)
    r.steps[1].duration_s = 1.2                  # 60x the median, but far from the floor: jitter
    assert [f.id for f in diagnose(r)[1]] == []
    r.steps[1].duration_s = 5.0
    assert [f.id for f in diagnose(r)[1]] == ["repro.slow-step"]


def _crashed(crash: CrashInfo, **kw) -> ReproResult:
    r = ReproResult(out_dir="/x", model_size="8b", steps_planned=20, config={"batch_size": 2, "grad_accum": 4},
                    steps=_steps(10), crashed=True, crash=crash)
    r.steps[-1].mem_peak = 9 * GIB
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_crashes_are_classified_with_their_numbers():
    oom = CrashInfo(type="OutOfMemoryError", message="CUDA out of memory. Tried to allocate 1.96 GiB.", step=11,
                    memory={"gpu_free": GIB // 2, "gpu_total": 80 * GIB, "mem_allocated": 70 * GIB})
    squeeze = FaultRecord(kind="vram-squeeze", step=11, injected=True, data={"held": 60 * GIB})
    cause, findings = diagnose(_crashed(oom, faults=[squeeze]))
    f = findings[0]
    assert cause == "vram-oom" and f.id == "repro.crash.cuda-oom"
    assert "step 11" in f.title and "0.50 GiB free of 80.00 GiB" in f.title and "9.00 GiB" in f.title
    assert f.evidence["squeezed_vram"] == 60 * GIB
    assert [(c.setting, c.value) for c in f.config_changes] == [("per_device_train_batch_size", 1),
                                                               ("gradient_accumulation_steps", 8)]
    assert not [x for x in findings if x.id == "repro.fault-missed"]   # the squeeze was found

    shape = CrashInfo(type="RuntimeError", step=11,
                      message="The size of tensor a (2048) must match the size of tensor b (4144) at dim 1")
    assert diagnose(_crashed(shape))[0] == "shape-mismatch"
    tdr = CrashInfo(type="RuntimeError", step=3, message="CUDA error: the launch timed out and was terminated")
    cause, findings = diagnose(_crashed(tdr))
    assert cause == "cuda-error" and findings[0].failure_mode == "FM-05"
    # every cuda_class row of checks/data/crash_signatures.json is reachable, in order, from an error text
    for text, klass, fm in [("CUDA error: device-side assert triggered", "device-side assert", "FM-15"),
                            ("CUDA error: an illegal memory access was encountered", "illegal memory access", None),
                            ("CUDA error: unknown error", "device not ready", "FM-03"),
                            ("CUDA error: no kernel image is available for execution on the device", "no kernel image", "FM-08"),
                            ("CUDA error: out of memory", "pinned host memory", "FM-02"),
                            ("CUDA error: something new", "unclassified CUDA error", None)]:
        cause, findings = diagnose(_crashed(CrashInfo(type="RuntimeError", step=3, message=text)))
        assert cause == "cuda-error" and klass in findings[0].title and findings[0].failure_mode == fm, text
    killed = CrashInfo(step=11, exit_code=-9, signal=9)
    assert diagnose(_crashed(killed))[0] == "killed"
    other = CrashInfo(type="ValueError", message="bad things", step=2)
    cause, findings = diagnose(_crashed(other))
    assert cause == "exception" and "ValueError" in findings[0].title


def test_a_planted_fault_that_is_not_found_is_reported():
    r = _stalled(3, diagnosis=_attach("sleeping", ["x (y.py:1)"]),
                 faults=[FaultRecord(kind="dataloader-hang", step=3, injected=True)])
    ids = [f.id for f in diagnose(r)[1]]
    assert "repro.fault-missed" in ids
    r.faults = [FaultRecord(kind="vram-squeeze", step=3, skipped="no CUDA device")]
    ids = [f.id for f in diagnose(r)[1]]
    assert "repro.fault-not-applicable" in ids and "repro.fault-missed" not in ids


def test_collect_folds_events_into_steps_faults_and_notes(tmp_path):
    spec = build_spec(reference_config(), events_path=tmp_path / "e", work_dir=tmp_path, model_size="tiny",
                      steps=3, injections=parse_injections(["long-sample@2", "vram-squeeze@2"]),
                      backend="auto", device="cpu", seed=None, lengths=[], squeeze_limit=None, model_cache=None)
    events = [_ev("info", 1, backend="transformers", device="cpu"), _ev("note", 1, text="fp32 on CPU"),
              _ev("inject-skipped", 1, fault="vram-squeeze", reason="no CUDA"),
              _ev("step", 2, step=1, duration_s=0.5, tokens=64), _ev("loss", 2, step=1, loss=6.2),
              _ev("inject", 2.1, fault="long-sample", step=2, detail="256 tokens", emulated=False, length=256),
              _ev("step", 3, step=2, duration_s=0.9, tokens=320), _ev("done", 4, steps=2)]
    r = ReproResult(out_dir=str(tmp_path), model_size="tiny", steps_planned=3)
    collect(r, events, spec)
    assert [s.step for s in r.steps] == [1, 2] and r.steps[0].loss == 6.2 and r.completed
    assert r.info["backend"] == "transformers" and r.notes == ["fp32 on CPU"]
    assert r.fault("long-sample").injected and r.fault("long-sample").data["length"] == 256
    assert r.fault("vram-squeeze").skipped == "no CUDA"


# ---------------------------------------------------------------- WSL parsing and rendering

def test_dxg_lines_are_picked_and_mapped():
    text = ("[  1.0] usb 1-1: new device\n"
            "[ 99.1] misc dxg: dxgk: dxgkio_make_resident: Ioctl failed: -12\n"
            "[ 99.2] WARNING: CPU: 3 PID: 1 at dxgvmb_send_wait_sync_object_gpu+0x1\n"
            "[ 99.3] dxgk: some other dxg line\n")
    lines = wsl.parse_dxg(text)
    assert [x["failure_mode"] for x in lines] == ["FM-03", "FM-04", None]
    assert wsl.parse_counter_sum("123\r\n 456 \n") == 579 and wsl.parse_counter_sum("error") is None


def test_wsl_section_off_wsl_says_not_applicable():
    rec = wsl.WslRecorder()
    rec.applicable = False
    out = rec.finish()
    assert out["applicable"] is False and "not running under WSL2" in out["why"]


def test_reports_render_the_stall_and_the_faulthandler_frames():
    dump = ('Thread 0x1 (most recent call first):\n  File "/usr/lib/python3.11/threading.py", line 331 in wait\n\n'
            'Current thread 0x2 (most recent call first):\n'
            '  File "/v/lib/python3.11/site-packages/torch/utils/data/dataloader.py", line 1291 in _try_get_data\n'
            '  File "/work/main/doctor/repro/child.py", line 95 in on_step_begin\n')
    assert main_thread_frames(dump) == ["_try_get_data (torch/utils/data/dataloader.py:1291)",
                                        "on_step_begin (work/main/doctor/repro/child.py:95)"]
    r = _stalled(11, diagnosis=_attach("dataloader-worker-hang", ["_try_get_data (x.py:1)"]), stack_dump=dump)
    r.cause, r.findings = diagnose(r)
    md = markdown_section(r)
    assert "step 11" in md and chart.STALL_MARK in md and "Thread stacks at the stall" in md
    env = r.report().to_dict()
    assert env["command"] == "repro" and env["exit_code"] == exitcodes.UNHEALTHY
    assert env["sections"]["repro"]["stall_step"] == 11
    assert json.loads(json.dumps(env))["sections"]["repro"]["detection_latency_s"] == pytest.approx(8.2)


def _fake_tool(folder: Path, name: str, body: str) -> None:
    p = folder / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)


def test_wsl_recorder_reads_dmesg_and_windows_memory_through_fake_tools(tmp_path, monkeypatch):
    counter = tmp_path / "calls"
    _fake_tool(tmp_path, "dmesg", "echo '[9.9] misc dxg: dxgk: dxgkio_make_resident: Ioctl failed: -12'")
    # powershell.exe answers 1 GiB the first time, 3 GiB after: shared GPU memory grew by 2 GiB
    _fake_tool(tmp_path, "powershell.exe",
               f"if [ -f {counter} ]; then echo 3221225472; else touch {counter}; echo 1073741824; fi")
    _fake_tool(tmp_path, "nvidia-smi.exe", "sleep 30")                  # interop that hangs
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(wsl, "INTEROP_S", 1.0)
    rec = wsl.WslRecorder()
    rec.applicable, rec.signals = True, ["test"]
    rec.start()
    out = rec.finish()
    assert out["shared_gpu_memory"]["growth"] == 2 * GIB
    assert out["dmesg"]["lines"][0]["failure_mode"] == "FM-03"
    assert not out["windows_vram"]["readable"] and "timed out" in out["windows_vram"]["why"]
    r = ReproResult(out_dir="/x", model_size="tiny", steps_planned=1, wsl=out)
    ids = {f.id for f in diagnose(r)[1]}
    assert ids == {"repro.wsl.dxg", "repro.wsl.shared-memory-growth"}


def test_cli_usage_errors_start_nothing(tmp_path):
    from typer.testing import CliRunner

    from doctor.cli import app

    runner = CliRunner()
    for args, text in ((["--inject", "bogus"], "unknown fault"), (["--model-size", "70b"], "--model-size"),
                       (["--steps", "0"], "--steps"), (["--device", "tpu"], "--device"),
                       (["--squeeze-limit", "lots"], "size")):
        res = runner.invoke(app, ["repro", "--out", str(tmp_path / "out"), *args])
        assert res.exit_code == exitcodes.USAGE, (args, res.output)
        assert text in res.output
    assert not (tmp_path / "out").exists()
    res = runner.invoke(app, ["repro", str(tmp_path / "missing.py")])
    assert res.exit_code == exitcodes.CONFIG_INVALID


def test_sample_into_keeps_the_stall_when_the_sampler_fails():
    from types import SimpleNamespace

    from doctor.exitcodes import DoctorError
    from doctor.repro.supervisor import sample_into

    def broken(pid):
        raise RuntimeError("ptrace refused")

    def refused(pid):
        raise DoctorError("no permission", 2)

    cases = [(None, None, "no sampler"), (broken, None, "RuntimeError: ptrace refused"),
             (refused, None, "no permission"), (lambda pid: {"pid": pid}, {"pid": 7}, None)]
    for sampler, diagnosis, error in cases:
        rec = SimpleNamespace(diagnosis=None, diagnosis_error=None)
        sample_into(rec, sampler, 7)
        assert (rec.diagnosis, rec.diagnosis_error) == (diagnosis, error)
