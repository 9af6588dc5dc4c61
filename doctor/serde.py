"""Dataclass <-> JSON-able dict, by type hints. Lenient on input: unknown keys are ignored and
missing keys take their defaults, so facts saved by an older or newer doctor still load."""
from __future__ import annotations

import dataclasses
import enum
import sys
import typing
from typing import Any, Union

_HINTS: dict[type, dict[str, Any]] = {}


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    return obj


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        module = sys.modules.get(cls.__module__)
        _HINTS[cls] = typing.get_type_hints(cls, vars(module) if module else None)
    return _HINTS[cls]


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union:
        non_none = [a for a in args if a is not type(None)]
        for candidate in non_none:
            try:
                return _convert(candidate, value)
            except (TypeError, ValueError, KeyError):
                continue
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"expected an object for {tp.__name__}, got {type(value).__name__}")
        return from_jsonable(tp, value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if origin in (list, typing.List):
        (item_tp,) = args or (Any,)
        return [_convert(item_tp, v) for v in value]
    if origin in (tuple,):
        return tuple(value)
    if origin in (dict, typing.Dict):
        key_tp, val_tp = args or (Any, Any)
        return {k: _convert(val_tp, v) for k, v in value.items()}
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def from_jsonable(cls: type, data: dict) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


class JsonRecord:
    """Mixin for dataclasses that are saved and reloaded as JSON (facts, snapshots, specs ...)."""

    def to_dict(self) -> dict:
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: dict):
        return from_jsonable(cls, data)

    def save(self, path) -> None:
        import json
        from pathlib import Path

        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path):
        import json
        from pathlib import Path

        return cls.from_dict(json.loads(Path(path).read_text()))
