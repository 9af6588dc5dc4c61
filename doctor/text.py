"""Markdown/HTML text helpers: escaping, code spans, fences, collapsible blocks. Plain string
functions with no knowledge of reports (core), so the config patcher, the bundle and every
renderer share them."""
from __future__ import annotations

import re
from typing import Optional


def md_escape_cell(s: str) -> str:
    """Prose in a table cell: one line, pipes escaped, and HTML-like text (`<module>`) kept."""
    return html_text(str(s).replace("|", "\\|").replace("\n", " "))


def html_text(s: str) -> str:
    """Escape for prose and HTML: GitHub would swallow a placeholder like <user> as a tag."""
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_span(s, table: bool = False) -> str:
    """Code-like text (a frame name like `<module>`, a value, a path) as an inline code span that
    nothing inside can close: the fence is longer than any backtick run in it. In a table cell,
    pipes are escaped (GitHub unescapes them inside code spans there)."""
    text = str(s).replace("\r", " ").replace("\n", " ")
    if table:
        text = text.replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" or (text and not text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}" if text else "` `"


def fenced(text: str, lang: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside, so content cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def details(summary: str, body: str, lang: Optional[str] = None) -> str:
    """A collapsible block. body is Markdown, or code fenced as `lang` when lang is given (not "md").
    The blank lines make GitHub render the Markdown inside."""
    inner = fenced(body, lang) if lang not in (None, "md") else body.rstrip()
    return f"<details>\n<summary>{html_text(summary)}</summary>\n\n{inner}\n\n</details>\n"
