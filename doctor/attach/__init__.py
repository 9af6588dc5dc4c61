"""attach (being written)."""
