"""Training configs: read what users already have (train.py, SFTConfig JSON, YAML, flags)."""
