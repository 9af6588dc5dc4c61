"""bundle (being written)."""
