"""The config parser on a corpus of real-world shaped scripts, YAMLs and JSONs (tests/corpus)."""
from __future__ import annotations

from pathlib import Path

import pytest

from doctor import exitcodes
from doctor.config.flags import ConfigOverrides
from doctor.config.loader import load_config
from doctor.config.model import AUTO_EMULATED, AUTO_NATIVE, NOT_AUTO_EMULATED, NOT_AUTO_NATIVE
from doctor.config.python_parser import parse_python
from doctor.exitcodes import DoctorError
from tests.vram_helpers import CORPUS, REFERENCE, span_slice


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")


def load(path, **kw):
    return load_config(Path(path), ConfigOverrides(**kw) if kw else None)


def test_reference_notebook_script():
    cfg = load(REFERENCE)
    assert cfg.framework == "unsloth" and cfg.source_kind == "python"
    assert cfg.model_name == "unsloth/Meta-Llama-3.1-8B-bnb-4bit"
    assert (cfg.max_seq_length, cfg.trainer_max_seq_length) == (2048, 2048)
    assert cfg.load_in_4bit is True and cfg.dtype is None and "dtype" not in cfg.unresolved
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (16, 16, 0.0)
    assert cfg.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert cfg.use_gradient_checkpointing == "unsloth"
    assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (2, 4)
    assert cfg.optim == "adamw_8bit" and cfg.packing is False and cfg.dataset_num_proc == 2
    assert cfg.fp16 == NOT_AUTO_NATIVE and cfg.bf16 == AUTO_NATIVE
    assert (cfg.max_steps, cfg.logging_steps, cfg.seed, cfg.output_dir) == (60, 1, 3407, "outputs")
    assert cfg.full_finetune is False and cfg.prepare_model_for_kbit_training is False
    assert cfg.args_class == "TrainingArguments"
    assert cfg.source_keys["trainer_max_seq_length"] == "max_seq_length"
    assert cfg.unresolved == {}
    assert cfg.model_shape is not None and cfg.model_shape.hidden == 4096


def test_spans_point_at_the_written_values():
    source = REFERENCE.read_text()
    cfg = load(REFERENCE)
    for setting, span in cfg.spans.items():
        assert span_slice(source, span) == span.text, setting
    # `max_seq_length = max_seq_length` points at the variable's definition, where 2048 is written
    span = cfg.spans["max_seq_length"]
    assert span.text == "2048" and source.splitlines()[span.line - 1].startswith("max_seq_length = 2048")
    assert cfg.spans["per_device_train_batch_size"].call == "TrainingArguments"
    assert cfg.spans["use_gradient_checkpointing"].text == '"unsloth"'


def test_unsloth_2025_notebook_with_sftconfig():
    cfg = load(CORPUS / "unsloth_notebook_2025.py")
    assert cfg.model_name == "unsloth/Llama-3.2-3B-Instruct"
    assert cfg.args_class == "SFTConfig" and cfg.framework == "unsloth"
    assert cfg.trainer_max_seq_length == 2048 and cfg.source_keys["trainer_max_seq_length"] == "max_seq_length"
    assert cfg.model_shape.layers == 28


def test_plain_transformers_peft_trl_qlora():
    cfg = load(CORPUS / "hf_peft_trl_qlora.py")
    assert cfg.framework == "transformers"
    assert cfg.model_name == "meta-llama/Llama-3.1-8B-Instruct"      # positional arg through a constant
    assert cfg.load_in_4bit is True and cfg.bnb_4bit_use_double_quant is True   # BitsAndBytesConfig
    assert cfg.dtype == "bfloat16" and cfg.source_keys["dtype"] == "torch_dtype"
    assert cfg.attn_implementation == "sdpa"
    assert cfg.prepare_model_for_kbit_training is True
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (32, 64, 0.05)
    assert cfg.target_modules == ["all-linear"]
    assert cfg.trainer_max_seq_length == 2048                          # 1024 * 2
    assert cfg.per_device_train_batch_size == 4 and cfg.gradient_accumulation_steps == 4   # 16 // BATCH
    assert cfg.use_gradient_checkpointing is True and cfg.optim == "paged_adamw_8bit"
    assert cfg.packing is True and cfg.bf16 is True and cfg.eval_strategy == "steps"
    assert cfg.dataloader_num_workers == 4 and cfg.full_finetune is False


def test_unusual_formatting():
    path = CORPUS / "unusual_formatting.py"
    source = path.read_text(encoding="utf-8")
    cfg = load(path)
    assert cfg.model_name == "Qwen/Qwen2.5-7B-Instruct"     # `name = ...; rank = 8 ; alpha = rank * 2`
    assert (cfg.lora_r, cfg.lora_alpha) == (8, 16)
    assert cfg.lora_dropout == 0.1 and cfg.target_modules == ["q_proj", "v_proj"]
    assert cfg.attn_implementation == "eager" and cfg.dtype == "bfloat16"
    assert cfg.per_device_train_batch_size == 1               # a function parameter's default
    assert cfg.dataloader_num_workers == 0
    assert cfg.gradient_accumulation_steps == 8               # **common -> dict(... 2 ** 3 ...)
    assert cfg.dataloader_pin_memory is False
    assert cfg.bf16 == AUTO_EMULATED and cfg.fp16 == NOT_AUTO_EMULATED
    assert cfg.eval_strategy == "epoch" and cfg.source_keys["eval_strategy"] == "evaluation_strategy"
    assert set(cfg.unresolved) == {"output_dir"} and cfg.unresolved["output_dir"].startswith('f"out-')
    for setting, span in cfg.spans.items():   # columns are characters even after é and 日本語
        assert span_slice(source, span) == span.text, setting


def test_axolotl_yaml():
    cfg = load(CORPUS / "axolotl_qlora.yaml")
    assert cfg.source_kind == "yaml" and cfg.args_class == "axolotl"
    assert cfg.model_name == "NousResearch/Meta-Llama-3-8B" and cfg.model_shape.hidden == 4096
    assert cfg.max_seq_length == 4096 and cfg.per_device_train_batch_size == 2
    assert cfg.per_device_eval_batch_size == 2                # axolotl: eval batch = micro batch
    assert cfg.load_in_4bit is True and cfg.full_finetune is False
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (32, 16, 0.05)
    assert cfg.target_modules == ["all-linear"] and cfg.attn_implementation == "flash_attention_2"
    assert cfg.optim == "paged_adamw_32bit" and cfg.packing is True
    assert cfg.bf16 == AUTO_EMULATED and cfg.eval_strategy == "steps"
    assert cfg.use_gradient_checkpointing is True
    text = (CORPUS / "axolotl_qlora.yaml").read_text()
    assert span_slice(text, cfg.spans["max_seq_length"]) == "4096"


def test_llamafactory_yaml():
    cfg = load(CORPUS / "llamafactory_lora.yaml")
    assert cfg.args_class == "llama-factory" and cfg.framework == "unsloth"   # use_unsloth: true
    assert cfg.model_name == "Qwen/Qwen2.5-1.5B-Instruct" and cfg.load_in_4bit is True
    assert cfg.max_seq_length == 2048 and cfg.lora_r == 8 and cfg.target_modules == ["all-linear"]
    assert cfg.per_device_train_batch_size == 1 and cfg.gradient_accumulation_steps == 8
    assert cfg.per_device_eval_batch_size == 1 and cfg.eval_strategy == "steps"
    assert cfg.dataset_num_proc == 16 and cfg.use_gradient_checkpointing is True


def test_sftconfig_json():
    cfg = load(CORPUS / "sft_config.json")
    assert cfg.source_kind == "json"
    assert cfg.model_name == "mistralai/Mistral-7B-v0.3" and cfg.model_shape.vocab == 32768
    assert cfg.trainer_max_seq_length == 4096 and cfg.source_keys["trainer_max_seq_length"] == "max_length"
    assert cfg.per_device_train_batch_size == 8 and cfg.optim == "adamw_torch_fused"
    assert cfg.use_gradient_checkpointing is False and cfg.use_liger_kernel is False
    text = (CORPUS / "sft_config.json").read_text()
    assert span_slice(text, cfg.spans["per_device_train_batch_size"]) == "8"


def test_own_json_round_trip(tmp_path):
    cfg = load(REFERENCE)
    path = tmp_path / "cfg.json"
    import json

    path.write_text(json.dumps(cfg.to_dict()))
    again = load(path)
    assert again.source_kind == "json" and again.per_device_train_batch_size == 2
    assert again.use_gradient_checkpointing == "unsloth" and again.framework == "unsloth"


@pytest.mark.parametrize("name, where", [("syntax_error.py", "line 9"), ("malformed.yaml", "line 3"),
                                         ("malformed.json", "line 4")])
def test_broken_files_are_one_line_config_errors(name, where):
    with pytest.raises(DoctorError) as err:
        load(CORPUS / name)
    assert err.value.exit_code == exitcodes.CONFIG_INVALID
    assert where in err.value.message and "\n" not in err.value.message


def test_missing_unsupported_and_binary_files(tmp_path):
    for path, words in [(tmp_path / "nope.py", "not found"), (tmp_path / "cfg.toml", "unsupported"),
                        (tmp_path, "unsupported")]:
        with pytest.raises(DoctorError) as err:
            load(path)
        assert err.value.exit_code == exitcodes.CONFIG_INVALID and words in err.value.message
    binary = tmp_path / "train.py"
    binary.write_bytes(b"\xff\xfe\x00x = 1")
    with pytest.raises(DoctorError) as err:
        load(binary)
    assert err.value.exit_code == exitcodes.CONFIG_INVALID
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(DoctorError, match="mapping"):
        load(tmp_path / "list.yaml")


@pytest.mark.parametrize("expr, expected", [
    ("is_bfloat16_supported()", AUTO_NATIVE),
    ("not is_bfloat16_supported()", NOT_AUTO_NATIVE),
    ("torch.cuda.is_bf16_supported()", AUTO_EMULATED),
    ("not torch.cuda.is_bf16_supported()", NOT_AUTO_EMULATED),
    ("torch.cuda.is_bf16_supported(including_emulation=False)", AUTO_NATIVE),
    ("torch.cuda.get_device_capability()[0] >= 8", AUTO_NATIVE),
    ("True", True),
    ("not False", True),
])
def test_precision_idioms(expr, expected):
    cfg = parse_python(f"import torch\nfrom transformers import TrainingArguments\nargs = TrainingArguments(bf16 = {expr})\n")
    assert cfg.bf16 == expected and "bf16" not in cfg.unresolved


def test_unresolvable_values_are_reported_not_guessed():
    src = """import os
from trl import SFTConfig
bs = 2
bs += 1
SFTConfig(per_device_train_batch_size=bs, bf16=os.environ.get("BF16") == "1",
          gradient_accumulation_steps=int(os.environ["GA"]), optim=OPTIM, seed=42)
"""
    cfg = parse_python(src)
    assert cfg.per_device_train_batch_size is None and cfg.unresolved["per_device_train_batch_size"] == "bs"
    assert cfg.unresolved["bf16"] == 'os.environ.get("BF16") == "1"'
    assert "gradient_accumulation_steps" in cfg.unresolved and cfg.unresolved["optim"] == "OPTIM"
    assert cfg.seed == 42


def test_variables_the_last_assignment_before_use_wins():
    src = """from trl import SFTConfig
seq = 512
seq = 1024 * 4
cfg = SFTConfig(max_length=seq, per_device_train_batch_size=(2), **{"optim": "adamw_8bit"})
seq = 99
"""
    cfg = parse_python(src)
    assert cfg.trainer_max_seq_length == 4096 and cfg.optim == "adamw_8bit"
    assert cfg.per_device_train_batch_size == 2 and cfg.args_class == "SFTConfig"


def test_gc_switches_combine():
    # prepare_model_for_kbit_training turns checkpointing on although TrainingArguments says False
    src = """from peft import prepare_model_for_kbit_training
from transformers import TrainingArguments
model = prepare_model_for_kbit_training(model)
TrainingArguments(gradient_checkpointing=False)
"""
    assert parse_python(src).use_gradient_checkpointing is True
    off = src.replace("(model)", "(model, use_gradient_checkpointing=False)")
    assert parse_python(off).use_gradient_checkpointing is False
    assert parse_python("model.gradient_checkpointing_enable()\n").use_gradient_checkpointing is True


def test_full_finetune_is_detected():
    src = """from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen3-0.6B")
Trainer(model=model, args=TrainingArguments(per_device_train_batch_size=1))
"""
    cfg = parse_python(src)
    assert cfg.full_finetune is True and cfg.model_name == "Qwen/Qwen3-0.6B"


def test_flags_override_the_file_and_are_remembered():
    cfg = load(REFERENCE, batch_size=8, seq_len=4096, gc="true", optim="adamw_torch", precision="fp16")
    assert cfg.per_device_train_batch_size == 8
    assert cfg.max_seq_length == 4096 and cfg.trainer_max_seq_length == 4096
    assert cfg.use_gradient_checkpointing is True and cfg.optim == "adamw_torch"
    assert cfg.fp16 is True and cfg.bf16 is False
    assert cfg.overrides["per_device_train_batch_size"] == "--batch-size"
    assert cfg.overrides["use_gradient_checkpointing"] == "--gc"
    assert cfg.gradient_accumulation_steps == 4   # untouched


def test_flags_alone_make_a_config():
    cfg = load_config(None, ConfigOverrides(model="Qwen/Qwen2.5-0.5B", batch_size=4, seq_len=512, gc="unsloth",
                                            framework="unsloth"))
    assert cfg.source_kind == "flags" and cfg.framework == "unsloth"
    assert cfg.use_gradient_checkpointing == "unsloth" and cfg.model_shape.hidden == 896


@pytest.mark.parametrize("kw", [{"gc": "sometimes"}, {"precision": "int4"}, {"framework": "jax"}])
def test_bad_flag_values_are_usage_errors(kw):
    with pytest.raises(DoctorError) as err:
        load_config(None, ConfigOverrides(model="x", **kw))
    assert err.value.exit_code == exitcodes.USAGE


def test_a_reload_after_training_does_not_replace_the_trained_model():
    src = """from transformers import AutoModelForCausalLM, BitsAndBytesConfig
from peft import AutoPeftModelForCausalLM
model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen2.5-7B", quantization_config=BitsAndBytesConfig(load_in_4bit=True))
trainer.train()
merged = AutoPeftModelForCausalLM.from_pretrained("outputs/final", load_in_4bit=False).merge_and_unload()
"""
    cfg = parse_python(src)
    assert cfg.model_name == "Qwen/Qwen2.5-7B" and cfg.load_in_4bit is True
