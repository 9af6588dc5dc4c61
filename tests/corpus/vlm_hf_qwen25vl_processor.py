# transformers + TRL SFT of Qwen2.5-VL with the processor's pixel budget (TRL docs "Fine-tuning a
# VLM with SFT"; Qwen2.5-VL model card for min_pixels / max_pixels).
import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
from trl import SFTConfig, SFTTrainer

model_id = "Qwen/Qwen2.5-VL-7B-Instruct"
model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_id, torch_dtype=torch.bfloat16)
processor = AutoProcessor.from_pretrained(model_id, min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28)

args = SFTConfig(output_dir="qwen25vl-sft", per_device_train_batch_size=1, gradient_accumulation_steps=8,
                 gradient_checkpointing=True, bf16=True, max_length=None)
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
trainer.train()
