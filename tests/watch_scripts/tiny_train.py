"""A tiny real training run for `doctor watch` tests: a random-init Llama from a config (no hub),
transformers Trainer (or TRL's SFTTrainer with --sft), a few steps on CPU.

Faults, by argument: --block-at N  the collator blocks (sleeps) when building the batch of step N
                                   (accelerate's DataLoaderShard fetches one batch ahead: collate
                                   call N+1 builds step N's batch)
                     --block-rank R  with --block-at: only the rank whose RANK is R blocks
                     --raise-at N  the collator raises ValueError at batch N
                     --prompt      asks for input before training (like wandb's login prompt)
It prints the same lines with or without the doctor (no timing in the output)."""
import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=6)
p.add_argument("--block-at", type=int, default=0)
p.add_argument("--raise-at", type=int, default=0)
p.add_argument("--block-rank", type=int, default=-1)     # with --block-at under torchrun: only this RANK blocks
p.add_argument("--prompt", action="store_true")
p.add_argument("--sft", action="store_true")
p.add_argument("--out", default="tiny-out")
p.add_argument("--explicit-callback", action="store_true")
a = p.parse_args()

torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
model = LlamaForCausalLM(cfg)
rows = [{"input_ids": [(i * 7 + j) % 128 for j in range(16)]} for i in range(64)]
calls = {"n": 0}


def collate(batch):
    calls["n"] += 1
    blocks_here = a.block_rank < 0 or int(os.environ.get("RANK", "0")) == a.block_rank
    if a.block_at and blocks_here and calls["n"] == a.block_at + 1:
        print(f"collator: blocking at batch {calls['n']}", flush=True)
        while True:
            time.sleep(1)
    if a.raise_at and calls["n"] == a.raise_at + 1:
        raise ValueError(f"bad sample in the batch of step {a.raise_at}")
    ids = torch.tensor([b["input_ids"] for b in batch])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


if a.prompt:
    answer = input("wandb: Enter your choice: ")
    print("answer:", answer)

kw = dict(output_dir=a.out, max_steps=a.steps, per_device_train_batch_size=2, learning_rate=1e-3,
          logging_steps=1, report_to=[], save_strategy="no", dataloader_num_workers=0, use_cpu=True,
          disable_tqdm=False, seed=0)
callbacks = []
if a.explicit_callback:
    from doctor.watch import DoctorCallback
    callbacks = [DoctorCallback()]
if a.sft:
    from trl import SFTConfig, SFTTrainer
    args = SFTConfig(**kw, dataset_text_field=None, remove_unused_columns=False, packing=False)
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    vocab = {"[UNK]": 0, "[PAD]": 1}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
                                  unk_token="[UNK]", pad_token="[PAD]", eos_token="[PAD]")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), data_collator=collate,
                         processing_class=tok, callbacks=callbacks)
else:
    trainer = Trainer(model=model, args=TrainingArguments(**kw, remove_unused_columns=False),
                      train_dataset=rows, data_collator=collate, callbacks=callbacks)
trainer.train()
print("trained", trainer.state.global_step, "steps")
sys.exit(3 if os.environ.get("TINY_EXIT3") else 0)
