"""Typed configs: dataclasses loaded from YAML plus dotted overrides, validated at load.

Every command has one config dataclass (fields documented once, by a docstring
under the field). :func:`load_config` reads a YAML file, applies overrides like
``train.lr=1e-5`` or ``sampling.schedule.tau_max=1.4``, and builds the
dataclass recursively, rejecting unknown keys and wrong types with an error
that names the dotted field (and the file). Range checks live in each
dataclass's ``__post_init__`` and raise :class:`ConfigError` the same way.

A field may also be a *typed sub-config*: a class with a ``from_config(value, where)``
classmethod (parse and validate a mapping, errors naming ``where``) and a ``to_config()``
method (the mapping back, for ``config.yaml``), e.g. :class:`ead.specs.ScheduleSpec`. It is
parsed once at load, and the command uses the parsed object.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")

__all__ = ["ConfigError", "apply_overrides", "config_from_dict", "config_to_dict", "describe_fields", "field_docs",
           "load_config", "parse_override", "read_config_file", "yaml_load"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 plus YAML 1.2's floats: ``1e-6`` and ``2E5`` are numbers (1.1 wants ``1.0e-6``)."""


# Appended after the stock float resolver, so it only sees what that one did not take: exponents without a dot.
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that reads ``1e-6`` as a float, the same in files and on the command line."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def read_config_file(path: str | Path, what: str = "config sections") -> dict[str, Any]:
    """The mapping in a YAML file, or a :class:`ConfigError` naming the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; give the YAML file inside it")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of {what}")
    return loaded


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=1e-5"`` -> ``(["a", "b", "c"], 1e-05)``; values parse as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse value: {exc}") from exc
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied (creating nested dicts as needed)."""
    result = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints widen to floats); build nested dataclasses."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:  # Optional[X]: X's own message is the useful one
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: {value!r} does not match {_type_name(tp)}")
    if isinstance(tp, type) and hasattr(tp, "from_config"):  # a typed sub-config parsed by its own class
        return value if isinstance(value, tp) else tp.from_config(value, where)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where} must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of {tp.__name__} fields, got {value!r}")
        return config_from_dict(tp, value, prefix=where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item_type, *_) = get_args(tp) or (Any,)
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def config_from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a plain dict, strictly (unknown keys are errors)."""
    hints = get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        names = ", ".join(f"{prefix + '.' if prefix else ''}{k}" for k in unknown)
        raise ConfigError(f"{prefix + ': ' if prefix else ''}unknown config field(s): {names}; "
                          f"allowed here: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        where = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], where)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if prefix and not str(exc).startswith(prefix):
            raise ConfigError(f"{prefix}.{exc}") from None
        raise


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict (YAML/JSON-able) view of a config dataclass; the inverse of :func:`config_from_dict`.

    Typed sub-configs (classes with ``from_config`` / ``to_config``) are written as the mapping they
    were parsed from; derived fields (``init=False``) are left out.
    """
    return _to_plain(config)


def _to_plain(value: Any) -> Any:
    if hasattr(value, "to_config") and not isinstance(value, type):
        return _to_plain(value.to_config())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(v) for v in value)
    return value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> T:
    """Defaults of ``cls``, then ``base``, the YAML file at ``path`` and dotted ``overrides``; validated."""
    # Start from the defaults so that an override like sampling.schedule.tau_max=1.4 edits the
    # default schedule instead of replacing it with a one-key dict.
    data: dict[str, Any] = _merge(config_to_dict(cls()), base or {})
    if path is not None:
        path = Path(path)
        data = _merge(data, read_config_file(path))
    data = apply_overrides(data, overrides or [])
    try:
        return config_from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge; a mapping that names a different variant (``name``) replaces instead of merging."""
    result = _deep_copy(base)
    for key, value in update.items():
        old = result.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("name", old.get("name")) == old.get("name"):
            result[key] = _merge(result[key], value)
        else:
            result[key] = _deep_copy(value)
    return result


def require(condition: bool, field: str, message: str) -> None:
    """Raise :class:`ConfigError` naming ``field`` unless ``condition`` holds (for ``__post_init__``)."""
    if not condition:
        raise ConfigError(f"{field} {message}")



def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body (how every config field is documented)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _plain(value: Any) -> Any:
    """A default as YAML can print it: typed sub-configs (``to_config``) and dataclasses become mappings."""
    if hasattr(value, "to_config") and not isinstance(value, type):
        return _plain(value.to_config())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _type_text(tp: Any) -> str:
    """A field's type as a user reads it: ``one of 'hf', 'vllm'`` for a Literal, ``int | None``, ``list[int]``."""
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_text(a) for a in get_args(tp))
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(_type_text(a) for a in get_args(tp))}]" if get_args(tp) else origin.__name__
    return "null" if tp is type(None) else ("any" if tp is Any else _type_name(tp))


def describe_fields(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """``(dotted name, type, default, docstring)`` of every field of config dataclass ``cls``, nested sections expanded."""
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    defaults = cls()
    rows: list[tuple[str, str, Any, str]] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            rows += describe_fields(tp, prefix=f"{name}.")
            continue
        rows.append((name, _type_text(tp), _plain(getattr(defaults, f.name)), docs.get(f.name, "")))
    return rows


def format_fields(cls: type) -> str:
    """:func:`describe_fields` as text: one block per field (name, type, default, then the doc indented)."""
    out = []
    for name, type_name, default, doc in describe_fields(cls):
        out.append(f"{name}: {type_name} = {yaml.safe_dump(default, default_flow_style=True, width=10**6).strip().removesuffix('...').strip()}")
        if doc:
            out.append(textwrap.fill(doc, width=100, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(out) + "\n"


def dump_config(config: Any) -> str:
    """The resolved config as YAML (the same text a run saves as ``config.yaml``)."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
