"""repro (being written)."""
