"""The knowledge loader moved to doctor.knowledge (core, issue 14 move 6). This re-export stays
only until the open "watch" branch, which imports it from here, is merged; then delete it."""
from doctor.knowledge import DATA_DIR, load  # noqa: F401
