"""The patched config: parses, differs in exactly the intended lines, never touches the original."""
from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from doctor.config.flags import ConfigOverrides
from doctor.config.loader import load_config
from doctor.config.patcher import _Request, patch_text, write_patched
from doctor.config.python_parser import parse_python
from doctor.findings import ConfigChange, Finding, Severity
from tests.vram_helpers import CORPUS, REFERENCE


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")


def finding(fid, *changes, severity=Severity.ERROR):
    return Finding(id=fid, severity=severity, title=fid,
                   config_changes=[ConfigChange(s, v, f"because {s}") for s, v in changes])


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    return dst


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines of a line diff."""
    import difflib

    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def test_reference_script_round_trip(tmp_path):
    src = copy(REFERENCE, tmp_path)
    before, sha = src.read_text(), digest(src)
    cfg = load_config(src)
    findings = [finding("vram.does-not-fit", ("per_device_train_batch_size", 1), ("gradient_accumulation_steps", 8)),
                finding("wsl.pinned-memory-offload", ("use_gradient_checkpointing", True),
                        ("dataloader_pin_memory", False))]
    res = write_patched(cfg, findings, None)
    assert digest(src) == sha                                    # the original is untouched
    out = Path(res.path)
    assert out == tmp_path / "train_unsloth_llama31_8b.patched.py"
    after = out.read_text()
    ast.parse(after)
    removed, added = changed_lines(before, after)
    assert removed == ['    use_gradient_checkpointing = "unsloth", # True or "unsloth" for very long context',
                       "        per_device_train_batch_size = 2,",
                       "        gradient_accumulation_steps = 4,"]
    assert added == [
        '    use_gradient_checkpointing = True, # True or "unsloth" for very long context  '
        "# doctor: wsl.pinned-memory-offload: because use_gradient_checkpointing",
        "        per_device_train_batch_size = 1,  # doctor: vram.does-not-fit: because per_device_train_batch_size",
        "        gradient_accumulation_steps = 8,  # doctor: vram.does-not-fit: because gradient_accumulation_steps",
        "        dataloader_pin_memory = False,  # doctor: wsl.pinned-memory-offload: because dataloader_pin_memory"]
    again = parse_python(after)
    assert (again.per_device_train_batch_size, again.gradient_accumulation_steps) == (1, 8)
    assert again.use_gradient_checkpointing is True and again.dataloader_pin_memory is False
    assert [c.setting for c in res.changes] == ["per_device_train_batch_size", "gradient_accumulation_steps",
                                                 "use_gradient_checkpointing", "dataloader_pin_memory"]
    assert res.changes[0].old == "2" and res.changes[3].old == ""
    plus = [ln for ln in res.diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert plus == ["+" + a for a in added]


def test_folklore_fixes_the_notebook_already_has_are_dropped(tmp_path):
    """The 'fixes' that circulated for unsloth#1010 were the notebook's defaults: nothing to write."""
    src = copy(REFERENCE, tmp_path)
    cfg = load_config(src)
    folklore = finding("folklore", ("per_device_train_batch_size", 2), ("gradient_accumulation_steps", 4),
                       ("optim", "adamw_8bit"), ("use_gradient_checkpointing", "unsloth"), ("max_seq_length", 2048))
    assert write_patched(cfg, [folklore], None) is None
    assert not (tmp_path / "train_unsloth_llama31_8b.patched.py").exists()


def test_shared_variable_is_edited_where_it_is_defined_only_if_every_reader_changes(tmp_path):
    src = copy(REFERENCE, tmp_path)
    cfg = load_config(src)
    one = write_patched(cfg, [finding("a", ("trainer_max_seq_length", 1024))], tmp_path / "one")
    removed, added = changed_lines(src.read_text(), Path(one.path).read_text())
    assert removed == ["    max_seq_length = max_seq_length,"] and added[0].startswith("    max_seq_length = 1024,")
    # the model's max_seq_length (same variable) is unchanged
    assert parse_python(Path(one.path).read_text()).max_seq_length == 2048
    both = write_patched(cfg, [finding("b", ("max_seq_length", 1024), ("trainer_max_seq_length", 1024))],
                         tmp_path / "both")
    removed, added = changed_lines(src.read_text(), Path(both.path).read_text())
    assert removed == ["max_seq_length = 2048 # Choose any! We auto support RoPE Scaling internally!"]
    assert len(added) == 1 and added[0].startswith("max_seq_length = 1024 # Choose any!")
    assert len(both.changes) == 2


def test_variable_read_by_a_computed_setting_is_left_alone():
    """BATCH feeds `gradient_accumulation_steps=16 // BATCH`: changing the batch edits the keyword."""
    src = (CORPUS / "hf_peft_trl_qlora.py").read_text()
    out, changes, _ = patch_text(src, "python", parse_python(src),
                                 [_Request("per_device_train_batch_size", 1, "vram.does-not-fit", "fits")])
    removed, added = changed_lines(src, out)
    assert removed == ["    per_device_train_batch_size=BATCH,"]
    again = parse_python(out)
    assert again.per_device_train_batch_size == 1 and again.gradient_accumulation_steps == 4


def test_rename_keyword(tmp_path):
    src = tmp_path / "train.py"
    src.write_text("from trl import SFTConfig\nargs = SFTConfig(\n    max_seq_length=2048,  # old TRL\n    seed=1,\n)\n")
    res = write_patched(load_config(src), [finding("config.trl-max-seq-length-renamed",
                                                   ("source_keys.trainer_max_seq_length", "max_length"))], None)
    text = Path(res.path).read_text()
    assert "    max_length=2048,  # old TRL  # doctor: config.trl-max-seq-length-renamed:" in text
    again = parse_python(text)
    assert again.trainer_max_seq_length == 2048 and again.source_keys["trainer_max_seq_length"] == "max_length"


@pytest.mark.parametrize("call, expected", [
    ("TrainingArguments(output_dir='o')", "TrainingArguments(output_dir='o', per_device_eval_batch_size=2)"),
    ("TrainingArguments()", "TrainingArguments(per_device_eval_batch_size=2)"),
    ("TrainingArguments(\n    output_dir='o',\n    seed=1)", "    seed=1, per_device_eval_batch_size=2)"),
    ("TrainingArguments(\n    output_dir = 'o',\n    seed = 1\n)", "    seed = 1,\n    per_device_eval_batch_size = 2,"),
    ("TrainingArguments(\n    output_dir='o',\n    seed=1, # the seed\n)", "    seed=1, # the seed\n    per_device_eval_batch_size=2,"),
    ("TrainingArguments(\n    **common,\n)", "    **common,\n    per_device_eval_batch_size=2,"),
])
def test_insert_into_any_call_shape(call, expected):
    src = f"from transformers import TrainingArguments\nargs = {call}\n"
    cfg = parse_python(src)
    out, changes, skipped = patch_text(src, "python", cfg, [_Request("per_device_eval_batch_size", 2, "f", "r")])
    assert not skipped and expected in out
    ast.parse(out)
    assert parse_python(out).per_device_eval_batch_size == 2


def test_computed_values_are_not_overwritten():
    src = "import os\nfrom trl import SFTConfig\nSFTConfig(per_device_train_batch_size=int(os.environ['BS']))\n"
    out, changes, skipped = patch_text(src, "python", parse_python(src),
                                       [_Request("per_device_train_batch_size", 1, "vram.does-not-fit", "fits")])
    assert out == src and not changes
    assert "computed" in skipped[0].why and "os.environ" in skipped[0].why


def test_no_call_to_add_to_is_reported():
    src = "x = 1\n"
    out, changes, skipped = patch_text(src, "python", parse_python(src), [_Request("optim", "adamw_8bit", "f", "r")])
    assert out == src and skipped[0].why.startswith("no call")


def test_comment_not_added_inside_a_multiline_string():
    src = ('from trl import SFTConfig\nSFTConfig(seed=1, output_dir="""a\nb""",\n'
           '    per_device_train_batch_size=4)\n')
    out, changes, _ = patch_text(src, "python", parse_python(src), [_Request("seed", 2, "f", "r")])
    assert 'SFTConfig(seed=2, output_dir="""a\nb""",\n' in out   # line 2 ends inside the string: no comment
    ast.parse(out)


def test_yaml_round_trip_keeps_comments(tmp_path):
    src = copy(CORPUS / "axolotl_qlora.yaml", tmp_path)
    before = src.read_text()
    res = write_patched(load_config(src), [finding("vram.does-not-fit", ("per_device_train_batch_size", 1),
                                                   ("gradient_accumulation_steps", 8), ("max_seq_length", 2048)),
                                           finding("config.eval-batch-default", ("per_device_eval_batch_size", 1))],
                        None)
    after = Path(res.path).read_text()
    data = yaml.safe_load(after)
    assert (data["micro_batch_size"], data["gradient_accumulation_steps"], data["sequence_len"]) == (1, 8, 2048)
    assert data["eval_batch_size"] == 1
    removed, added = changed_lines(before, after)
    assert removed == ["sequence_len: 4096   # long context", "gradient_accumulation_steps: 4", "micro_batch_size: 2"]
    assert added[0] == "sequence_len: 2048   # long context  # doctor: vram.does-not-fit: because max_seq_length"
    assert added[-1] == "eval_batch_size: 1  # doctor: config.eval-batch-default: because per_device_eval_batch_size"
    cfg = load_config(Path(res.path))
    assert cfg.per_device_train_batch_size == 1 and cfg.max_seq_length == 2048


def test_json_round_trip(tmp_path):
    src = copy(CORPUS / "sft_config.json", tmp_path)
    before = src.read_text()
    res = write_patched(load_config(src), [finding("x", ("per_device_train_batch_size", 2), ("use_liger_kernel", True),
                                                   ("per_device_eval_batch_size", 2),
                                                   ("source_keys.trainer_max_seq_length", "max_seq_length"))], None)
    after = Path(res.path).read_text()
    data = json.loads(after)
    assert data["per_device_train_batch_size"] == 2 and data["use_liger_kernel"] is True
    assert data["per_device_eval_batch_size"] == 2 and data["max_seq_length"] == 4096 and "max_length" not in data
    removed, added = changed_lines(before, after)
    assert len(removed) == 3 and len(added) == 4   # three edited lines (the last gains a comma) + one new
    assert res.changes and "#" not in after          # JSON has no comments: the report carries the reasons


NESTED_JSON = """{
  "model": {
    "model_name": "unsloth/Meta-Llama-3.1-8B-bnb-4bit",
    "max_seq_length": 4096,
    "load_in_4bit": true
  },
  "training": {
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "optim": "adamw_8bit"
  },
  "quantization_config": {"per_device_train_batch_size": 99}
}
"""


def test_json_sections_are_patched_where_the_values_live(tmp_path):
    # A value one section down is edited in place (not shadowed by a new top-level key that the
    # user's trainer would never read), and a new key joins the section that holds the settings.
    src = tmp_path / "train_config.json"
    src.write_text(NESTED_JSON)
    cfg = load_config(src)
    assert cfg.per_device_train_batch_size == 8 and cfg.trainer_max_seq_length == 4096
    res = write_patched(cfg, [finding("x", ("per_device_train_batch_size", 2), ("trainer_max_seq_length", 2048),
                                      ("per_device_eval_batch_size", 2))], None)
    data = json.loads(Path(res.path).read_text())
    assert data["training"] == {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                                "optim": "adamw_8bit", "per_device_eval_batch_size": 2}
    assert data["model"]["max_seq_length"] == 2048
    assert data["quantization_config"] == {"per_device_train_batch_size": 99}      # a value, not a section
    assert set(data) == {"model", "training", "quantization_config"}
    again = load_config(Path(res.path))
    assert (again.per_device_train_batch_size, again.trainer_max_seq_length, again.per_device_eval_batch_size) == (2, 2048, 2)
    removed, added = changed_lines(NESTED_JSON, Path(res.path).read_text())
    assert removed == ['    "max_seq_length": 4096,', '    "per_device_train_batch_size": 8,', '    "optim": "adamw_8bit"']
    assert added[-1] == '    "per_device_eval_batch_size": 2'


def test_out_dir_flags_and_refusals(tmp_path):
    src = copy(REFERENCE, tmp_path)
    cfg = load_config(src, ConfigOverrides(batch_size=1))
    res = write_patched(cfg, [], tmp_path / "reports")
    assert Path(res.path).parent == tmp_path / "reports"
    assert res.changes[0].finding == "flag" and "--batch-size" in res.changes[0].reason
    assert parse_python(Path(res.path).read_text()).per_device_train_batch_size == 1
    # a flag equal to the file's value writes nothing
    assert write_patched(load_config(src, ConfigOverrides(batch_size=2)), [], tmp_path / "r2") is None
    # flags-only configs have no file to patch
    assert write_patched(load_config(None, ConfigOverrides(model="x", batch_size=1)), [], tmp_path) is None
    # a target that is a link to the original is never written through: the next free name is used
    (tmp_path / "evil").mkdir()
    link = tmp_path / "evil" / "train_unsloth_llama31_8b.patched.py"
    os.symlink(src, link)
    res = write_patched(cfg, [], tmp_path / "evil")
    assert src.read_text() == REFERENCE.read_text() and os.path.islink(link)
    assert res.path == str(tmp_path / "evil" / "train_unsloth_llama31_8b.patched-2.py")
    assert res.wanted_path == str(link) and f"+++ {res.path}" in res.diff


def test_conflicting_changes_keep_the_higher_ranked(tmp_path):
    src = copy(REFERENCE, tmp_path)
    res = write_patched(load_config(src), [finding("first", ("optim", "adamw_torch")),
                                           finding("second", ("optim", "paged_adamw_8bit"))], None)
    assert [c.finding for c in res.changes] == ["first"]
    assert res.skipped[0].finding == "second" and "conflicts with first" in res.skipped[0].why


def test_a_patch_that_would_not_parse_is_not_written(tmp_path, monkeypatch):
    src = copy(REFERENCE, tmp_path)
    from doctor.config import patch_python

    monkeypatch.setattr(patch_python, "py_literal", lambda value, like="": "(((")
    res = write_patched(load_config(src), [finding("x", ("seed", 1))], None)
    # not an exit 70 that loses the report: a doctor bug the report carries (run_command makes it
    # an error finding, doctor.patch-not-written)
    assert res.path is None and res.internal and "would not parse" in res.write_error
    assert not (tmp_path / "train_unsloth_llama31_8b.patched.py").exists()


def test_renderers(tmp_path):
    src = copy(REFERENCE, tmp_path)
    res = write_patched(load_config(src), [finding("vram.tight", ("per_device_train_batch_size", 1))], None)
    buf = io.StringIO()
    res.render_terminal(Console(file=buf, width=80, color_system=None))
    text = buf.getvalue()
    assert res.path in text.replace("\n", "") and "per_device_train_batch_size: 2 -> 1" in text
    md = res.render_markdown()
    assert "### Patched config" in md and "```diff" in md and "| `per_device_train_batch_size` | `2` | `1` |" in md
    d = res.to_dict()
    assert d["changes"][0] == {"setting": "per_device_train_batch_size", "old": "2", "new": 1,
                               "finding": "vram.tight", "reason": "because per_device_train_batch_size"}


CHOICES = [("per_device_train_batch_size", st.integers(1, 64)), ("gradient_accumulation_steps", st.integers(1, 64)),
           ("optim", st.sampled_from(["adamw_torch", "paged_adamw_8bit", "adamw_8bit"])),
           ("lora_dropout", st.sampled_from([0.0, 0.05, 0.1])), ("dataloader_num_workers", st.integers(0, 8)),
           ("per_device_eval_batch_size", st.integers(1, 8)), ("use_gradient_checkpointing", st.sampled_from([True, False])),
           ("trainer_max_seq_length", st.sampled_from([512, 1024, 4096])), ("seed", st.integers(0, 99999))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.sampled_from([REFERENCE, CORPUS / "unsloth_notebook_2025.py", CORPUS / "hf_peft_trl_qlora.py",
                               CORPUS / "unusual_formatting.py"]),
       picks=st.lists(st.sampled_from(range(len(CHOICES))), unique=True, min_size=1, max_size=5), data=st.data())
def test_any_set_of_changes_parses_and_reads_back(script, picks, data):
    src = script.read_text(encoding="utf-8")
    cfg = parse_python(src)
    reqs = [_Request(CHOICES[i][0], data.draw(CHOICES[i][1]), "prop", "test") for i in picks]
    out, changes, skipped = patch_text(src, "python", cfg, reqs)
    ast.parse(out)
    again = parse_python(out)
    for ch in changes:
        assert getattr(again, ch.setting) == ch.new, (script.name, ch)
    removed, added = changed_lines(src, out)
    # one line per change, plus prepare_model_for_kbit_training's when checkpointing is turned off
    assert len(removed) <= len(changes) + 1 and all("doctor: prop: test" in a for a in added)
