# DPO with LoRA (the reference is the base model with the adapter disabled) and precomputed reference
# log-probs (TRL docs, DPOTrainer "Using PEFT" and DPOConfig.precompute_ref_log_probs).
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

model_id = "meta-llama/Llama-3.2-1B"
model = AutoModelForCausalLM.from_pretrained(model_id, torch_dtype="bfloat16")
ref_model = AutoModelForCausalLM.from_pretrained(model_id, torch_dtype="bfloat16")
tokenizer = AutoTokenizer.from_pretrained(model_id)
dataset = load_dataset("trl-lib/ultrafeedback_binarized", split="train")

peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
args = DPOConfig(output_dir="llama-dpo", per_device_train_batch_size=2, max_length=2048,
                 precompute_ref_log_probs=True, bf16=True)
trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                     processing_class=tokenizer, peft_config=peft_config)
trainer.train()
