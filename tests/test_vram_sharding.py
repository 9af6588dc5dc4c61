"""Multi-GPU sharding: config reading (accelerate YAML, DeepSpeed JSON, the script's deepspeed=),
per-rank arithmetic checked against hand-computed numbers for Llama 3.1 8B, and the vram-sharding check.

Hand numbers: Llama 3.1 8B has P = 8,030,261,248 parameters (embedding 525,336,576 = 128256 x 4096,
untied lm_head the same; one layer's linears 218,103,808). bf16 full fine-tune, AdamW.
DeepSpeed: 2 + 2 + 12 bytes/param (ZeRO paper), the 12 = fp32 master 4 + fp32 Adam 8.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from checks.vram_sharding import vram_sharding
from doctor import exitcodes
from doctor.config.flags import ConfigOverrides
from doctor.config.loader import load_config
from doctor.config.model_shapes import resolve_shape
from doctor.config import sharding
from doctor.config.loader import read_sharding_file
from doctor.exitcodes import DoctorError
from doctor.vram.estimator import MID, estimate
from doctor.vram.model import Inputs
from tests.vram_helpers import CORPUS, load_script, make_facts

SH = CORPUS / "sharding"
P = 8_030_261_248
EMBED = 525_336_576
LORA_N = 16 * 32 * 81_920          # r x layers x sum(in + out) over the 7 projections = 41,943,040
ROOT = Path(__file__).resolve().parent.parent


def read_accelerate(path):
    return sharding.read_accelerate(path, read_sharding_file)


def read_deepspeed(path):
    return sharding.read_deepspeed(path, read_sharding_file)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DOCTOR_OFFLINE", "1")


@pytest.fixture(scope="module")
def llama8b():
    return resolve_shape("meta-llama/Llama-3.1-8B").shape


def sharded(kind="zero", stage=0, world=8, opt="none", param="none", **more):
    return tuple(sorted({"kind": kind, "stage": stage, "world": world, "offload_optimizer": opt,
                         "offload_param": param, "source": "test", "mixed_precision": True, **more}.items()))


def parts(shape, sharding, full=True):
    inp = Inputs(batch_size=1, seq_len=2048, full_finetune=full, gc="hf", sharding=sharding)
    bd = estimate(shape, inp, MID)
    return {c.key: c.bytes for c in bd.components}, bd


# -- config reading --------------------------------------------------------------------------------

def test_accelerate_deepspeed_zero3_with_offload():
    sh = read_accelerate(SH / "accelerate_zero3_offload.yaml")
    assert (sh["kind"], sh["stage"], sh["world"]) == ("zero", 3, 8)
    assert (sh["offload_optimizer"], sh["offload_param"]) == ("cpu", "cpu")
    assert sh["mixed_precision"] is True


def test_accelerate_points_at_a_deepspeed_file_next_to_it():
    sh = read_accelerate(SH / "accelerate_ds_file.yaml")
    assert (sh["kind"], sh["stage"], sh["world"], sh["offload_optimizer"]) == ("zero", 2, 4, "cpu")


def test_accelerate_fsdp1_and_fsdp2_and_multi_gpu():
    full = read_accelerate(SH / "accelerate_fsdp.yaml")
    assert (full["kind"], full["stage"], full["world"], full["offload_param"]) == ("fsdp", 3, 8, "none")
    fsdp2 = read_accelerate(SH / "accelerate_fsdp2.yaml")   # reshard_after_forward: false = SHARD_GRAD_OP
    assert (fsdp2["kind"], fsdp2["stage"], fsdp2["world"]) == ("fsdp", 2, 2)
    ddp = read_accelerate(SH / "accelerate_multi_gpu.yaml")
    assert (ddp["kind"], ddp["stage"], ddp["world"]) == ("ddp", 0, 2)


def test_deepspeed_json_with_auto_values():
    sh = read_deepspeed(SH / "ds_zero3.json")
    assert (sh["kind"], sh["stage"], sh["offload_optimizer"], sh["offload_param"]) == ("zero", 3, "none", "none")


def test_script_deepspeed_path_is_read_relative_to_the_script_and_flags_win():
    cfg = load_config(SH / "train_ds.py", ConfigOverrides(num_gpus=4))
    assert cfg.deepspeed == "ds_zero3.json"
    assert (cfg.sharding["stage"], cfg.sharding["world"]) == (3, 4)
    cfg = load_config(SH / "train_ds.py", ConfigOverrides(deepspeed=str(SH / "ds_zero2.json"), num_gpus=2))
    assert (cfg.sharding["stage"], cfg.sharding["world"]) == (2, 2)


def test_bad_and_oversized_files_are_one_line_config_errors(tmp_path):
    bad = tmp_path / "ds.json"
    bad.write_text('{"zero_optimization": {"stage": 7}}')
    with pytest.raises(DoctorError) as e:
        read_deepspeed(bad)
    assert e.value.exit_code == exitcodes.CONFIG_INVALID and "stage 7" in str(e.value)
    big = tmp_path / "acc.yaml"
    big.write_text("distributed_type: FSDP\n" + "# x\n" * 400_000)
    with pytest.raises(DoctorError) as e:
        read_accelerate(big)
    assert e.value.exit_code == exitcodes.CONFIG_INVALID and "limit" in str(e.value)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")))
    with pytest.raises(DoctorError):
        read_accelerate(bomb)


# -- per-rank arithmetic, by hand -------------------------------------------------------------------

def test_single_gpu_deepspeed_keeps_fp32_master_and_states(llama8b):
    d, _ = parts(llama8b, sharded(stage=0, world=1))
    assert d["weights"] == 2 * P and d["grads"] == 2 * P and d["optimizer"] == 12 * P


def test_zero1_on_8_gpus_shards_only_the_optimizer(llama8b):
    d, _ = parts(llama8b, sharded(stage=1))
    assert d["optimizer"] == 12 * P / 8 == 12_045_391_872
    assert d["grads"] == 2 * P and d["weights"] == 2 * P and "gathered" not in d


def test_zero2_on_8_gpus_also_shards_gradients(llama8b):
    d, _ = parts(llama8b, sharded(stage=2))
    assert d["grads"] == 2 * P / 8 == 2_007_565_312 and d["optimizer"] == 12_045_391_872
    assert d["weights"] == 2 * P


def test_zero3_on_8_gpus_shards_parameters_and_gathers_the_embedding(llama8b):
    d, bd = parts(llama8b, sharded(stage=3))
    assert d["weights"] == 2 * P / 8 == 2_007_565_312
    assert d["gathered"] == 2 * EMBED == 1_050_673_152   # 2 layers (436M params) < the embedding (525M)
    one, two, three = (parts(llama8b, sharded(stage=s))[1].total for s in (1, 2, 3))
    assert one > two > three


def test_zero2_optimizer_offload_moves_states_and_fp32_grads_to_host(llama8b):
    d, bd = parts(llama8b, sharded(stage=2, opt="cpu"))
    assert d["optimizer"] == 0 and d["grads"] == 2 * P / 8
    assert bd.host_sharded == 12 * P / 8 + 4 * P / 8 == 2 * P == 16_060_522_496


def test_zero3_full_offload_moves_the_parameter_shard_too(llama8b):
    d, bd = parts(llama8b, sharded(stage=3, opt="cpu", param="cpu"))
    assert d["weights"] == 0 and d["gathered"] == 1_050_673_152
    assert bd.host_sharded == 2 * P + 2 * P / 8 == 18_068_087_808


def test_fsdp_full_shard_keeps_the_model_dtype_no_master_copy(llama8b):
    d, _ = parts(llama8b, sharded(kind="fsdp", stage=3))
    # bf16-loaded model: AdamW states in bf16 (4 bytes/param), no separate fp32 master
    assert d["optimizer"] == 4 * P / 8 == 4_015_130_624
    assert d["grads"] == d["weights"] == 2 * P / 8 and d["gathered"] == 2 * EMBED


def test_ddp_replicas_add_a_full_gradient_bucket_copy(llama8b):
    d, _ = parts(llama8b, sharded(kind="ddp", stage=0, world=2))
    assert d["buckets"] == d["grads"] == 2 * P and d["weights"] == 2 * P and d["optimizer"] == 4 * P


def test_lora_under_zero3_shards_base_weights_and_the_small_adapter_states(llama8b):
    d, _ = parts(llama8b, sharded(stage=3), full=False)
    assert LORA_N == 41_943_040
    assert d["lora"] == 4 * LORA_N / 8 and d["grads"] == 4 * LORA_N / 8
    assert d["optimizer"] == 8 * LORA_N / 8            # fp32 adapters: no master copy
    assert d["weights"] == (2 * P) / 8


# -- the check and the CLI ---------------------------------------------------------------------------

def _cfg(tmp_path, sharding_file, **flags):
    return load_config(SH / "train_ds.py", ConfigOverrides(**flags, **sharding_file))


def test_check_zero1_on_2x40gb_does_not_fit_and_names_what_does():
    # ZeRO-1 on 2 ranks: 15 GiB weights + 15 GiB grads + 44.9 GiB optimizer > 40 GiB; ZeRO-2 and ZeRO-3
    # still hold 44.9 GiB of optimizer state per rank; offloading it to the CPU fits (~15 GiB)
    facts = make_facts(gpu="NVIDIA A100-SXM4-40GB", total_gib=40)
    ds = SH / "ds_zero3.json"
    cfg = load_config(SH / "train_ds.py", ConfigOverrides(num_gpus=2))
    cfg.sharding = {**cfg.sharding, "stage": 1}
    found = {f.id: f for f in vram_sharding(facts, cfg)}
    assert "vram.sharding-does-not-fit" in found
    assert "ZeRO-3 on 2 GPUs, optimizer offload to cpu" in found["vram.sharding-does-not-fit"].remediation
    cfg = load_config(SH / "train_ds.py", ConfigOverrides(deepspeed=str(ds), num_gpus=8))
    assert "vram.sharding-does-not-fit" not in {f.id for f in vram_sharding(facts, cfg)}


def test_check_lora_under_full_shard_and_host_ram_for_offload():
    facts = make_facts(gpu="NVIDIA H100 80GB HBM3", total_gib=80, ram_available_gib=64)
    cfg = load_config(SH / "train_ds.py", ConfigOverrides(accelerate_config=str(SH / "accelerate_fsdp.yaml"),
                                                          lora_r=16))
    cfg.full_finetune = False
    assert "vram.sharding-lora-full-shard" in {f.id for f in vram_sharding(facts, cfg)}
    cfg = load_config(SH / "train_ds.py",
                      ConfigOverrides(accelerate_config=str(SH / "accelerate_zero3_offload.yaml")))
    host = [f for f in vram_sharding(facts, cfg) if f.id == "vram.sharding-host-ram"]
    assert host and "per rank x 8" in host[0].title
    roomy = make_facts(gpu="NVIDIA H100 80GB HBM3", total_gib=80, ram_available_gib=512)
    assert "vram.sharding-host-ram" not in {f.id for f in vram_sharding(roomy, cfg)}


def test_cli_json_carries_per_rank_numbers(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "DOCTOR_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "doctor", "vram", str(SH / "train_ds.py"), "--gpu", "H100",
                          "--json", "--deepspeed", str(SH / "ds_zero2.json"), "--num-gpus", "8"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    sh = json.loads(out.stdout)["sections"]["vram"]["sharding"]
    assert (sh["stage"], sh["world"]) == (2, 8)
    assert sh["host_ram_per_rank"] == 2 * P and sh["host_ram_per_node"] == 16 * P
    assert sh["per_rank"]["mid"] < 40 * 1024 ** 3


def test_benchmark_script_estimates_and_report(tmp_path, capsys):
    mod = load_script("benchmarks/gpu/vram_sharding.py")
    full, grad_op, none = (mod.estimate_row(m, 2) for m in ("full_shard", "shard_grad_op", "no_shard"))
    assert full["mid"] < grad_op["mid"] < none["mid"] and full["low"] <= full["mid"] <= full["high"]
    (tmp_path / "sharding_full_shard.json").write_text(json.dumps(
        {"mode": "full_shard", "world": 2, "measured_reserved": [5e9, 20e9], "estimate": full}))
    mod.report(tmp_path)
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("| full_shard | 2 | 20.80 GB") and row.endswith("| yes |")   # high 12 GB < 20.8: false fit


def test_script_fsdp_keywords_with_offload_and_a_list():
    cfg = load_config(SH / "train_fsdp.py", ConfigOverrides(num_gpus=2))
    assert cfg.fsdp == "full_shard auto_wrap offload" and isinstance(cfg.fsdp_config, dict)
    assert (cfg.sharding["kind"], cfg.sharding["stage"], cfg.sharding["world"]) == ("fsdp", 3, 2)
    assert cfg.sharding["offload_param"] == "cpu"
    cfg.fsdp = ["shard_grad_op", "auto_wrap"]
    from doctor.config.sharding import resolve
    sh = resolve(cfg, read_sharding_file, num_gpus=4)
    assert (sh["stage"], sh["world"], sh["offload_param"]) == (2, 4, "none")


def test_markdown_and_headroom_evidence_say_per_rank():
    from checks.vram_headroom import vram_headroom
    from doctor.vram.estimator import estimate_for
    from doctor.vram.render import markdown_section

    facts = make_facts(gpu="NVIDIA H100 80GB HBM3", total_gib=80, ram_available_gib=512)
    cfg = load_config(SH / "train_ds.py",
                      ConfigOverrides(accelerate_config=str(SH / "accelerate_zero3_offload.yaml")))
    md = markdown_section(estimate_for(facts, cfg))
    assert "Host RAM for CPU offload: 16.8 GiB per rank, 134.6 GiB per node" in md
    (f,) = vram_headroom(facts, cfg)
    assert f.id == "vram.fits" and f.evidence["per GPU (one rank)"].startswith("DeepSpeed ZeRO-3 on 8 GPUs")


def test_zero2_buckets_default_and_overlap_comm(llama8b):
    d, _ = parts(llama8b, sharded(stage=2))
    assert d["buckets"] == 5e8 * 2            # DeepSpeed's default reduce bucket, 16-bit
    d, _ = parts(llama8b, sharded(stage=2, overlap_comm=True, allgather_bucket_size=int(2e8),
                                  reduce_bucket_size=int(2e8)))
    assert d["buckets"] == 4.5 * 4e8 * 2 == 3.6e9   # transformers' docs: 2e8 -> 3.6GB
    d, _ = parts(llama8b, sharded(stage=2, overlap_comm=True, allgather_bucket_size="auto",
                                  reduce_bucket_size="auto"))
    assert d["buckets"] == 4.5 * 2 * 4096 ** 2 * 2
    sh = read_deepspeed(SH / "ds_zero2.json")
    assert (sh["overlap_comm"], sh["reduce_bucket_size"], sh["allgather_bucket_size"]) == (True, 200_000_000, 200_000_000)


@pytest.mark.parametrize("text", ['{"zero_optimization": {"stage": Infinity}}',
                                  '{"zero_optimization": {"stage": 2, "reduce_bucket_size": NaN}}',
                                  '{"zero_optimization": {"stage": "two"}}', '[1, 2]'])
def test_hostile_deepspeed_values_are_config_errors(tmp_path, text):
    p = tmp_path / "ds.json"
    p.write_text(text)
    with pytest.raises(DoctorError) as e:
        read_deepspeed(p)
    assert e.value.exit_code == exitcodes.CONFIG_INVALID
