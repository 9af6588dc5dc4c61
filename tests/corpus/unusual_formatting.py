# -*- coding: utf-8 -*-
# Unusual formatting on purpose: one-line calls, comments inside calls, trailing commas,
# values from variables and arithmetic, **kwargs, argparse, f-strings, non-ASCII (é, 日本語).
import argparse
import torch
from transformers import AutoModelForCausalLM, TrainingArguments, Trainer
from peft import LoraConfig, get_peft_model

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=2e-4)
args = parser.parse_args()

name = "Qwen/Qwen2.5-7B-Instruct"; rank = 8 ; alpha = rank * 2
common = dict(
    gradient_accumulation_steps = 2 ** 3,   # é: accumulation
    dataloader_pin_memory = False,
)

def main(per_device = 1, workers = 0):
    model = AutoModelForCausalLM.from_pretrained(name, torch_dtype=torch.bfloat16, attn_implementation = "eager")
    lcfg = LoraConfig(r = rank, lora_alpha = alpha,
                      target_modules = ["q_proj", "v_proj"],   # 日本語 comment
                      lora_dropout = 0.1,)
    model = get_peft_model(model, lcfg)
    targs = TrainingArguments(output_dir = f"out-{name.split('/')[-1]}",
        per_device_train_batch_size = per_device,
        learning_rate = args.lr,
        bf16 = torch.cuda.is_bf16_supported(),
        fp16 = not torch.cuda.is_bf16_supported(),
        dataloader_num_workers = workers,
        evaluation_strategy = "epoch",
        **common,
        )
    Trainer(model=model, args=targs, train_dataset=None).train()

if __name__ == "__main__":
    main()
