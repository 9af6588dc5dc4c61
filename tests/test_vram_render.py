"""The VRAM section: an 80-column bar with a legend, and a Markdown table."""
from __future__ import annotations

import io

from markdown_it import MarkdownIt
from rich.console import Console

from doctor.config.loader import load_config
from doctor.vram.estimator import estimate_for
from doctor.vram.render import bar, markdown_section, terminal_section
from tests.vram_helpers import REFERENCE, make_facts


def est_for(**facts_kw):
    # the reference model is in the bundled table: no cache or hub lookup happens
    return estimate_for(make_facts(**facts_kw), load_config(REFERENCE))


def render(est, width=80) -> str:
    buf = io.StringIO()
    terminal_section(Console(file=buf, width=width, color_system=None), est)
    return buf.getvalue()


def test_terminal_section_fits_80_columns_and_names_every_component():
    est = est_for(total_gib=11, packages={"unsloth": "2024.8"})
    text = render(est)
    assert max(len(line) for line in text.splitlines()) <= 80
    for label in ("CUDA context", "base weights", "LoRA adapters", "optimizer state", "logits + loss"):
        assert label in text
    assert "usable on NVIDIA GeForce RTX 4090" in text.replace("\n", " ")
    assert "host RAM for offloaded checkpoints" in text
    assert render(est, width=60)   # narrow terminals do not crash


def test_bar_marks_the_usable_limit_and_overflow():
    fits = est_for(total_gib=24, packages={"unsloth": "2025.3.1"})
    b = bar(fits, 78)
    assert len(b.plain) == 78 and "│" in b.plain and b.plain.rstrip().endswith("│")
    over = est_for(total_gib=6, packages={"unsloth": "2025.3.1"})
    plain = bar(over, 78).plain
    # the limit sits inside the filled part when the estimate does not fit
    assert plain.index("│") < len(plain.rstrip(" ·")) - 1
    none = est_for(gpu=None)
    assert "│" not in bar(none, 78).plain


def test_markdown_section_is_a_table_with_the_verdict():
    md = markdown_section(est_for(total_gib=6, packages={"unsloth": "2025.3.1"}))
    tokens = MarkdownIt().enable("table").parse(md)
    assert any(t.type == "table_open" for t in tokens)
    assert "**does not fit**" in md and "| base weights |" in md and md.startswith("### VRAM estimate")
