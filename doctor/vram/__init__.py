"""VRAM: the peak-memory estimator, GPU what-ifs, the `doctor vram` command and its renderers."""
