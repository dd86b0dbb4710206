"""Typed, frozen configuration trees loaded from YAML (DESIGN §1, house style: accelerate / minGPT).

Any frozen dataclass can be a config node. :func:`from_dict` maps a mapping field-for-field onto it, checks every
value's type, and rejects unknown keys, listing them with the closest valid key. :func:`apply_overrides` applies
dotted ``a.b=value`` overrides (values parsed as YAML scalars) that must name existing fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from multimodal.errors import ConfigError, clip, short

C = TypeVar("C")
#: a decimal number as YAML 1.2 writes it (1e-3, -2.5E+4, .5); PyYAML (YAML 1.1) leaves the exponent forms as strings
_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
#: The deepest nesting of lists / mappings a config or manifest may have (real ones have fewer than 10 levels).
MAX_YAML_DEPTH = 64


class YamlRefused(yaml.composer.ComposerError):
    """A YAML construct we do not read: an anchor or alias, or nesting deeper than :data:`MAX_YAML_DEPTH`."""

    def __init__(self, problem: str, mark: Any = None, *, hint: str) -> None:
        super().__init__(None, None, problem, mark)
        self.hint = hint


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors / aliases and deep nesting.

    A few hundred bytes of nested aliases ("billion laughs") expand into billions of values, and every error message,
    type check or copy of such a value runs for minutes and fills memory; configs and manifests never need them.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
            raise YamlRefused(f"YAML anchors and aliases are not allowed ({sign}{clip(str(event.anchor), 40)})",
                              event.start_mark, hint="write each value out in full")
        if self._depth >= MAX_YAML_DEPTH:
            raise YamlRefused(f"nested more than {MAX_YAML_DEPTH} levels deep", event.start_mark,
                              hint="configs and manifests are a few levels deep")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def safe_yaml(text: str) -> Any:
    """Parse YAML text with :class:`StrictSafeLoader`; every failure is a ``yaml.YAMLError``."""
    loader = StrictSafeLoader(text)  # what yaml.load does, with our loader
    try:
        return loader.get_single_data()
    except ValueError as exc:  # an integer of more than 4300 digits (Python's limit)
        raise YamlRefused(f"a value cannot be read ({clip(str(exc).split(':')[0], 80)})",
                          hint="numbers have at most 4300 digits") from None
    except RecursionError:
        raise YamlRefused("nested too deeply", hint="configs and manifests are a few levels deep") from None
    finally:
        loader.dispose()


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, file: str | None) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert containers/dataclasses; raise ConfigError if wrong."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
        errors = []
        candidates = [a for a in args if a is not type(None)]
        for arg in candidates:
            try:
                return _coerce(value, arg, where, file)
            except ConfigError as exc:
                errors.append(exc)
        # Optional[X] (one candidate) or a mapping given to a union with one dataclass member: the member's own error
        # (e.g. an unknown key with its did-you-mean) is more useful than "expected X | None".
        section = [e for a, e in zip(candidates, errors, strict=True) if dataclasses.is_dataclass(a)]
        if len(errors) == 1 or (isinstance(value, Mapping) and len(section) == 1):
            raise (errors[0] if len(errors) == 1 else section[0])
        raise ConfigError(
            f"expected {_type_name(tp)}, got {type(value).__name__} {short(value)}", file=file, field=where
        )
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            raise ConfigError(f"expected one of {list(allowed)}, got {short(value)}", file=file, field=where, hint=hint)
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping for {tp.__name__}, got {type(value).__name__}", file=file, field=where)
        return from_dict(tp, value, _prefix=where, _file=file)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {type(value).__name__} {short(value)}", file=file, field=where)
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"expected {len(args)} items, got {len(value)}", file=file, field=where)
            return tuple(_coerce(v, a, f"{where}[{i}]", file) for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item_t = args[0] if args else Any
        return tuple(_coerce(v, item_t, f"{where}[{i}]", file) for i, v in enumerate(value))
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping, got {type(value).__name__}", file=file, field=where)
        args = get_args(tp)
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, f"{where}.<key>", file): _coerce(v, vt, f"{where}.{k}", file) for k, v in value.items()}
    if tp is float:
        return _finite_float(value, where, file)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {type(value).__name__} {short(value)}", file=file, field=where)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true/false, got {type(value).__name__} {short(value)}", file=file, field=where)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {type(value).__name__} {short(value)}", file=file, field=where)
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"expected {tp.__name__}, got {type(value).__name__} {short(value)}", file=file, field=where)
    return value


def _finite_float(value: Any, where: str, file: str | None) -> float:
    """A float field's value: a finite number (``.inf``, ``.nan`` and ``1e999`` are refused, naming the key)."""
    if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 (PyYAML) reads 1e-3 as a string; YAML 1.2 and users read a number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"expected a number, got {type(value).__name__} {short(value)}", file=file, field=where)
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"expected a finite number, got {number}", file=file, field=where,
                          hint="infinity and NaN are not valid settings")
    return number


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def from_dict(cls: type[C], data: Mapping[str, Any], *, _prefix: str = "", _file: str | None = None) -> C:
    """Build the frozen dataclass ``cls`` from ``data``; unknown keys and wrong types are a :class:`ConfigError`."""
    if not dataclasses.is_dataclass(cls):
        msg = f"{cls!r} is not a dataclass"
        raise TypeError(msg)
    hints = _hints(cls)
    flds = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in flds]
    if unknown:
        problems = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), list(flds), n=1, cutoff=0.5)
            where = f"{_prefix}.{k}" if _prefix else str(k)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(flds)}"
            problems.append((where, hint))
        err = ConfigError(
            f"unknown key(s) {', '.join(short(p[0]) for p in problems[:10])}{' ...' if len(problems) > 10 else ''}",
            file=_file,
            field=problems[0][0],
            hint="; ".join(f"{w}: {h}" for w, h in problems),
        )
        raise err
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        where = f"{_prefix}.{name}" if _prefix else name
        kwargs[name] = _coerce(value, hints[name], where, _file)
    missing = [
        n for n, f in flds.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        where = ", ".join(f"{_prefix}.{m}" if _prefix else m for m in missing)
        raise ConfigError(f"required key(s) missing: {where}", file=_file, field=where)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc), file=_file, field=_prefix or cls.__name__) from exc


def to_dict(cfg: Any) -> Any:
    """The YAML-ready plain form of a config node (tuples become lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("file not found", file=p, hint="check the path")
    try:
        data = safe_yaml(p.read_text())
    except YamlRefused as exc:
        raise ConfigError(f"YAML not accepted: {yaml_problem(exc)}", file=p, hint=exc.hint) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {yaml_problem(exc)}", file=p,
                          hint="check indentation, brackets and quotes") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a text file ({exc.reason} at byte {exc.start})", file=p,
                          hint="configs and manifests are UTF-8 YAML") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", file=p)
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where and what (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or ["syntax error"])[0]
    context = getattr(exc, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")


def load_config(cls: type[C], path: str | Path, overrides: Iterable[str] = ()) -> C:
    """Load ``path`` into ``cls`` and apply dotted overrides."""
    data = load_yaml(path)
    cfg = from_dict(cls, data, _file=str(path))
    return apply_overrides(cfg, overrides)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {short(item)} must look like key.path=value", field="--set")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {short(item)} has an empty key", field="--set")
    try:
        value = safe_yaml(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(cfg: C, overrides: Iterable[str]) -> C:
    """Return a copy of ``cfg`` with each ``a.b.c=value`` applied; paths must exist and values type-check."""
    for item in overrides:
        path, value = _parse_override(item)
        cfg = _set_path(cfg, path, value, full=".".join(path))
    return cfg


def _set_path(node: Any, path: list[str], value: Any, *, full: str) -> Any:
    if not (dataclasses.is_dataclass(node) and not isinstance(node, type)):
        raise ConfigError(f"cannot set {short(full)}: {type(node).__name__} has no fields", field=full)
    names = [f.name for f in dataclasses.fields(node)]
    head = path[0]
    if head not in names:
        close = difflib.get_close_matches(head, names, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys here: {', '.join(names)}"
        raise ConfigError(f"override names unknown key {short(head)}", field=full, hint=hint)
    hints = _hints(type(node))
    if len(path) == 1:
        new = _coerce(value, hints[head], full, None)
    else:
        child = getattr(node, head)
        if child is None:
            # an optional sub-config that is off: build it from defaults first
            tp = hints[head]
            cands = [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
            if not cands:
                raise ConfigError(f"cannot set {short(full)}: {short(head)} is not a section", field=full)
            child = cands[0]()
        new = _set_path(child, path[1:], value, full=full)
    try:
        return dataclasses.replace(node, **{head: new})
    except ConfigError as exc:  # the section's own check (__post_init__): name its field in full, once
        section = full[: len(full) - len(".".join(path))].rstrip(".")
        p = exc.problems[0]
        field = f"{section}.{p.field}" if section and p.field else (p.field or full)
        raise ConfigError(p.message, file=p.file, field=field, hint=p.hint) from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), field=full) from exc


def config_fields(cls: type) -> list[tuple[str, str, Any, str]]:
    """(dotted name, type, default, help) for every leaf of a config class; used by the generated reference doc."""
    out: list[tuple[str, str, Any, str]] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        sub = [a for a in (get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if sub:
            for name, t, d, h in config_fields(sub[0]):
                out.append((f"{f.name}.{name}", t, d, h))
        else:
            out.append((f.name, _type_name(tp), to_dict(default), f.metadata.get("help", "")))
    return out
