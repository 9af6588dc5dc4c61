"""Plain transformers + PEFT + TRL QLoRA (no Unsloth), the way the HF blog posts write it."""
import torch
from datasets import load_dataset
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

MODEL_ID = "meta-llama/Llama-3.1-8B-Instruct"
SEQ_LEN = 1024 * 2
BATCH = 4

bnb_config = BitsAndBytesConfig(
    load_in_4bit=True,
    bnb_4bit_quant_type="nf4",
    bnb_4bit_use_double_quant=True,   # QLoRA paper's double quantization
    bnb_4bit_compute_dtype=torch.bfloat16,
)

model = AutoModelForCausalLM.from_pretrained(
    MODEL_ID,
    quantization_config=bnb_config,
    attn_implementation="sdpa",
    torch_dtype=torch.bfloat16,
    device_map="auto",
)
tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
model = prepare_model_for_kbit_training(model)

peft_config = LoraConfig(
    r=32,
    lora_alpha=64,
    lora_dropout=0.05,
    target_modules="all-linear",
    task_type="CAUSAL_LM",
)

training_args = SFTConfig(
    output_dir="./llama31-qlora",
    per_device_train_batch_size=BATCH,
    gradient_accumulation_steps=16 // BATCH,
    gradient_checkpointing=True,
    optim="paged_adamw_8bit",
    max_length=SEQ_LEN,
    packing=True,
    bf16=True,
    eval_strategy="steps",
    logging_steps=10,
    dataloader_num_workers=4,
)

trainer = SFTTrainer(
    model=model,
    args=training_args,
    train_dataset=load_dataset("trl-lib/Capybara", split="train"),
    eval_dataset=load_dataset("trl-lib/Capybara", split="test"),
    peft_config=peft_config,
    processing_class=tokenizer,
)
trainer.train()
