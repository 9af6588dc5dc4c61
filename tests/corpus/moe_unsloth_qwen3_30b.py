# Unsloth Qwen3-30B-A3B fine-tuning (docs.unsloth.ai "Qwen3: How to Run & Fine-tune", the MoE notebook):
# 4-bit loading of the mixture-of-experts model, LoRA on attention and expert MLPs.
from unsloth import FastLanguageModel
from trl import SFTTrainer, SFTConfig

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "unsloth/Qwen3-30B-A3B",
    max_seq_length = 2048,
    load_in_4bit = True,
    full_finetuning = False,
)
model = FastLanguageModel.get_peft_model(
    model,
    r = 16,
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    lora_alpha = 16,
    lora_dropout = 0,
    use_gradient_checkpointing = "unsloth",
)
trainer = SFTTrainer(
    model = model,
    tokenizer = tokenizer,
    train_dataset = dataset,
    args = SFTConfig(per_device_train_batch_size = 2, gradient_accumulation_steps = 4, max_steps = 30,
                     optim = "adamw_8bit", output_dir = "outputs"),
)
trainer.train()
