"""vram (being written)."""
