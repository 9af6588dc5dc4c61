"""Patch a training script in place (as text): change a keyword's value where it is written, rename a
keyword, or add one to the right call, with a trailing `# doctor: ...` comment. Formatting and
comments elsewhere are untouched."""
from __future__ import annotations

import ast
import io
import json
import tokenize
from typing import Any, Optional

from doctor.config import keys
from doctor.config.edits import TextEdits, indent_of, split_lines
from doctor.config.python_parser import Analysis, CallSite, Site, analyze, char_col, source_segment


def comment_safe_lines(source: str) -> set[int]:
    """Lines whose end is real code (not inside a multi-line string, not a backslash continuation)."""
    n = source.count("\n") + 1
    unsafe: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                unsafe.update(range(tok.start[0], tok.end[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return set()
    for i, line in enumerate(split_lines(source), 1):
        if line.rstrip().endswith("\\"):
            unsafe.add(i)
    return set(range(1, n + 1)) - unsafe


def py_literal(value: Any, like: str = "") -> str:
    """value as Python source, quoting strings the way the replaced text did."""
    if isinstance(value, str) and like.lstrip()[:1] == '"':
        return json.dumps(value)
    return repr(value)


class PythonPatcher:
    def __init__(self, source: str, filename: str = "<script>"):
        self.an: Analysis = analyze(source, filename)
        self.ed = TextEdits(source)
        self.safe = comment_safe_lines(source)

    # -- helpers ---------------------------------------------------------------------------------
    def _pos(self, lineno: int, byte_col: int) -> tuple[int, int]:
        return lineno, char_col(self.an.lines, lineno, byte_col)

    def _comment(self, line: int, text: str) -> None:
        if line in self.safe:
            self.ed.comment(line, text)

    def _site_for(self, setting: str) -> Optional[Site]:
        if setting == "use_gradient_checkpointing":
            unsloth = [s for s in self.an.sites.get(setting, []) if s.kind == "peft_unsloth"]
            if unsloth:
                return unsloth[-1]
        return self.an.site(setting)

    def _shared(self, site: Site, changing: dict[str, Any]) -> bool:
        """Is the site's variable also read by another setting that is not getting the same value?
        (`bs = 2` feeding both batch sizes, or `16 // BATCH`): then edit the keyword, not the variable."""
        lit = site.value.literal
        if lit is None or lit is site.value_node:
            return False
        for setting, sites in self.an.sites.items():
            for other in sites:
                if other is site:
                    continue
                reads = other.value.literal is lit or any(
                    isinstance(n, ast.Name) and n.id in site.value.names for n in ast.walk(other.value_node))
                if reads and not (other.value.literal is lit
                                  and changing.get(setting, object()) == changing.get(site.setting)):
                    return True
        return False

    # -- operations ------------------------------------------------------------------------------
    def set_value(self, setting: str, value: Any, comment: str, changing: dict[str, Any]) -> tuple[bool, str, str]:
        """(done, old text, why not) for one value change or insertion."""
        if setting == "use_gradient_checkpointing" and value is False:
            blocked = self._gc_enabled_by_a_call(comment)
            if blocked:
                return False, "", blocked
        site = self._site_for(setting)
        if site is None:
            return self.insert(setting, value, comment)
        if not site.value.ok:
            return False, site.value.text, f"the value is computed (`{site.value.text}`); set it there"
        node = site.value_node if self._shared(site, changing) or site.value.literal is None else site.value.literal
        old = ast_text(self.an, node)
        line, col = self._pos(node.lineno, node.col_offset)
        end_line, end_col = self._pos(node.end_lineno, node.end_col_offset)
        if not self.ed.replace(line, col, end_line, end_col, py_literal(value, old)):
            return False, old, "another change edits the same text"
        self._comment(end_line, comment)
        return True, old, ""

    def _gc_enabled_by_a_call(self, comment: str) -> str:
        """Turning checkpointing off must also stop the calls that turn it on; '' when done."""
        if self.an.gc_enable_call is not None:
            return "the script calls gradient_checkpointing_enable(); remove that call"
        prepare = self.an.call("prepare")
        if prepare is not None and not any(k.arg == "use_gradient_checkpointing" for k in prepare.node.keywords):
            self._insert_keyword(prepare, "use_gradient_checkpointing", False, comment)
        return ""

    def rename(self, setting: str, new_key: str, comment: str) -> tuple[bool, str, str]:
        site = self._site_for(setting)
        if site is None or site.keyword is None:
            return False, "", f"no `{setting}` keyword to rename"
        call = next(c for c in self.an.calls if any(k is site.keyword for k in c.node.keywords))
        if any(k.arg == new_key for k in call.node.keywords):
            return False, site.key, f"{call.name}(...) already has `{new_key}`"
        kw = site.keyword
        line, col = self._pos(kw.lineno, kw.col_offset)
        if not self.ed.replace(line, col, line, col + len(kw.arg), new_key):
            return False, kw.arg, "another change edits the same text"
        self._comment(line, comment)
        return True, kw.arg, ""

    def _insert_target(self, setting: str) -> tuple[Optional[CallSite], str]:
        an = self.an
        if setting == "use_gradient_checkpointing":
            if an.framework == "unsloth" and an.call("peft_unsloth"):
                return an.call("peft_unsloth"), "use_gradient_checkpointing"
            return an.call("train_args"), "gradient_checkpointing"
        if setting in ("lora_r", "lora_dropout"):
            return an.call("peft_unsloth") or an.call("peft"), keys.INSERT_AT[setting][1]
        model_load = an.call("model_load")
        if setting == "max_seq_length" and model_load is not None and model_load.name.split(".")[0] in keys.UNSLOTH_CLASSES:
            return model_load, "max_seq_length"
        if setting in ("max_seq_length", "trainer_max_seq_length"):
            args = an.call("train_args")
            if args is not None and args.name == "SFTConfig":
                return args, "max_length"
            trainer = next((c for c in an.calls if c.name == "SFTTrainer"), None)
            return trainer, "max_seq_length"
        if setting not in keys.INSERT_AT:
            return None, ""
        kind, key = keys.INSERT_AT[setting]
        return an.call(kind), key

    def insert(self, setting: str, value: Any, comment: str) -> tuple[bool, str, str]:
        call, key = self._insert_target(setting)
        if call is None:
            return False, "", f"no call to add `{setting}` to"
        self._insert_keyword(call, key, value, comment)
        return True, "", ""

    def _insert_keyword(self, call: CallSite, key: str, value: Any, comment: str) -> None:
        node = call.node
        items = sorted(list(node.args) + list(node.keywords), key=lambda n: (n.end_lineno, n.end_col_offset))
        eq = " = " if any(" = " in ast_text(self.an, k) for k in node.keywords if k.arg) else "="
        new = f"{key}{eq}{py_literal(value)}"
        close_line, close_col = self._pos(node.end_lineno, node.end_col_offset - 1)
        if not items:
            self.ed.insert(self.ed.offset(close_line, close_col), new)
            self._comment(close_line, comment)
            return
        last = items[-1]
        end_line, end_col = self._pos(last.end_lineno, last.end_col_offset)
        if end_line == close_line:   # `f(a, b)` or the paren closes on the last argument's line
            self.ed.insert(self.ed.offset(end_line, end_col), f", {new}")
            self._comment(end_line, comment)
            return
        rest = self.ed.line_text(end_line)[end_col:].strip()
        comma = ""
        if not rest.startswith(","):   # the last argument needs a comma before ours
            if rest:                   # (before its comment, if it has one)
                self.ed.insert(self.ed.offset(end_line, end_col), ",")
            else:
                comma = ","
        indent = indent_of(self.ed.line_text(last.lineno))
        tail = f"  # {comment}" if end_line in self.safe else ""
        self.ed.insert(self.ed.line_end(end_line), f"{comma}\n{indent}{new},{tail}")

    def result(self) -> str:
        return self.ed.apply("#")


def ast_text(an: Analysis, node) -> str:
    return source_segment(an.lines, node)
