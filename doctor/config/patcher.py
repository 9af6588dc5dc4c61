"""The patched config: every finding's config_changes (and the flags the run was evaluated with),
applied as minimal edits to a copy of the user's own file, beside it or in --out.

The original is never written. The copy must parse (ast / yaml / json) or nothing is written and
the doctor fails loudly. Changes the file already has are dropped (the folklore fixes for the
step-11 hang were already the notebook's defaults)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from doctor import exitcodes
from doctor.config.model import TrainingConfig
from doctor.exitcodes import DoctorError

RENAME = "source_keys."   # ConfigChange.setting "source_keys.X" = spell X's key as `value`


@dataclass
class Change:
    setting: str
    old: Optional[str]       # source text before ("" when the setting was added)
    new: Any
    finding: str             # finding id, or "flag"
    reason: str


@dataclass
class Skipped:
    setting: str
    value: Any
    finding: str
    why: str


@dataclass
class PatchResult:
    source: str
    path: Optional[str]                  # None when nothing could be applied (no file written)
    diff: str = ""
    changes: list[Change] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    vram_after: Optional[str] = None     # one line: the VRAM estimate with these changes applied
    write_error: Optional[str] = None    # why the copy could not be written (the diff still shows it)
    wanted_path: Optional[str] = None    # the usual name, when it was taken and another was used
    internal: bool = False               # write_error is a doctor bug (the patch would not parse)

    def to_dict(self) -> dict:
        return {"source": self.source, "path": self.path, "diff": self.diff, "vram_after": self.vram_after,
                "write_error": self.write_error, "wanted_path": self.wanted_path,
                "changes": [{"setting": c.setting, "old": c.old, "new": c.new, "finding": c.finding,
                             "reason": c.reason} for c in self.changes],
                "skipped": [{"setting": s.setting, "value": s.value, "finding": s.finding, "why": s.why}
                            for s in self.skipped]}

    def _rows(self) -> list[tuple[str, str, str, str]]:
        return [(c.setting, c.old if c.old else "(added)", _show(c.new), f"{c.finding}: {c.reason}")
                for c in self.changes]

    def render_terminal(self, console) -> None:
        from rich.text import Text

        if self.path:
            console.print(Text("Patched config: ", style="bold") + Text(self.path, style="bold green")
                          + Text(f"  ({len(self.changes)} change{'s' if len(self.changes) != 1 else ''}, "
                                 f"original untouched)", style="dim"))
            if self.wanted_path:
                console.print(Text(f"  ({self.wanted_path} already exists and was left alone)", style="yellow"))
        elif self.write_error:
            console.print(Text(f"Patched config: not written ({self.write_error}); the diff below has "
                               "the changes", style="bold yellow"))
        else:
            console.print(Text("Patched config: not written (no change could be applied)", style="bold yellow"))
        for setting, old, new, why in self._rows():
            console.print(Text("  ") + Text(setting, style="bold") + Text(f": {old} -> {new}")
                          + Text(f"  ({why})", style="dim"))
        for s in self.skipped:
            console.print(Text(f"  not applied: {s.setting} = {_show(s.value)} ({s.finding}): {s.why}",
                               style="yellow"))
        if self.vram_after:
            console.print(Text("  " + self.vram_after, style="bold"))
        if self.diff:
            # byte-exact, past rich: wrapping would cut a line from its +/- prefix and stripping
            # trailing spaces (DoctorConsole does, for the rest) would change context lines, and
            # then `sed -n '/^--- /,$p' | patch -p0` no longer applies
            colours = {"+": "\x1b[32m", "-": "\x1b[31m", "@": "\x1b[36m"} if console.color_system else {}
            for line in self.diff.rstrip("\n").split("\n"):
                colour = colours.get(line[:1])
                console.file.write(f"{colour}{line}\x1b[0m\n" if colour else line + "\n")

    def render_markdown(self) -> str:
        from doctor.text import code_span, md_escape_cell

        lines = ["### Patched config", ""]
        lines.append(f"Written to {code_span(self.path)} (the original is untouched)." if self.path
                     else f"Not written: {md_escape_cell(self.write_error)}." if self.write_error
                     else "Not written: no change could be applied.")
        if self.path and self.wanted_path:
            lines.append(f"({code_span(self.wanted_path)} already exists and was left alone.)")
        if self.changes:
            lines += ["", "| setting | was | now | why |", "|---|---|---|---|"]
            lines += [f"| {code_span(s, True)} | {code_span(o, True)} | {code_span(n, True)} | {md_escape_cell(w)} |"
                      for s, o, n, w in self._rows()]
        for s in self.skipped:
            lines.append(f"- Not applied: {code_span(f'{s.setting} = {_show(s.value)}')} ({s.finding}): "
                         f"{md_escape_cell(s.why)}")
        if self.vram_after:
            lines += ["", f"**{self.vram_after}**"]
        if self.diff:
            from doctor.text import fenced

            lines += ["", fenced(self.diff, "diff")]
        return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else value


@dataclass
class _Request:
    setting: str
    value: Any
    finding: str
    reason: str


def _requests(config: TrainingConfig, findings) -> tuple[list[_Request], list[Skipped]]:
    """Flags first (what the report assumed), then each finding's changes in rank order; the
    first request for a setting wins; what the file already has is dropped."""
    reqs: list[_Request] = []
    skipped: list[Skipped] = []
    for setting, flag in config.overrides.items():
        if _same(_file_value(config, setting), getattr(config, setting)):
            continue
        reqs.append(_Request(setting, getattr(config, setting), "flag", f"set by {flag}"))
    for f in findings:
        for ch in f.config_changes:
            if ch.setting.startswith(RENAME):
                target = ch.setting[len(RENAME):]
                if config.source_keys.get(target) in (None, ch.value):
                    continue
            elif ch.setting not in config.overrides and config.unresolved.get(ch.setting) is None \
                    and _same(getattr(config, ch.setting, None), ch.value):
                continue   # the file already does this
            first = next((r for r in reqs if r.setting == ch.setting), None)
            if first is not None:
                if not _same(first.value, ch.value):
                    skipped.append(Skipped(ch.setting, ch.value, f.id, f"conflicts with {first.finding}"))
                continue
            reqs.append(_Request(ch.setting, ch.value, f.id, ch.reason))
    return reqs, skipped


def _file_value(config: TrainingConfig, setting: str) -> Any:
    """The value written in the file for a setting a flag overrode (None if not a literal)."""
    span = config.spans.get(setting)
    if span is None:
        return None
    try:
        if config.source_kind == "yaml":
            import yaml

            return yaml.safe_load(span.text)
        if config.source_kind == "json":
            import json

            return json.loads(span.text)
        import ast

        return ast.literal_eval(span.text)
    except Exception:   # not a literal: treat as different, so the flag's value is written
        return None


def _same(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b) or (isinstance(a, (int, float)) and not isinstance(a, bool)
                                             and isinstance(b, (int, float)) and not isinstance(b, bool) and a == b)


def target_path(source: Path, out_dir: Optional[Path]) -> Path:
    name = f"{source.stem}.patched{source.suffix}"
    return (Path(out_dir) if out_dir is not None else source.parent) / name


def _check_parses(text: str, kind: str, path: Path) -> Optional[str]:
    """None when the patched text parses; otherwise why (a bug in the patcher: nothing is written)."""
    try:
        if kind == "python":
            import ast

            ast.parse(text, filename=str(path))
        elif kind == "yaml":
            import yaml

            yaml.safe_load(text)
        else:
            import json

            json.loads(text)
    except Exception as exc:   # any parse failure means our edit is wrong: say so, write nothing
        return (f"internal error: the patched {kind} config would not parse ({type(exc).__name__}: "
                f"{str(exc)[:200]}); nothing written, the original {path} is unchanged")
    return None


def patch_text(text: str, kind: str, config: TrainingConfig, requests: list[_Request],
               filename: str = "<config>") -> tuple[str, list[Change], list[Skipped]]:
    """Apply the requests to the file's text (no I/O)."""
    if kind == "python":
        from doctor.config.patch_python import PythonPatcher

        patcher = PythonPatcher(text, filename)
    else:
        from doctor.config.patch_structured import JsonPatcher, YamlPatcher
        from doctor.config.structured import detect_style, load_json_mapping, load_yaml_mapping

        data = load_yaml_mapping(text, filename) if kind == "yaml" else load_json_mapping(text, filename)
        cls = YamlPatcher if kind == "yaml" else JsonPatcher
        patcher = cls(text, detect_style(data))
    changing = {r.setting: r.value for r in requests}
    changes, skipped = [], []
    for r in requests:
        comment = f"doctor: {r.finding}: {r.reason}"
        if r.setting.startswith(RENAME):
            done, old, why = patcher.rename(r.setting[len(RENAME):], str(r.value), comment)
        elif kind == "python":
            done, old, why = patcher.set_value(r.setting, r.value, comment, changing)
        else:
            done, old, why = patcher.set_value(r.setting, r.value, comment)
        if done:
            changes.append(Change(r.setting, old, r.value, r.finding, r.reason))
        else:
            skipped.append(Skipped(r.setting, r.value, r.finding, why))
    return patcher.result(), changes, skipped


def write_patched(config: TrainingConfig, findings, out_dir: Optional[Path] = None) -> Optional[PatchResult]:
    """Write <name>.patched.<ext> with every applicable change; None when there is no file or
    nothing to change."""
    if not config.source_path or config.source_kind not in ("python", "yaml", "json"):
        return None
    requests, skipped = _requests(config, findings)
    if not requests and not skipped:
        return None
    source = Path(config.source_path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise DoctorError(f"cannot re-read {source} to patch it: {exc.strerror or exc}", exitcodes.CONFIG_INVALID)
    patched, changes, more_skipped = patch_text(text, config.source_kind, config, requests, str(source))
    result = PatchResult(source=str(source), path=None, changes=changes, skipped=skipped + more_skipped)
    if not changes:
        return result
    broken = _check_parses(patched, config.source_kind, source)
    if broken:
        result.write_error, result.internal = broken, True
        return result
    target = target_path(source, out_dir)
    result.diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), patched.splitlines(keepends=True),
                                               fromfile=str(source), tofile=str(target)))
    from doctor.outputs import write_new_file

    try:
        # out_dir is the caller's choice (the CLI checks --out, and --mkdir, before any work)
        target.parent.mkdir(parents=True, exist_ok=True)
        written = write_new_file(target, patched)   # never over an existing file, never via a symlink
    except OSError as exc:
        # the report must not be lost for this: the caller turns it into a finding
        result.write_error = f"cannot write {target}: {exc.strerror or exc}"
        return result
    result.path = str(written)
    if written != target:
        result.wanted_path = str(target)
        result.diff = result.diff.replace(f"+++ {target}", f"+++ {written}", 1)
    return result
