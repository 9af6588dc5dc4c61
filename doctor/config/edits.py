"""Minimal text edits on a file's source: replace spans, insert text, append end-of-line comments.

Positions are (1-based line, 0-based character column). Edits never overlap (the caller checks);
they are applied from the end of the file backwards so earlier offsets stay valid.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# The line breaks Python's tokenizer and ast count (str.splitlines also splits on \f, \v, \x1c ...,
# which would put every position after a form feed on the wrong line).
_LINE_END = re.compile(r"\r\n|\r|\n")


def split_lines(source: str, keepends: bool = False) -> list[str]:
    """source's lines as ast numbers them (line n is item n-1), in one linear pass."""
    out, start = [], 0
    for m in _LINE_END.finditer(source):
        out.append(source[start:m.end() if keepends else m.start()])
        start = m.end()
    if start < len(source):
        out.append(source[start:])
    return out


@dataclass
class Edit:
    start: int            # absolute character offsets in the original text
    end: int
    text: str


@dataclass
class TextEdits:
    source: str
    edits: list[Edit] = field(default_factory=list)
    comments: dict[int, list[str]] = field(default_factory=dict)   # line -> comment texts

    def __post_init__(self):
        self._starts = [0]
        for line in split_lines(self.source, keepends=True):
            self._starts.append(self._starts[-1] + len(line))

    @property
    def line_count(self) -> int:
        return len(self._starts) - 1

    def offset(self, line: int, col: int) -> int:
        return self._starts[line - 1] + col

    def line_text(self, line: int) -> str:
        return self.source[self._starts[line - 1]:self._starts[line]].rstrip("\r\n")

    def line_end(self, line: int) -> int:
        """Offset just past the last character of `line` (before its newline)."""
        return self._starts[line - 1] + len(self.line_text(line))

    def overlaps(self, start: int, end: int) -> bool:
        return any(start < e.end and e.start < end or (start == end == e.start == e.end)
                   for e in self.edits)

    def replace(self, line: int, col: int, end_line: int, end_col: int, text: str) -> bool:
        start, end = self.offset(line, col), self.offset(end_line, end_col)
        if any(e.start == start and e.end == end and e.text == text for e in self.edits):
            return True   # two settings read one variable and both want this value
        if self.overlaps(start, end):
            return False
        self.edits.append(Edit(start, end, text))
        return True

    def insert(self, offset: int, text: str) -> None:
        self.edits.append(Edit(offset, offset, text))

    def comment(self, line: int, text: str) -> None:
        self.comments.setdefault(line, []).append(text)

    def apply(self, comment_prefix: str = "#") -> str:
        edits = list(self.edits)
        for line, texts in self.comments.items():
            joined = "; ".join(dict.fromkeys(texts))
            edits.append(Edit(self.line_end(line), self.line_end(line), f"  {comment_prefix} {joined}"))
        out = self.source
        # Applied back to front. At one offset the stable sort keeps list order (edits, then
        # comments), so a comment lands before a new line inserted at the same line end.
        for e in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
            out = out[:e.start] + e.text + out[e.end:]
        return out


def indent_of(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]
