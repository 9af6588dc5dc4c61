"""Patch YAML and JSON configs as text: replace a value, rename a key, or append a key (YAML: top
level; JSON: top level and one section down, as the loaders read them).
YAML changes carry a `# doctor: ...` comment; JSON has no comments, so the report says why."""
from __future__ import annotations

import json
from typing import Any, Optional

from doctor.config.edits import TextEdits, indent_of
from doctor.config.keys import TRAIN_ARGS_KEYS
from doctor.config.structured import STYLE_KEYS, json_config_spans, offset_to_linecol


def _insert_key(style: str, setting: str) -> Optional[str]:
    """The key a style uses for a setting (the first one its table lists)."""
    for key, field in STYLE_KEYS[style].items():
        if field == setting:
            return key
    return None


def yaml_scalar(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text[:-3].strip() if text.endswith("...") else text


class YamlPatcher:
    def __init__(self, source: str, style: str):
        import yaml

        self.style = style
        self.ed = TextEdits(source)
        self.keys: dict[str, tuple] = {}     # key -> (key node, value node)
        from doctor.config.structured import safe_loader

        root = yaml.compose(source, Loader=safe_loader())
        if isinstance(root, yaml.MappingNode):
            for k, v in root.value:
                if isinstance(k, yaml.ScalarNode):
                    self.keys[str(k.value)] = (k, v)
        self.appended: list[str] = []

    def _key_for(self, setting: str) -> Optional[str]:
        table = STYLE_KEYS[self.style]
        present = [k for k in self.keys if table.get(k) == setting]
        return present[-1] if present else None

    def set_value(self, setting: str, value: Any, comment: str) -> tuple[bool, str, str]:
        import yaml

        key = self._key_for(setting)
        if key is None:
            new_key = _insert_key(self.style, setting)
            if new_key is None:
                return False, "", f"no {self.style} key for `{setting}`"
            self.appended.append(f"{new_key}: {yaml_scalar(value)}  # {comment}")
            return True, "", ""
        _k, node = self.keys[key]
        if not isinstance(node, yaml.ScalarNode) or node.start_mark.line != node.end_mark.line:
            return False, "", f"`{key}` is not a one-line value"
        old = self.ed.source[node.start_mark.index:node.end_mark.index]
        line = node.start_mark.line + 1
        if not self.ed.replace(line, node.start_mark.column, line, node.end_mark.column, yaml_scalar(value)):
            return False, old, "another change edits the same text"
        self.ed.comment(line, comment)
        return True, old, ""

    def rename(self, setting: str, new_key: str, comment: str) -> tuple[bool, str, str]:
        key = self._key_for(setting)
        if key is None:
            return False, "", f"no key for `{setting}` to rename"
        if new_key in self.keys:
            return False, key, f"`{new_key}` is already set"
        knode, _v = self.keys[key]
        line = knode.start_mark.line + 1
        self.ed.replace(line, knode.start_mark.column, line, knode.end_mark.column, new_key)
        self.ed.comment(line, comment)
        return True, key, ""

    def result(self) -> str:
        out = self.ed.apply("#")
        if self.appended:
            if out and not out.endswith("\n"):
                out += "\n"
            out += "".join(line + "\n" for line in self.appended)
        return out


class JsonPatcher:
    """Edits the members parse_json reads: top-level ones and those one section down
    ({"training": {"per_device_train_batch_size": 8}}); a new key goes where the style's keys are."""

    def __init__(self, source: str, style: str):
        self.style = style
        self.ed = TextEdits(source)
        self.spans = json_config_spans(source)
        self.appended: dict[Optional[str], list[str]] = {}     # section (None: top level) -> members

    def _key_for(self, setting: str) -> Optional[str]:
        table = STYLE_KEYS[self.style]
        present = [k for k in self.spans if table.get(k) == setting]
        return present[-1] if present else None

    def _home_section(self, setting: str) -> Optional[str]:
        """Where a new key goes: the top level, unless only sections hold known keys; then the
        section with most keys of the same kind (trainer arguments, or model / LoRA settings)."""
        table = STYLE_KEYS[self.style]
        trainer = set(TRAIN_ARGS_KEYS.values())
        counts: dict[Optional[str], int] = {}
        for key, span in self.spans.items():
            if key in table:
                counts[span[4]] = counts.get(span[4], 0) + 1 + ((table[key] in trainer) == (setting in trainer))
        if not counts or None in counts:
            return None
        return max(counts, key=lambda sec: counts[sec])

    def _replace(self, start: int, end: int, text: str) -> bool:
        line, col = offset_to_linecol(self.ed.source, start)
        end_line, end_col = offset_to_linecol(self.ed.source, end)
        return self.ed.replace(line, col, end_line, end_col, text)

    def set_value(self, setting: str, value: Any, comment: str) -> tuple[bool, str, str]:
        key = self._key_for(setting)
        if key is None:
            new_key = _insert_key(self.style, setting)
            if new_key is None:
                return False, "", f"no {self.style} key for `{setting}`"
            self.appended.setdefault(self._home_section(setting), []).append(f"{json.dumps(new_key)}: {json.dumps(value)}")
            return True, "", ""
        _ks, _ke, vs, ve, _section = self.spans[key]
        old = self.ed.source[vs:ve]
        if not self._replace(vs, ve, json.dumps(value)):
            return False, old, "another change edits the same text"
        return True, old, ""

    def rename(self, setting: str, new_key: str, comment: str) -> tuple[bool, str, str]:
        key = self._key_for(setting)
        if key is None:
            return False, "", f"no key for `{setting}` to rename"
        if new_key in self.spans:
            return False, key, f"`{new_key}` is already set"
        ks, ke, _vs, _ve, _section = self.spans[key]
        self._replace(ks, ke, json.dumps(new_key))
        return True, key, ""

    def result(self) -> str:
        src = self.ed.source
        for section, members in self.appended.items():
            inside = [s for s in self.spans.values() if s[4] == section]
            if inside:   # after the container's last member, indented like it
                ks, _ke, _vs, ve, _sec = max(inside, key=lambda s: s[3])
                line, _col = offset_to_linecol(src, ks)
                indent = indent_of(self.ed.line_text(line))
                sep = "\n" + indent if "\n" in src[:ks] else " "
                self.ed.insert(ve, "".join(f",{sep}{m}" for m in members))
            else:
                brace = src.index("{")
                self.ed.insert(brace + 1, "\n  " + ",\n  ".join(members) + "\n")
        return self.ed.apply()   # JSON: no comments, the report carries the reasons
