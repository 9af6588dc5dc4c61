from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, TrainingArguments
from trl import SFTConfig, SFTTrainer
import torch

model = AutoModelForCausalLM.from_pretrained("meta-llama/Llama-3.1-8B", torch_dtype=torch.bfloat16)
model = get_peft_model(model, LoraConfig(r=16, target_modules="all-linear"))
args = SFTConfig(
    output_dir="out",
    per_device_train_batch_size=2,
    max_length=2048,
    bf16=True,
    fsdp="full_shard auto_wrap offload",
    fsdp_config={"transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"], "use_orig_params": True},
)
trainer = SFTTrainer(model=model, args=args, train_dataset=None)
trainer.train()
