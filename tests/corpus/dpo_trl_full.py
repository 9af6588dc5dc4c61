# DPO, TRL docs quick start (https://huggingface.co/docs/trl/main/en/dpo_trainer): full fine-tuning
# with the reference model created by the trainer (a frozen copy of the policy).
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen2.5-0.5B-Instruct", torch_dtype="bfloat16")
tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen2.5-0.5B-Instruct")
train_dataset = load_dataset("trl-lib/ultrafeedback_binarized", split="train")

training_args = DPOConfig(
    output_dir="Qwen2.5-0.5B-DPO",
    per_device_train_batch_size=4,
    gradient_accumulation_steps=4,
    max_length=1024,
    max_prompt_length=512,
    beta=0.1,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=10,
)
trainer = DPOTrainer(model=model, ref_model=None, args=training_args, processing_class=tokenizer,
                     train_dataset=train_dataset)
trainer.train()
