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

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")

__all__ = ["ConfigError", "apply_overrides", "config_from_dict", "config_to_dict", "load_config", "parse_override"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=1e-5"`` -> ``(["a", "b", "c"], 1e-05)``; values parse as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse value: {exc}") from exc
    # YAML reads "1e-5" as a string (it wants "1.0e-5"); users mean a number.
    if isinstance(value, str):
        try:
            value = float(value) if any(ch in value.lower() for ch in ".e") else value
        except ValueError:
            pass
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
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config sections")
        data = _merge(data, loaded)
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

