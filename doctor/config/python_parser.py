"""Read a training script's settings by static analysis (`ast`): the script is never run.

`analyze(source)` finds the calls that matter (from_pretrained, get_peft_model, LoraConfig,
BitsAndBytesConfig, prepare_model_for_kbit_training, TrainingArguments/SFTConfig, SFTTrainer) and
resolves their keyword values through module variables, simple arithmetic, dict(...)/**kwargs and
the bf16 idioms. Anything else is reported as unresolved with its source text, never guessed.
The patcher reuses the same analysis to find where to edit.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Optional

from doctor import exitcodes, limits
from doctor.config import keys
from doctor.config.edits import split_lines
from doctor.config.python_ast import dotted
from doctor.config.model import (AUTO_EMULATED, AUTO_NATIVE, NOT_AUTO_EMULATED, NOT_AUTO_NATIVE,
                                 SourceSpan, TrainingConfig)
from doctor.exitcodes import DoctorError

_NEGATE = {AUTO_NATIVE: NOT_AUTO_NATIVE, AUTO_EMULATED: NOT_AUTO_EMULATED,
           NOT_AUTO_NATIVE: AUTO_NATIVE, NOT_AUTO_EMULATED: AUTO_EMULATED}
_TORCH_DTYPES = {"bfloat16", "float16", "float32", "half", "float", "bf16"}


class _Unresolved(Exception):
    pass


@dataclass
class Value:
    value: Any = None
    ok: bool = True
    text: str = ""                       # source text of the expression as written at the use site
    literal: Optional[ast.AST] = None    # where the literal is written (a variable's definition)
    names: tuple[str, ...] = ()          # variables followed to reach it (`bs` in `batch_size=bs`)


@dataclass
class Site:
    """One keyword that sets a setting: `SFTConfig(per_device_train_batch_size = bs)`."""
    setting: str
    key: str                             # the keyword as spelled
    call: str                            # callee's last name, e.g. "SFTConfig"
    kind: str                            # model_load | bnb | peft | peft_unsloth | prepare | train_args | trainer
    value_node: ast.AST                  # the keyword's value at the use site
    value: Value
    keyword: Optional[ast.keyword] = None   # None when it came from a **dict entry


@dataclass
class CallSite:
    kind: str
    name: str
    node: ast.Call


@dataclass
class Analysis:
    source: str
    lines: list[str]
    tree: ast.Module
    sites: dict[str, list[Site]] = field(default_factory=dict)   # setting -> every site, source order
    calls: list[CallSite] = field(default_factory=list)
    framework: Optional[str] = None
    gc_enable_call: Optional[ast.Call] = None
    resolver: Any = None        # the _Resolver of this source, for the workloads hook

    def call(self, kind: str) -> Optional[CallSite]:
        found = [c for c in self.calls if c.kind == kind]
        return found[-1] if found else None

    def site(self, setting: str) -> Optional[Site]:
        """The site that decides a setting: the first model load (a script may reload the model to
        merge adapters after training), otherwise the last assignment."""
        found = self.sites.get(setting)
        if not found:
            return None
        return found[0] if found[0].kind in ("model_load", "bnb") else found[-1]


# -- positions ------------------------------------------------------------------------------------

def char_col(lines: list[str], lineno: int, byte_col: int) -> int:
    """ast columns are UTF-8 byte offsets; the patcher edits characters."""
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    if line.isascii():   # the common case, and O(1) per node on a very long line
        return min(byte_col, len(line))
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


def source_segment(lines: list[str], node: ast.AST) -> str:
    """ast.get_source_segment over lines split once: the stdlib re-splits the whole source on every
    call, character by character, which made a script with one 1 MB line take minutes."""
    try:
        first, last = node.lineno, node.end_lineno
        if last is None or not (0 < first <= last <= len(lines)):
            return ""
        c0 = char_col(lines, first, node.col_offset)
        c1 = char_col(lines, last, node.end_col_offset)
    except AttributeError:
        return ""
    if first == last:
        return lines[first - 1][c0:c1]
    return "\n".join([lines[first - 1][c0:], *lines[first:last - 1], lines[last - 1][:c1]])


def span_of(node: ast.AST, lines: list[str], source: str, call: Optional[str] = None) -> SourceSpan:
    return SourceSpan(line=node.lineno, col=char_col(lines, node.lineno, node.col_offset),
                      end_line=node.end_lineno, end_col=char_col(lines, node.end_lineno, node.end_col_offset),
                      text=source_segment(lines, node), call=call)


# -- names ----------------------------------------------------------------------------------------

def classify_call(node: ast.Call) -> Optional[tuple[str, str]]:
    """(kind, callee name) for the calls whose keywords are settings."""
    name = dotted(node.func)
    if not name:
        return None
    parts = name.split(".")
    last = parts[-1]
    owner = parts[-2] if len(parts) > 1 else ""
    if last == "from_pretrained" and (owner in keys.MODEL_CLASSES or owner.endswith("ForCausalLM")
                                      or owner.endswith("ForConditionalGeneration")):   # VLMs (workloads)
        return "model_load", f"{owner}.{last}"
    if last == "get_peft_model":
        return ("peft_unsloth" if owner in keys.UNSLOTH_CLASSES else "peft_get"), (f"{owner}.{last}" if owner else last)
    if last == "LoraConfig":
        return "peft", last
    if last == "BitsAndBytesConfig":
        return "bnb", last
    if last == "prepare_model_for_kbit_training":
        return "prepare", last
    if last in keys.TRAIN_ARGS_CLASSES:
        return "train_args", last
    if last in keys.TRAINER_CLASSES:
        return "trainer", last
    if last == "gradient_checkpointing_enable":
        return "gc_enable", last
    return None


_KEYMAP = {"model_load": keys.MODEL_LOAD_KEYS, "bnb": keys.BNB_KEYS, "peft": keys.LORA_KEYS,
           "peft_unsloth": keys.LORA_KEYS, "prepare": keys.PREPARE_KEYS,
           "train_args": keys.TRAIN_ARGS_KEYS, "trainer": keys.TRAINER_KEYS}


# -- value resolution ------------------------------------------------------------------------------

class _Resolver:
    def __init__(self, tree: ast.Module, source: str, lines: Optional[list[str]] = None):
        self.source = source
        self.lines = lines if lines is not None else split_lines(source)
        self.assigns: dict[str, list[tuple[int, ast.AST]]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.assigns.setdefault(node.targets[0].id, []).append((node.lineno, node.value))
            elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
                self.assigns.setdefault(node.target.id, []).append((node.lineno, node.value))
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                self.assigns.setdefault(node.target.id, []).append((node.lineno, None))   # poisons it
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args[len(node.args.args) - len(node.args.defaults):]
                for arg, default in zip(args, node.args.defaults):
                    self.assigns.setdefault(arg.arg, []).append((node.lineno, default))
                for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults):
                    if default is not None:
                        self.assigns.setdefault(arg.arg, []).append((node.lineno, default))
        for entries in self.assigns.values():
            entries.sort(key=lambda e: e[0])

    def text(self, node: ast.AST) -> str:
        return source_segment(self.lines, node) or type(node).__name__

    def definition(self, name: str, line: int) -> Optional[ast.AST]:
        entries = self.assigns.get(name) or []
        before = [e for e in entries if e[0] < line]
        chosen = before[-1] if before else (entries[0] if len(entries) == 1 else None)
        if chosen is None or chosen[1] is None:
            raise _Unresolved(name)
        return chosen[1]

    def resolve(self, node: ast.AST, line: int) -> Value:
        try:
            names: list[str] = []
            value, literal = self._eval(node, line, 0, names)
            return Value(value=value, ok=True, text=self.text(node), literal=literal, names=tuple(names))
        except (_Unresolved, RecursionError, ValueError, TypeError, ZeroDivisionError, OverflowError):
            return Value(value=None, ok=False, text=self.text(node))

    def _eval(self, node: ast.AST, line: int, depth: int, names: Optional[list] = None) -> tuple[Any, Optional[ast.AST]]:
        """(value, node where the literal is written or None if computed); `names` collects the
        variables followed straight to a literal."""
        if depth > 20:
            raise _Unresolved("too deep")
        if isinstance(node, ast.Constant):
            if not _small_number(node.value):
                raise _Unresolved("number too large")
            return node.value, node
        if isinstance(node, ast.Name):
            target = self.definition(node.id, line)
            if names is not None:
                names.append(node.id)
            return self._eval(target, getattr(target, "lineno", line), depth + 1, names)
        if isinstance(node, ast.UnaryOp):
            val, _ = self._eval(node.operand, line, depth + 1)
            if isinstance(node.op, ast.Not):
                return (_NEGATE[val] if val in _NEGATE else not val), None
            if isinstance(node.op, ast.USub) and isinstance(val, (int, float)):
                return -val, None
            raise _Unresolved("unary")
        if isinstance(node, ast.BinOp):
            a, _ = self._eval(node.left, line, depth + 1)
            b, _ = self._eval(node.right, line, depth + 1)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
                raise _Unresolved("binop")
            if isinstance(node.op, ast.Pow) and not _small_power(a, b):
                raise _Unresolved("power too large")   # never evaluate (2**63)**63
            ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                   ast.FloorDiv: lambda: a // b, ast.Div: lambda: a / b, ast.Pow: lambda: a ** b,
                   ast.LShift: lambda: a << b if 0 <= b < 64 else None}
            fn = ops.get(type(node.op))
            result = fn() if fn is not None else None
            if result is None or not _small_number(result):
                raise _Unresolved("binop")
            return result, None
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self._eval(e, line, depth + 1)[0] for e in node.elts], None
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise _Unresolved("dict unpack")
            return {self._eval(k, line, depth + 1)[0]: v for k, v in zip(node.keys, node.values)}, None
        if isinstance(node, ast.Attribute):
            name = dotted(node)
            if name.split(".")[0] == "torch" and node.attr in _TORCH_DTYPES:
                return node.attr, None
            raise _Unresolved(name)
        if isinstance(node, ast.Compare):
            return self._capability_idiom(node), None
        if isinstance(node, ast.Call):
            return self._eval_call(node, line, depth), None
        raise _Unresolved(type(node).__name__)

    def _capability_idiom(self, node: ast.Compare) -> str:
        # torch.cuda.get_device_capability()[0] >= 8  -> native bf16
        left = node.left
        if (len(node.ops) == 1 and isinstance(node.ops[0], ast.GtE) and isinstance(left, ast.Subscript)
                and isinstance(left.value, ast.Call) and dotted(left.value.func).endswith("get_device_capability")
                and isinstance(node.comparators[0], ast.Constant) and node.comparators[0].value == 8):
            return AUTO_NATIVE
        raise _Unresolved("compare")

    def _eval_call(self, node: ast.Call, line: int, depth: int) -> Any:
        name = dotted(node.func)
        last = name.split(".")[-1]
        if last == "is_bfloat16_supported":
            # Unsloth's helper checks capability >= 8.0; torch's counts emulation unless told not to
            if name.startswith("torch.") or name.endswith("cuda.is_bf16_supported"):
                return AUTO_EMULATED
            return AUTO_NATIVE
        if last == "is_bf16_supported":
            emul = next((k.value for k in node.keywords if k.arg == "including_emulation"), None)
            if isinstance(emul, ast.Constant) and emul.value is False:
                return AUTO_NATIVE
            return AUTO_EMULATED
        if name == "dict" and not node.args:
            out = {}
            for kw in node.keywords:
                if kw.arg is None:
                    inner, _ = self._eval(kw.value, line, depth + 1)
                    if not isinstance(inner, dict):
                        raise _Unresolved("dict(**)")
                    out.update(inner)
                else:
                    out[kw.arg] = kw.value
            return out
        if name in ("int", "float", "bool", "str") and len(node.args) == 1 and not node.keywords:
            val, _ = self._eval(node.args[0], line, depth + 1)
            return {"int": int, "float": float, "bool": bool, "str": str}[name](val)
        raise _Unresolved(name)


def _small_number(v: Any) -> bool:
    """Numbers the evaluator carries: ints within MAX_INT_BITS, finite floats."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return True
    if isinstance(v, int):
        return v.bit_length() <= limits.MAX_INT_BITS
    return v == v and abs(v) != float("inf")


def _small_power(a: Any, b: Any) -> bool:
    """a ** b stays within MAX_INT_BITS (checked before computing it)."""
    if isinstance(a, float) or isinstance(b, float):
        return abs(b) < 1024
    if b < 0 or a in (0, 1, -1):
        return b > -1024
    return (abs(a).bit_length() - 1) * b <= limits.MAX_INT_BITS


# -- analysis -------------------------------------------------------------------------------------

def parse_source(source: str, filename: str = "<script>") -> ast.Module:
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        raise DoctorError(f"{filename}: syntax error at {where}: {exc.msg} "
                          "(the doctor reads the script without running it, so it must parse)",
                          exitcodes.CONFIG_INVALID)
    except ValueError as exc:   # e.g. null bytes
        raise DoctorError(f"{filename}: cannot parse: {exc}", exitcodes.CONFIG_INVALID)
    except (RecursionError, MemoryError):   # a 100k-term expression: too deep for Python's own parser
        raise DoctorError(f"{filename}: an expression is nested too deeply to read "
                          f"(the doctor reads scripts with Python's parser)", exitcodes.CONFIG_INVALID)
    _check_size(tree, filename)
    return tree


def _check_size(tree: ast.Module, filename: str) -> None:
    """Refuse scripts past the stated limits before any analysis walks them."""
    count = 0
    for node in ast.walk(tree):
        count += 1
        if count > limits.MAX_AST_NODES:
            raise DoctorError(f"{filename}: more than {limits.MAX_AST_NODES:,} syntax nodes "
                              "(the doctor's limit for a training script)", exitcodes.CONFIG_INVALID)
        if isinstance(node, ast.Call) and len(node.args) + len(node.keywords) > limits.MAX_CALL_ARGS:
            raise DoctorError(f"{filename}: line {node.lineno}: a call with "
                              f"{len(node.args) + len(node.keywords):,} arguments (the doctor's limit "
                              f"is {limits.MAX_CALL_ARGS:,})", exitcodes.CONFIG_INVALID)


def analyze(source: str, filename: str = "<script>") -> Analysis:
    tree = parse_source(source, filename)
    lines = split_lines(source)
    res = _Resolver(tree, source, lines)
    an = Analysis(source=source, lines=lines, tree=tree, resolver=res)
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)),
                   key=lambda n: (n.lineno, n.col_offset))
    for node in calls:
        kind_name = classify_call(node)
        if kind_name is None:
            continue
        kind, name = kind_name
        an.calls.append(CallSite(kind, name, node))
        if kind == "gc_enable":
            an.gc_enable_call = node
            continue
        if kind == "model_load" and node.args:   # from_pretrained("org/name", ...)
            _add_site(an, Site("model_name", "<positional>", name, kind, node.args[0],
                               res.resolve(node.args[0], node.lineno)))
        keymap = _KEYMAP.get(kind, {})
        for kw in node.keywords:
            if kw.arg is None:   # **kwargs: best effort through a dict literal / dict(...)
                expanded = res.resolve(kw.value, node.lineno)
                if expanded.ok and isinstance(expanded.value, dict):
                    for key, value_node in expanded.value.items():
                        if isinstance(key, str) and key in keymap and isinstance(value_node, ast.AST):
                            _add_site(an, Site(keymap[key], key, name, kind, value_node,
                                               res.resolve(value_node, value_node.lineno)))
                continue
            if kw.arg in keymap:
                _add_site(an, Site(keymap[kw.arg], kw.arg, name, kind, kw.value,
                                   res.resolve(kw.value, node.lineno), keyword=kw))
    an.framework = _framework(tree, an)
    return an


def _add_site(an: Analysis, site: Site) -> None:
    an.sites.setdefault(site.setting, []).append(site)


def _framework(tree: ast.Module, an: Analysis) -> Optional[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    if "unsloth" in modules or any(c.name.split(".")[0] in keys.UNSLOTH_CLASSES for c in an.calls):
        return "unsloth"
    if modules & {"transformers", "peft", "trl"}:
        return "transformers"
    return None


# -- TrainingConfig -------------------------------------------------------------------------------

# Settings whose keyword spelling matters to a check (renamed between library versions).
_SPELLED = ("trainer_max_seq_length", "eval_strategy", "dtype", "use_gradient_checkpointing")


def config_from_analysis(an: Analysis, path: Optional[str] = None) -> TrainingConfig:
    cfg = TrainingConfig(source_path=path, source_kind="python", framework=an.framework)
    for setting in an.sites:
        if setting != "use_gradient_checkpointing":
            _apply_site(cfg, an, an.site(setting))
    _apply_gc(cfg, an)
    kinds = {c.kind for c in an.calls}
    has_peft = bool(kinds & {"peft", "peft_get", "peft_unsloth"}) or any(
        kw.arg == "peft_config" for c in an.calls if c.kind == "trainer" for kw in c.node.keywords)
    # TRL's SFTTrainer runs prepare_model_for_kbit_training itself for a quantized model + peft_config
    trl_prepares = an.framework != "unsloth" and any(
        c.name == "SFTTrainer" and any(kw.arg == "peft_config" for kw in c.node.keywords)
        for c in an.calls if c.kind == "trainer")
    cfg.prepare_model_for_kbit_training = "prepare" in kinds or trl_prepares
    if cfg.full_finetune is None and "model_load" in kinds:
        cfg.full_finetune = not has_peft
    args_call = an.call("train_args")
    cfg.args_class = args_call.name if args_call else (
        "SFTConfig" if any(c.name == "SFTTrainer" for c in an.calls) else None)
    if not an.calls:
        cfg.notes.append("no from_pretrained / get_peft_model / TrainingArguments / SFTConfig call found")
    from doctor.config.workloads import read_workload   # workloads hook: GRPO / DPO / vision settings

    read_workload(cfg, an)
    return cfg


def _apply_site(cfg: TrainingConfig, an: Analysis, site: Site) -> None:
    setting = site.setting
    if setting in _SPELLED and site.key != "<positional>":
        cfg.source_keys[setting] = site.key
    node = site.value.literal if site.value.literal is not None else site.value_node
    cfg.spans[setting] = span_of(node, an.lines, an.source, call=site.call)
    if not site.value.ok:
        cfg.unresolved[setting] = site.value.text
        return
    try:
        setattr(cfg, setting, keys.coerce(setting, site.value.value))
        cfg.unresolved.pop(setting, None)
    except keys.Unresolvable:
        cfg.unresolved[setting] = site.value.text


def _apply_gc(cfg: TrainingConfig, an: Analysis) -> None:
    """Gradient checkpointing has four switches; the model ends up checkpointed if any turns it on."""
    sites = an.sites.get("use_gradient_checkpointing", [])
    unsloth = [s for s in sites if s.kind == "peft_unsloth"]
    if unsloth:   # Unsloth's get_peft_model decides (it patches the model itself)
        _apply_site(cfg, an, unsloth[-1])
        return
    for site in sites:
        if site.value.ok and site.value.value not in (False, None):
            _apply_site(cfg, an, site)
            return
    prepare = an.call("prepare")
    prepare_off = any(s.kind == "prepare" for s in sites)   # an explicit (False) keyword on prepare
    if an.gc_enable_call is not None or (prepare is not None and not prepare_off):
        cfg.use_gradient_checkpointing = True   # on by a call, not a keyword: nothing to point at
        cfg.notes.append("gradient checkpointing is enabled by "
                         + ("gradient_checkpointing_enable()" if an.gc_enable_call is not None
                            else "prepare_model_for_kbit_training (its default)"))
        return
    if sites:
        _apply_site(cfg, an, sites[-1])


def parse_python(source: str, path: Optional[str] = None) -> TrainingConfig:
    return config_from_analysis(analyze(source, path or "<script>"), path)
