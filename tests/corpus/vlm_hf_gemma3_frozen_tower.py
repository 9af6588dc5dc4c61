# Full fine-tuning of Gemma 3 4B's language model with the vision tower frozen (the pattern of the
# TRL VLM SFT examples and the Gemma 3 fine-tuning guides: freeze the SigLIP encoder, train the rest).
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import SFTConfig, SFTTrainer

model_id = "google/gemma-3-4b-it"
model = AutoModelForImageTextToText.from_pretrained(model_id, torch_dtype=torch.bfloat16,
                                                    attn_implementation="eager")
processor = AutoProcessor.from_pretrained(model_id)
for param in model.vision_tower.parameters():
    param.requires_grad = False

args = SFTConfig(output_dir="gemma3-vlm-sft", per_device_train_batch_size=1, gradient_accumulation_steps=4,
                 gradient_checkpointing=True, bf16=True, optim="adamw_torch_fused", max_length=2048)
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
trainer.train()
