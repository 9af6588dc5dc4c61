"""Sequence length set in two places that disagree (FM-15), and TRL's rename of max_seq_length."""
from __future__ import annotations

from checks import check
from doctor.config import defaults
from doctor.config.model import TrainingConfig
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity

IDS = ("config.max-seq-length-mismatch", "config.trl-max-seq-length-renamed", "config.trl-default-max-length")


@check(id="config-seq-length", title="max_seq_length in from_pretrained vs the trainer; TRL's max_length rename",
       finding_ids=IDS, needs_config=True, order=70)
def config_seq_length(facts: Facts, config: TrainingConfig) -> list[Finding]:
    out = []
    model_len, trainer_len = config.max_seq_length, config.trainer_max_seq_length
    if model_len and trainer_len and model_len != trainer_len:
        out.append(Finding(
            id="config.max-seq-length-mismatch", severity=Severity.WARNING,
            title=f"Sequence length differs: model loaded with {model_len}, trainer cuts at {trainer_len}",
            why=("Samples longer than the model's max_seq_length are truncated by Unsloth after the trainer "
                 "built them (\"Input IDs of length N > the model's max sequence length\"), and the labels are "
                 "not: a shape mismatch or a crash at a fixed step." if trainer_len > model_len else
                 "The model is prepared for longer sequences than the trainer feeds it; memory estimates and "
                 "RoPE scaling follow the model's value."),
            remediation="Use one max_seq_length everywhere.",
            evidence={"from_pretrained max_seq_length": model_len,
                      f"{config.spans['trainer_max_seq_length'].call if 'trainer_max_seq_length' in config.spans else 'trainer'} "
                      f"{config.source_keys.get('trainer_max_seq_length', 'max_length')}": trainer_len},
            config_changes=[ConfigChange("trainer_max_seq_length", model_len, "match from_pretrained's max_seq_length")],
            failure_mode="FM-15", confidence=0.8, fix_cost=1))
    renamed = _renamed_key(facts, config)
    if renamed is not None:
        out.append(renamed)
    default = _default_length(facts, config)
    if default is not None:
        out.append(default)
    return out


def _renamed_key(facts: Facts, config: TrainingConfig):
    if config.source_keys.get("trainer_max_seq_length") != "max_seq_length" or config.source_kind != "python":
        return None
    trl = facts.version("trl")
    if not defaults.holds("trl.max-seq-length-renamed", trl):
        return None
    call = config.spans["trainer_max_seq_length"].call if "trainer_max_seq_length" in config.spans else "SFTConfig"
    unsloth = config.framework == "unsloth"
    ev = {"packages.trl": trl, "call": call, "keyword": "max_seq_length"}
    src = ["https://github.com/huggingface/trl/pull/2895"]
    if unsloth:
        return Finding(
            id="config.trl-max-seq-length-renamed", severity=Severity.INFO,
            title=f"{call}(max_seq_length=...) is the pre-0.20 TRL spelling; Unsloth translates it",
            why="TRL >= 0.20 only knows max_length. Unsloth's patched SFTTrainer maps the old name, so this runs "
                "under Unsloth, but the same script fails with plain TRL (unexpected keyword argument).",
            remediation="Nothing to do while you train with Unsloth. For plain TRL, pass max_length to SFTConfig.",
            evidence=ev, links=src + ["https://github.com/unslothai/unsloth/pull/2669"],
            failure_mode="FM-15", confidence=0.7, fix_cost=1)
    rename = call == "SFTConfig"
    return Finding(
        id="config.trl-max-seq-length-renamed", severity=Severity.ERROR,
        title=f"trl {trl} has no max_seq_length: {call}(max_seq_length=...) raises TypeError",
        why="TRL renamed SFTConfig.max_seq_length to max_length (deprecated in 0.16, removed in 0.20): "
            f"\"{call}.__init__() got an unexpected keyword argument 'max_seq_length'\".",
        remediation=("Rename the keyword to max_length." if rename else
                     "Move it into the config: SFTConfig(max_length=...), passed as args=."),
        evidence=ev, links=src,
        config_changes=[ConfigChange("source_keys.trainer_max_seq_length", "max_length", "TRL >= 0.20 name")]
        if rename else [],
        failure_mode="FM-15", confidence=0.9, fix_cost=1)


def _default_length(facts: Facts, config: TrainingConfig):
    """A TRL SFT run with no length set truncates at 1024 tokens, whatever the model could take."""
    if config.framework == "unsloth" or config.trainer_max_seq_length is not None or config.source_kind != "python":
        return None
    if config.args_class != "SFTConfig":
        return None
    n = defaults.value("trl.sft-max-length")
    return Finding(
        id="config.trl-default-max-length", severity=Severity.INFO,
        title=f"SFTConfig has no max_length: TRL truncates every sample to {n} tokens",
        why="Longer samples lose their ends silently; the memory estimate uses this length.",
        remediation="Set max_length in SFTConfig to the length your data needs.",
        evidence={"SFTConfig max_length": None, "TRL default": n, "source": defaults.source("trl.sft-max-length")},
        failure_mode="FM-15", confidence=0.8, fix_cost=1)
