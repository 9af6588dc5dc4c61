"""The known-bad table, its check, log matching, and causes before symptoms."""
from __future__ import annotations

import json
import re

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from checks import all_checks
from doctor.knowledge import load
from doctor.knowledge.logmatch import MAX_LINE, MAX_TEXT, match_logs, match_text, signatures
from checks.known_bad import FACT_CONDITIONS, KNOWN_BAD, known_bad, row_matches
from checks.log_signatures import KNOWN_ISSUE_MESSAGE, log_signatures
from checks_helpers import as_wsl2, ids, linux_gpu, snapshot
from doctor.engine import run_checks
from doctor.facts import Facts, canonical_name
from doctor.findings import Finding, Severity, explained_by, rank
from probe_helpers import run_doctor

ROWS = load("known_bad")["rows"]
SIGS = load("log_signatures")["rows"]
CONFIRMED = {"maintainer", "reporter", "changelog"}
# Constructs that can backtrack badly or cross a line: nested quantifiers, unbounded wildcards
# next to each other, \s (matches newlines), DOTALL.
_RISKY = re.compile(r"\)[*+]|\.\*.*\.\*|\\s|\(\?s")


def _lint(rx: str) -> list[str]:
    return [m.group(0) for m in _RISKY.finditer(rx)]


# ------------------------------------------------------------------ the data

def test_known_bad_table_has_sixty_sourced_rows():
    assert len(ROWS) >= 60
    assert len({r["id"] for r in ROWS}) == len(ROWS), "row ids must be unique"
    for r in ROWS:
        assert r["id"].startswith("kb."), r["id"]
        assert r["when"] and r["message"] and r["fix"], r["id"]
        assert r["links"] and all(l.startswith("https://github.com/") for l in r["links"]), r["id"]
        assert r["confirmed_by"] in CONFIRMED, r["id"]
        assert r.get("severity", "error") in {s.value for s in Severity}, r["id"]
        for name, spec in r["when"].items():
            assert name == canonical_name(name), f"{r['id']}: {name} is not PEP 503-normalised"
            SpecifierSet(spec)                                  # raises on a bad specifier
        for key in r["facts"]:
            assert key in FACT_CONDITIONS, f"{r['id']}: unsupported facts key {key}"


def test_a_fixed_in_release_is_outside_its_rows_combination():
    """The resolver avoids `when`; the fix it is told about must not itself be in `when`."""
    for r in ROWS:
        for name, fixed in r["fixed_in"].items():
            if name in r["when"]:
                assert not SpecifierSet(r["when"][name]).contains(Version(fixed), prereleases=True), r["id"]


def test_every_regex_compiles_and_is_line_bounded():
    for r in ROWS:
        if r["symptom"]:
            re.compile(r["symptom"])
            assert not _lint(r["symptom"]), (r["id"], _lint(r["symptom"]))
    for s in SIGS:
        re.compile(s["regex"])
        assert not _lint(s["regex"]), (s["id"], _lint(s["regex"]))
        assert s["finding"].startswith("log.") and s["links"], s["id"]


def test_the_lint_catches_a_nested_quantifier():
    assert _lint(r"(a+)+b") and _lint(r"x\s*y") and not _lint(r"no kernel image [^\n]{0,40}")


def test_every_explanation_names_findings_that_exist():
    known = {fid for spec in all_checks() for fid in spec.finding_ids}
    for row in load("explanations")["rows"]:
        causes = row.get("causes") or [row["cause"]]
        assert causes and row["source"].startswith("https://"), row
        for cause in causes:
            assert cause in known, cause
        for sid in row["explains"]:
            assert sid in known, (causes, sid)


# ------------------------------------------------------------------ the check

def _unsloth_box(**packages) -> Facts:
    return linux_gpu(name="Tesla T4", cap=(7, 5), torch="2.4.1+cu121", cuda="12.1", **packages)


def test_a_matching_combination_is_an_error_with_the_row_and_thread():
    f = _unsloth_box(unsloth="2024.10.6", transformers="4.46.0.dev0")
    hits = [x for x in known_bad(f) if x.evidence["known_bad.row"] == "kb.unsloth-transformers-4.46-unpack"]
    assert len(hits) == 1
    hit = hits[0]
    assert hit.id == KNOWN_BAD and hit.severity is Severity.ERROR
    assert "unsloth 2024.10.6" in hit.evidence["installed"] and "transformers 4.46.0.dev0" in hit.evidence["installed"]
    assert "https://github.com/unslothai/unsloth/issues/1179" in hit.links
    assert 'pip install "unsloth>=2024.10.7"' in hit.commands


def test_the_fixed_release_and_a_missing_package_do_not_match():
    assert not known_bad(_unsloth_box(unsloth="2024.10.7", transformers="4.46.0"))
    assert not known_bad(_unsloth_box(transformers="4.46.0"))            # unsloth not installed


def test_local_labels_count_and_platform_conditions_hold():
    row = next(r for r in ROWS if r["id"] == "kb.torch-2.4.0-windows-numpy2")
    linux = linux_gpu(torch="2.4.0+cu121", cuda="12.1", numpy="2.0.1")
    assert row_matches(linux, row) is None                                # Windows-only row
    linux.platform.is_windows_native = True
    assert row_matches(linux, row) == {"torch": "2.4.0+cu121", "numpy": "2.0.1"}
    wsl_row = next(r for r in ROWS if r["id"] == "kb.bitsandbytes-wsl-before-0.43")
    assert row_matches(as_wsl2(linux_gpu(bitsandbytes="0.41.1")), wsl_row) is not None
    assert row_matches(linux_gpu(bitsandbytes="0.41.1"), wsl_row) is None


def test_unknown_facts_keys_never_match():
    row = {"id": "kb.x", "when": {"torch": ">=1"}, "facts": {"gpu.colour": "red"}}
    assert row_matches(linux_gpu(), row) is None


def test_the_log_line_makes_the_finding_near_certain_and_explains_the_generic_one():
    f = _unsloth_box(unsloth="2025.2.5", trl="0.15.0")
    f.log_matches = match_text("Traceback ...\nRuntimeError: Unsloth: Please file a bug report! Error patching SFTTrainer\n",
                               source="train.log")
    found = run_checks(f)
    kb = next(x for x in found if x.id == KNOWN_BAD and x.evidence["known_bad.row"] == "kb.unsloth-trl-0.15.0")
    assert kb.confidence > 0.95 and "train.log" in kb.evidence["log"]
    assert "log.unsloth-patch-failed" in kb.explains
    order = ids(found)
    assert order.index(KNOWN_BAD) < order.index("log.unsloth-patch-failed")


def test_a_known_message_with_other_versions_is_a_hint_not_an_error():
    f = _unsloth_box(unsloth="2025.3.19", trl="0.15.2")
    f.log_matches = match_text("NameError: name 'PreTrainedConfig' is not defined. Did you mean: 'PretrainedConfig'?")
    out = log_signatures(f)
    hint = [x for x in out if x.id == KNOWN_ISSUE_MESSAGE]
    assert len(hint) == 1 and hint[0].severity is Severity.WARNING
    assert hint[0].evidence["known_bad.row"] == "kb.unsloth-transformers-pretrainedconfig-rename"
    assert not known_bad(f)


# ------------------------------------------------------------------ log matching

def test_common_errors_are_recognised():
    text = "\n".join([
        "RuntimeError: CUDA error: no kernel image is available for execution on the device",
        "ImportError: /x/flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so: undefined symbol: _ZN3c104cuda9SetDeviceEi",
        "AssertionError: libcuda.so cannot found!",
        "UserWarning: The installed version of bitsandbytes was compiled without GPU support.",
        "RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1191, unhandled system error, NCCL version 2.21.5",
    ])
    sigs = {m.signature for m in match_text(text)}
    assert {"sig.no-kernel-image", "sig.undefined-symbol", "sig.libcuda-not-found", "sig.bnb-no-gpu",
            "sig.nccl-system-error", "kb.flash-attn-2.5.7-torch-2.3"} <= sigs
    assert not match_text("step 10 loss 1.23\nstep 11 loss 1.19\n")


def test_matching_is_bounded_to_the_tail_and_short_lines():
    head = "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
    filler = ("x" * 999 + "\n") * (MAX_TEXT // 1000 + 10)
    assert not any(m.signature == "sig.no-kernel-image" for m in match_text(head + filler))
    long_line = "y" * 50_000 + " no kernel image is available for execution on the device " + "z" * 50_000
    (m,) = [m for m in match_text(long_line) if m.signature == "sig.no-kernel-image"]
    assert len(m.line) <= MAX_LINE and "no kernel image" in m.line


def test_adversarial_input_finishes():
    """Long runs of the characters the regexes repeat: each regex scans it once, no backtracking blowup."""
    evil = ("NCCL error " + "a" * 5000 + "\n") * 50 + "_Z" * 200_000 + "\n" + "." * 300_000
    match_text(evil)          # returns; a catastrophic regex would not within the test's lifetime


def test_match_logs_keeps_the_first_log_per_signature():
    logs = [("a.log", "CUDA out of memory"), ("b.log", "CUDA out of memory\nptxas fatal   : x")]
    got = {(m.signature, m.source) for m in match_logs(logs)}
    assert got == {("sig.cuda-oom", "a.log"), ("sig.ptxas", "b.log")}
    assert len(signatures()) == len(SIGS) + sum(1 for r in ROWS if r["symptom"])


# ------------------------------------------------------------------ causes before symptoms

def _f(fid, sev, explains=(), conf=0.9) -> Finding:
    return Finding(id=fid, severity=sev, title=fid, explains=list(explains), confidence=conf)


def test_a_cause_ranks_before_its_symptom_across_severity():
    symptom = _f("gpu.cuda-unavailable", Severity.CRITICAL)
    other = _f("wsl.memory-cap", Severity.ERROR, conf=0.99)
    cause = _f("driver.too-old-for-torch-cuda", Severity.ERROR, ["gpu.cuda-unavailable"], conf=0.5)
    ranked = rank([other, symptom, cause])
    assert [x.id for x in ranked] == ["driver.too-old-for-torch-cuda", "gpu.cuda-unavailable", "wsl.memory-cap"]
    assert explained_by(ranked) == {1: [0]}
    assert [x.id for x in rank([other, symptom])] == ["gpu.cuda-unavailable", "wsl.memory-cap"]   # unchanged without it


def test_explanation_chains_and_cycles():
    a = _f("a", Severity.WARNING, ["b"])
    b = _f("b", Severity.ERROR, ["c"])
    c = _f("c", Severity.CRITICAL)
    assert [x.id for x in rank([c, b, a])] == ["a", "b", "c"]
    x = _f("x", Severity.INFO, ["y"])
    y = _f("y", Severity.INFO, ["x"])
    assert {f.id for f in rank([x, y])} == {"x", "y"}       # a cycle ranks, it does not recurse forever


def test_driver_too_old_ranks_before_cuda_unavailable_on_real_checks():
    f = linux_gpu(name="NVIDIA GeForce RTX 4060 Ti", cap=(8, 9), driver="520.56.06", cuda_driver="11.8",
                  torch="2.6.0+cu124", cuda="12.4", unsloth="2025.4.8")
    f.torch.cuda_available, f.torch.device_count, f.torch.devices = False, 0, []
    f.torch.init_warning = "CUDA initialization: The NVIDIA driver on your system is too old (found version 11080)."
    order = ids(run_checks(f))
    assert order[0] == "driver.too-old-for-torch-cuda", order
    assert order.index("driver.too-old-for-torch-cuda") < order.index("gpu.cuda-unavailable")


def test_renderers_point_at_the_cause(tmp_path):
    from doctor.report_model import Report
    from doctor.report.markdown import render_markdown
    from doctor.report.terminal import make_console, render_report

    findings = rank([_f("gpu.cuda-unavailable", Severity.CRITICAL),
                     _f("driver.too-old-for-torch-cuda", Severity.ERROR, ["gpu.cuda-unavailable"])])
    report = Report(command="run", findings=findings, facts=None)
    md = render_markdown(report)
    assert "2. **[critical] gpu.cuda-unavailable** (`gpu.cuda-unavailable`) explained by #1" in md
    out = tmp_path / "term.txt"
    with out.open("w") as fh:
        render_report(report, make_console(file=fh, width=200))
    assert "explained by #1" in out.read_text()
    assert report.to_dict()["findings"][0]["explains"] == ["gpu.cuda-unavailable"]


# ------------------------------------------------------------------ the CLI, end to end

def test_run_with_a_log_reports_the_message_after_its_cause(tmp_path):
    facts = snapshot("rtx5090-old-torch.json")
    (tmp_path / "facts.json").write_text(json.dumps(facts.to_dict()))
    (tmp_path / "train.log").write_text("step 1\nRuntimeError: CUDA error: no kernel image is available for execution on the device\n")
    run = run_doctor(["run", "--facts", str(tmp_path / "facts.json"), "--log", str(tmp_path / "train.log"), "--json"])
    assert run.returncode == 1, run.stderr
    found = run.json()["findings"]
    order = [f["id"] for f in found]
    assert "log.no-kernel-image" in order and "arch.no-kernel-image" in order
    assert order.index("arch.no-kernel-image") < order.index("log.no-kernel-image")
    cause = found[order.index("arch.no-kernel-image")]
    assert "log.no-kernel-image" in cause["explains"]


def test_run_with_a_missing_log_is_a_usage_error(tmp_path):
    run = run_doctor(["run", "--facts", "examples/facts/h100-real.json", "--log", str(tmp_path / "nope.log")])
    assert run.returncode == 2 and "--log: no such file" in run.stderr


def test_gpu_capability_conditions():
    row = next(r for r in ROWS if r["id"] == "kb.unsloth-vllm-old-gpu")
    old = linux_gpu(name="NVIDIA GeForce GTX 1070", cap=(6, 1), unsloth="2025.3.19", vllm="0.8.2")
    new = linux_gpu(name="NVIDIA A100-SXM4-80GB", cap=(8, 0), unsloth="2025.3.19", vllm="0.8.2")
    assert row_matches(old, row) is not None and row_matches(new, row) is None


def test_bundle_carries_the_log_matches_and_analyze_matches_again(tmp_path):
    (tmp_path / "train.log").write_text("step 1\nRuntimeError: CUDA error: no kernel image is available for execution on the device\n")
    (tmp_path / "later.txt").write_text("ImportError: x.so: undefined symbol: _ZN3c104cuda9SetDeviceEi\n")
    out = tmp_path / "b.zip"
    made = run_doctor(["bundle", "--facts", "examples/facts/rtx5090-old-torch.json", "--log", str(tmp_path / "train.log"),
                       "--out", str(out)])
    assert made.returncode == 0, made.stderr
    from bundle_helpers import read_members

    facts = json.loads(read_members(out)["facts.json"])
    assert [m["signature"] for m in facts["log_matches"]] == ["sig.no-kernel-image"]
    run = run_doctor(["analyze", str(out), "--log", str(tmp_path / "later.txt"), "--json"])
    assert run.returncode == 1, run.stderr
    order = [f["id"] for f in run.json()["findings"]]
    assert {"log.no-kernel-image", "log.undefined-symbol"} <= set(order)
    assert order.index("arch.no-kernel-image") < order.index("log.no-kernel-image")


def test_a_resolver_can_ask_which_rows_a_set_of_pins_hits():
    from checks.known_bad import rows_hit_by

    hit = {r["id"] for r in rows_hit_by({"Unsloth": "2025.2.5", "TRL": "0.15.0", "transformers": "4.48.3"})}
    assert "kb.unsloth-trl-0.15.0" in hit
    assert not {r["id"] for r in rows_hit_by({"unsloth": "2025.2.5", "trl": "0.14.0"})} & {"kb.unsloth-trl-0.15.0"}
    # without facts, platform rows count (a resolver avoids them everywhere); with Linux facts they do not
    assert "kb.bitsandbytes-windows-before-0.43" in {r["id"] for r in rows_hit_by({"bitsandbytes": "0.41.1"})}
    assert "kb.bitsandbytes-windows-before-0.43" not in {r["id"] for r in rows_hit_by({"bitsandbytes": "0.41.1"}, linux_gpu())}


def test_log_lines_in_a_bundle_are_redacted(tmp_path):
    """The matched log line enters facts and findings: the bundle's redaction must cover it."""
    from bundle_helpers import leaks, planted_facts

    facts = planted_facts("zyxuser", "zyxhost", "/home/zyxuser", {})
    facts.save(tmp_path / "f.json")
    (tmp_path / "t.log").write_text(
        "ImportError: /home/zyxuser/proj/.venv/lib/python3.10/site-packages/flash_attn_2_cuda.cpython-310-x86_64"
        "-linux-gnu.so: undefined symbol: _ZN3c104cuda9SetDeviceEi (on zyxhost)\n")
    out = tmp_path / "b.zip"
    made = run_doctor(["bundle", "--facts", str(tmp_path / "f.json"), "--log", str(tmp_path / "t.log"), "--out", str(out)])
    assert made.returncode == 0, made.stderr
    from bundle_helpers import read_members

    facts_json = json.loads(read_members(out)["facts.json"])
    assert any(m["signature"] == "sig.undefined-symbol" for m in facts_json["log_matches"])
    assert not leaks(out, ["/home/zyxuser"], ["zyxuser", "zyxhost"])


def test_bf16_and_triton_messages_are_symptoms_of_their_version_and_gpu_causes():
    """Two signatures added with the corpus (corpus2): each matches its message and ranks after the
    facts-based finding that explains it."""
    from doctor.knowledge.logmatch import match_text
    from doctor.engine import run_checks
    from doctor.findings import explained_by

    bf16 = "ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your Tesla V100"
    key = "ImportError: cannot import name 'triton_key' from 'triton.compiler.compiler' (/x/compiler.py)"
    assert [m.signature for m in match_text(bf16, source="t")] == ["sig.bf16-unsupported"]
    assert [m.signature for m in match_text(key, source="t")] == ["sig.triton-key"]
    f = linux_gpu(torch="2.2.2+cu121", cuda="12.1", triton="2.3.0")
    f.log_matches = match_text(key, source="t")
    found = run_checks(f)
    order = [x.id for x in found]
    cause, symptom = order.index("versions.torch-triton-mismatch"), order.index("log.triton-incompatible")
    assert cause < symptom and cause in explained_by(found)[symptom], order
