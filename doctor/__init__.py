"""finetune doctor: diagnose LLM fine-tuning environments, configs and stuck training runs."""

__version__ = "0.1.0"
